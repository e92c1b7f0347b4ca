"""slm_agent: small language models as ROS 2 tool-calling agents, measured.

The generated interface modules (``slm_agent.msg``, ``.srv``, ``.action``) are
installed by the CMake build next to, or (for an editable pip install) in a
different directory from, this hand-written package.  ``extend_path`` merges
every ``slm_agent`` directory on ``sys.path`` into one package so both halves
import together on the colcon route, the pip route and an editable install.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
