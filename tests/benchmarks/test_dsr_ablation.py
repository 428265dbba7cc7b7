"""benchmarks/dsr_ablation.py on a recipe's own data (the regime path): 2 steps per variant, a tiny set."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "demo"))
from demo_testkit import shared_synth  # noqa: E402


def _script():
    path = ROOT / "benchmarks" / "dsr_ablation.py"
    spec = importlib.util.spec_from_file_location("dsr_ablation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_recipe_data_ablation_smoke(tmp_path_factory, tmp_path):
    data = shared_synth(tmp_path_factory)
    npz = data / "synth_test.npz"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "base: synth_dsr\nname: tiny\nmodel: {img_res: 64}\n"
        f"data:\n  train:\n    - npz: {npz}\n      img_dir: {data}\n"
        f"  test:\n    - npz: {npz}\n      img_dir: {data}\n  batch_size: 2\n  val_batch_size: 2\n"
        "  num_workers: 0\nlogging: {every_n_steps: 1, images_every_n_steps: 0}\n"
    )
    mod = _script()
    doc = tmp_path / "ablation.md"
    out = tmp_path / "abl"
    args = ["--config", str(recipe), "--recipe-data", "--data", str(data), "--hard-npz", str(npz),
            "--out", str(out), "--epochs", "5", "--quick", "--threads", "1", "--skip-done",
            "--doc", str(doc)]  # fmt: skip
    assert mod.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {(r["variant"], r["seed"]): r for r in results}
    assert set(rows) == {("0", 0), ("a", 0), ("e", 0)} and rows[("a", 0)]["steps"] == 2
    for r in results:
        for split in ("test", "hard"):
            assert r[split]["n_pve_t"] == 3 and r[split]["volume_ratio"] > 0
    text = doc.read_text()
    assert "the recipe's own training and test sets" in text and "dsr_ablation.png" in text
    assert (tmp_path / "dsr_ablation.png").is_file()
    # a finished training is kept (not retrained) when only its evaluation is missing
    (out / "runs" / "a_s0" / "result.json").unlink()
    stamp = (out / "runs" / "a_s0" / "checkpoints" / "last.ckpt").stat().st_mtime
    assert mod.main([*args, "--no-reference"]) == 0
    assert (out / "runs" / "a_s0" / "checkpoints" / "last.ckpt").stat().st_mtime == stamp
    again = {(r["variant"], r["seed"]): r for r in json.loads((out / "results.json").read_text())}
    assert again[("a", 0)]["test"]["pve_t"] == rows[("a", 0)]["test"]["pve_t"]
