"""pip route for slm_agent (the colcon route uses CMakeLists.txt).

Only the hand-written Python package is installed here; the generated
interfaces (slm_agent.msg/.srv/.action) come from the CMake build run by
tools/bootstrap.py and merge into the same package (see slm_agent/__init__.py).
"""
from glob import glob

from setuptools import find_packages, setup


def share(subdir: str) -> tuple[str, list[str]]:
    """Config and launch files where the colcon route installs them too."""
    return (f"share/slm_agent/{subdir}", [f for f in glob(f"{subdir}/*") if "." in f.rsplit("/", 1)[-1]])


setup(
    name="slm_agent",
    version="0.1.0",
    description="Small language models as ROS 2 tool-calling agents, measured per ms and per joule",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    data_files=[share(d) for d in ("launch", "config", "config/models", "config/models/templates",
                                    "config/tool_sets")],
    # Benchmark suites of other distributions register in the group "slm_agent.suites"
    # ("name = package.module:SuiteClass"); this package's own suites are registered in
    # code (slm_agent.bench.suite.BUILTIN_SUITES), so an editable install made before a
    # suite was added still finds it.
    entry_points={
        "console_scripts": [
            "slm-agent = slm_agent.cli:main",
        ],
    },
)
