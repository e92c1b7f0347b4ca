"""Run directories of this package -> :class:`Sample` (step 1 of the loop: the logged calls).

Each ``results.jsonl`` case record carries ``conversation`` (written by
:meth:`slm_agent.bench.play.CasePlay.record`): per goal, the tools offered
(ToolSpec fields) and the agent's transcript (ChatMessage fields: what was
sent, each assistant output with its parsed tool calls, each tool result).
One sample is made per case from the last goal's transcript (later goals
carry the earlier ones), with the union of the tools offered.

Curation at this stage (each drop counted with its reason):

* only passed, valid cases (failed, invalid, cancelled cases are dropped);
* BFCL cases are dropped unless asked for (BFCL is the held-out judge of the
  before/after comparison; training on its cases would leak it);
* inside a kept case, replies that did not parse (followed by the agent's
  ``Error:`` feedback) and steps whose tool call failed (a non-ok status) are
  removed with their results, so the model is not taught its own mistakes;
  so are replies of the bfcl / native formats that read as an answer only
  because their call list did not decode (:func:`undecoded_call`).

The call metadata (latency, tokens, outcome, run labels) is kept in ``meta``.
"""
from __future__ import annotations

import functools

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

from slm_agent.bench.results import RUN_FILE, read_json, read_results_checked
from slm_agent.dataset.records import Drops, Sample, function_tool

SOURCE = "rundir"
_FAILED_STATUS_RE = re.compile(r'^\W*"?status"?\s*[:=]?\s*"?(refused|invalid_arguments|timeout|failed)\b')
_NATURAL_FAILED_RE = re.compile(r"^(refused|invalid_arguments|timeout|failed)\b", re.IGNORECASE)


def _tool_entry(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        params = json.loads(spec.get("parameters_json_schema") or "{}")
    except ValueError:
        params = {}
    return function_tool(str(spec.get("name", "")), str(spec.get("description", "")), params)


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function")
    raw = fn.get("arguments") if isinstance(fn, dict) else call.get("arguments_json", "{}")
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _call_name(call: dict[str, Any]) -> str:
    fn = call.get("function")
    return str(fn.get("name", "") if isinstance(fn, dict) else call.get("name", ""))


def failed_result(content: str) -> bool:
    """True when a serialized tool result says the call did not succeed (any serialization)."""
    text = (content or "").strip()
    if text.startswith("Error:"):
        return True
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "status" in obj:
        return obj.get("status") != "ok"
    return bool(_FAILED_STATUS_RE.match(text) or _NATURAL_FAILED_RE.match(text))


def final_text(content: str, strategy: Any, tools: list[Any]) -> str:
    """The answer an assistant output without calls gave (decoded with the run's strategy)."""
    text = content or ""
    cue = strategy.cue(False) if strategy is not None else ""
    if cue and text.startswith(cue):
        text = text[len(cue):]
    if strategy is None:
        return text.strip()
    decision = strategy.interpret(text, tools)
    return (decision.final_text if decision.final_text is not None else text).strip()


#: how a reply in an owned call syntax (bfcl, native) starts when it was meant as calls
_CALL_STARTS = ("[", "{", "<tool_call>", "```")


def undecoded_call(answer: str, strategy: Any) -> bool:
    """True for an "answer" that is a call list its format could not decode (bfcl, native).

    Those formats read a reply that does not decode as an answer without a call -- BFCL
    scores it so, and an irrelevance case then passes -- but what the model wrote was a
    broken call list (e.g. cut at the token limit), not an answer to learn."""
    return (strategy is not None and getattr(strategy, "call_format", None) is not None
            and answer.lstrip().startswith(_CALL_STARTS))


def transcript_to_messages(transcript: list[dict[str, Any]], strategy: Any, specs: list[Any],
                           fixes: Counter) -> list[dict[str, Any]]:
    """The agent's transcript as canonical messages, minus unparsed replies and failed steps."""
    out: list[dict[str, Any]] = []
    i = 0
    n = len(transcript)
    while i < n:
        m = transcript[i]
        role = m.get("role")
        content = str(m.get("content") or "")
        if role == "assistant":
            calls = m.get("tool_calls") or []
            results = []
            j = i + 1
            while j < n and transcript[j].get("role") == "tool":
                results.append(transcript[j])
                j += 1
            if not calls and results and not results[0].get("tool_call_id"):
                fixes["unparsed replies removed"] += 1
                i = j
                continue
            if calls and any(failed_result(str(r.get("content") or "")) for r in results):
                fixes["failed tool steps removed"] += 1
                i = j
                continue
            if calls:
                # ids renumbered in order (call_0, call_1, ...): the agent's ids carry its step
                # numbers, which would keep otherwise equal conversations apart
                first = sum(len(x.get("tool_calls") or []) for x in out)
                ids = {str(c.get("id") or k): f"call_{first + k}" for k, c in enumerate(calls)}
                msg: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [
                    {"id": f"call_{first + k}", "type": "function",
                     "function": {"name": _call_name(c), "arguments": _arguments(c)}}
                    for k, c in enumerate(calls)]}
                out.append(msg)
                for k, r in enumerate(results):
                    own = ids.get(str(r.get("tool_call_id") or ""), f"call_{first + min(k, len(calls) - 1)}")
                    out.append({"role": "tool", "tool_call_id": own, "content": str(r.get("content") or "")})
            else:
                answer = final_text(content, strategy, specs)
                if undecoded_call(answer, strategy):
                    fixes["call-like replies that did not decode removed"] += 1
                    i = j
                    continue
                out.append({"role": "assistant", "content": answer})
            i = j
            continue
        if role in ("system", "user"):
            out.append({"role": role, "content": content})
        elif role == "tool":  # a result without an assistant step before it: nothing to learn from
            fixes["orphan tool results removed"] += 1
        i += 1
    return out


def joined_transcript(convo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One conversation from the goals of a case: the first goal's transcript, then per later
    goal the new user input it carried (the trailing user/system messages of what was sent)
    and the agent's own messages.  Earlier goals' messages are taken from their own
    transcripts, where the agent's tool calls are intact."""
    if not convo:
        return []
    if any("sent" not in goal for goal in convo[1:]):  # not recorded: the last transcript carries the rest
        return list(convo[-1].get("messages") or [])
    out: list[dict[str, Any]] = []
    for k, goal in enumerate(convo):
        transcript = list(goal.get("messages") or [])
        sent = int(goal.get("sent", 0) or 0)
        if k == 0:
            out = transcript
            continue
        head = transcript[:sent]
        start = len(head)
        while start > 0 and head[start - 1].get("role") in ("user", "system"):
            start -= 1
        out += head[start:] + transcript[sent:]
    return out


@functools.lru_cache(maxsize=32)
def _native_calls(model: str) -> Optional[str]:
    """The profile's ``chat.native_calls`` (None: no such profile or no syntax); read once per
    model, not once per record."""
    try:
        from slm_agent.profiles import load_profile

        return load_profile(model, validate_files=False).chat.native_calls
    except Exception:  # noqa: BLE001 - any unreadable profile: no reader
        return None


def _strategy(name: str, serialization: str, chat_format: str, model: str = "") -> Any:
    """The strategy that read the run's replies; for ``native`` the model profile's call
    syntax (``chat.native_calls``), which ``native`` and ``bfcl`` read from chat replies."""
    from slm_agent.agent.strategies import make_strategy

    native_calls = None
    if serialization in ("native", "bfcl"):
        chat_format = "chat"
        if serialization == "native" and model:
            native_calls = _native_calls(model)
            if native_calls is None:  # a profile this install lacks: no reader
                return None
    try:
        return make_strategy(name or "direct", serialization or "json", chat_format or "raw", None, 256,
                             native_calls=native_calls)
    except ValueError:
        return None


def case_sample(record: dict[str, Any], fixes: Counter) -> Optional[Sample]:
    """The sample of one passed case record (None when nothing usable is left)."""
    from slm_agent.agent.types import ToolSpec

    convo = record.get("conversation") or []
    tools: dict[str, dict[str, Any]] = {}
    for goal in convo:
        for spec in goal.get("tools") or []:
            tools.setdefault(str(spec.get("name", "")), _tool_entry(spec))
    specs = [ToolSpec(name=t["function"]["name"], description=t["function"]["description"],
                      parameters=t["function"]["parameters"]) for t in tools.values()]
    strategy = _strategy(str(record.get("strategy", "")), str(record.get("serialization", "")),
                         str(record.get("chat_format", "")).split(",")[0], str(record.get("model", "")))
    messages = transcript_to_messages(joined_transcript(convo), strategy, specs, fixes)
    if not any(m["role"] == "assistant" for m in messages):
        return None
    metrics = record.get("metrics") or []
    meta = {k: record.get(k) for k in ("run_id", "suite", "category", "case_id", "model", "strategy",
                                         "serialization", "passed")}
    meta["latency_ms"] = [m.get("total_ms") for m in metrics]
    meta["prompt_tokens"] = [m.get("prompt_tokens") for m in metrics]
    meta["decode_tokens"] = [m.get("decode_tokens") for m in metrics]
    return Sample(messages=messages, tools=list(tools.values()), source=SOURCE, meta=meta)


def drop_reason(record: dict[str, Any], allow_bfcl: bool) -> str:
    """Why a case record is not used ("" = use it)."""
    text = " ".join([str(record.get("error") or ""), *map(str, record.get("agent_errors") or [])]).lower()
    if "cancel" in text:
        return "cancelled"
    if not record.get("valid", False):
        return "case invalid"
    if not record.get("passed", False):
        return "case failed"
    if record.get("suite") == "bfcl" and not allow_bfcl:
        return "BFCL case (held-out benchmark; --allow-bfcl to keep)"
    if not record.get("conversation"):
        return "no conversation recorded (run predates call logging)"
    return ""


#: prefix of a drop reason for a line of results.jsonl that is not a complete record
UNREADABLE = "unreadable line: "


def read_run_dir(path: Path | str, drops: Drops, fixes: Optional[Counter] = None,
                 allow_bfcl: bool = False) -> Iterator[Sample]:
    """Samples of the passed cases of a run directory (``results.jsonl`` + ``run.json``)."""
    fixes = fixes if fixes is not None else Counter()
    path = Path(path)
    if not (path / "results.jsonl").is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no results.jsonl)")
    run = read_json(path / RUN_FILE) or {}
    records, skipped = read_results_checked(path)
    for line in skipped:   # never a silent drop: counted under "unreadable line: <why>"
        drops.add(SOURCE, UNREADABLE + line.reason.split(" (")[0].split(" of line")[0])
    for record in records:
        why = drop_reason(record, allow_bfcl)
        if why:
            drops.add(SOURCE, why)
            continue
        sample = case_sample(record, fixes)
        if sample is None:
            drops.add(SOURCE, "nothing left after removing failed steps and undecoded call lists")
            continue
        sample.meta["run_dir"] = str(path)
        adapter = (run.get("model_profile") or {}).get("adapter")
        if adapter:  # calls of a fine-tuned model: say so
            sample.meta["adapter"] = adapter
        yield sample
