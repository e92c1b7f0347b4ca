"""Which Jetson rails make up "total power", shared by the sysfs and jtop readers.

Boards with a module-input monitor (Orin NX/Nano, Xavier NX, TX2, Nano) label
it ``VDD_IN`` (``POM_5V_IN`` on the original Nano); that rail *is* the total
and the other rails are inside it.

The Jetson AGX Orin has no such rail.  Its documented layout is two INA3221s:
0x40 = VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 and 0x41 = NC, VDDQ_VDD2_1V8AO, NC,
where VDDQ_VDD2_1V8AO is fed from VIN_SYS_5V0.  So the total there is the sum
of the top-level rails with downstream rails left out (jetson-stats sums every
rail, which counts VDDQ_VDD2_1V8AO twice).  A sum over a rail that failed to
read would silently under-report, so any missing addend makes the total NaN.
"""
from __future__ import annotations

import math

from ..model import NAN, RailSample

TOTAL_RAIL_NAMES = ("VDD_IN", "POM_5V_IN")

# rail -> the monitored rail that feeds it (documented for AGX Orin).
DOWNSTREAM_OF = {"VDDQ_VDD2_1V8AO": "VIN_SYS_5V0"}


def jetson_total(rails: list[RailSample]) -> tuple[float, bool, str, str]:
    """Return ``(total_w, available, total_rail_label, message)``."""
    by_name = {r.name: r for r in rails}
    for name in TOTAL_RAIL_NAMES:
        if name in by_name:
            r = by_name[name]
            ok = r.available and math.isfinite(r.power_w)
            return (r.power_w if ok else NAN), ok, name, ("" if ok else f"{name} unreadable")
    if not rails:
        return NAN, False, "", "no INA3221 rails found"
    top = [r for r in rails if DOWNSTREAM_OF.get(r.name) not in by_name]
    label = "sum(" + ",".join(r.name for r in top) + ")"
    missing = [r.name for r in top if not (r.available and math.isfinite(r.power_w))]
    if missing:
        return NAN, False, label, "rails unreadable: " + ",".join(missing)
    return sum(r.power_w for r in top), True, label, "no VDD_IN rail: total is the sum of top-level rails"
