"""ROS 2 adapter over :mod:`slm_agent.telemetry`: power, thermal, system, diagnostics, power mode.

Node ``telemetry``; names are relative, so ``--ros-args -r __ns:=/robot``
gives ``/robot/telemetry/power`` etc.

Publishes
    ``~/power`` (slm_agent/msg/PowerState) at ``power_rate_hz``;
    ``~/thermal`` (slm_agent/msg/ThermalState) and ``~/system``
    (slm_agent/msg/SystemState) at ``rate_hz``;
    ``/diagnostics`` (diagnostic_msgs/msg/DiagnosticArray) at ``rate_hz``, one
    status per area (``telemetry: power|thermal|system``, prefixed with the
    namespace when there is one) with the figures as
    key/value pairs.  Power WARNs "power not measured on this machine (reader
    X)" when no total power is readable, thermal WARNs on throttling or a zone
    >= ``temp_warn_c`` and ERRORs at >= ``temp_error_c``.
Serves
    ``~/power_mode`` (slm_agent/srv/PowerMode): empty ``mode`` queries; a
    name (``MAXN``, case-insensitive) or id (``"2"``) switches through
    ``nvpmodel`` and answers the state afterwards.  Off Jetson the answer is
    ``supported=False, success=False`` with the reason in ``message``.
Parameters
    :class:`slm_agent.settings.TelemetrySettings` (declared there with
    defaults, bounds and choices; documented in ``config/telemetry.yaml``).
    Read once at start, except the live ``temp_warn_c``/``temp_error_c``,
    whose changes are validated by the same declaration.

Energy.  Every power sample whose total is available goes into an
:class:`~slm_agent.telemetry.EnergyIntegrator` (a failed read is recorded as a
gap, never bridged).  In-process users call :meth:`TelemetryNode.energy_between`
with ``time.monotonic_ns()`` bounds.  Out-of-process users (the agent and
benchmark nodes) subscribe to ``~/power`` and feed the messages into their own
``EnergyIntegrator`` (``integrator.add(stamp_s, msg.total_power_w if
msg.total_available else nan)``, with ``stamp_s`` from the header, i.e. the node
clock), and query it with the same clock; this node does not serve energy over
ROS, so there is one integration rule and no extra round trip per LLM call.

Timestamps.  Readers stamp samples with the monotonic clock (the integrator
needs one that never jumps); published headers carry the node clock, shifted
back by the sample's age so the stamp is when the value was read.

Callback groups: the two sampling timers share one mutually exclusive group
(so the reader is never called from two threads at once); the power-mode
service and its periodic re-query run in another, because ``nvpmodel`` can
take seconds and must not stall the power samples that energy figures need.
"""
from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time

from slm_agent.msg import PowerState, SystemState, ThermalState
from slm_agent.ros import telemetry_convert as conv
from slm_agent.ros.params import check_update, declare_settings, read_settings
from slm_agent.ros.runtime import run_node
from slm_agent.settings import SettingsError, TelemetrySettings
from slm_agent.srv import PowerMode
from slm_agent.telemetry import (
    EnergyEstimate,
    EnergyIntegrator,
    PowerModeController,
    PowerModeError,
    PowerModeInfo,
    PowerModeRebootRequired,
    PowerModeUnsupported,
    PowerSample,
    Reader,
    ReaderUnavailable,
    SystemSample,
    ThermalSample,
    select_reader,
)

NODE_NAME = "telemetry"


class TelemetryConfigError(RuntimeError):
    """A parameter makes the node unable to run (already logged by the node)."""


class TelemetryNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            declare_settings(self, TelemetrySettings)
            s = read_settings(self, TelemetrySettings)
            self.reader: Reader = select_reader(s.reader, s.root)
        except (SettingsError, ValueError, ReaderUnavailable) as exc:
            text = "; ".join(exc.problems) if isinstance(exc, SettingsError) else str(exc)
            self.get_logger().error(f"bad telemetry configuration: {text}")
            self.destroy_node()
            raise TelemetryConfigError(str(exc)) from exc

        self.reader_name = self.reader.name
        self.root = s.root
        self._hardware_id = socket.gethostname()
        # "telemetry: power" in the root namespace, "robot/telemetry: power" under /robot
        prefix = self.get_fully_qualified_name().lstrip("/")
        self._diag_names = {area: f"{prefix}: {area}" for area in ("power", "thermal", "system")}
        self.energy = EnergyIntegrator(max_gap_s=max(1.0, 3.0 / s.power_rate_hz), horizon_s=s.energy_horizon_s)
        self.controller = PowerModeController(self.root)
        self._mode_lock = threading.Lock()
        self._mode_info: PowerModeInfo = self.controller.info()
        self.last_power: Optional[PowerSample] = None
        self.last_thermal: Optional[ThermalSample] = None
        self.last_system: Optional[SystemSample] = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.pub_power = self.create_publisher(PowerState, "~/power", 10)
        self.pub_thermal = self.create_publisher(ThermalState, "~/thermal", 10)
        self.pub_system = self.create_publisher(SystemState, "~/system", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        sampling = MutuallyExclusiveCallbackGroup()
        control = MutuallyExclusiveCallbackGroup()
        # A machine without power sensors has nothing to integrate: ~/power then goes out at the
        # state rate, not power_rate_hz.  Each message wakes this node, the benchmark node and
        # the recorder; on 2 CPUs those wake-ups cost the model's two threads ~10 % of their
        # speed (benchmarks/harness_speed.py, with and without telemetry).
        first = self.reader.read_power()
        self.power_hz = s.power_rate_hz if (first.total_available or first.rails) else min(s.power_rate_hz, s.rate_hz)
        self.create_timer(1.0 / self.power_hz, self._on_power_timer, callback_group=sampling)
        self.create_timer(1.0 / s.rate_hz, self._on_state_timer, callback_group=sampling)
        self.create_service(PowerMode, "~/power_mode", self._on_power_mode, callback_group=control)
        if s.power_mode_poll_s > 0 and self._mode_info.supported:
            self.create_timer(s.power_mode_poll_s, self._refresh_mode, callback_group=control)

        mode = self._mode_info
        self.get_logger().info(
            f"telemetry ready: reader={self.reader_name} root={self.root!r} rate={s.rate_hz} Hz "
            f"power={self.power_hz} Hz" + ("" if self.power_hz == s.power_rate_hz else
                                           f" (no power sensor: {first.message or 'no rails'})")
            + "; power mode: "
            + (f"{mode.current_id} ({mode.current_name})" if mode.supported else mode.message))

    # ------------------------------------------------------------ parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Runtime changes: only the live settings (the temperature thresholds) are
        writable (the others are read-only parameters); the result must still be
        valid TelemetrySettings (bounds, warn < error)."""
        return check_update(self, TelemetrySettings, params)

    # ---------------------------------------------------------------- timing
    def _stamp(self, sample_ns: int) -> Time:
        """Node-clock time at which a monotonic-stamped sample was read."""
        age_ns = max(0, time.monotonic_ns() - sample_ns)
        now = self.get_clock().now()
        return Time(nanoseconds=max(0, now.nanoseconds - age_ns), clock_type=now.clock_type)

    # -------------------------------------------------------------- sampling
    def _on_power_timer(self) -> None:
        sample = self.reader.read_power()
        self.last_power = sample
        self.energy.add_power_sample(sample)
        self.pub_power.publish(conv.power_msg(sample, self._stamp(sample.stamp_ns).to_msg(),
                                              self.power_mode_name))

    def _on_state_timer(self) -> None:
        thermal = self.reader.read_thermal()
        system = self.reader.read_system()
        self.last_thermal, self.last_system = thermal, system
        self.pub_thermal.publish(conv.thermal_msg(thermal, self._stamp(thermal.stamp_ns).to_msg()))
        self.pub_system.publish(conv.system_msg(system, self._stamp(system.stamp_ns).to_msg()))
        self.pub_diag.publish(self.diagnostics())

    def diagnostics(self) -> DiagnosticArray:
        """The /diagnostics message for the latest samples (public for in-process users)."""
        with self._mode_lock:
            info = self._mode_info
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [
            conv.power_status(self.last_power, self.reader_name, info.current_name,
                              self._diag_names["power"], self._hardware_id,
                              "" if info.supported else info.message),
            conv.thermal_status(self.last_thermal, self.reader_name,
                                float(self.get_parameter("temp_warn_c").value),
                                float(self.get_parameter("temp_error_c").value),
                                self._diag_names["thermal"], self._hardware_id),
            conv.system_status(self.last_system, self.reader_name, self._diag_names["system"],
                               self._hardware_id),
        ]
        return arr

    # ---------------------------------------------------------------- energy
    def energy_between(self, t0_ns: int, t1_ns: int) -> EnergyEstimate:
        """Joules drawn (``total_power_w`` scope) in ``[t0_ns, t1_ns]``, ``time.monotonic_ns()`` bounds.

        ``complete`` is False (and ``covered_s`` short) when power was not
        measured for part or all of the window; ``joules`` then covers only the
        measured part, and is 0 with ``covered_s == 0`` on a machine without
        power sensors, so check ``complete`` before using the figure.
        """
        return self.energy.energy(t0_ns / 1e9, t1_ns / 1e9)

    # ------------------------------------------------------------ power mode
    @property
    def power_mode_name(self) -> str:
        with self._mode_lock:
            info = self._mode_info
        return info.current_name if info.supported else ""

    def _refresh_mode(self) -> PowerModeInfo:
        info = self.controller.info()
        with self._mode_lock:
            changed = (info.current_id, info.current_name) != (self._mode_info.current_id,
                                                             self._mode_info.current_name)
            self._mode_info = info
        if changed:
            self.get_logger().info(f"power mode is now {info.current_id} ({info.current_name})")
        return info

    def _on_power_mode(self, req: PowerMode.Request, res: PowerMode.Response) -> PowerMode.Response:
        mode = (req.mode or "").strip()
        try:
            if not mode:
                info = self._refresh_mode()
                msg = info.message or f"current power mode {info.current_id} ({info.current_name})"
                return conv.fill_power_mode_response(res, info, info.supported, msg)
            try:
                info = self.controller.set_mode(mode)
            except PowerModeUnsupported as exc:
                info = self._refresh_mode()
                return conv.fill_power_mode_response(res, info, False, str(exc))
            except (ValueError, PowerModeRebootRequired, PowerModeError) as exc:
                info = self._refresh_mode()
                self.get_logger().warning(f"power mode {mode!r} not set: {exc}")
                return conv.fill_power_mode_response(res, info, False, str(exc))
            with self._mode_lock:
                self._mode_info = info
            msg = f"power mode set to {info.current_id} ({info.current_name})"
            self.get_logger().info(msg)
            return conv.fill_power_mode_response(res, info, True, msg)
        except Exception as exc:  # noqa: BLE001 - a service call must never take the node down
            self.get_logger().error(f"power_mode {mode!r} failed: {exc!r}")
            info = PowerModeInfo(False, -1, "", [], "")
            return conv.fill_power_mode_response(res, info, False, f"power mode request failed: {exc!r}")

    # -------------------------------------------------------------- shutdown
    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass


def main(args=None) -> int:
    """Run the node; exit status 2 (after a logged error) on a bad parameter."""
    try:
        return run_node(TelemetryNode, args if args is not None else sys.argv)
    except TelemetryConfigError:
        return 2


if __name__ == "__main__":
    sys.exit(main())
