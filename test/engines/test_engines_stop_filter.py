"""StopFilter: stop strings spanning several deltas are cut exactly, and a
delta that might begin a stop is held back rather than emitted."""
from __future__ import annotations

from slm_agent.engines._streaming import StopFilter


def _run(stops: list[str], deltas: list[str]) -> tuple[str, bool]:
    f = StopFilter(stops)
    out = []
    for d in deltas:
        text, stopped = f.push(d)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + f.flush(), False


def test_stop_across_deltas() -> None:
    assert _run(["\nObservation:"], ["Action: go", "\nObs", "ervation: x"]) == ("Action: go", True)


def test_partial_match_is_released_when_it_diverges() -> None:
    f = StopFilter(["</call>"])
    assert f.push("a </c") == ("a ", False)  # held back
    assert f.push("at>") == ("</cat>", False)


def test_earliest_stop_wins() -> None:
    assert _run(["B", "A"], ["xxAyyB"]) == ("xx", True)


def test_no_stops_passes_through() -> None:
    assert _run([], ["a", "b"]) == ("ab", False)


def test_flush_returns_held_text() -> None:
    assert _run(["STOP"], ["abc", "ST"]) == ("abcST", False)
