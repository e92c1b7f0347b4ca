"""How sure a model was of its reply, from the logits the sampler already had (issue 26).

Why: the cascade (``agent/cascade.py``) escalates a step to a larger model
when the small one is unsure, and which signal and threshold tell "unsure"
must be chosen by measurement.  So every call records two signals, computed
from each generated token's logits row as the engine picks the token -- no
extra forward pass, no second copy of the row:

* ``min_logprob``: the lowest log-probability (natural log) of a generated
  token over the whole reply, under the model's own distribution (softmax of
  the raw logits, before any grammar or sampler changes them).  The whole
  reply, not only the call name and argument values: the positions of those
  tokens are known only after the reply is parsed, and under constrained
  decoding the structural tokens are near-certain anyway, so the minimum is
  set by the content tokens in practice.
* ``top_margin``: p(top 1) - p(top 2) at the reply's first token, the
  call-or-answer choice under the agent's formats (``[`` or text; a native
  ``<tool_call>`` tag); under ReAct it is the first token of the thought.

Cost: the log-partition sum skips logits more than :data:`NEAR` below the
best (they add less than ``V * e^-20``, 5e-4 relative for a 262k vocabulary),
so a token costs one max, one comparison pass and a small exp over the row
(about 0.2 ms for a 262k-entry row on this 2-core machine, numpy timeit);
the full softmax runs once per call, for the margin.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

#: logits further than this below the best are left out of the log-partition sum
NEAR = 20.0


def token_logprob(row: np.ndarray, token: int) -> float:
    """log softmax(row)[token] (to within ~e^-NEAR * len(row) relative in the sum)."""
    best = float(np.max(row))
    if not math.isfinite(best):
        return math.nan
    near = row[row > best - NEAR]
    total = float(np.exp(near.astype(np.float64) - best).sum())
    return float(row[token]) - best - math.log(total)


def top_margin(row: np.ndarray) -> float:
    """p(top 1) - p(top 2) of softmax(row) (exact, full vocabulary)."""
    if row.shape[0] < 2:
        return math.nan
    best = float(np.max(row))
    if not math.isfinite(best):
        return math.nan
    p = np.exp(row.astype(np.float64) - best)
    p /= p.sum()
    two = np.partition(p, p.shape[0] - 2)[-2:]
    return float(abs(two[1] - two[0]))


class Confidence:
    """The two signals of one reply, fed one generated token at a time."""

    __slots__ = ("min_logprob", "top_margin", "tokens")

    def __init__(self) -> None:
        self.min_logprob = math.nan
        self.top_margin = math.nan
        self.tokens = 0

    def observe(self, row: Optional[np.ndarray], token: int) -> None:
        """``row``: the logits the token was picked from (None: unknown, nothing recorded)."""
        if row is None:
            return
        if self.tokens == 0:
            self.top_margin = top_margin(row)
        self.tokens += 1
        lp = token_logprob(row, token)
        if math.isfinite(lp) and not (lp >= self.min_logprob):   # NaN start: the first value wins
            self.min_logprob = lp


__all__ = ["Confidence", "NEAR", "token_logprob", "top_margin"]
