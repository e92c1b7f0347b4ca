"""ROS parameters from :mod:`slm_agent.settings`: one declare/read path for every node.

Why: each node used to carry its own ``Param`` dataclass, descriptor builder
and declare loop (five variants).  Here the descriptor (type, description,
range, constraints, read-only) comes from the setting's declaration, and the
values a node gets back are validated by the same pydantic model the CLI uses,
so ``--ros-args -p limit:=-3`` and ``slm-agent bench --limit -3`` are refused
with the same words.
"""
from __future__ import annotations

from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node

from slm_agent.settings import Declared, NodeSettings

S = TypeVar("S", bound=NodeSettings)

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def descriptor(d: Declared, read_only: bool) -> ParameterDescriptor:
    """The ROS descriptor of one setting (ranges only where both ends are closed)."""
    desc = ParameterDescriptor(name=d.name, type=_TYPES[d.type], description=d.description
                               + (f" [{d.unit}]" if d.unit else ""),
                               additional_constraints=d.constraint_text(), read_only=read_only)
    if d.ge is not None and d.le is not None:
        if d.type is int:
            desc.integer_range = [IntegerRange(from_value=int(d.ge), to_value=int(d.le), step=1)]
        elif d.type is float:
            desc.floating_point_range = [FloatingPointRange(from_value=float(d.ge), to_value=float(d.le),
                                                            step=0.0)]
    return desc


def declare_settings(node: Node, cls: type[S], *, read_only: bool = True) -> None:
    """Declare every setting of ``cls`` on ``node``.

    ``read_only``: settings not marked ``live`` are read-only (a node that
    reads them once at start-up); lifecycle nodes pass False and refuse
    changes themselves outside the unconfigured state.
    """
    for d in cls.declarations():
        node.declare_parameter(d.name, d.default, descriptor(d, read_only and not d.live))


def read_settings(node: Node, cls: type[S]) -> S:
    """The node's current values, validated (raises ``SettingsError``)."""
    values: dict[str, Any] = {d.name: node.get_parameter(d.name).value for d in cls.declarations()}
    return cls.parse(values)  # type: ignore[return-value]
