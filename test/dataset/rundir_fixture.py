"""A real run directory for the dataset tests, made without ROS or a model.

The toy suite (``test/bench/toy_suite.py``) is played case by case through
``play_case`` with the real :class:`~slm_agent.agent.loop.AgentLoop` behind
it (``test/bench/loop_agent.py``; a scripted engine supplies the model's
outputs), and the records are written with :class:`RunSession`, exactly the
path the benchmark node takes.  So ``results.jsonl`` holds what a real run
logs, including the per-goal ``conversation``.

Cases (what the dataset builder must make of them):

* ``single_0``: greets Ann, passes;
* ``single_1``: greets Bob, fails (dropped: case failed);
* ``single_2``: greets Ann exactly like ``single_0`` (dropped: duplicate);
* ``chat_0``: first reply does not parse (the agent feeds back an error and
  the model retries), then adds 2; the user asks for 3 more; passes (the
  unparsed reply is removed from the sample);
* ``chat_1``: adds 2, then 3; passes.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))

from loop_agent import Host, Script, call, loop_agent  # noqa: E402
from toy_suite import ToySuite  # noqa: E402

from slm_agent.bench.play import play_case  # noqa: E402
from slm_agent.bench.runner import BenchConfig  # noqa: E402
from slm_agent.bench.session import RunSession  # noqa: E402
from slm_agent.bench.suite import CaseContext, get_suite, register_suite, unregister_suite  # noqa: E402

SCRIPTS = {
    "single_0": [call("greet", name="Ann")],
    "single_1": [call("greet", name="Bob")],
    "single_2": [call("greet", name="Ann")],
    "chat_0": ['{"name": "add", "arguments": {"n": 2', call("add", n=2), call("final_answer", text="counter is 2"),
               call("add", n=3), call("final_answer", text="counter is 5")],
    "chat_1": [call("add", n=2), call("final_answer", text="counter is 2"),
               call("add", n=3), call("final_answer", text="counter is 5")],
}


def make_run_dir(out: Path) -> Path:
    """Play the toy cases above into the run directory ``out``; returns it."""
    register_suite("toy", ToySuite)
    try:
        cfg = BenchConfig(suite="toy", ids=list(SCRIPTS), output_dir=str(out), model="toy-model")
        suite = get_suite("toy")
        scenarios = suite.select([], cfg.ids, 0)
        session = RunSession(cfg, suite, scenarios, warn=lambda _m: None)
        session.lock_dir("dataset test")
        session.open(power_mode="")
        try:
            for sc in session.todo:
                host = Host()
                ctx = CaseContext(tool_host=host, tool_timeout_s=3.0, protocol="robot")
                play = play_case(suite, sc, ctx, loop_agent(Script(list(SCRIPTS[sc.case_id])), host, "robot"),
                                 case_timeout_s=30.0)
                session.append(play.record(cfg, power_mode="", metrics=[], wall_time_s=0.01,
                                           energy_j=math.nan, energy_covered_s=0.0, started_at=0.0))
        finally:
            session.close()
    finally:
        unregister_suite("toy")
    return out
