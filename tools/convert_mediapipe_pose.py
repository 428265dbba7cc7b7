"""Convert MediaPipe's BlazePose models (``.tflite``) into the ``.npz`` graphs dsrbody runs in PyTorch.

Run once by a maintainer, not at install or run time; it needs ``ai-edge-litert`` and ``tflite``
(``pip install ai-edge-litert tflite``), which dsrbody itself does not depend on::

    python tools/convert_mediapipe_pose.py --tflite pose_detection.tflite \
        --out src/dsrbody/assets/blazepose_detector.npz
    python tools/convert_mediapipe_pose.py --tflite pose_landmark_full.tflite \
        --out src/dsrbody/assets/blazepose_landmark_full.npz

The two ``.tflite`` files are MediaPipe's (Apache-2.0), e.g. from the ``mediapipe==0.10.21`` wheel
(``mediapipe/modules/pose_detection/``, ``mediapipe/modules/pose_landmark/``). The LiteRT interpreter
dequantises and densifies the weights (the files store them as sparse float16); the operators that
compute on activations are written out as a JSON list with their options, and every constant they read
as an array (float weights as float16, which is what the files hold). ``--check`` runs the converted
graph in dsrbody on random inputs and prints the largest difference from LiteRT's outputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

WEIGHT_OPS = {"DEQUANTIZE", "DENSIFY"}
OPTION_CLASSES = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "ADD": "AddOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "CONCATENATION": "ConcatenationOptions",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions",
}
OPTION_FIELDS = {
    "Padding": "padding",  # 0 SAME, 1 VALID
    "StrideH": "stride_h",
    "StrideW": "stride_w",
    "DilationHFactor": "dilation_h",
    "DilationWFactor": "dilation_w",
    "FusedActivationFunction": "activation",  # 0 none, 1 relu, 3 relu6
    "DepthMultiplier": "depth_multiplier",
    "FilterHeight": "filter_h",
    "FilterWidth": "filter_w",
    "AlignCorners": "align_corners",
    "HalfPixelCenters": "half_pixel_centers",
    "Axis": "axis",
    "BlockSize": "block_size",
}


def _options(tflite, op, name: str) -> dict:
    cls_name = OPTION_CLASSES.get(name)
    table = op.BuiltinOptions()
    if cls_name is None or table is None:
        return {}
    opts = getattr(tflite, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    out = {}
    for field, key in OPTION_FIELDS.items():
        if hasattr(opts, field):
            v = getattr(opts, field)()
            out[key] = bool(v) if isinstance(v, bool) else int(v)
    return out


def convert(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` for one ``.tflite`` file (``graph`` is the JSON, as uint8)."""
    import tflite
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    it = Interpreter(
        model_path=str(path),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    it.invoke()

    produced_by_weight_op: dict[int, bool] = {}
    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [int(op.Inputs(j)) for j in range(op.InputsLength())]
        outs = [int(op.Outputs(j)) for j in range(op.OutputsLength())]
        if name in WEIGHT_OPS:
            for t in outs:
                produced_by_weight_op[t] = True
            continue
        ops.append({"op": name, "inputs": ins, "outputs": outs, **_options(tflite, op, name)})

    computed = {t for o in ops for t in o["outputs"]} | {int(g.Inputs(0))}
    arrays: dict[str, np.ndarray] = {}
    for o in ops:
        for t in o["inputs"]:
            if t < 0 or t in computed or f"t{t}" in arrays:
                continue
            value = np.asarray(it.get_tensor(t))
            if value.dtype == np.float32 and produced_by_weight_op.get(t, False):
                value = value.astype(np.float16)
            arrays[f"t{t}"] = value
    outputs = [int(g.Outputs(j)) for j in range(g.OutputsLength())]
    graph = {
        "source": path.name,
        "input": int(g.Inputs(0)),
        "input_shape": [int(s) for s in g.Tensors(g.Inputs(0)).ShapeAsNumpy()],
        "outputs": outputs,
        "output_names": [g.Tensors(t).Name().decode() for t in outputs],
        "ops": ops,
    }
    arrays["graph"] = np.frombuffer(json.dumps(graph).encode(), dtype=np.uint8)
    return arrays


def check(path: Path, npz: Path, trials: int = 3) -> float:
    """Largest absolute difference between LiteRT and dsrbody's graph over random inputs."""
    import torch
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from dsrbody.demo.tflite_graph import TFLiteGraph

    it = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    graph = TFLiteGraph.load(npz)
    worst = 0.0
    rng = np.random.default_rng(0)
    for _ in range(trials):
        x = rng.uniform(-1, 1, inp["shape"]).astype(np.float32)
        it.set_tensor(inp["index"], x)
        it.invoke()
        with torch.no_grad():
            ours = graph(torch.from_numpy(x))
        for o, y in zip(it.get_output_details(), ours, strict=True):
            ref = it.get_tensor(o["index"])
            d = float(np.abs(ref - y.numpy()).max())
            print(f"  {o['name']} {tuple(ref.shape)}: max |diff| {d:.2e} (max |ref| {np.abs(ref).max():.2e})")
            worst = max(worst, d)
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check", action="store_true", help="compare with LiteRT on random inputs")
    a = ap.parse_args()
    arrays = convert(a.tflite)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, **arrays)
    n = sum(v.size for k, v in arrays.items() if k != "graph")
    print(
        f"{a.out}: {len(json.loads(arrays['graph'].tobytes())['ops'])} operators, {n:,} constants, "
        f"{a.out.stat().st_size / 1e6:.1f} MB"
    )
    if a.check:
        print(f"largest difference from LiteRT: {check(a.tflite, a.out):.2e}")


if __name__ == "__main__":
    main()
