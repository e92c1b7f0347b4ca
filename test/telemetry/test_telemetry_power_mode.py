"""PowerModeController with a fixture nvpmodel.conf and a real fake ``nvpmodel`` executable."""
from __future__ import annotations

import os

import pytest

from slm_agent.telemetry.power_mode import (
    PowerModeController,
    PowerModeError,
    PowerModeRebootRequired,
    PowerModeUnsupported,
    SubprocessRunner,
    parse_nvpmodel_conf,
    parse_query_output,
    parse_status_file,
)
from telemetry_fixtures import NVPMODEL_CONF, ORIN_MODES, build_jetson_tree, write, write_fake_nvpmodel


@pytest.fixture
def jetson(tmp_path):
    spec = build_jetson_tree(tmp_path / "root")
    exe = write_fake_nvpmodel(tmp_path / "bin", spec.root, reboot_id=0, broken_id=3)
    return spec.root, PowerModeController(root=str(spec.root), runner=SubprocessRunner(str(exe)))


def calls(root):
    return (root / "nvpmodel.calls").read_text().split("\n")[:-1]


def test_parse_conf_skips_comments_and_reads_default():
    modes, default = parse_nvpmodel_conf(NVPMODEL_CONF)
    assert modes == ORIN_MODES  # the commented-out ID=7 is not a mode
    assert default == 2


def test_parse_query_output_variants():
    assert parse_query_output("NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN\n0\n") == (0, "MAXN")
    assert parse_query_output("NV Fan Mode:quiet\nNV Power Mode: MODE_30W\n2") == (2, "MODE_30W")
    assert parse_query_output("NV Power Mode: MODE_15W\n") == (-1, "MODE_15W")
    assert parse_query_output("nvpmodel: command failed") is None
    assert parse_status_file("pmode:0002 fmode:quiet\n") == 2
    assert parse_status_file("garbage") is None


def test_info_lists_and_queries_via_the_executable(jetson):
    root, ctl = jetson
    info = ctl.info()
    assert info.supported and info.message == ""
    assert info.modes == ORIN_MODES and info.default_id == 2
    assert (info.current_id, info.current_name) == (2, "MODE_30W")
    assert calls(root) == ["-q"]  # current mode came from running nvpmodel, not the file


def test_set_by_name_and_by_id(jetson):
    root, ctl = jetson
    info = ctl.set_mode("mode_15w")  # names are matched case-insensitively
    assert (info.current_id, info.current_name) == (1, "MODE_15W")
    assert (root / "var/lib/nvpmodel/status").read_text().startswith("pmode:0001")
    info = ctl.set_mode(2)
    assert (info.current_id, info.current_name) == (2, "MODE_30W")
    assert ctl.set_mode("1").current_id == 1
    assert "-m 1" in calls(root) and "-m 2" in calls(root)


def test_unknown_mode_lists_valid_modes(jetson):
    root, ctl = jetson
    for bad in ("TURBO", 9, -1, True):
        with pytest.raises(ValueError) as err:
            ctl.set_mode(bad)
        for mid, name in ORIN_MODES:
            assert f"{mid}={name}" in str(err.value)
    assert not (root / "nvpmodel.calls").exists()  # rejected before running nvpmodel at all


def test_reboot_required_is_declined_and_raised(jetson):
    root, ctl = jetson
    with pytest.raises(PowerModeRebootRequired):
        ctl.set_mode("MAXN")
    assert (root / "nvpmodel.answer").read_text().strip() == "NO"
    assert not (root / "REBOOTED").exists()
    assert ctl.info().current_id == 2  # unchanged


def test_nvpm_error_output_raises(jetson):
    _root, ctl = jetson
    with pytest.raises(PowerModeError) as err:
        ctl.set_mode(3)  # the fake prints "NVPM ERROR" for id 3 and changes nothing
    assert "NVPM ERROR" in str(err.value)
    assert not isinstance(err.value, PowerModeRebootRequired)


def test_status_file_fallback_when_query_fails(tmp_path):
    spec = build_jetson_tree(tmp_path / "root")
    exe = write(tmp_path / "bin/nvpmodel", "#!/bin/sh\necho 'NVPM ERROR: cannot open device' >&2\nexit 1\n")
    exe.chmod(0o755)
    info = PowerModeController(root=str(spec.root), runner=SubprocessRunner(str(exe))).info()
    assert info.supported
    assert (info.current_id, info.current_name) == (2, "MODE_30W")
    assert "/var/lib/nvpmodel/status" in info.message and "cannot open device" in info.message


def test_conf_present_binary_missing(tmp_path):
    spec = build_jetson_tree(tmp_path / "root")
    ctl = PowerModeController(root=str(spec.root), runner=SubprocessRunner(str(tmp_path / "no/nvpmodel")))
    info = ctl.info()
    assert not info.supported and "nvpmodel binary not available" in info.message
    assert info.modes == ORIN_MODES and info.current_id == 2  # still readable from the status file
    with pytest.raises(PowerModeUnsupported):
        ctl.set_mode(1)


def test_non_jetson_tree(tmp_path):
    ctl = PowerModeController(root=str(tmp_path), runner=SubprocessRunner(str(tmp_path / "nvpmodel")))
    info = ctl.info()
    assert not info.supported and info.modes == [] and info.current_id == -1
    assert "nvpmodel.conf" in info.message
    with pytest.raises(PowerModeUnsupported) as err:
        ctl.set_mode("MAXN")
    assert "nvpmodel.conf" in str(err.value)


@pytest.mark.skipif(os.path.exists("/etc/nvpmodel.conf"),
                    reason="this machine is a Jetson; the non-Jetson path cannot be checked on '/'")
def test_this_machine_is_not_a_jetson():
    ctl = PowerModeController()  # root="/", real subprocess runner
    info = ctl.info()
    assert info.supported is False
    assert "/etc/nvpmodel.conf" in info.message
    with pytest.raises(PowerModeUnsupported):
        ctl.set_mode(0)
