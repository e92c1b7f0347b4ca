"""Telemetry node: the ROS adapter over slm_agent.telemetry.

* cross-process on this machine: ``python -m slm_agent.nodes.telemetry_node``
  in a child process, subscribed to and called from this process over DDS;
* cross-process on a fixture AGX Orin tree (``reader:=jetson_sysfs``,
  ``root:=<tmp>``) with the fake ``nvpmodel`` from the telemetry fixtures put
  first on the child's PATH, so the power-mode service really runs it;
* bad parameters: the process exits non-zero with a clear message;
* in process: ``energy_between`` and the diagnostics levels.

Every child runs in its own namespace (``/diagnostics`` statuses carry it in
their names) so concurrent runs on the same DDS domain do not mix, and every
child is terminated with SIGTERM, which must end it with status 0.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("diagnostic_msgs.msg", reason="diagnostic_msgs not installed")
pytest.importorskip("slm_agent.msg", reason="slm_agent interfaces not generated/installed (no slm_agent.msg)")
yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read config/telemetry.yaml")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.time import Time  # noqa: E402

from slm_agent.msg import PowerState, SystemState, ThermalState  # noqa: E402
from slm_agent.nodes.telemetry_node import TelemetryNode  # noqa: E402
from slm_agent.ros import telemetry_convert as conv  # noqa: E402
from slm_agent.ros.clients import call  # noqa: E402
from slm_agent.ros.runtime import SpinThread  # noqa: E402
from slm_agent.settings import TelemetrySettings  # noqa: E402
from slm_agent.srv import PowerMode  # noqa: E402
from slm_agent.telemetry import PowerModeController, select_reader, valid_reader_names  # noqa: E402
from slm_agent.telemetry.model import PowerSample, SystemSample, ThermalSample, ThermalZone  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "test" / "telemetry"))
from telemetry_fixtures import ORIN_MODES, build_jetson_tree, write_fake_nvpmodel  # noqa: E402

STARTUP_S = 30.0
EXIT_S = 10.0
MODULE = "slm_agent.nodes.telemetry_node"


# ------------------------------------------------------------------ helpers

def _namespace(tag: str) -> str:
    return f"/tel_{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


class Child:
    """The node in its own interpreter; stderr kept for failure messages."""

    def __init__(self, ros_args: list[str], env: dict[str, str] | None = None) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen([sys.executable, "-m", MODULE, "--ros-args", *ros_args],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, env=full_env)

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit status (kills and fails on a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=EXIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=EXIT_S)
                pytest.fail(f"telemetry node ignored SIGTERM for {EXIT_S}s:\n{self.log()}")
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_S)
        self.stderr.close()


class Listener:
    """Subscriptions to one telemetry namespace plus the power_mode client."""

    def __init__(self, node, ns: str) -> None:
        self.node = node
        self.ns = ns
        self.lock = threading.Lock()
        self.msgs: dict[str, list] = {"power": [], "thermal": [], "system": [], "diag": []}
        self.diag_prefix = f"{ns.lstrip('/')}/telemetry: "
        self.subs = [
            node.create_subscription(PowerState, f"{ns}/telemetry/power", self._cb("power"), 10),
            node.create_subscription(ThermalState, f"{ns}/telemetry/thermal", self._cb("thermal"), 10),
            node.create_subscription(SystemState, f"{ns}/telemetry/system", self._cb("system"), 10),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10),
        ]
        self.client = node.create_client(PowerMode, f"{ns}/telemetry/power_mode")

    def _cb(self, key: str) -> Callable:
        def cb(msg) -> None:
            with self.lock:
                self.msgs[key].append(msg)
        return cb

    def _on_diag(self, msg: DiagnosticArray) -> None:
        mine = {s.name[len(self.diag_prefix):]: s for s in msg.status if s.name.startswith(self.diag_prefix)}
        if mine:
            with self.lock:
                self.msgs["diag"].append(mine)

    def wait(self, key: str, child: Child, pred: Callable = lambda m: True, timeout: float = STARTUP_S):
        """First message on ``key`` (in arrival order) satisfying ``pred``."""
        end = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < end:
            with self.lock:
                batch = self.msgs[key][seen:]
                seen += len(batch)
            for m in batch:
                if pred(m):
                    return m
            if child.proc.poll() is not None:
                pytest.fail(f"telemetry node exited ({child.proc.returncode}) early:\n{child.log()}")
            time.sleep(0.02)
        pytest.fail(f"no matching {key} message in {timeout}s; node log:\n{child.log()}")

    def power_mode(self, mode: str = "") -> PowerMode.Response:
        res, _ms = call(self.client, PowerMode.Request(mode=mode), timeout_s=STARTUP_S)
        return res

    def destroy(self) -> None:
        for s in self.subs:
            self.node.destroy_subscription(s)
        self.node.destroy_client(self.client)


def _kv(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


@pytest.fixture(scope="module")
def ros():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"telemetry_test_{os.getpid()}", context=context)
    spin = SpinThread(node, num_threads=2, context=context)
    try:
        yield node
    finally:
        spin.stop()
        node.destroy_node()
        context.try_shutdown()


# ------------------------------------------------------- this machine, DDS

_POWER_HERE: list[bool] = []


def _power_readable_here() -> bool:
    """Whether the auto reader, in this process, measures total power on this machine."""
    if not _POWER_HERE:
        reader = select_reader("auto")
        time.sleep(0.2)  # RAPL power is an energy difference: give it an interval
        _POWER_HERE.append(reader.read_power().total_available)
        reader.close()
    return _POWER_HERE[0]


@pytest.fixture(scope="module")
def here(ros):
    ns = _namespace("here")
    listener = Listener(ros, ns)
    # rcl parses the whole params file at init (a malformed one fails the start), but its
    # "telemetry" key only matches the root namespace, so here the identical built-in
    # defaults apply (test_config_yaml_matches_declared_defaults checks they agree).
    child = Child(["--params-file", str(REPO / "config" / "telemetry.yaml"),
                   "-p", "rate_hz:=5.0", "-p", "power_rate_hz:=10.0", "-r", f"__ns:={ns}"])
    try:
        yield listener, child
    finally:
        listener.destroy()
        child.close()


def test_here_system_has_real_cpu_and_memory(here):
    listener, child = here
    # the first sample may come before any CPU time accrued; wait for a real one
    msg = listener.wait("system", child, lambda m: math.isfinite(m.cpu_percent))
    assert msg.source in valid_reader_names()
    assert 0.0 <= msg.cpu_percent <= 100.0
    assert len(msg.per_cpu_percent) >= 1
    assert all(math.isnan(v) or 0.0 <= v <= 100.0 for v in msg.per_cpu_percent)
    assert msg.mem_total_bytes > 0 and 0 < msg.mem_used_bytes < msg.mem_total_bytes
    with open("/proc/meminfo") as fh:
        total_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    assert msg.mem_total_bytes == total_kb * 1024
    # header stamped with the node clock (ROS time = wall clock here), not the monotonic sample time
    assert abs(_stamp_s(msg) - time.time()) < 10.0


def test_here_power_availability_is_truthful(here):
    listener, child = here
    msg = listener.wait("power", child)
    assert msg.source == select_reader("auto").name
    if not _power_readable_here():
        assert msg.total_available is False and math.isnan(msg.total_power_w)
    else:  # readable RAPL (or a GPU) on this machine
        msg = listener.wait("power", child, lambda m: m.total_available)
        assert math.isfinite(msg.total_power_w) and msg.total_power_w >= 0.0
    for m in listener.msgs["power"][:20]:
        assert m.total_available == math.isfinite(m.total_power_w)
    if not PowerModeController("/").info().supported:
        assert msg.power_mode == ""
    assert abs(_stamp_s(msg) - time.time()) < 10.0


def test_here_thermal_published(here):
    listener, child = here
    msg = listener.wait("thermal", child)
    assert msg.source in valid_reader_names()
    for z in msg.zones:
        assert z.available == math.isfinite(z.temperature_c)


def test_here_diagnostics_report_power_status(here):
    listener, child = here
    diag = listener.wait("diag", child, lambda d: {"power", "thermal", "system"} <= set(d))
    power, system = diag["power"], diag["system"]
    kv = _kv(power)
    assert kv["reader"] in valid_reader_names()
    if not _power_readable_here():
        assert kv["total_available"] == "false"
    if kv["total_available"] == "true":
        assert power.level == DiagnosticStatus.OK and math.isfinite(float(kv["total_power_w"]))
    else:
        assert power.level == DiagnosticStatus.WARN
        assert f"power not measured on this machine (reader {kv['reader']})" in power.message
        assert kv["total_available"] == "false" and kv["total_power_w"] == "nan"
    assert float(_kv(system)["mem_total_bytes"]) > 0


def test_here_power_mode_service_unsupported(here):
    listener, _child = here
    if PowerModeController("/").info().supported:
        pytest.skip("this machine has nvpmodel; the unsupported path is covered by the Jetson fixture run")
    assert listener.client.wait_for_service(timeout_sec=STARTUP_S)
    query = listener.power_mode("")
    assert query.supported is False and query.success is False
    assert "unsupported" in query.message and "nvpmodel" in query.message
    assert list(query.mode_ids) == [] and query.current_id == -1
    set_ = listener.power_mode("MAXN")
    assert set_.supported is False and set_.success is False
    assert "cannot set power mode" in set_.message


def test_here_sigterm_exits_zero(here):
    listener, child = here
    listener.wait("power", child)  # it was up and publishing
    assert child.terminate() == 0, child.log()


# ---------------------------------------------------- Jetson fixture, DDS

@pytest.fixture(scope="module")
def orin(ros, tmp_path_factory):
    root = tmp_path_factory.mktemp("orin")
    spec = build_jetson_tree(root)
    bin_dir = root / "bin"
    write_fake_nvpmodel(bin_dir, root, reboot_id=0, broken_id=3)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    ns = _namespace("orin")
    listener = Listener(ros, ns)
    child = Child(["-p", "reader:=jetson_sysfs", "-p", f"root:={root}", "-p", "rate_hz:=5.0",
                   "-p", "power_rate_hz:=10.0", "-r", f"__ns:={ns}"], env=env)
    try:
        yield spec, listener, child
    finally:
        listener.destroy()
        child.close()


def test_orin_power_rails_and_total_equal_fixture(orin):
    spec, listener, child = orin
    msg = listener.wait("power", child)
    assert msg.source == "jetson_sysfs"
    rails = {r.name: r for r in msg.rails}
    assert set(rails) == set(spec.rails)
    for name, (mv, ma) in spec.rails.items():
        r = rails[name]
        assert r.available
        assert r.voltage_v == pytest.approx(mv / 1000.0, rel=1e-12)
        assert r.current_a == pytest.approx(ma / 1000.0, rel=1e-12)
        assert r.power_w == pytest.approx(mv * ma / 1e6, rel=1e-12)
    top = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")  # VDDQ_VDD2_1V8AO is downstream of VIN_SYS_5V0
    assert msg.total_available
    assert msg.total_power_w == pytest.approx(sum(spec.rails[n][0] * spec.rails[n][1] / 1e6 for n in top),
                                              rel=1e-12)
    assert msg.total_rail == "sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)"
    assert msg.power_mode == "MODE_30W"  # fixture status file: pmode:0002


def test_orin_thermal_zones_equal_fixture(orin):
    spec, listener, child = orin
    msg = listener.wait("thermal", child)
    zones = {z.name: z for z in msg.zones}
    assert set(zones) == set(spec.zones)
    for name, milli in spec.zones.items():
        if milli == -256000:  # power-gated CV cluster
            assert not zones[name].available and math.isnan(zones[name].temperature_c)
        else:
            assert zones[name].available and zones[name].temperature_c == pytest.approx(milli / 1000.0)
    assert msg.throttling is False


def test_orin_system_gpu_emc_memory(orin):
    spec, listener, child = orin
    msg = listener.wait("system", child)
    assert msg.gpu_load_percent == pytest.approx(spec.gpu_load_permille / 10.0)
    assert msg.gpu_freq_mhz == pytest.approx(spec.gpu_hz / 1e6)
    assert msg.emc_freq_mhz == pytest.approx(spec.emc_hz / 1e6)
    total_kb, _free, avail_kb = spec.mem_kb
    assert msg.mem_total_bytes == total_kb * 1024 and msg.mem_used_bytes == (total_kb - avail_kb) * 1024
    assert len(msg.cpu_freq_mhz) == 12 and all(math.isnan(f) for f in msg.cpu_freq_mhz[8:])


def test_orin_diagnostics_power_ok_with_total(orin):
    spec, listener, child = orin
    diag = listener.wait("diag", child, lambda d: "power" in d and "thermal" in d)
    power, thermal = diag["power"], diag["thermal"]
    assert power.level == DiagnosticStatus.OK, power.message
    kv = _kv(power)
    assert kv["reader"] == "jetson_sysfs" and kv["power_mode"] == "MODE_30W"
    assert float(kv["total_power_w"]) == pytest.approx(6.0 + 2.0 + 4.976 * 1.5, abs=0.01)
    assert thermal.level == DiagnosticStatus.OK  # hottest zone 46 C < 85 C, no throttling
    assert _kv(thermal)["hottest_zone"] == "tj-thermal"


def test_orin_power_mode_service_runs_fake_nvpmodel(orin):
    spec, listener, child = orin
    assert listener.client.wait_for_service(timeout_sec=STARTUP_S)
    q = listener.power_mode("")
    assert q.supported and q.success, q.message
    assert list(zip(q.mode_ids, q.mode_names)) == ORIN_MODES
    assert (q.current_id, q.current_name) == (2, "MODE_30W")

    s = listener.power_mode("mode_15w")  # names are case-insensitive
    assert s.supported and s.success, s.message
    assert (s.current_id, s.current_name) == (1, "MODE_15W")
    assert "-m 1" in (spec.root / "nvpmodel.calls").read_text().splitlines()
    assert "pmode:0001" in (spec.root / "var/lib/nvpmodel/status").read_text()
    later = listener.wait("power", child, lambda m: m.power_mode == "MODE_15W", timeout=5.0)
    assert later.total_available

    unknown = listener.power_mode("TURBO")
    assert unknown.supported and not unknown.success
    assert "unknown power mode" in unknown.message and "0=MAXN" in unknown.message and "3=MODE_50W" in unknown.message
    assert unknown.current_id == 1

    reboot = listener.power_mode("0")  # the fake asks to reboot for mode 0; the node must decline
    assert reboot.supported and not reboot.success
    assert "reboot" in reboot.message.lower()
    assert (spec.root / "nvpmodel.answer").read_text().strip() == "NO"
    assert not (spec.root / "REBOOTED").exists()
    assert reboot.current_id == 1

    broken = listener.power_mode("MODE_50W")  # the fake prints NVPM ERROR for mode 3
    assert broken.supported and not broken.success and "NVPM ERROR" in broken.message
    assert child.proc.poll() is None  # none of this took the node down


def test_orin_sigterm_exits_zero(orin):
    _spec, listener, child = orin
    listener.wait("power", child)
    assert child.terminate() == 0, child.log()


# ------------------------------------------------------------ bad params

def _run_to_exit(ros_args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", MODULE, "--ros-args", *ros_args, "-r",
                           f"__ns:={_namespace('bad')}"],
                          capture_output=True, text=True, timeout=STARTUP_S)


def test_unknown_reader_exits_nonzero_naming_valid_readers():
    proc = _run_to_exit(["-p", "reader:=bogus"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "bad telemetry configuration: reader='bogus': must be one of " + ", ".join(valid_reader_names()) in out
    assert "Traceback" not in out


def test_bad_values_are_named_at_once_in_one_line():
    proc = _run_to_exit(["-p", "rate_hz:=1000.0", "-p", "temp_warn_c:=99.0"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if "bad telemetry configuration" in line]
    assert len(errors) == 1 and "rate_hz=1000.0: must be a number (>= 0.01, <= 100)" in errors[0], out
    proc = _run_to_exit(["-p", "temp_warn_c:=99.0", "-p", "rate_hz:=3"])   # an int for a float setting is fine
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "temp_warn_c (99.0) must be < temp_error_c (95.0)" in out, out


def test_explicit_reader_unavailable_exits_nonzero(tmp_path):
    proc = _run_to_exit(["-p", "reader:=jetson_sysfs", "-p", f"root:={tmp_path}"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "'jetson_sysfs' is not available" in out and "Traceback" not in out


# ----------------------------------------------------------- in process

def test_config_yaml_matches_declared_defaults():
    data = yaml.safe_load((REPO / "config" / "telemetry.yaml").read_text())
    params = data["telemetry"]["ros__parameters"]
    assert params == TelemetrySettings.defaults()


def test_energy_between_integrates_fixture_power(tmp_path):
    spec = build_jetson_tree(tmp_path / "orin")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    try:
        node = TelemetryNode(context=context, parameter_overrides=[
            Parameter("reader", value="jetson_sysfs"), Parameter("root", value=str(spec.root))])
        # timers are not spun here: drive the power callback by hand
        for _ in range(4):
            node._on_power_timer()
            time.sleep(0.03)
        t0, t1 = node.energy.span()
        watts = sum(spec.rails[n][0] * spec.rails[n][1] / 1e6 for n in ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"))
        mid0, mid1 = int((t0 + 0.01) * 1e9), int((t1 - 0.01) * 1e9)
        est = node.energy_between(mid0, mid1)
        assert est.complete
        assert est.joules == pytest.approx(watts * (mid1 - mid0) / 1e9, rel=1e-6)
        # a window reaching past the last sample is flagged incomplete, not extrapolated
        late = node.energy_between(mid0, int((t1 + 1.0) * 1e9))
        assert not late.complete and late.joules == pytest.approx(est.joules + watts * 0.01, rel=1e-3)
        # runtime parameter changes: thresholds are writable but must keep warn < error;
        # sampling setup is read-only
        assert not node.set_parameters([Parameter("temp_warn_c", value=99.0)])[0].successful
        assert node.set_parameters([Parameter("temp_warn_c", value=70.0)])[0].successful
        assert not node.set_parameters([Parameter("rate_hz", value=1.0)])[0].successful
        assert node.get_parameter("rate_hz").value == TelemetrySettings.defaults()["rate_hz"]
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        context.try_shutdown()


def test_power_goes_out_at_the_state_rate_without_a_power_sensor(tmp_path):
    """Nothing to integrate: 10 Hz of empty power messages would only wake the benchmark node
    and the recorder (on 2 CPUs they cost the model's threads ~10 %, harness_speed.py)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = []
    try:
        bare_root = tmp_path / "bare"  # a Linux tree with /proc/stat and no powercap (RAPL)
        (bare_root / "proc").mkdir(parents=True)
        (bare_root / "proc" / "stat").write_text("cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 10 0 10 100 0 0 0 0 0 0\n")
        bare = TelemetryNode(context=context, parameter_overrides=[
            Parameter("reader", value="linux"), Parameter("root", value=str(bare_root)),
            Parameter("rate_hz", value=2.0), Parameter("power_rate_hz", value=10.0)])
        nodes.append(bare)
        assert bare.last_power is None and bare.power_hz == 2.0
        spec = build_jetson_tree(tmp_path / "orin")
        board = TelemetryNode(context=context, namespace="board", parameter_overrides=[
            Parameter("reader", value="jetson_sysfs"), Parameter("root", value=str(spec.root)),
            Parameter("rate_hz", value=2.0), Parameter("power_rate_hz", value=10.0)])
        nodes.append(board)
        assert board.power_hz == 10.0, "rails present: power keeps its own rate"
    finally:
        for node in nodes:
            node.close()
            node.destroy_node()
        context.try_shutdown()


def _thermal(temps: dict[str, float], throttling: bool = False) -> ThermalSample:
    return ThermalSample(1, "linux", [ThermalZone(n, t, math.isfinite(t)) for n, t in temps.items()],
                         throttling, True)


@pytest.mark.parametrize("temps, throttling, level, words", [
    ({"cpu": 50.0, "gpu": 60.0}, False, DiagnosticStatus.OK, "max gpu 60.0 C"),
    ({"cpu": 50.0, "gpu": 85.0}, False, DiagnosticStatus.WARN, ">= 85 C"),
    ({"cpu": 50.0, "gpu": 60.0}, True, DiagnosticStatus.WARN, "throttling"),
    ({"cpu": 95.0, "gpu": math.nan}, False, DiagnosticStatus.ERROR, "cpu 95.0 C >= 95 C"),
    ({"cv0": math.nan}, False, DiagnosticStatus.WARN, "temperature not measured"),
])
def test_thermal_diagnostic_levels(temps, throttling, level, words):
    st = conv.thermal_status(_thermal(temps, throttling), "linux", 85.0, 95.0, "telemetry: thermal")
    assert st.level == level and words in st.message, st.message


def test_conversion_keeps_unknowns_visible():
    stamp = Time(seconds=5).to_msg()
    p = conv.power_msg(PowerSample(1, "linux", [], math.nan, False, "", "no RAPL"), stamp, "")
    assert p.total_available is False and math.isnan(p.total_power_w) and p.header.stamp.sec == 5
    # available flag without a finite value is not trusted
    p = conv.power_msg(PowerSample(1, "nvml", [], math.inf, True, "board"), stamp)
    assert p.total_available is False and math.isnan(p.total_power_w)
    s = conv.system_msg(SystemSample(1, "linux", math.nan, [math.nan], [], math.nan, math.nan, math.nan,
                                     math.nan, math.nan), stamp)
    assert math.isnan(s.cpu_percent) and s.mem_total_bytes == 0 and s.mem_used_bytes == 0
    st = conv.power_status(PowerSample(1, "linux", [], math.nan, False, "", "no RAPL"), "linux", "", "t: power")
    assert st.level == DiagnosticStatus.WARN
    assert st.message.startswith("power not measured on this machine (reader linux)")


def test_executable_script_and_cli_entry():
    script = REPO / "scripts" / "telemetry_node"
    assert os.access(script, os.X_OK)
    assert "from slm_agent.nodes.telemetry_node import main" in script.read_text()
    from slm_agent.launcher.processes import NODES

    assert NODES["telemetry_node"] == MODULE
