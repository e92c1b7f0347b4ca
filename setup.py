"""pip route for slm_agent (the colcon route uses CMakeLists.txt).

Only the hand-written Python package is installed here; the generated
interfaces (slm_agent.msg/.srv/.action) come from the CMake build run by
tools/bootstrap.py and merge into the same package (see slm_agent/__init__.py).
"""
from setuptools import find_packages, setup

setup(
    name="slm_agent",
    version="0.1.0",
    description="Small language models as ROS 2 tool-calling agents, measured per ms and per joule",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    entry_points={
        "console_scripts": [
            "slm-agent = slm_agent.cli:main",
        ],
    },
)
