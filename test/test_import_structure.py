"""Import structure of ``src/slm_agent`` (issue 11).

* The plain-Python parts (agent, telemetry, engines, settings, the suite
  interface) import in a process where rclpy, the ROS IDL parser and the
  generated ``slm_agent`` interfaces cannot be imported at all.
* Imports only point down (issue 22): library modules (everything but
  ``slm_agent.cli`` and ``slm_agent.nodes``) never import the CLI or a node,
  and the graph of imports between the package's modules has no cycle.
  Every import statement counts, also one inside a function (a deferred
  import still ties the two modules together: it runs on first use); only
  ``if TYPE_CHECKING:`` blocks, which never run, are left out.  Both checks
  are shown to fail on a planted package.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Sequence

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
#: the top of the import graph: modules nothing in the library may import
TOP_MODULES = ("slm_agent.cli", "slm_agent.nodes")


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


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def all_imports(tree: ast.Module) -> list[ast.stmt]:
    """Every import statement of a module: its body, if/try/with blocks, functions and
    classes (deferred imports included), except ``if TYPE_CHECKING:`` bodies, which
    never run."""
    out: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(tree)
    return out


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its code)."""
    files = {_module_name(p, src): p for p in (src / package).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in all_imports(ast.parse(path.read_text(encoding="utf-8"))):
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


def _under(mod: str, tops: Sequence[str]) -> bool:
    return any(mod == t or mod.startswith(t + ".") for t in tops)


def upward_imports(graph: dict[str, set[str]], tops: Sequence[str] = TOP_MODULES) -> list[str]:
    """``library -> top`` edges: a library module importing the CLI or a node."""
    return [f"{mod} -> {t}" for mod, targets in sorted(graph.items()) if not _under(mod, tops)
            for t in sorted(targets) if _under(t, tops)]


def find_cycle(graph: dict[str, set[str]], allowed: dict[tuple[str, str], str] = ALLOWED_CYCLE_EDGES) -> list[str]:
    """One cycle as [a, b, ..., a], or [] when acyclic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if (m, n) in allowed:
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
    # deferred (inside a function) counts; a TYPE_CHECKING import does not
    assert "slm_agent.model_install" in graph["slm_agent.cli"]   # cmd_models imports it when run
    assert "slm_agent.agent.strategies" not in graph["slm_agent.agent.call_formats"]


def test_library_never_imports_the_cli_or_a_node():
    bad = upward_imports(import_graph())
    assert not bad, "library module importing the CLI or a node (imports point down): " + "; ".join(bad)


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_launch_file_imports_only_the_library():
    """``launch/bench.launch.py`` sits beside the CLI: it uses the launcher and the settings,
    never the CLI or a node module."""
    tree = ast.parse((SRC.parent / "launch" / "bench.launch.py").read_text(encoding="utf-8"))
    names = [n.module if isinstance(n, ast.ImportFrom) else a.name
             for n in all_imports(tree) for a in ([None] if isinstance(n, ast.ImportFrom) else n.names)]
    bad = [n for n in names if n and _under(n, TOP_MODULES)]
    assert not bad, f"the launch file imports {bad}"


def _plant(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_checks_fail_on_a_planted_deferred_cycle_and_upward_import(tmp_path):
    """The checks are not vacuous: a cycle closed only by an import inside a function, and a
    library module importing the CLI inside a function, are both found."""
    src = _plant(tmp_path, {
        "__init__.py": "",
        "low.py": "from pkg.mid import helper\n",
        "mid.py": "def helper():\n    from pkg import low  # deferred\n    return low\n",
        "lib.py": "def run():\n    from .cli import main\n    return main()\n",
        "cli.py": "def main():\n    return 0\n",
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import cli\n",
    })
    graph = import_graph(src, "pkg")
    cycle = find_cycle(graph, {})
    assert cycle == ["pkg.low", "pkg.mid", "pkg.low"], cycle
    assert upward_imports(graph, ("pkg.cli",)) == ["pkg.lib -> pkg.cli"], "TYPE_CHECKING import counted"
    assert find_cycle(graph, {("pkg.mid", "pkg.low"): "planted"}) == []   # the deferred edge closed it
