"""The KV-cache sequence an engine call decodes on: alone in its context, or one of several
sequences of a shared context whose tokens are decoded together.

Why a shared context: on memory-bound hardware (a 2-CPU VM, a Jetson) one decode step reads
every weight once whatever the batch holds, so N sequences decoded in ONE ``llama_decode``
cost little more than one (measured on a 2-CPU AMD EPYC VM, Gemma 3 270M with every row's
logits: 34 tok/s for 1 row, 51 for 4, 62 for 8; two contexts decoding side by side on one
CPU each shared the same ~40 tok/s between them).  :class:`SharedContext` runs a *round*:
the first sequence to submit tokens waits up to ``window_s`` for every other sequence that
is inside a call to submit its own (decode step, prefill chunk or draft batch), then one
thread decodes them all in one batch and hands each its logits rows.

What a shared context does not keep: llama.cpp's CPU kernels are not batch invariant, so a
row computed next to other sequences' rows may round differently from the same row alone
and, where two logits are within rounding of each other, greedy decoding can pick another
token; benchmarks/bench_concurrency.py counts such cases.  llama.cpp's perf counters belong
to the context, so a shared sequence reports none (our own timings remain).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

try:
    import llama_cpp
except ImportError:  # pragma: no cover - the engines using this module import-guard it
    llama_cpp = None  # type: ignore[assignment]

__all__ = ["SoloSeq", "SharedContext", "SharedSeq"]


class SoloSeq:
    """Sequence 0 of a ``llama_cpp.Llama`` that holds nothing else (llama-cpp-python's bookkeeping)."""

    def __init__(self, llm: "llama_cpp.Llama") -> None:
        self.llm = llm
        self.n_vocab = llm.n_vocab()

    @property
    def n_ctx(self) -> int:
        return self.llm.n_ctx()

    @property
    def n_tokens(self) -> int:
        return self.llm.n_tokens

    @property
    def perf_ctx(self) -> Any:
        """The context whose llama.cpp perf counters are this sequence's alone."""
        return self.llm.ctx

    def tokens(self) -> list[int]:
        return self.llm.input_ids[: self.llm.n_tokens].tolist()

    @property
    def live(self) -> bool:
        """Whether the last row's logits are those of the last cached token."""
        return not getattr(self.llm, "_requires_eval", True)

    def truncate(self, keep: int) -> bool:
        if not self.llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            return False
        self.llm.n_tokens = keep
        self.llm._requires_eval = True
        return True

    def reset(self) -> None:
        self.llm.reset()

    def eval(self, tokens: Sequence[int]) -> None:
        self.llm.eval(list(tokens))

    def last_row(self, copy: bool = True) -> np.ndarray:
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        return row.copy() if copy else row

    def eval_rows(self, seq: list[int]) -> list[np.ndarray]:
        """Evaluate ``seq`` after the cache in one batch; the logits row of every position."""
        llm = self.llm
        if len(seq) == 1:
            llm.eval(seq)
            return [self.last_row()]
        n_past = llm.n_tokens
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm._batch.set_batch(batch=seq, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past: n_past + len(seq)] = seq
        llm.n_tokens = n_past + len(seq)
        llm._requires_eval = False
        return [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, i), shape=(self.n_vocab,)).copy()
                for i in range(len(seq))]


@dataclass
class _Job:
    seq: int
    pos: int
    tokens: list[int]
    all_rows: bool
    rows: Optional[list[np.ndarray]] = None
    error: Optional[BaseException] = None
    queued: float = field(default_factory=time.monotonic)


class SharedContext:
    """One llama.cpp context holding ``n_seq`` sequences, decoded together in rounds."""

    def __init__(self, llm: "llama_cpp.Llama", n_seq: int, n_batch: int, window_s: float = 0.003) -> None:
        self.llm = llm
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.window_s = window_s
        self.n_vocab = llm.n_vocab()
        self._mem = llama_cpp.llama_get_memory(llm.ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq)
        self._cond = threading.Condition()
        self._inside = 0  # sequences inside an engine call (they may submit soon)
        self._waiting: dict[int, _Job] = {}
        self._busy = False
        #: rounds run and rows decoded in them (benchmarks report rows per round)
        self.rounds = 0
        self.rows = 0

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None

    # sequences entering / leaving a call: a round waits only for sequences inside one
    def enter(self) -> None:
        with self._cond:
            self._inside += 1

    def leave(self) -> None:
        with self._cond:
            self._inside -= 1
            self._cond.notify_all()

    def seq_rm(self, seq: int, p0: int) -> bool:
        with self._cond:  # never while a round decodes
            self._cond.wait_for(lambda: not self._busy)
            return bool(llama_cpp.llama_memory_seq_rm(self._mem, seq, p0, -1))

    def decode(self, seq: int, pos: int, tokens: list[int], all_rows: bool) -> list[np.ndarray]:
        """Decode ``tokens`` of sequence ``seq`` at positions ``pos``.. in the next round; the
        logits rows (every position's if ``all_rows``, else the last one's)."""
        if not 0 < len(tokens) <= self.n_batch:
            raise ValueError(f"{len(tokens)} tokens per submission, batch holds {self.n_batch}")
        job = _Job(seq, pos, list(tokens), all_rows)
        with self._cond:
            self._waiting[seq] = job
            self._cond.notify_all()
            while job.rows is None and job.error is None:
                if self._busy:
                    self._cond.wait()
                    continue
                first = min(j.queued for j in self._waiting.values())
                late = time.monotonic() - first
                if len(self._waiting) < self._inside and late < self.window_s:
                    self._cond.wait(self.window_s - late)
                    continue
                jobs = self._take()
                self._busy = True
                self._cond.release()
                try:
                    self._run(jobs)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        return job.rows  # type: ignore[return-value]

    def _take(self) -> list[_Job]:
        """Waiting jobs in submission order, as many as fit one batch (the first always)."""
        jobs, room = [], self.n_batch
        for j in sorted(self._waiting.values(), key=lambda j: j.queued):
            if jobs and len(j.tokens) > room:
                continue
            jobs.append(j)
            room -= len(j.tokens)
        for j in jobs:
            del self._waiting[j.seq]
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        b = self._batch
        n = 0
        index: list[tuple[_Job, list[int]]] = []
        for j in jobs:
            rows = []
            for i, tok in enumerate(j.tokens):
                b.token[n] = tok
                b.pos[n] = j.pos + i
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = j.seq
                want = j.all_rows or i == len(j.tokens) - 1
                b.logits[n] = want
                if want:
                    rows.append(n)
                n += 1
            index.append((j, rows))
        b.n_tokens = n
        try:
            rc = llama_cpp.llama_decode(self.llm.ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            for j, rows in index:
                j.rows = [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, r),
                                                shape=(self.n_vocab,)).copy() for r in rows]
            self.rounds += 1
            self.rows += n
        except BaseException as exc:  # noqa: BLE001 - every job of the round gets the error
            for j, _ in index:
                j.error = exc


class SharedSeq:
    """Sequence ``seq`` of a :class:`SharedContext`."""

    perf_ctx = None  # the context's perf counters mix every sequence: none reported

    def __init__(self, shared: SharedContext, seq: int, n_ctx: int) -> None:
        self.shared = shared
        self.seq = seq
        self.n_ctx = n_ctx
        self.n_vocab = shared.n_vocab
        self._tokens: list[int] = []
        self._row: Optional[np.ndarray] = None

    @property
    def n_tokens(self) -> int:
        return len(self._tokens)

    def tokens(self) -> list[int]:
        return list(self._tokens)

    @property
    def live(self) -> bool:
        return self._row is not None

    def truncate(self, keep: int) -> bool:
        if not self.shared.seq_rm(self.seq, keep):
            return False
        del self._tokens[keep:]
        self._row = None
        return True

    def reset(self) -> None:
        self.shared.seq_rm(self.seq, 0)
        self._tokens = []
        self._row = None

    def eval(self, tokens: Sequence[int]) -> None:
        tokens = list(tokens)
        step = self.shared.n_batch
        for i in range(0, len(tokens), step):
            piece = tokens[i: i + step]
            self._row = self.shared.decode(self.seq, len(self._tokens), piece, all_rows=False)[-1]
            self._tokens.extend(piece)

    def last_row(self, copy: bool = True) -> np.ndarray:
        if self._row is None:
            raise RuntimeError("no logits: nothing evaluated since the cache was cut")
        return self._row

    def eval_rows(self, seq: list[int]) -> list[np.ndarray]:
        rows = self.shared.decode(self.seq, len(self._tokens), list(seq), all_rows=True)
        self._tokens.extend(seq)
        self._row = rows[-1]
        return rows
