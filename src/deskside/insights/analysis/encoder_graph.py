"""The BERT sentence encoder of :mod:`.encoder` as an ONNX graph, built from its safetensors
weights with :mod:`onnx.helper` (no torch, no export step).

The graph takes ``input_ids`` and ``attention_mask`` (int64, batch by tokens) and answers
``embedding`` (float32, batch by hidden size): the last layer's token states averaged over the
tokens the mask keeps (not yet L2-normalised). Token type ids are all 0, as for one sentence:
that row of the token type table is folded into the position table. Imported only by
:mod:`.encoder` when the encoder is used: it needs the ``encoder`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx  # type: ignore[import-untyped,import-not-found,unused-ignore]
from onnx import TensorProto, helper, numpy_helper  # type: ignore[import-untyped,import-not-found,unused-ignore]

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["OPSET", "build_graph"]

OPSET = 17
"""The ONNX opset: the first with ``LayerNormalization``."""


def build_graph(weights: Mapping[str, NDArray[Any]], config: Mapping[str, Any]) -> Any:
    """An ``onnx.ModelProto`` of the BERT encoder with mean pooling, from Hugging Face BERT
    weight names (``embeddings.*``, ``encoder.layer.N.*``) and its ``config.json``."""
    graph = _Graph(weights, float(config.get("layer_norm_eps", 1e-12)))
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    graph.constant("axis_1", np.array([1], dtype=np.int64))
    graph.constant("axis_2", np.array([2], dtype=np.int64))
    states = graph.embeddings()
    mask = graph.attention_mask()
    for layer in range(int(config["num_hidden_layers"])):
        states = graph.layer(f"encoder.layer.{layer}.", states, mask, heads)
    pooled = graph.mean_pool(states)
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
        for name in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info(pooled, TensorProto.FLOAT, ["batch", hidden])
    model = helper.make_model(
        helper.make_graph(graph.nodes, "sentence_encoder", inputs, [output], graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="deskside",
    )
    onnx.checker.check_model(model)
    return model


class _Graph:
    """Nodes and initializers collected while the encoder is spelt out, one step a method."""

    def __init__(self, weights: Mapping[str, NDArray[Any]], epsilon: float) -> None:
        self.weights = weights
        self.epsilon = epsilon
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()
        self._count = 0

    def constant(self, name: str, value: NDArray[Any]) -> str:
        """An initializer (the first value given under a name is kept)."""
        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, name: str, transpose: bool = False) -> str:
        value = np.asarray(self.weights[name], dtype=np.float32)
        return self.constant(name, np.ascontiguousarray(value.T if transpose else value))

    def op(self, kind: str, *inputs: str, **attributes: Any) -> str:
        """Add a node; its output's name."""
        self._count += 1
        output = f"{kind.lower()}_{self._count}"
        node = helper.make_node(kind, list(inputs), [output], name=output, **attributes)
        self.nodes.append(node)
        return output

    def dense(self, prefix: str, states: str) -> str:
        """``states @ W.T + b`` of a ``Linear`` layer."""
        product = self.op("MatMul", states, self.weight(f"{prefix}weight", transpose=True))
        return self.op("Add", product, self.weight(f"{prefix}bias"))

    def layer_norm(self, prefix: str, states: str) -> str:
        scale, bias = self.weight(f"{prefix}weight"), self.weight(f"{prefix}bias")
        return self.op("LayerNormalization", states, scale, bias, axis=-1, epsilon=self.epsilon)

    def embeddings(self) -> str:
        """Word + position (+ token type 0) embeddings, layer-normalised."""
        positions = self.weights["embeddings.position_embeddings.weight"]
        first_type = self.weights["embeddings.token_type_embeddings.weight"][0]
        table = self.constant("positions", (positions + first_type).astype(np.float32))
        length = self.op("Gather", self.op("Shape", "input_ids"), self.constant_scalar(1))
        steps = self.op("Range", self.constant_scalar(0), length, self.constant_scalar(1))
        words = self.op("Gather", self.weight("embeddings.word_embeddings.weight"), "input_ids")
        summed = self.op("Add", words, self.op("Gather", table, steps))
        return self.layer_norm("embeddings.LayerNorm.", summed)

    def constant_scalar(self, value: int) -> str:
        return self.constant(f"scalar_{value}", np.array(value, dtype=np.int64))

    def attention_mask(self) -> str:
        """The mask as the ``Attention`` kernel takes it: int32, 1 for a token, 0 for padding."""
        return self.op("Cast", "attention_mask", to=TensorProto.INT32)

    def layer(self, prefix: str, states: str, mask: str, heads: int) -> str:
        """One transformer layer: self-attention (ONNX Runtime's fused ``Attention`` kernel,
        which scales the scores by 1/sqrt(head size)) and feed-forward, each followed by a
        residual and layer normalisation."""
        attention = f"{prefix}attention.self."
        qkv = [f"{attention}{part}." for part in ("query", "key", "value")]
        weights = np.concatenate([self.weights[f"{p}weight"].T for p in qkv], axis=1)
        biases = np.concatenate([self.weights[f"{p}bias"] for p in qkv])
        attended = self.op(
            "Attention",
            states,
            self.constant(f"{attention}qkv.weight", weights.astype(np.float32)),
            self.constant(f"{attention}qkv.bias", biases.astype(np.float32)),
            mask,
            domain="com.microsoft",
            num_heads=heads,
        )
        out = self.op("Add", self.dense(f"{prefix}attention.output.dense.", attended), states)
        attended = self.layer_norm(f"{prefix}attention.output.LayerNorm.", out)
        inner = self.gelu(self.dense(f"{prefix}intermediate.dense.", attended))
        out = self.op("Add", self.dense(f"{prefix}output.dense.", inner), attended)
        return self.layer_norm(f"{prefix}output.LayerNorm.", out)

    def gelu(self, states: str) -> str:
        """The exact (erf) GELU, which ONNX Runtime fuses into one kernel."""
        root2 = self.constant("sqrt_2", np.array(math.sqrt(2.0), np.float32))
        half = self.constant("half", np.array(0.5, np.float32))
        one = self.constant("one", np.array(1.0, np.float32))
        erf = self.op("Erf", self.op("Div", states, root2))
        return self.op("Mul", self.op("Mul", states, self.op("Add", erf, one)), half)

    def mean_pool(self, states: str) -> str:
        """The mean of the token states the attention mask keeps."""
        mask = self.op("Cast", "attention_mask", to=TensorProto.FLOAT)
        weights = self.op("Unsqueeze", mask, "axis_2")
        total = self.op("ReduceSum", self.op("Mul", states, weights), "axis_1", keepdims=0)
        count = self.op("ReduceSum", weights, "axis_1", keepdims=0)
        tiny = self.constant("tiny", np.array(1e-9, np.float32))
        return self.op("Div", total, self.op("Max", count, tiny))
