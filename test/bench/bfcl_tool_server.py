"""Serve a BFCL multi-turn scenario's functions as ROS 2 services.

Every function of the scenario (including held-out ``miss_func`` ones: BFCL
only hides their docs, see ``environment``) becomes a
``slm_agent/srv/InvokeTool`` service ``<namespace>/<token>``, where ``token``
is the function name made a valid ROS name token (:func:`service_names_for`;
both sides compute the same mapping from the scenario, so no discovery
protocol is needed).  So every multi-turn tool call of a benchmark run
crosses DDS, like a robot's tools would.  The services themselves are the
suite-neutral :class:`slm_agent.ros.tool_services.ToolServiceHost`, which the
benchmark node hands to BFCL's multi-turn episodes
(:mod:`slm_agent.bench.bfcl.suite`); :class:`ScenarioToolServer` adds a case's
environment to it for this standalone server.

A test helper (issue 22): a node with its own argparse used by one test
(``test_bench_ros_tool_server.py``) is not library code.

Wire format (``InvokeTool``):

* request ``arguments_json``: the call's arguments as a JSON object;
* response ``success``: the call was executed (a BFCL-level failure such as
  "Error during execution: ..." is still ``success=True`` -- that text is
  what BFCL feeds back to the model); ``False`` only when the request could
  not be executed (bad JSON, not an object, no environment);
* ``result_json``: ``json.dumps`` of BFCL's result *string*, so
  ``json.loads(result_json)`` returns it byte for byte.

Run standalone (used by the tests, and handy for manual probing)::

    python test/bench/bfcl_tool_server.py --case multi_turn_base_0 --namespace /bfcl

It prints one JSON line ``{"ready": true, ...}`` on stdout when serving, and
also serves ``<namespace>/_control/reset`` (``InvokeTool``, arguments
``{"case_id": ...}``) to switch to another case without restarting.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from typing import Any, Optional, Union

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from slm_agent.bench.bfcl.environment import MultiTurnEnvironment
from slm_agent.bench.bfcl.loader import load_scenario
from slm_agent.bench.scenario import Scenario
from slm_agent.ros.clients import wait_future
from slm_agent.ros.tool_services import ToolServiceHost, normalize_namespace, ros_token, service_names  # noqa: F401
from slm_agent.srv import InvokeTool

CONTROL_RESET = "_control/reset"


def service_names_for(scenario: Scenario, namespace: str = "/bfcl") -> dict[str, str]:
    """Original function name -> full service name, for every function of
    the scenario (all turns), collision-free and validated."""
    return service_names((doc["name"] for doc in scenario.all_functions()), namespace)


class ScenarioToolServer(ToolServiceHost):
    """InvokeTool services for one scenario's functions, on ``node``, owning
    the scenario's :class:`MultiTurnEnvironment` (closed on :meth:`reset` and
    :meth:`close`).  Callbacks serialize on an internal lock, so any executor works.
    """

    def __init__(
        self,
        node: Node,
        environment: Optional[MultiTurnEnvironment] = None,
        namespace: str = "/bfcl",
    ) -> None:
        super().__init__(node, namespace)
        self._env: Optional[MultiTurnEnvironment] = None
        if environment is not None:
            self._serve_env(environment)

    @property
    def environment(self) -> Optional[MultiTurnEnvironment]:
        return self._env

    def reset(self, scenario: Union[Scenario, MultiTurnEnvironment]) -> dict[str, str]:
        """Serve the next case: closes the old environment, replaces the
        services, and returns the new :attr:`service_names`."""
        env = scenario if isinstance(scenario, MultiTurnEnvironment) else MultiTurnEnvironment(scenario)
        with self._lock:
            self._close_env()
            return self._serve_env(env)

    def close(self) -> None:
        with self._lock:
            self.clear()
            self._close_env()

    def _serve_env(self, env: MultiTurnEnvironment) -> dict[str, str]:
        names = self.serve(env, (doc["name"] for doc in env.scenario.all_functions()))
        self._env = env
        return names

    def _close_env(self) -> None:
        self.clear()
        if self._env is not None:
            self._env.close()
            self._env = None


class InvokeToolClient:
    """Client side: call a scenario's tools over ROS without spinning.

    The caller must spin ``node`` in an executor on another thread (never
    ``spin_until_future_complete``, which busy-loops in rclpy 7.1); calls
    wait on the future's done-callback.
    """

    def __init__(self, node: Node, service_names: dict[str, str]) -> None:
        self.node = node
        self.service_names = dict(service_names)
        self._clients = {
            name: node.create_client(InvokeTool, full) for name, full in service_names.items()
        }
        self._seq = itertools.count(1)

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """Wait until every service has a matched server."""
        end = time.monotonic() + timeout_s
        for client in self._clients.values():
            while not client.service_is_ready():
                if time.monotonic() > end:
                    return False
                time.sleep(0.02)
        return True

    def invoke(
        self, name: str, arguments: Union[dict[str, Any], str, Any], timeout_s: float = 10.0
    ) -> InvokeTool.Response:
        """Send one request; ``arguments`` is JSON-encoded unless it already
        is a string (sent verbatim, e.g. the model's raw argument text)."""
        client = self._clients[name]
        req = InvokeTool.Request()
        req.call_id = str(next(self._seq))
        req.arguments_json = arguments if isinstance(arguments, str) else json.dumps(arguments)
        try:  # a late answer is dropped from the client's pending requests
            return wait_future(client.call_async(req), timeout_s, client)
        except TimeoutError:
            raise TimeoutError(f"{client.srv_name}: no answer within {timeout_s} s") from None

    def execute(self, name: str, arguments: dict[str, Any]) -> str:
        """``execute(name, args) -> BFCL result text`` (the Executor shape)."""
        resp = self.invoke(name, arguments)
        if not resp.success:
            raise RuntimeError(f"{name}: {resp.error}")
        return json.loads(resp.result_json)

    def close(self) -> None:
        for client in self._clients.values():
            self.node.destroy_client(client)
        self._clients.clear()


# --------------------------------------------------------------------------- entry point


def _ready_line(server: ScenarioToolServer, case_id: str) -> str:
    return json.dumps(
        {
            "ready": True,
            "case_id": case_id,
            "namespace": server.namespace,
            "services": server.service_names,
            "control_reset": f"{server.namespace}/{CONTROL_RESET}",
        }
    )


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Serve a BFCL multi-turn case as ROS 2 InvokeTool services")
    ap.add_argument("--case", required=True, help="BFCL case id, e.g. multi_turn_base_0")
    ap.add_argument("--namespace", default="/bfcl")
    ap.add_argument("--node-name", default="bfcl_tool_server")
    ns = ap.parse_args(argv)

    scenario = load_scenario(ns.case)
    rclpy.init(args=None)
    node = rclpy.create_node(ns.node_name)
    server = ScenarioToolServer(node, MultiTurnEnvironment(scenario), ns.namespace)

    def _reset(request: InvokeTool.Request, response: InvokeTool.Response):
        try:
            case_id = json.loads(request.arguments_json)["case_id"]
            server.reset(load_scenario(case_id))
        except Exception as exc:  # noqa: BLE001
            response.success = False
            response.error = f"{type(exc).__name__}: {exc}"
            return response
        response.success = True
        response.result_json = _ready_line(server, case_id)
        return response

    node.create_service(InvokeTool, f"{server.namespace}/{CONTROL_RESET}", _reset)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print(_ready_line(server, ns.case), flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        server.close()
        try:
            node.destroy_node()
        except Exception:  # noqa: BLE001 - context may be gone after a signal
            pass
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
