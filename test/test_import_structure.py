"""Import structure of ``src/slm_agent`` (issue 11).

* The plain-Python parts (agent, telemetry, engines, settings, the suite
  interface) import in a process where rclpy, the ROS IDL parser and the
  generated ``slm_agent`` interfaces cannot be imported at all.
* The package has no import cycles: the graph of top-level imports between
  its modules (imports inside functions are deliberate late imports and are
  not counted) is acyclic.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "slm_agent"

#: modules that must import with every ROS piece blocked
PLAIN_MODULES = [
    "slm_agent.agent", "slm_agent.agent.types", "slm_agent.agent.loop", "slm_agent.agent.parsing",
    "slm_agent.agent.strategies", "slm_agent.agent.serializers", "slm_agent.agent.safety",
    "slm_agent.agent.protocol", "slm_agent.telemetry", "slm_agent.telemetry.readers",
    "slm_agent.telemetry.energy", "slm_agent.telemetry.power_mode", "slm_agent.engines",
    "slm_agent.settings", "slm_agent.bench.suite",
    # the agent node's plain-Python parts (issue 11)
    "slm_agent.agent.goal_options", "slm_agent.agent.feedback", "slm_agent.agent.metrics_queue",
    "slm_agent.engines.metered", "slm_agent.coerce", "slm_agent.config_paths",
    # fine-tuning loop (issue 15): dataset building and training never need ROS
    "slm_agent.dataset.build", "slm_agent.dataset.rundir", "slm_agent.dataset.toolmind", "slm_agent.dataset.scrub",
    "slm_agent.dataset.cluster", "slm_agent.dataset.render", "slm_agent.dataset.tau2_gold",
    "slm_agent.training.sft", "slm_agent.training.gguf_adapter", "slm_agent.training.evaluate",
    "slm_agent.training.commands",
]
BLOCKED = ["rclpy", "rosidl_parser", "rosidl_runtime_py", "slm_agent.msg", "slm_agent.srv", "slm_agent.action"]

#: (importer, imported) edges allowed to close a cycle, with the reason; none today
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {}


def test_plain_python_modules_import_without_ros():
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys
        BLOCKED = {BLOCKED!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError(f"blocked for this test: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        for name in {PLAIN_MODULES!r}:
            importlib.import_module(name)
        import slm_agent.telemetry.readers as readers
        for m in pkgutil.iter_modules(readers.__path__):
            importlib.import_module("slm_agent.telemetry.readers." + m.name)
        # the lazy package names resolve too, except those that derive schemas from ROS types
        import slm_agent.agent as agent
        for name in ("AgentLoop", "Strategy", "SafetyEnvelope", "ToolSpec", "parse_tool_calls", "get_serializer"):
            getattr(agent, name)
        loaded = sorted(b for b in BLOCKED if b in sys.modules)
        print("loaded:", loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(SRC.parent))
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("loaded: []"), out.stdout


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements run when the module is imported: the module body and
    its top-level if/try blocks (not ``if TYPE_CHECKING:``), not functions."""
    out: list[ast.stmt] = []

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" in ast.unparse(node.test):
                    walk(node.orelse)
                else:
                    walk(node.body)
                    walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                    walk(block)
    walk(tree.body)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:  # a name inside a module: the module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as [a, b, ..., a], or [] when acyclic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if (m, n) in ALLOWED_CYCLE_EDGES:
                continue
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return []


def test_import_graph_is_read():
    graph = import_graph()
    assert "slm_agent.agent.types" in graph["slm_agent.agent.toolset"]
    assert "slm_agent.settings" in graph["slm_agent.nodes.agent_node"]
    assert "slm_agent.agent.toolset" not in graph["slm_agent.agent.types"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)
