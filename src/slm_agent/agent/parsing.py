"""Tool-call extraction from whatever a small model wrote.

A 270M base model does not reliably follow one format, and unconstrained
chat models each have their favourite, so the parser accepts all the common
shapes and never raises (a parser crash would end a robot task for a typo):

* JSON objects ``{"name": .., "arguments": {..}}`` (also ``args``,
  ``input``, ``action``/``action_input``; an object with only a name, or
  with ``parameters`` -- a tool spec echoed back -- is text), OpenAI-style
  ``{"function": {"name": .., "arguments": "<json string>"}}``,
  ``{"tool_calls": [..]}`` and ``[..]`` lists for parallel calls;
* ``<tool_call>..</tool_call>`` wrappers and fenced code blocks;
* Qwen3-Coder ``<function=name><parameter=p>v</parameter></function>`` and
  gpt-oss harmony ``to=functions.name ... <|message|>{..}<|call|>``;
* ReAct ``Action: name`` / ``Action Input: {..}``;
* Python-call syntax ``f(a=1, b="x")`` as in BFCL prompts (parsed with
  :mod:`ast`, literals only, never evaluated);
* trailing garbage and truncated output: complete calls before the cut are
  recovered and the cut is reported in ``errors``.

Returns ``(calls, leftover_text, errors)``; ``leftover_text`` is the input with
recognised calls removed (a ReAct thought, a final answer, chatter).
"""
from __future__ import annotations

import ast
import json
import re
from typing import Any, Iterable, NamedTuple, Optional

from slm_agent.agent.types import ToolCall

MAX_CHARS = 64_000          # longer input is cut (and reported): bounds parse time
MAX_JSON_STARTS = 512       # JSON decode attempts per input
MAX_JSON_WORK = 50_000     # characters scanned by failed JSON decodes per input (bounds O(n^2) cases)
MAX_PY_CANDIDATES = 128     # Python-call candidates per input
MAX_PY_SEGMENT = 8_000      # longest f(...) text considered
MAX_CALLS = 32              # calls kept from one output
MAX_DEPTH = 32              # nesting allowed inside arguments
MAX_ERRORS = 16

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
_NAME_KEYS = ("name", "tool", "tool_name", "function", "action", "recipient_name")
#: not ``parameters``: ``{"name": .., "parameters": {..}}`` is a tool spec echoed back
#: (BFCL's decoders and OpenAI-style function calling read it as text, not a call)
_ARG_KEYS = ("arguments", "args", "input", "action_input", "params")
_WRAPPER_RE = re.compile(r"<tool_call>\s*(.*?)\s*(</tool_call>|\Z)", re.IGNORECASE | re.DOTALL)
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z_]*)[ \t]*\n?(.*?)(```|\Z)", re.DOTALL)
_ACTION_RE = re.compile(r"(?<![A-Za-z])Action[ \t]*:[ \t]*(?P<name>[^\n]*)")
_ACTION_INPUT_RE = re.compile(r"\A\s*\n?[ \t]*Action[ \t]*Input[ \t]*:[ \t]*", re.IGNORECASE)
_XML_FUNC_RE = re.compile(r"<function=([^>\s]+)>(.*?)(</function>|\Z)", re.DOTALL)
_XML_PARAM_RE = re.compile(r"<parameter=([^>\s]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.DOTALL)
_HARMONY_RE = re.compile(
    r"to=(?:functions\.)?([A-Za-z_][\w.\-]*)[^\n<]*?(?:<\|constrain\|>\s*[\w\-]+\s*)?<\|message\|>")
_PY_CALL_RE = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_NON_TOOL_ACTIONS = {"final answer", "final_answer", "finish", "none", "answer"}


class ParseResult(NamedTuple):
    calls: list[ToolCall]
    leftover: str
    errors: list[str]


class _Found(NamedTuple):
    start: int
    end: int
    calls: list[ToolCall]


def clean_text(s: str) -> str:
    """Replace lone UTF-16 surrogates (invalid in UTF-8, fatal in a ROS string)."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _clean_value(v: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"arguments nested deeper than {MAX_DEPTH} levels")
    if isinstance(v, str):
        return clean_text(v)
    if isinstance(v, dict):
        return {clean_text(str(k)): _clean_value(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean_value(x, depth + 1) for x in v]
    return v


class _Parser:
    def __init__(self, text: str, known: Optional[set[str]], step: int) -> None:
        self.text = text
        self.known = known
        self.step = step
        self.errors: list[str] = []
        self.found: list[_Found] = []
        self.truncated: list[tuple[int, int]] = []
        self.json_work = 0

    # ------------------------------------------------------------- bookkeeping
    def error(self, msg: str) -> None:
        if len(self.errors) < MAX_ERRORS and msg not in self.errors:
            self.errors.append(msg)

    def consumed(self, pos: int) -> bool:
        return any(f.start <= pos < f.end for f in self.found)

    def free_regions(self) -> list[tuple[int, int]]:
        regions, cur = [], 0
        for f in sorted(self.found, key=lambda f: f.start):
            if f.start > cur:
                regions.append((cur, f.start))
            cur = max(cur, f.end)
        if cur < len(self.text):
            regions.append((cur, len(self.text)))
        return regions

    def in_truncated(self, pos: int) -> bool:
        return any(a < pos < b for a, b in self.truncated)

    # ------------------------------------------------------------- normalising
    def call_from_dict(self, d: dict[str, Any], raw: str, pos: int) -> Optional[ToolCall]:
        fn = d.get("function") if isinstance(d.get("function"), dict) else d.get("function_call")
        name: Any = None
        args: Any = None
        has_args = False
        if isinstance(fn, dict):
            name = fn.get("name")
            for k in _ARG_KEYS:
                if k in fn:
                    args, has_args = fn[k], True
                    break
        else:
            for k in _NAME_KEYS:
                if isinstance(d.get(k), str):
                    name = d[k]
                    break
            for k in _ARG_KEYS:
                if k in d:
                    args, has_args = d[k], True
                    break
        if not isinstance(name, str):
            return None
        name = name.strip()
        if not has_args:  # only a name (or a spec echo): text, not a call with invented {} arguments
            return None
        if not _NAME_RE.match(name):
            self.error(f"ignored a call with an invalid tool name {name[:40]!r}")
            return None
        if isinstance(args, str):
            text = args.strip()
            if not text:
                args = {}
            else:
                try:
                    args = json.loads(text)
                except (ValueError, RecursionError):
                    self.error(f"arguments of '{name}' are not valid JSON: {text[:60]!r}")
                    return None
        if args is None:
            args = {}
        if not isinstance(args, dict):
            self.error(f"arguments of '{name}' must be a JSON object, got {type(args).__name__}")
            return None
        try:
            args = _clean_value(args)
        except ValueError as exc:
            self.error(f"'{name}': {exc}")
            return None
        call_id = d.get("id") if isinstance(d.get("id"), str) else ""
        return ToolCall(id=clean_text(call_id[:64]), name=name, arguments=args, step=self.step, raw=raw)

    def calls_from_value(self, v: Any, raw: str, pos: int, depth: int = 0) -> list[ToolCall]:
        if depth > 4:
            return []
        if isinstance(v, list):
            out: list[ToolCall] = []
            for item in v[:MAX_CALLS]:
                out.extend(self.calls_from_value(item, raw, pos, depth + 1))
            return out
        if isinstance(v, dict):
            if isinstance(v.get("tool_calls"), list):
                return self.calls_from_value(v["tool_calls"], raw, pos, depth + 1)
            call = self.call_from_dict(v, raw, pos)
            return [call] if call else []
        return []

    # ------------------------------------------------------------- JSON
    def scan_json(self, start: int, end: int, record: bool = True) -> list[ToolCall]:
        """Decode JSON values starting at each '{' / '[' of text[start:end]."""
        region = self.text[start:end]
        decoder = json.JSONDecoder()
        calls: list[ToolCall] = []
        i, attempts = 0, 0
        while i < len(region) and attempts < MAX_JSON_STARTS and len(calls) < MAX_CALLS:
            j = min((p for p in (region.find("{", i), region.find("[", i)) if p >= 0), default=-1)
            if j < 0:
                break
            if self.json_work > MAX_JSON_WORK:
                self.error("output too irregular: stopped looking for more JSON calls")
                break
            attempts += 1
            try:
                value, stop = decoder.raw_decode(region, j)
            except RecursionError:
                # absurdly deep nesting: no sane call starts inside it, so skip to
                # the first closing bracket instead of re-descending from every start
                self.json_work += len(region) - j
                closers = [p for p in (region.find("}", j), region.find("]", j)) if p >= 0]
                i = min(closers) + 1 if closers else len(region)
                continue
            except ValueError as exc:
                self.json_work += max(getattr(exc, "pos", len(region)) - j, 1)
                self.note_truncation(region, j, start)
                i = j + 1
                continue
            raw = region[j:stop]
            found = self.calls_from_value(value, raw, start + j)
            if found:
                calls.extend(found)
                if record:
                    self.found.append(_Found(start + j, start + stop, found))
                i = stop
            else:
                i = j + 1
        return calls

    def note_truncation(self, region: str, j: int, offset: int) -> None:
        """Record a '{'/'[' that never closes before the end (the output was cut)."""
        if any(a <= offset + j < b for a, b in self.truncated):
            return  # inside a span already known to run to the end: O(n) scan once, not per start
        depth, in_str, esc = 0, False, False
        for ch in region[j:]:
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return
        self.truncated.append((offset + j, offset + len(region)))
        fragment = region[j:]
        if '"name"' in fragment or '"function"' in fragment or '"action"' in fragment:
            self.error(f"output ends inside an unfinished JSON call (truncated): {fragment[:60]!r}")

    # ------------------------------------------------------------- Python calls
    def scan_python(self, start: int, end: int, record: bool = True) -> list[ToolCall]:
        region = self.text[start:end]
        calls: list[ToolCall] = []
        pos, candidates = 0, 0
        while candidates < MAX_PY_CANDIDATES and len(calls) < MAX_CALLS:
            m = _PY_CALL_RE.search(region, pos)
            if not m:
                break
            candidates += 1
            name = m.group(1)
            close = _matching_paren(region, m.end() - 1)
            if close < 0:
                if self.known is not None and name in self.known:
                    self.error(f"call to '{name}' is not closed (truncated output?)")
                pos = m.end()
                continue
            seg = region[m.start(1): close + 1]
            call = self.python_call(name, seg)
            if call is not None:
                calls.append(call)
                if record:
                    self.found.append(_Found(start + m.start(1), start + close + 1, [call]))
                pos = close + 1
            else:
                pos = m.end()
        return calls

    def python_call(self, name: str, seg: str) -> Optional[ToolCall]:
        known = self.known is not None and name in self.known
        if self.known is not None and not known and "=" not in seg:
            return None
        try:
            node = ast.parse(seg, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            if known:
                self.error(f"call to '{name}' is not valid call syntax: {seg[:60]!r}")
            return None
        if not isinstance(node, ast.Call):
            return None
        if node.args or any(k.arg is None for k in node.keywords):
            if known:
                self.error(f"call to '{name}' uses positional arguments; write name=value")
            return None
        args: dict[str, Any] = {}
        try:
            for kw in node.keywords:
                args[kw.arg] = _literal(kw.value, 0)  # type: ignore[index]
        except ValueError as exc:
            if known or self.known is None:
                self.error(f"call to '{name}': {exc}")
            return None
        if not _NAME_RE.match(name):
            return None
        try:
            args = _clean_value(args)
        except ValueError as exc:
            self.error(f"'{name}': {exc}")
            return None
        return ToolCall(id="", name=name, arguments=args, step=self.step, raw=seg)

    # ------------------------------------------------------------- model-specific markup
    def xml_functions(self) -> None:
        """Qwen3-Coder style ``<function=name><parameter=p>value</parameter></function>``."""
        for m in _XML_FUNC_RE.finditer(self.text):
            name = m.group(1).strip()
            if not m.group(3):
                self.error(f"<function={name[:40]}> is not closed (truncated output?)")
                self.found.append(_Found(m.start(), m.end(), []))
                continue
            args: dict[str, Any] = {}
            for pm in _XML_PARAM_RE.finditer(m.group(2)):
                raw = pm.group(2).strip()
                try:
                    args[pm.group(1).strip()] = json.loads(raw)
                except (ValueError, RecursionError):
                    args[pm.group(1).strip()] = raw
            call = self.call_from_dict({"name": name, "arguments": args}, m.group(0), m.start())
            self.found.append(_Found(m.start(), m.end(), [call] if call else []))

    def harmony(self) -> None:
        """gpt-oss harmony ``... to=functions.name <|constrain|>json<|message|>{..}<|call|>``."""
        for m in _HARMONY_RE.finditer(self.text):
            if self.consumed(m.start()):
                continue
            name, pos = m.group(1), m.end()
            while pos < len(self.text) and self.text[pos].isspace():
                pos += 1
            try:
                args, stop = json.JSONDecoder().raw_decode(self.text, pos)
            except (ValueError, RecursionError):
                self.error(f"arguments of '{name}' after <|message|> are not valid JSON (truncated?)")
                self.found.append(_Found(m.start(), len(self.text), []))
                continue
            if self.text.startswith("<|call|>", stop):
                stop += len("<|call|>")
            call = self.call_from_dict({"name": name, "arguments": args}, self.text[m.start():stop], m.start())
            self.found.append(_Found(m.start(), stop, [call] if call else []))

    def overlaps(self, a: int, b: int) -> bool:
        return any(f.start < b and a < f.end for f in self.found)

    # ------------------------------------------------------------- segments
    def parse_segment(self, start: int, end: int) -> list[ToolCall]:
        calls = self.scan_json(start, end, record=False)
        if not calls:
            calls = self.scan_python(start, end, record=False)
        return calls

    def wrappers(self) -> None:
        for m in _WRAPPER_RE.finditer(self.text):
            if self.consumed(m.start()):
                continue
            if self.overlaps(m.start(), m.end()):  # already parsed as model-specific markup
                self.found.append(_Found(m.start(), m.end(), []))
                continue
            if not m.group(2):
                self.error("<tool_call> is not closed (truncated output?)")
            calls = self.parse_segment(m.start(1), m.end(1))
            if calls:
                self.found.append(_Found(m.start(), m.end(), calls))
            elif m.group(1).strip():
                self.error(f"no tool call inside <tool_call>: {m.group(1)[:60]!r}")

    def fences(self) -> None:
        for m in _FENCE_RE.finditer(self.text):
            if self.consumed(m.start()):
                continue
            calls = self.parse_segment(m.start(2), m.end(2))
            if calls:
                self.found.append(_Found(m.start(), m.end(), calls))

    def react(self) -> None:
        for m in _ACTION_RE.finditer(self.text):
            if self.consumed(m.start()):
                continue
            raw_name = m.group("name").strip().strip("`'\"*").strip()
            if raw_name.lower().rstrip(".:") in _NON_TOOL_ACTIONS or not raw_name:
                continue
            end = m.end()
            if "(" in raw_name:  # "Action: move_to(goal=...)" on one line
                calls = self.scan_python(m.start("name"), m.end("name"), record=False)
                if calls:
                    self.found.append(_Found(m.start(), m.end(), calls))
                continue
            name = raw_name.split()[0].rstrip(".,:;")
            args: Any = {}
            tail = self.text[end:]
            im = _ACTION_INPUT_RE.match(tail)
            if im:
                p = end + im.end()
                rest = self.text[p:]
                stripped = rest.lstrip()
                first = stripped[:1]
                if first in ("{", "["):
                    q = p + (len(rest) - len(stripped))
                    try:
                        args, stop = json.JSONDecoder().raw_decode(self.text, q)
                        end = stop
                    except (ValueError, RecursionError):
                        self.error(f"Action Input of '{name}' is not valid JSON (truncated?): {stripped[:60]!r}")
                        self.found.append(_Found(m.start(), len(self.text), []))
                        continue
                else:
                    line = stripped.split("\n", 1)[0].strip()
                    end = p + len(rest) - len(stripped) + len(line)
                    if line and line.lower() not in ("none", "{}", "null", "n/a"):
                        try:
                            args = json.loads(line)
                        except (ValueError, RecursionError):
                            self.error(f"Action Input of '{name}' must be a JSON object, got {line[:60]!r}")
                            self.found.append(_Found(m.start(), end, []))
                            continue
            if isinstance(args, list) and len(args) == 1:
                args = args[0]
            call = self.call_from_dict({"name": name, "arguments": args}, self.text[m.start():end], m.start())
            self.found.append(_Found(m.start(), end, [call] if call else []))

    # ------------------------------------------------------------- driver
    def run(self) -> ParseResult:
        if "<function=" in self.text:
            self.xml_functions()
        if "<|message|>" in self.text:
            self.harmony()
        self.wrappers()
        self.fences()
        self.react()
        for a, b in self.free_regions():
            self.scan_json(a, b)
        for a, b in self.free_regions():
            self.scan_python(a, b)
        calls: list[ToolCall] = []
        for f in sorted(self.found, key=lambda f: f.start):
            calls.extend(f.calls)
        if len(calls) > MAX_CALLS:
            self.error(f"only the first {MAX_CALLS} of {len(calls)} calls are kept")
            calls = calls[:MAX_CALLS]
        for i, c in enumerate(calls):
            if not c.id:
                c.id = f"call_{self.step}_{i}"
        leftover = "".join(self.text[a:b] for a, b in self.free_regions()).strip()
        if not re.search(r"[^\s\[\],;]", leftover):  # only the brackets of a call list remain
            leftover = ""
        return ParseResult(calls, leftover, self.errors)


def _matching_paren(s: str, open_pos: int) -> int:
    """Index of the ')' closing s[open_pos], respecting quotes; -1 if none."""
    depth, quote, esc = 0, "", False
    limit = min(len(s), open_pos + MAX_PY_SEGMENT)
    for k in range(open_pos, limit):
        ch = s[k]
        if quote:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:  # no sane call nests this deep
                return -1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return k if ch == ")" else -1
    return -1


_NAMED_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def _literal(node: ast.AST, depth: int) -> Any:
    """Literal value of an AST node (JSON spellings true/false/null allowed)."""
    if depth > MAX_DEPTH:
        raise ValueError("arguments nested too deeply")
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand, depth + 1)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("a sign applies to numbers only")
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, depth + 1) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise ValueError("'**' is not allowed in arguments")
            key = _literal(k, depth + 1)
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")
            out[key] = _literal(v, depth + 1)
        return out
    raise ValueError(f"argument value is not a literal: {type(node).__name__}")


def parse_tool_calls(text: Any, known_tools: Optional[Iterable[str]] = None, step: int = 0) -> ParseResult:
    """Extract tool calls from model output.  Never raises.

    ``known_tools`` (names the model may call, plus any pseudo tools such as
    ``final_answer``) lets bare ``{"name": "get_battery"}`` objects and
    positional-free Python calls count as calls; unknown names with explicit
    arguments are still returned so the safety envelope can refuse them
    visibly.
    """
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        elif not isinstance(text, str):
            text = "" if text is None else str(text)
        errors: list[str] = []
        if len(text) > MAX_CHARS:
            errors.append(f"output longer than {MAX_CHARS} characters; the rest was ignored")
            text = text[:MAX_CHARS]
        text = clean_text(text)
        known = set(known_tools) if known_tools is not None else None
        parser = _Parser(text, known, step)
        parser.errors.extend(errors)
        return parser.run()
    except Exception as exc:  # never let a malformed output end the task
        safe = ""
        try:
            safe = clean_text(text if isinstance(text, str) else "")[:MAX_CHARS]
        except Exception:
            pass
        return ParseResult([], safe, [f"parser failed: {type(exc).__name__}: {str(exc)[:80]}"])
