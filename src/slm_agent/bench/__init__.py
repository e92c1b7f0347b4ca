"""Benchmark harness: replay public tool-calling suites through the agent.

``suite`` is the plug-in interface (a :class:`~slm_agent.bench.suite.Suite`:
cases, turns, tools, scoring, summary columns; registry ``get_suite``);
``scenario`` holds the suite-neutral data model; ``play`` plays one case of
any suite (harness verdicts, the results.jsonl record); ``session`` writes a
run directory (lock, run.json, resume, progress) with ``rundir`` and
``results``; ``report`` and ``bag`` read runs back.  ``bfcl`` is the first
suite: the Berkeley Function Calling Leaderboard (loading, tool specs,
executable multi-turn environments, ROS tool services and scoring with
BFCL's own checkers); ``fidelity`` proves the harness scores BFCL's gold
answers as BFCL does.
"""
