"""BFCL's executable multi-turn world for one scenario.

Every call goes through BFCL's own ``execute_multi_turn_func_call`` -- the
function BFCL's inference loop uses -- so instances are created, loaded with
the scenario's ``initial_config`` (deep-copied, ``long_context`` flag from the
category, stateless ``MathAPI`` not loaded), resolved (a method name present
in two classes goes to the later class) and their results stringified
(``str``/``json.dumps``/"Error during execution: ...") exactly as during a
BFCL run.  The tool result text the model sees is therefore byte-identical to
what BFCL would feed back.

Held-out functions (``miss_func``) are not blocked: BFCL only withholds their
*docs* until the reveal turn (see :func:`loader.tools_for`); the methods exist
on the instances all along and BFCL executes them if called.

One deliberate difference: a name that is not a public method of the
scenario's classes is answered with BFCL's NameError text without being
``eval``-ed (BFCL would ``eval`` it in its module namespace, where builtins
such as ``open`` resolve).  Arguments are always passed as ``repr`` literals.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import threading
from typing import Any, Optional

from slm_agent.bench.bfcl.calls import to_call_string
from slm_agent.bench.bfcl.checker import release_instances, unique_model_name
from slm_agent.bench.bfcl.compat import ensure_bfcl
from slm_agent.bench.bfcl.loader import tools_for
from slm_agent.bench.bfcl.tools import ToolSet, build_toolset
from slm_agent.bench.scenario import Call, Scenario

ensure_bfcl()
from bfcl_eval.constants.executable_backend_config import (  # noqa: E402
    CLASS_FILE_PATH_MAPPING,
    OMIT_STATE_INFO_CLASSES,
    STATELESS_CLASSES,
)
from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import (  # noqa: E402
    execute_multi_turn_func_call,
)


def class_method_signatures(involved_classes: list[str]) -> dict[str, inspect.Signature]:
    """Signatures (without ``self``) of the classes' public methods, resolved
    in BFCL's order (later class wins), without instantiating anything."""
    out: dict[str, inspect.Signature] = {}
    for class_name in involved_classes:
        cls = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name]), class_name)
        for name, func in inspect.getmembers(cls, predicate=inspect.isfunction):
            if not name.startswith("_"):
                sig = inspect.signature(func)
                params = list(sig.parameters.values())[1:]  # drop self
                out[name] = sig.replace(parameters=params)
    return out


class MultiTurnEnvironment:
    """Stateful BFCL environment for one multi-turn scenario.

    Typical agent loop::

        env = MultiTurnEnvironment(scenario)
        for t in range(scenario.num_turns):
            tools = env.begin_turn(t)          # ToolSet visible this turn
            while model keeps calling:
                env.begin_step()
                for call in response.calls:
                    text = env.execute(call["name"], call["arguments"])
        result = check_multi_turn(scenario, env.trajectory())
        env.close()
    """

    def __init__(self, scenario: Scenario, model_name: Optional[str] = None) -> None:
        if not scenario.is_multi_turn:
            raise ValueError(f"{scenario.case_id} has no executable classes")
        self.scenario = scenario
        self.model_name = model_name or unique_model_name("env")
        self._lock = threading.RLock()
        self._closed = False
        # Names from any turn map back (the model may call a held-out
        # function early; BFCL executes it).
        self._all_names = build_toolset(scenario.all_functions())
        _, self._instances = self._run([])
        self._methods: dict[str, Any] = {}
        for class_name in scenario.involved_classes:  # BFCL's resolution order
            inst = self._instances[class_name]
            for name, method in inspect.getmembers(inst, predicate=inspect.ismethod):
                if not name.startswith("_"):
                    self._methods[name] = method
        self._turn = -1
        self._trajectory: list[list[list[Call]]] = []

    # ------------------------------------------------------------------ BFCL
    def _run(self, call_strings: list[str]) -> tuple[list[str], dict[str, Any]]:
        return execute_multi_turn_func_call(
            func_call_list=call_strings,
            initial_config=self.scenario.initial_config,
            involved_classes=self.scenario.involved_classes,
            model_name=self.model_name,
            test_entry_id=self.scenario.case_id,
            long_context=self.scenario.long_context,
            is_evaL_run=False,
        )

    # ------------------------------------------------------------------ turns
    @property
    def turn(self) -> int:
        return self._turn

    def begin_turn(self, turn_index: Optional[int] = None) -> ToolSet:
        """Start user turn ``turn_index`` (default: the next one) and return
        the tools visible in it (held-out docs appear at their reveal turn)."""
        with self._lock:
            nxt = self._turn + 1 if turn_index is None else turn_index
            if nxt < self._turn or nxt >= self.scenario.num_turns:
                raise IndexError(f"turn {nxt} invalid (current {self._turn})")
            while self._turn < nxt:
                self._trajectory.append([])
                self._turn += 1
            return tools_for(self.scenario, self._turn)

    def begin_step(self) -> None:
        """Start a new model response within the current turn."""
        with self._lock:
            if self._turn < 0:
                self.begin_turn(0)
            self._trajectory[self._turn].append([])

    # ------------------------------------------------------------------ calls
    def function_names(self) -> list[str]:
        """Original BFCL names of every function of the scenario (all turns)."""
        return [doc["name"] for doc in self.scenario.all_functions()]

    def original_name(self, name: str) -> str:
        return self._all_names.any_name(name)

    def signature(self, name: str) -> inspect.Signature:
        """Python signature of a function (used to bind positional gold args)."""
        return inspect.signature(self._methods[self.original_name(name)])

    def execute(self, name: str, arguments: dict[str, Any]) -> str:
        """Execute one call and return BFCL's result string.

        ``name`` may be sanitized or original.  Raises ``ValueError`` when
        ``arguments`` is not an object (BFCL could not even decode such a
        call) and ``RuntimeError`` after :meth:`close`.
        """
        if not isinstance(arguments, dict):
            raise ValueError(f"arguments of {name!r} must be a JSON object, got {arguments!r}")
        original = self.original_name(name)
        with self._lock:
            if self._closed:
                raise RuntimeError("environment is closed")
            if original in self._methods:
                result = self._run([to_call_string(original, arguments)])[0][0]
            else:
                result = f"Error during execution: name '{original}' is not defined"
            if self._turn < 0:
                self.begin_turn(0)
            if not self._trajectory[self._turn]:
                self._trajectory[self._turn].append([])
            self._trajectory[self._turn][-1].append(
                {"name": original, "arguments": copy.deepcopy(arguments), "result": result}
            )
            return result

    # ------------------------------------------------------------------ results
    def trajectory(self) -> list[list[list[Call]]]:
        """Calls executed so far, per turn and step, each with its ``result``;
        the shape :func:`checker.check_multi_turn` takes.  Turns not begun are
        absent (so an early stop scores as force-terminated, as in BFCL)."""
        with self._lock:
            return copy.deepcopy(self._trajectory)

    @property
    def instances(self) -> dict[str, Any]:
        """The live BFCL class instances, by class name."""
        return dict(self._instances)

    def state(self) -> dict[str, dict[str, Any]]:
        """Public attributes of stateful instances (BFCL's ``state_info`` log)."""
        with self._lock:
            return {
                name: {k: copy.deepcopy(v) for k, v in vars(inst).items() if not k.startswith("_")}
                for name, inst in self._instances.items()
                if name not in STATELESS_CLASSES and name not in OMIT_STATE_INFO_CLASSES
            }

    def close(self) -> None:
        """Free BFCL's module-global instances of this environment."""
        with self._lock:
            if not self._closed:
                release_instances(self.model_name)
                self._closed = True

    def __enter__(self) -> "MultiTurnEnvironment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
