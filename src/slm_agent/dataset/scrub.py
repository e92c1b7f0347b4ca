"""Personal-data scrubber for free text (step 2 of the loop: curate).

Replaces e-mail addresses, phone numbers and personal names with fixed
placeholders and counts what it replaced, so the dataset report can say how
much was removed.  Names are found two ways: a title or cue word before a
capitalised word ("Mr. Smith", "my name is Anna Lee", "contact John") and
a list of known first names followed by an optional surname.  Only free text
is scrubbed (message contents, tool results); tool names, argument keys and
schemas are left alone so the calls stay valid.  Argument *values* that are
strings are scrubbed too (a name passed to a tool is still a name).

It is a pattern scrubber, not a guarantee: what it cannot recognise (a
name it has never seen, with no cue) stays.  The tests seed each kind and
check both the replacement and the count.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
NAME = "[NAME]"

_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# +1 (555) 123-4567, 555-123-4567, +44 20 7946 0958, 0151 496 0000: 8+ digits with separators
_PHONE_RE = re.compile(r"(?<![\w/])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w/])")
_CAP = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_TITLE_RE = re.compile(rf"\b(Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+({_CAP})(\s+{_CAP})?")
_CUE_RE = re.compile(rf"\b((?:[Mm]y name is|[Ii] am|[Ii]'m|[Nn]amed|[Cc]alled|[Cc]ontact|[Cc]ustomer|[Uu]ser|[Pp]assenger)\s+)({_CAP})(\s+{_CAP})?")
#: common first names (a small list: the cue patterns catch the rest)
FIRST_NAMES = frozenset("""
james john robert michael william david richard joseph thomas charles christopher daniel matthew anthony mark
donald steven paul andrew joshua kevin brian george edward ronald timothy jason jeffrey ryan jacob gary
nicholas eric jonathan stephen larry justin scott brandon benjamin samuel frank gregory raymond alexander
patrick jack dennis jerry tyler aaron henry peter adam nathan zachary kyle noah ethan liam lucas mason
mary patricia jennifer linda elizabeth barbara susan jessica sarah karen nancy lisa betty margaret sandra
ashley kimberly emily donna michelle dorothy carol amanda melissa deborah stephanie rebecca sharon laura
cynthia kathleen amy shirley angela helen anna brenda pamela nicole emma samantha katherine christine
debra rachel catherine carolyn janet ruth maria heather diane virginia julie joyce victoria olivia kelly
christina lauren joan evelyn judith megan cheryl andrea hannah martha jacqueline frances gloria ann
sophia isabella mia ava charlotte amelia harper yusuf mohamed ahmed fatima aisha omar ali wei li chen
juan jose carlos luis miguel sofia lucia elena ivan olga dmitri anastasia hiroshi yuki raj priya
""".split())
_FIRST_RE = re.compile(rf"\b({_CAP})(\s+{_CAP})?\b")


class Scrubber:
    """Replaces personal data in text and keeps counts (``counts["email"|"phone"|"name"]``)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def text(self, text: str) -> str:
        if not text:
            return text
        text, n = _EMAIL_RE.subn(EMAIL, text)
        self.counts["email"] += n
        text, n = _PHONE_RE.subn(self._phone, text)
        text, n = _TITLE_RE.subn(lambda m: f"{m.group(1)}. {NAME}", text)
        self.counts["name"] += n
        text, n = _CUE_RE.subn(lambda m: f"{m.group(1)}{NAME}", text)
        self.counts["name"] += n
        text = _FIRST_RE.sub(self._first_name, text)
        return text

    def _phone(self, m: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in m.group(0))
        if digits < 8 or re.fullmatch(r"\d{4}-\d{2}-\d{2}", m.group(0)):  # short numbers and ISO dates stay
            return m.group(0)
        self.counts["phone"] += 1
        return PHONE

    def _first_name(self, m: re.Match[str]) -> str:
        if m.group(1).lower() not in FIRST_NAMES:
            return m.group(0)
        self.counts["name"] += 1
        return NAME

    def value(self, value: Any) -> Any:
        """A JSON value with every string scrubbed (keys kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Messages with contents and call argument values scrubbed (names, ids and roles kept)."""
        out = []
        for m in messages:
            m = dict(m)
            if isinstance(m.get("content"), str):
                m["content"] = self.text(m["content"])
            if m.get("tool_calls"):
                m["tool_calls"] = [{**c, "function": {**c["function"],
                                                      "arguments": self.value(c["function"].get("arguments"))}}
                                   for c in m["tool_calls"]]
            out.append(m)
        return out
