"""The optional sentence encoder (``deskside[encoder]`` and ``deskside models install``): loaded
from the installed weights package offline, matching a NumPy forward pass of the same weights,
stacked with the sparse classifier; and the default install classifying without it.

The encoder tests skip, saying why, when the extra or the weights are not installed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from classify_cli import cli_app
from deskside.insights.analysis import encoder
from deskside.insights.analysis.classify import Classifier, load_shipped_examples

_WHY = encoder.installation_problem()
needs_encoder = pytest.mark.skipif(
    _WHY is not None,
    reason=f"sentence encoder unavailable: {_WHY} (pip install -e '.[encoder]' && deskside "
    "models install)",
)
SENTENCES = [
    "The export button crashes the app every time I click it.",
    "Could you add a dark mode to the mobile app?",
    "How do I invite a colleague to our workspace?",
    "Das Dashboard lädt seit dem Update nicht mehr, bitte helfen Sie mir.",
]
OFFLINE_GUARD = (
    "import socket\n"
    "def refuse(*args, **kwargs):\n"
    "    raise OSError('no network in this test')\n"
    "socket.socket.connect = refuse\n"
    "socket.create_connection = refuse\n"
)


@pytest.fixture(scope="module")
def sentence_encoder(tmp_path_factory: pytest.TempPathFactory) -> encoder.SentenceEncoder:
    return encoder.SentenceEncoder(cache_dir=tmp_path_factory.mktemp("models"))


def _run_python(script: str, tmp_path: Path, **environment: str) -> Any:
    """``script`` in a fresh Python without network access (proxies pointing nowhere too);
    what it prints, as JSON."""
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    env.update({"HF_HUB_OFFLINE": "1", "DESKSIDE_DATA_DIR": str(tmp_path), **environment})
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_GUARD + script],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@needs_encoder
def test_the_extra_loads_its_model_from_the_installed_package_offline(tmp_path: Path) -> None:
    """With sockets refusing to connect, the encoder builds its int8 graph from the installed
    package's weights into the data directory (owner-only) and embeds; torch is never loaded."""
    found = _run_python(
        "import json, sys\n"
        "from deskside.insights.analysis.encoder import SentenceEncoder\n"
        "found = SentenceEncoder()\n"
        "vectors = found.embed(['The app crashes on start.', 'Please add an export.'])\n"
        "print(json.dumps({'weights': str(found.model_dir), 'graph': str(found.model_path),\n"
        "    'norms': [float(v @ v) for v in vectors], 'torch': 'torch' in sys.modules}))\n",
        tmp_path,
    )
    assert Path(found["weights"]).is_relative_to(Path(encoder.weights_dir() or "").parent)
    assert "site-packages" in found["weights"] or "dist-packages" in found["weights"]
    graph = Path(found["graph"])
    assert graph.parent == tmp_path / "models"
    assert stat.S_IMODE(graph.stat().st_mode) == 0o600
    assert stat.S_IMODE(graph.parent.stat().st_mode) == 0o700
    assert found["norms"] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert found["torch"] is False


def _numpy_reference(texts: Sequence[str]) -> Any:
    """all-MiniLM-L6-v2 in float64 NumPy, one text at a time: BERT layers, mean pooling, L2
    normalisation; independent of the ONNX graph."""
    from safetensors.numpy import load_file
    from scipy.special import erf
    from tokenizers import Tokenizer

    folder = encoder.weights_dir()
    assert folder is not None
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # tokenizer.json pads to 128 tokens
    tokenizer.enable_truncation(encoder.MAX_TOKENS)

    def norm(x: Any, name: str) -> Any:
        centred = x - x.mean(-1, keepdims=True)
        scaled = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-12)
        return scaled * w[f"{name}.weight"] + w[f"{name}.bias"]

    rows = []
    for text in texts:
        ids = tokenizer.encode(text).ids
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
        )
        x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        for layer in range(6):
            p = f"encoder.layer.{layer}."

            def linear(h: Any, name: str, p: str = p) -> Any:
                return h @ w[f"{p}{name}.weight"].T + w[f"{p}{name}.bias"]

            q, k, v = (
                linear(x, f"attention.self.{part}").reshape(n, 12, 32).transpose(1, 0, 2)
                for part in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(32)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            context = (weights @ v).transpose(1, 0, 2).reshape(n, 384)
            x = norm(
                linear(context, "attention.output.dense") + x, f"{p}attention.output.LayerNorm"
            )
            inner = linear(x, "intermediate.dense")
            inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
            x = norm(linear(inner, "output.dense") + x, f"{p}output.LayerNorm")
        pooled = x.mean(0)
        rows.append(pooled / np.linalg.norm(pooled))
    return np.array(rows)


@needs_encoder
def test_embeddings_match_a_numpy_forward_pass(
    sentence_encoder: encoder.SentenceEncoder,
) -> None:
    """The float32 graph matches the NumPy reference to 1e-5; the int8 one the encoder runs
    points the same way (cosine at least 0.99), batched with texts of other lengths."""
    import onnxruntime
    from safetensors.numpy import load_file

    from deskside.insights.analysis.encoder_graph import build_graph

    reference = _numpy_reference(SENTENCES)
    folder = sentence_encoder.model_dir
    config = json.loads((folder / "config.json").read_text())
    graph = build_graph(load_file(str(folder / "model.safetensors")), config)
    session = onnxruntime.InferenceSession(graph.SerializeToString())
    for text, expected in zip(SENTENCES, reference, strict=True):
        ids = np.array([sentence_encoder._tokenizer.encode(text).ids], dtype=np.int64)
        pooled = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        assert np.abs(pooled / np.linalg.norm(pooled) - expected).max() < 1e-5
    quantised = sentence_encoder.embed([*SENTENCES, "ok", "word " * 300])[: len(SENTENCES)]
    assert (quantised * reference).sum(axis=1).min() >= 0.99


@needs_encoder
def test_stacking_labels_paraphrases_the_examples_do_not_spell_out() -> None:
    """Texts in words of their own: the stacked model labels them right, each more surely
    than the sparse model; the shipped examples it learnt from keep their labels."""
    paraphrases = {
        "Everything freezes, then vanishes whenever I tap the blue icon.": "bug",
        "Wish there were a way to tint everything darker at night.": "feature",
        "Pictures vanish right after uploading them, they're just gone.": "bug",
        "The screen goes white and nothing responds anymore.": "bug",
    }
    sparse, stacked = Classifier.default(encoder=False), Classifier.default(encoder=True)
    assert stacked.uses_encoder and not sparse.uses_encoder
    texts = list(paraphrases)
    assert [p.label for p in stacked.predict(texts)] == list(paraphrases.values())
    for plain, with_encoder, label in zip(
        sparse.predict(texts), stacked.predict(texts), paraphrases.values(), strict=True
    ):
        assert with_encoder.scores[label] > plain.scores[label]
    shipped = load_shipped_examples()[::25]
    labelled = stacked.predict([e.text for e in shipped])
    right = sum(p.label == e.label for p, e in zip(labelled, shipped, strict=True))
    assert right >= 0.95 * len(shipped)


@needs_encoder
def test_classify_help_names_the_model_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(encoder.ENVIRONMENT_SWITCH)
    usage = CliRunner().invoke(cli_app(), ["classify", "--help"], env={"COLUMNS": "300"})
    assert "Sentence encoder: in use, all-MiniLM-L6-v2 embeddings stacked" in usage.stdout
    assert Classifier.default(encoder=None).uses_encoder
    monkeypatch.setenv(encoder.ENVIRONMENT_SWITCH, "off")
    usage = CliRunner().invoke(cli_app(), ["classify", "--help"], env={"COLUMNS": "300"})
    assert "Sentence encoder: not used, switched off (DESKSIDE_ENCODER=off)" in usage.stdout
    assert Classifier.default(encoder=None).uses_encoder is False


def test_the_default_install_classifies_without_the_extra(tmp_path: Path) -> None:
    """ONNX Runtime and the tokenizers blocked (as if the extra were not installed): the
    classifier is sparse, says so, and labels offline; importing deskside loads neither."""
    found = _run_python(
        "import json, sys\n"
        "sys.modules['onnxruntime'] = None\n"
        "sys.modules['tokenizers'] = None\n"
        "import deskside.cli\n"
        "from deskside.insights.analysis import classify\n"
        "model = classify.Classifier.default()\n"
        "print(json.dumps({'description': classify.model_description(),\n"
        "    'encoder': model.uses_encoder,\n"
        "    'labels': [p.label for p in model.predict(['The app crashes on start.',\n"
        "        'Could you please add an export to Google Sheets?'])]}))\n",
        tmp_path,
    )
    assert found["encoder"] is False
    assert "no sentence encoder: the encoder extra is not installed" in found["description"]
    assert found["labels"] == ["bug", "feature"]


def test_importing_deskside_loads_no_encoder_runtime(tmp_path: Path) -> None:
    found = _run_python(
        "import json, sys\n"
        "import deskside.cli\n"
        "from deskside.insights.analysis import classify\n"
        "print(json.dumps(sorted({'onnxruntime', 'onnx', 'tokenizers', 'safetensors'}\n"
        "    & set(sys.modules))))\n",
        tmp_path,
    )
    assert found == []
