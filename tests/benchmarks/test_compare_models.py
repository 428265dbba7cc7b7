"""benchmarks/compare_models.py on the tiny synthetic set: a model against itself differs by exactly
nothing, flip test-time augmentation changes the estimate, and one checkpoint alone is refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "demo"))
from demo_testkit import shared_checkpoint, shared_synth  # noqa: E402


def _script():
    spec = importlib.util.spec_from_file_location("compare_models", ROOT / "benchmarks" / "compare_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_models(anny_body, tmp_path_factory, tmp_path):
    data = shared_synth(tmp_path_factory)
    ckpt = str(shared_checkpoint(anny_body, tmp_path_factory))
    mod = _script()
    out = tmp_path / "cmp.json"
    mod.main(["--data", str(data), "--ckpt", ckpt, "--ckpt", ckpt, "--json", str(out), "--batch-size", "2"])
    table = json.loads(out.read_text())
    n = table["samples"]
    assert n == len(mod.per_sample(ckpt, [data], False, 2)["mpjpe"]) and n >= 3
    first = table["models"][ckpt]["pa_mpjpe"]
    assert first["mean"] > 0 and first["se"] > 0 and first["n"] == n
    assert table["differences"][ckpt]["pa_mpjpe"]["mean"] == 0.0
    plain = mod.per_sample(ckpt, [data], False, 2)
    flipped = mod.per_sample(ckpt, [data], True, 2)
    assert abs(flipped["mpjpe"] - plain["mpjpe"]).max() > 1e-3
    with pytest.raises(SystemExit, match="two checkpoints"):
        mod.main(["--data", str(data), "--ckpt", ckpt])
