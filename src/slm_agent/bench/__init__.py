"""Benchmark harness: replay public tool-calling suites through the agent.

``scenario`` holds the suite-neutral data model; ``bfcl`` adapts the Berkeley
Function Calling Leaderboard (loading, tool specs, executable multi-turn
environments, ROS tool services and scoring with BFCL's own checkers);
``fidelity`` proves the harness scores BFCL's gold answers as BFCL does.
"""
