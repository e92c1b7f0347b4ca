"""Serve a benchmark case's functions as ``slm_agent/srv/InvokeTool`` services.

:class:`ToolServiceHost` is the benchmark node's
:class:`slm_agent.bench.suite.ToolHost`: a suite's episode hands it an
executor (anything with ``execute(name, arguments)``) and the function names;
each function becomes a service ``<namespace>/<token>``, where ``token`` is
the name made a valid ROS name token (:func:`service_names`, collision-free).
So every tool call of a benchmark run crosses DDS, like a robot's tools would.

Wire format (``InvokeTool``):

* request ``arguments_json``: the call's arguments as a JSON object;
* response ``success``: the call was executed (a suite-level failure such as
  BFCL's "Error during execution: ..." is still ``success=True`` -- that text
  is what the suite feeds back to the model); ``False`` only when the request
  could not be executed (bad JSON, not an object, nothing served, the
  executor raised);
* ``result_json``: ``json.dumps`` of the executor's result, so
  ``json.loads(result_json)`` returns it unchanged (a string byte for byte).

Callbacks serialize on an internal lock, so any executor works.

Fresh names (``fresh_names=True``, what the benchmark node uses): each
:meth:`ToolServiceHost.serve` puts its services under a sub-namespace of its
own, ``<namespace>/s<run token>_<n>/<token>``, so a service name is never
served again once cleared.  Re-creating a service under the name it had
before loses requests: a client (or a new client in a process whose DDS
discovery has not yet seen the old server go) still counts the destroyed
server as matched, ``service_is_ready()`` says True, and the request goes to
a reader that no longer exists -- never executed, a TIMEOUT after the tool's
timeout.  Measured with a cached client calling right after each re-serve on
a loaded 2-core machine: 7 of 870 requests lost with the same names, 0 of
840 with fresh ones (and the cause, by its symptoms, of a tau2 gold case
that once scored 0 in a loaded test run: the second of two cases in a row
calling ``update_task_status``).  A fresh
name is only ready once the new server itself is matched, and a late request
of a finished case reaches no server instead of the next case's
environment.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from typing import Any, Iterable, Optional

from rclpy.node import Node
from rclpy.validate_full_topic_name import validate_full_topic_name

from slm_agent.agent.types import INVOKE_TOOL_TYPE
from slm_agent.srv import InvokeTool


def normalize_namespace(namespace: str) -> str:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return ns


def ros_token(name: str) -> str:
    """A valid ROS name token for a function name (alnum/underscore, not
    starting with a digit)."""
    token = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not token or token[0].isdigit():
        token = "f_" + token
    return token


def service_names(functions: Iterable[str], namespace: str) -> dict[str, str]:
    """Function name -> full service name, collision-free and validated (first name wins a token)."""
    ns = normalize_namespace(namespace)
    out: dict[str, str] = {}
    used: set[str] = set()
    for original in functions:
        if original in out:
            continue
        token, base, n = ros_token(original), ros_token(original), 2
        while token in used:
            token = f"{base}_{n}"
            n += 1
        used.add(token)
        full = f"{ns}/{token}"
        validate_full_topic_name(full, is_service=True)
        out[original] = full
    return out


class ToolServiceHost:
    """InvokeTool services for one executor's functions, on ``node``; :meth:`serve` replaces them."""

    service_type = INVOKE_TOOL_TYPE

    def __init__(self, node: Node, namespace: str, fresh_names: bool = False) -> None:
        self.node = node
        self.namespace = normalize_namespace(namespace)
        #: every serve() under a sub-namespace never used before (module docstring: Fresh names)
        self.fresh_names = fresh_names
        self._run_token = uuid.uuid4().hex[:6]
        self._generation = itertools.count(1)
        self._lock = threading.RLock()
        self._executor: Optional[Any] = None
        self._services: dict[str, Any] = {}
        self._names: dict[str, str] = {}

    @property
    def service_names(self) -> dict[str, str]:
        """Function name -> full service name currently served."""
        return dict(self._names)

    def serve(self, executor: Any, functions: Iterable[str]) -> dict[str, str]:
        """Serve ``functions`` of ``executor`` (replacing what was served); returns :attr:`service_names`."""
        with self._lock:
            self._unserve()
            self._executor = executor
            namespace = self.namespace
            if self.fresh_names:
                namespace = f"{self.namespace}/s{self._run_token}_{next(self._generation)}"
            self._names = service_names(functions, namespace)
            for original, full in self._names.items():
                self._services[original] = self.node.create_service(InvokeTool, full, self._make_callback(original))
            return dict(self._names)

    def clear(self) -> None:
        """Stop serving (the executor is its owner's to close)."""
        with self._lock:
            self._unserve()

    def _unserve(self) -> None:
        for srv in self._services.values():
            self.node.destroy_service(srv)
        self._services.clear()
        self._names = {}
        self._executor = None

    # ----------------------------------------------------------------- calls
    def _make_callback(self, original: str):
        def _cb(request: InvokeTool.Request, response: InvokeTool.Response):
            return self._handle(original, request, response)

        return _cb

    def _handle(self, original: str, request: InvokeTool.Request,
                response: InvokeTool.Response) -> InvokeTool.Response:
        try:
            args = json.loads(request.arguments_json) if request.arguments_json.strip() else {}
        except json.JSONDecodeError as exc:
            response.success = False
            response.error = f"arguments_json is not valid JSON: {exc}"
            return response
        if not isinstance(args, dict):
            response.success = False
            response.error = "arguments_json must be a JSON object"
            return response
        with self._lock:
            executor = self._executor
            if executor is None:
                response.success = False
                response.error = "no scenario loaded"
                return response
            try:
                result = executor.execute(original, args)
            except Exception as exc:  # noqa: BLE001 - report, never kill the server
                response.success = False
                response.error = f"{type(exc).__name__}: {exc}"
                return response
        response.success = True
        response.result_json = json.dumps(result, ensure_ascii=False)
        response.error = ""
        return response
