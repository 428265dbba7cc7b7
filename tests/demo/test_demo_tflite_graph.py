"""The TFLite graph runner: each operator against a brute-force NHWC reference, the shipped BlazePose
graphs against LiteRT's outputs (stored), and bad files."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from dsrbody.demo.tflite_graph import TFLiteGraph, TFLiteSubgraph, same_padding

DATA = Path(__file__).parent / "data"


def _graph(ops, constants, input_shape, outputs):
    spec = {"input": 0, "input_shape": list(input_shape), "outputs": outputs, "ops": ops}
    return TFLiteGraph(spec, {k: np.asarray(v) for k, v in constants.items()})


def _conv_nhwc(x, w, b, stride, padding, depthwise=False):
    """Brute-force TensorFlow convolution: x (H, W, C), w (O, kh, kw, I) or depthwise (1, kh, kw, C)."""
    H, W, C = x.shape
    kh, kw = w.shape[1:3]
    if padding == "SAME":
        (t, bo), (le, r) = same_padding(H, kh, stride), same_padding(W, kw, stride)
        x = np.pad(x, ((t, bo), (le, r), (0, 0)))
    Ho, Wo = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = np.zeros((Ho, Wo, C if depthwise else w.shape[0]))
    for i in range(Ho):
        for j in range(Wo):
            patch = x[i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            if depthwise:
                out[i, j] = (patch * w[0]).sum((0, 1))
            else:
                out[i, j] = np.einsum("hwc,ohwc->o", patch, w)
    return out + b


def test_same_padding_matches_tensorflow_rule():
    assert same_padding(224, 3, 2) == (0, 1)  # even input, stride 2: the extra pixel after
    assert same_padding(7, 3, 1) == (1, 1)
    assert same_padding(8, 2, 2) == (0, 0)
    assert same_padding(5, 4, 1) == (1, 2)


@pytest.mark.parametrize("stride,padding,act", [(1, 0, 0), (2, 0, 3), (2, 1, 1)])
def test_conv2d_matches_brute_force(stride, padding, act):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 9, 8, 3)).astype(np.float32)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    op = {"op": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3], "stride_h": stride, "stride_w": stride,
          "padding": padding, "activation": act}  # fmt: skip
    (y,) = _graph([op], {1: w, 2: b}, x.shape, [3])(torch.from_numpy(x))
    ref = _conv_nhwc(x[0].astype(np.float64), w, b, stride, "SAME" if padding == 0 else "VALID")
    ref = {0: ref, 1: np.maximum(ref, 0), 3: np.clip(ref, 0, 6)}[act]
    np.testing.assert_allclose(y[0].numpy(), ref, atol=1e-4)


def test_depthwise_conv_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 10, 10, 5)).astype(np.float32)
    w = rng.normal(size=(1, 5, 5, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    op = {
        "op": "DEPTHWISE_CONV_2D",
        "inputs": [0, 1, 2],
        "outputs": [3],
        "stride_h": 2,
        "stride_w": 2,
        "padding": 0,
    }
    (y,) = _graph([op], {1: w, 2: b}, x.shape, [3])(torch.from_numpy(x))
    ref = _conv_nhwc(x[0].astype(np.float64), w, b, 2, "SAME", depthwise=True)
    np.testing.assert_allclose(y[0].numpy(), ref, atol=1e-4)


def test_layout_operators_follow_nhwc_semantics():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 3, 4, 8)).astype(np.float32)
    pads = np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)
    ops = [
        {"op": "PAD", "inputs": [0, 1], "outputs": [2]},
        {"op": "DEPTH_TO_SPACE", "inputs": [0], "outputs": [3], "block_size": 2},
        {"op": "CONCATENATION", "inputs": [0, 0], "outputs": [4], "axis": 3},
        {"op": "RESHAPE", "inputs": [0, 5], "outputs": [6]},
        {"op": "MAX_POOL_2D", "inputs": [0], "outputs": [7], "filter_h": 2, "filter_w": 2, "stride_h": 2,
         "stride_w": 2, "padding": 0},
        {"op": "ADD", "inputs": [0, 0], "outputs": [8], "activation": 1},
        {"op": "LOGISTIC", "inputs": [0], "outputs": [9]},
    ]  # fmt: skip
    g = _graph(ops, {1: pads, 5: np.array([1, 12, 8], np.int32)}, x.shape, [2, 3, 4, 6, 7, 8, 9])
    pad, d2s, cat, reshape, pool, add, sig = (t.numpy() for t in g(torch.from_numpy(x)))
    np.testing.assert_array_equal(pad[0], np.pad(x[0], ((1, 2), (0, 1), (0, 0))))
    # TensorFlow's depth_to_space: out[h*2+i, w*2+j, c] = in[h, w, (i*2 + j)*C' + c]
    ref = x[0].reshape(3, 4, 2, 2, 2).transpose(0, 2, 1, 3, 4).reshape(6, 8, 2)
    np.testing.assert_array_equal(d2s[0], ref)
    np.testing.assert_array_equal(cat[0], np.concatenate([x[0], x[0]], axis=-1))
    np.testing.assert_array_equal(reshape, x.reshape(1, 12, 8))
    ref_pool = np.pad(x[0], ((0, 1), (0, 0), (0, 0)), constant_values=-np.inf)
    ref_pool = ref_pool.reshape(2, 2, 2, 2, 8).max((1, 3))
    np.testing.assert_array_equal(pool[0], ref_pool)
    np.testing.assert_allclose(add, np.maximum(2 * x, 0))
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-x)), rtol=1e-6)


def test_resize_bilinear_half_pixel_centres():
    x = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)
    op = {"op": "RESIZE_BILINEAR", "inputs": [0, 1], "outputs": [2], "half_pixel_centers": True}
    (y,) = _graph([op], {1: np.array([4, 4], np.int32)}, x.shape, [2])(torch.from_numpy(x))
    # half-pixel centres: output pixel 1 samples input coordinate (1 + 0.5) / 2 - 0.5 = 0.25
    row = y[0, :, :, 0].numpy()[0]
    np.testing.assert_allclose(row, [0.0, 0.25, 0.75, 1.0])


@pytest.mark.parametrize("name", ["detector", "landmark"])
def test_shipped_graphs_match_litert(name):
    """The converted BlazePose graphs reproduce LiteRT's outputs on the same input (reference values
    stored by running the original ``.tflite`` files in ``ai-edge-litert``)."""
    ref = np.load(DATA / "blazepose_litert_reference.npz")
    file = {"detector": "blazepose_detector.npz", "landmark": "blazepose_landmark_full.npz"}[name]
    with resources.as_file(resources.files("dsrbody") / "assets" / file) as p:
        g = TFLiteGraph.load(p)
    x = np.random.default_rng(0).uniform(-1, 1, g.spec["input_shape"]).astype(np.float32)
    assert abs(float(x.sum()) - float(ref[f"{name}_input_sum"])) < 1e-3
    with torch.no_grad():
        ys = [y[0].numpy() for y in g(torch.from_numpy(x))]
    if name == "detector":
        np.testing.assert_allclose(ys[0][:100], ref["detector_boxes_head"], atol=2e-3)
        np.testing.assert_allclose(ys[1][:, 0], ref["detector_scores"], atol=2e-3)
    else:
        np.testing.assert_allclose(ys[0], ref["landmark_landmarks"], atol=5e-3)
        np.testing.assert_allclose(ys[1], ref["landmark_flag"], atol=1e-6)
        np.testing.assert_allclose(ys[2][128, :, 0], ref["landmark_segmentation_row"], rtol=1e-3, atol=0.05)
        np.testing.assert_allclose(ys[3][:8, :8], ref["landmark_heatmap_corner"], atol=1e-3)
        np.testing.assert_allclose(ys[4], ref["landmark_world"], atol=1e-4)


def _two_convs():
    """input 0 -> CONV (ReLU) -> 3 -> DEPTHWISE -> 6, ADD 3 + 6 -> 7: a small residual block."""
    rng = np.random.default_rng(3)
    consts = {1: rng.normal(size=(4, 3, 3, 2)), 2: rng.normal(size=4), 4: rng.normal(size=(1, 3, 3, 4)),
              5: rng.normal(size=4)}  # fmt: skip
    ops = [
        {"op": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3], "padding": 0, "activation": 1},
        {"op": "DEPTHWISE_CONV_2D", "inputs": [3, 4, 5], "outputs": [6], "padding": 0},
        {"op": "ADD", "inputs": [3, 6], "outputs": [7]},
    ]
    return _graph(ops, {k: v.astype(np.float32) for k, v in consts.items()}, (1, 6, 5, 2), [7])


def test_subgraph_from_a_cut_equals_the_whole_graph_and_trains():
    g = _two_convs()
    x = torch.randn(2, 6, 5, 2)
    env = g.run(x)
    sub = TFLiteSubgraph(g, [3], [7])
    assert sub.order == [1, 2]
    assert {n for n, _ in sub.named_parameters()} == {"w1", "b1"}  # only the operators after the cut
    (y,) = sub(env[3])
    torch.testing.assert_close(y, env[7])
    # the parameters are copies: training them leaves the graph as it was
    with torch.no_grad():
        sub.w1.add_(1.0)
    torch.testing.assert_close(g.run(x)[7], env[7])
    # the gradient of a weight agrees with a finite difference
    sub = TFLiteSubgraph(g, [3], [7]).double()
    src = env[3].double()
    sub(src)[0].square().sum().backward()
    eps, k = 1e-6, (2, 0, 1, 1)
    with torch.no_grad():
        sub.w1[k] += eps
        up = sub(src)[0].square().sum()
        sub.w1[k] -= 2 * eps
        down = sub(src)[0].square().sum()
    assert abs(sub.w1.grad[k].item() - (up - down).item() / (2 * eps)) < 1e-5 * max(1.0, abs(up.item()))


def test_subgraph_refuses_an_incomplete_cut_and_wrong_inputs():
    g = _two_convs()
    with pytest.raises(ValueError, match="operator #0 reads tensor 0, not among the sources"):
        TFLiteSubgraph(g, [6], [7])  # the ADD also reads 3: the cut leaves a path from the input
    sub = TFLiteSubgraph(g, [0], [7])
    assert sub.order == [0, 1, 2]
    with pytest.raises(ValueError, match="1 source tensors expected, got 2"):
        sub(torch.zeros(1, 2, 6, 5), torch.zeros(1, 2, 6, 5))


def test_bad_graph_files_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such graph file"):
        TFLiteGraph.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="bad.npz: not a converted TFLite graph"):
        TFLiteGraph.load(bad)
    cut = tmp_path / "cut.npz"
    np.savez(cut, graph=np.frombuffer(json.dumps({"ops": []}).encode(), np.uint8))
    with pytest.raises(ValueError, match="cut.npz: graph has no 'input'"):
        TFLiteGraph.load(cut)
    op = {"op": "SOFTMAX", "inputs": [0], "outputs": [1]}
    with pytest.raises(ValueError, match="operator SOFTMAX"):
        _graph([op], {}, (1, 2, 2, 1), [1])
