"""Run a converted TensorFlow Lite graph in PyTorch: the operators MediaPipe's BlazePose models use.

A graph file is an ``.npz`` written by ``tools/convert_mediapipe_pose.py``: ``graph`` holds a JSON list
of operators (``op``, tensor ids ``inputs`` / ``outputs`` and the operator's options) and ``t<id>`` the
constants they read (weights as float16). Loading reads arrays only (``allow_pickle=False``); nothing
in the file is executed.

TensorFlow Lite works in NHWC; here activations are NCHW (what ``torch.nn.functional`` expects) and
the operators whose meaning depends on the layout (``PAD``, ``CONCATENATION``, ``RESHAPE``,
``DEPTH_TO_SPACE``) translate their arguments. Supported: ``CONV_2D``, ``DEPTHWISE_CONV_2D`` (SAME or
VALID padding, TensorFlow's SAME splits odd padding with the extra pixel after), ``ADD``, ``PAD``,
``MAX_POOL_2D``, ``RESIZE_BILINEAR`` (half-pixel centres), ``DEPTH_TO_SPACE``, ``CONCATENATION``,
``RESHAPE``, ``LOGISTIC``, with fused ReLU / ReLU6.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TFLiteGraph", "TFLiteSubgraph", "same_padding"]

_ACTIVATIONS = {0: None, 1: F.relu, 3: F.relu6}


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: ``(before, after)``, the odd pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _nhwc_axis(axis: int, ndim: int) -> int:
    """The NCHW axis of a 4-D NHWC axis (other ranks keep theirs)."""
    if ndim != 4:
        return axis
    return (0, 2, 3, 1)[axis % 4]


class TFLiteGraph(torch.nn.Module):
    """A converted TFLite graph as a module: ``forward(x (1, H, W, C) NHWC) -> [outputs, NHWC]``.

    Inputs and outputs keep TensorFlow Lite's layout so that they match its documentation; inside,
    activations are NCHW. Batches larger than one work for the convolutional part; ``RESHAPE`` keeps
    the batch dimension.
    """

    def __init__(self, graph: dict, constants: dict[int, np.ndarray], name: str = "graph"):
        super().__init__()
        self.name = name
        self.spec = graph
        self.ops = graph["ops"]
        self._const: dict[int, torch.Tensor] = {}
        for i, op in enumerate(self.ops):
            kind = op["op"]
            if kind not in _HANDLERS:
                raise ValueError(f"{name}: operator {kind} (#{i}) is not supported")
            for t in op["inputs"]:
                if t >= 0 and t in constants and t not in self._const:
                    self._const[t] = torch.from_numpy(np.array(constants[t]))
        # Weights in torch's layout, float32, once.
        for i, op in enumerate(self.ops):
            if op["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = self._const[op["inputs"][1]].float()
                if op["op"] == "CONV_2D":  # (O, kh, kw, I) -> (O, I, kh, kw)
                    w = w.permute(0, 3, 1, 2).contiguous()
                else:  # (1, kh, kw, C * m) -> (C * m, 1, kh, kw)
                    w = w.permute(3, 0, 1, 2).contiguous()
                self.register_buffer(f"w{i}", w, persistent=False)
                bias = op["inputs"][2] if len(op["inputs"]) > 2 else -1
                b = self._const[bias].float() if bias >= 0 else torch.zeros(w.shape[0])
                self.register_buffer(f"b{i}", b, persistent=False)

    @classmethod
    def load(cls, path: str | Path) -> TFLiteGraph:
        """Read a converted graph (``.npz``); a missing or malformed file is a one-line error naming it."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                graph = json.loads(z["graph"].tobytes().decode())
                constants = {int(k[1:]): z[k] for k in z.files if k.startswith("t")}
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such graph file") from None
        except (KeyError, ValueError, OSError, EOFError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a converted TFLite graph ({type(e).__name__}: {e})") from None
        for key in ("ops", "input", "outputs"):
            if key not in graph:
                raise ValueError(f"{path}: graph has no '{key}'")
        return cls(graph, constants, name=str(path))

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the graph's input."""
        shape = self.spec["input_shape"]
        return int(shape[1]), int(shape[2])

    def _value(self, env: dict[int, torch.Tensor], t: int) -> torch.Tensor:
        return env[t] if t in env else self._const[t]

    def producer(self, tensor: int) -> dict:
        """The operator that writes tensor id ``tensor``.

        Raises:
            KeyError: no operator writes it (a constant or the input).
        """
        for op in self.ops:
            if op["outputs"][0] == tensor:
                return op
        raise KeyError(f"{self.name}: no operator writes tensor {tensor}")

    def needed(self, tensors: list[int], given: tuple[int, ...] | list[int] = ()) -> list[int]:
        """Indices of the operators that ``tensors`` depend on, in graph order.

        Args:
            given: tensor ids whose values are supplied: the operators upstream of them are left out.
        """
        writer = {op["outputs"][0]: i for i, op in enumerate(self.ops)}
        stop = set(given)
        keep: set[int] = set()
        todo = [t for t in tensors if t in writer and t not in stop]
        while todo:
            i = writer[todo.pop()]
            if i not in keep:
                keep.add(i)
                todo.extend(t for t in self.ops[i]["inputs"] if t in writer and t not in stop)
        return sorted(keep)

    def run(self, x: torch.Tensor, tensors: list[int] | None = None) -> dict[int, torch.Tensor]:
        """Run the graph on ``x (N, H, W, C)`` (NHWC, float32): the tensors it computes, by id, in NCHW
        (4-D) or as the operator wrote it (intermediate features for a backbone).

        Args:
            tensors: compute only what these tensor ids need (None: the whole graph).
        """
        env: dict[int, torch.Tensor] = {self.spec["input"]: x.permute(0, 3, 1, 2)}
        order = range(len(self.ops)) if tensors is None else self.needed(tensors)
        return _execute(self, order, env)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the graph on ``x (N, H, W, C)`` (NHWC, float32); the outputs in TFLite's order and layout."""
        env = self.run(x)
        outs = []
        for t in self.spec["outputs"]:
            y = env[t]
            outs.append(y.permute(0, 2, 3, 1).contiguous() if y.dim() == 4 else y)
        return outs


class TFLiteSubgraph(torch.nn.Module):
    """The operators of a :class:`TFLiteGraph` between given tensors and chosen outputs, with their
    convolution weights and biases as trainable parameters (``w<op>``, ``b<op>``) initialised from the
    graph: the part of a converted network that fine-tuning adapts.

    Args:
        graph: the whole graph (its constants are shared, its weights copied).
        sources: tensor ids whose values :meth:`forward` is given (NCHW).
        outputs: tensor ids it computes.

    Raises:
        ValueError: an operator the outputs need reads the graph's input, i.e. ``sources`` do not cut the
            outputs off from it.
    """

    def __init__(self, graph: TFLiteGraph, sources: list[int], outputs: list[int]) -> None:
        super().__init__()
        self.name, self.spec, self.ops = graph.name, graph.spec, graph.ops
        self.sources, self.outputs = list(sources), list(outputs)
        self.order = graph.needed(self.outputs, given=self.sources)
        self._const = graph._const
        computed = set(self.sources) | {self.ops[i]["outputs"][0] for i in self.order}
        for i in self.order:
            for t in self.ops[i]["inputs"]:
                if t >= 0 and t not in computed and t not in self._const:
                    raise ValueError(f"{self.name}: operator #{i} reads tensor {t}, not among the sources")
            if hasattr(graph, f"w{i}"):
                self.register_parameter(f"w{i}", torch.nn.Parameter(getattr(graph, f"w{i}").detach().clone()))
                self.register_parameter(f"b{i}", torch.nn.Parameter(getattr(graph, f"b{i}").detach().clone()))

    def _value(self, env: dict[int, torch.Tensor], t: int) -> torch.Tensor:
        return env[t] if t in env else self._const[t]

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """``inputs``: one NCHW tensor per source, in order -> the outputs (NCHW when 4-D), in order."""
        if len(inputs) != len(self.sources):
            raise ValueError(f"{self.name}: {len(self.sources)} source tensors expected, got {len(inputs)}")
        env = _execute(self, self.order, dict(zip(self.sources, inputs, strict=True)))
        return [env[t] for t in self.outputs]


def _execute(g: torch.nn.Module, order, env: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Run operators ``order`` of ``g`` (a graph or subgraph) on ``env`` (tensor id -> value), in place."""
    for i in order:
        op = g.ops[i]
        env[op["outputs"][0]] = _HANDLERS[op["op"]](g, i, op, env)
    return env


def _activate(y: torch.Tensor, op: dict) -> torch.Tensor:
    act = op.get("activation", 0)
    if act not in _ACTIVATIONS:
        raise ValueError(f"fused activation {act} is not supported")
    fn = _ACTIVATIONS[act]
    return y if fn is None else fn(y)


def _conv(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    x = g._value(env, op["inputs"][0])
    w, b = getattr(g, f"w{i}"), getattr(g, f"b{i}")
    sh, sw = op.get("stride_h", 1), op.get("stride_w", 1)
    dh, dw = op.get("dilation_h", 1), op.get("dilation_w", 1)
    if op.get("padding", 1) == 0:  # SAME
        top, bottom = same_padding(x.shape[2], w.shape[2], sh, dh)
        left, right = same_padding(x.shape[3], w.shape[3], sw, dw)
        x = F.pad(x, (left, right, top, bottom))
    groups = x.shape[1] if op["op"] == "DEPTHWISE_CONV_2D" else 1
    return _activate(F.conv2d(x, w, b, stride=(sh, sw), dilation=(dh, dw), groups=groups), op)


def _add(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    a, b = (g._value(env, t) for t in op["inputs"])
    return _activate(a + b, op)


def _pad(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    x = g._value(env, op["inputs"][0])
    p = g._const[op["inputs"][1]].tolist()  # NHWC rows (before, after)
    if p[0] != [0, 0] or p[3] != [0, 0]:
        return F.pad(x, (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1], p[0][0], p[0][1]))
    return F.pad(x, (p[2][0], p[2][1], p[1][0], p[1][1]))


def _max_pool(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    x = g._value(env, op["inputs"][0])
    kh, kw, sh, sw = op["filter_h"], op["filter_w"], op["stride_h"], op["stride_w"]
    if op.get("padding", 1) == 0:
        top, bottom = same_padding(x.shape[2], kh, sh)
        left, right = same_padding(x.shape[3], kw, sw)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return _activate(F.max_pool2d(x, (kh, kw), (sh, sw)), op)


def _resize(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    x = g._value(env, op["inputs"][0])
    size = [int(s) for s in g._const[op["inputs"][1]].tolist()]
    if op.get("align_corners", False):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    if not op.get("half_pixel_centers", False):
        raise ValueError("RESIZE_BILINEAR without half-pixel centres is not supported")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _depth_to_space(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    x = g._value(env, op["inputs"][0])
    n, c, h, w = x.shape
    s = op["block_size"]
    # TFLite's channel order is (block row, block column, channel).
    x = x.reshape(n, s, s, c // (s * s), h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(n, c // (s * s), h * s, w * s)


def _concat(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    xs = [g._value(env, t) for t in op["inputs"]]
    return _activate(torch.cat(xs, dim=_nhwc_axis(op["axis"], xs[0].dim())), op)


def _reshape(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    x = g._value(env, op["inputs"][0])
    if x.dim() == 4:
        x = x.permute(0, 2, 3, 1)  # TFLite reshapes NHWC memory
    shape = [int(s) for s in g._const[op["inputs"][1]].tolist()] if len(op["inputs"]) > 1 else [-1]
    y = x.reshape([x.shape[0], *shape[1:]])
    return y.permute(0, 3, 1, 2) if y.dim() == 4 else y


def _logistic(g: TFLiteGraph, i: int, op: dict, env: dict) -> torch.Tensor:
    return torch.sigmoid(g._value(env, op["inputs"][0]))


_HANDLERS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "ADD": _add,
    "PAD": _pad,
    "MAX_POOL_2D": _max_pool,
    "RESIZE_BILINEAR": _resize,
    "DEPTH_TO_SPACE": _depth_to_space,
    "CONCATENATION": _concat,
    "RESHAPE": _reshape,
    "LOGISTIC": _logistic,
}
