"""Telemetry logic for the benchmark: power/thermal/system readers, energy
integration and Jetson power-mode control.

Plain Python with no ROS imports, so it runs in unit tests and offline tools;
the ROS node is a thin adapter over these classes.
"""
from .energy import EnergyCounterIntegrator, EnergyEstimate, EnergyIntegrator, PowerLog, stamp_seconds
from .model import (
    PowerModeInfo,
    PowerSample,
    RailSample,
    SystemSample,
    ThermalSample,
    ThermalZone,
)
from .power_mode import (
    PowerModeController,
    PowerModeError,
    PowerModeRebootRequired,
    PowerModeUnsupported,
    SubprocessRunner,
)
from .readers import Reader, ReaderUnavailable, select_reader, valid_reader_names

__all__ = [
    "EnergyCounterIntegrator", "EnergyEstimate", "EnergyIntegrator", "PowerModeController",
    "PowerLog", "PowerModeError", "PowerModeInfo", "PowerModeRebootRequired", "PowerModeUnsupported",
    "PowerSample", "RailSample", "Reader", "ReaderUnavailable", "SubprocessRunner",
    "SystemSample", "ThermalSample", "ThermalZone", "select_reader", "stamp_seconds", "valid_reader_names",
]
