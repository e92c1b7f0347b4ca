"""Starting the package's nodes as processes: one layer below every front end.

Why a package of its own: ``slm-agent bench`` (the CLI), ``slm-agent grid``
and ``bench.launch.py`` all start the same nodes with the same settings.  Put
in the CLI, the grid had to turn each cell into command-line text and parse
it back, and the launch file imported the CLI.  Here:

* :mod:`.processes`: a node as a child process (log file, console echo,
  stop in order), the node table, bag folders;
* :mod:`.ready`: is a node ready, asked of ROS itself (the agent's lifecycle
  state, an action server, the graph), never read from its log text;
* :mod:`.bench`: a typed benchmark run (:class:`~.bench.BenchRun`) checked
  before anything starts and run by :func:`~.bench.run_bench`;
* :mod:`.grid`: the nodes a grid keeps across its cells.

Imports point down: this package imports the library (settings, bench,
isolation), never :mod:`slm_agent.cli` or a node module (nodes are started
by module name, ``python -m``).
"""
