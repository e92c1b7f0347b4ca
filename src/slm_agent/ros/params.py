"""ROS parameters from :mod:`slm_agent.settings`: one declare/read path for every node.

Why: each node used to carry its own ``Param`` dataclass, descriptor builder
and declare loop (five variants).  Here the descriptor (type, description,
range, constraints, read-only) comes from the setting's declaration, and the
values a node gets back are validated by the same pydantic model the CLI uses,
so ``--ros-args -p limit:=-3`` and ``slm-agent bench --limit -3`` are refused
with the same words.
"""
from __future__ import annotations

from typing import Any, Iterable, TypeVar

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType,
                                SetParametersResult)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from slm_agent.settings import Declared, NodeSettings, Problem, SettingsError, _wants

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

    An integer given for a float setting (``-p case_timeout_s:=600``, a
    launch argument ``case_timeout_s:=600``) is taken as that float, as the
    YAML files and the CLI take it.  An override rclpy refuses (wrong type,
    outside a descriptor range) is collected, the other settings are still
    declared, and one :class:`SettingsError` names every such setting and
    what it must be.
    """
    problems: list[Problem] = []
    overrides = getattr(node, "_parameter_overrides", None)
    overrides = overrides if isinstance(overrides, dict) else {}
    for d in cls.declarations():
        given = overrides.get(d.name)
        if d.type is float and given is not None and given.type_ == Parameter.Type.INTEGER:
            overrides[d.name] = Parameter(d.name, value=float(given.value))
        try:
            node.declare_parameter(d.name, d.default, descriptor(d, read_only and not d.live))
        except ParameterException:
            given = overrides.get(d.name)
            problems.append(Problem(d.name, _wants(cls, d.name, {"msg": ""}),
                                    *([given.value] if given is not None else [])))
    if problems:
        raise SettingsError(cls.NODE, problems)


def read_settings(node: Node, cls: type[S]) -> S:
    """The node's current values, validated (raises ``SettingsError``)."""
    values: dict[str, Any] = {d.name: node.get_parameter(d.name).value for d in cls.declarations()}
    return cls.parse(values)  # type: ignore[return-value]


def check_update(node: Node, cls: type[NodeSettings], params: Iterable[Any]) -> SetParametersResult:
    """For ``add_on_set_parameters_callback``: the node's values with ``params``
    applied must still be valid settings (bounds, choices and the rules across
    settings, e.g. telemetry's temp_warn_c < temp_error_c)."""
    names = [d.name for d in cls.declarations()]
    values: dict[str, Any] = {n: node.get_parameter(n).value for n in names}
    values.update({p.name: p.value for p in params if p.name in values})
    try:
        cls.parse(values)
    except SettingsError as exc:
        return SetParametersResult(successful=False, reason="; ".join(exc.problems))
    return SetParametersResult(successful=True)
