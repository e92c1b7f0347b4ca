"""Text-side helpers shared by backends that see raw tokens.

Stop strings have to be handled on the *text* stream, not per token: a stop
such as ``"\\nObservation:"`` usually spans several tokens, so a delta that
might be the start of a stop string is held back until it is known not to
be one.  Emitting it early and retracting it later is not possible with a
streaming consumer.
"""
from __future__ import annotations

from typing import Iterable


class StopFilter:
    """Cut a text stream at the first stop string, holding back partial matches."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self._buf = ""
        self.stopped_on: str | None = None

    def push(self, text: str) -> tuple[str, bool]:
        """Add ``text``; return ``(safe_text_to_emit, stopped)``."""
        if not self.stops:
            return text, False
        self._buf += text
        best = -1
        for s in self.stops:
            i = self._buf.find(s)
            if i >= 0 and (best < 0 or i < best):
                best, self.stopped_on = i, s
        if best >= 0:
            out, self._buf = self._buf[:best], ""
            return out, True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self._buf)), hold, -1):
                if self._buf.endswith(s[:k]):
                    hold = k
                    break
        cut = len(self._buf) - hold
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out, False

    def flush(self) -> str:
        """Whatever was held back; call once when the stream ends without a stop."""
        out, self._buf = self._buf, ""
        return out
