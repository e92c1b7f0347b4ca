"""The ToolHost contract in plain Python for tau2 suite tests (no DDS)."""
from __future__ import annotations


class PlainHost:
    """serve = remember the executor; call = run it directly."""

    service_type = "slm_agent/srv/InvokeTool"

    def __init__(self) -> None:
        self.executor = None

    def serve(self, executor, functions):
        self.executor = executor
        return {f: f"/tau2/{f}" for f in functions}

    def clear(self) -> None:
        self.executor = None

    def call(self, name: str, args: dict) -> str:
        return self.executor.execute(name, args)
