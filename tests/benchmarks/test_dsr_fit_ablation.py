"""benchmarks/dsr_fit_ablation.py --quick: the fitting ablation end to end on three synthetic samples."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "demo"))
from demo_testkit import shared_synth  # noqa: E402


def _script():
    spec = importlib.util.spec_from_file_location(
        "dsr_fit_ablation", ROOT / "benchmarks" / "dsr_fit_ablation.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_fitting_ablation(tmp_path_factory, tmp_path):
    data = shared_synth(tmp_path_factory)
    mod = _script()
    doc = tmp_path / "ablation.md"
    doc.write_text(f"# Ablation\n\nbefore\n\n{mod.BEGIN}\nold\n{mod.END}\n\nafter\n")
    out = tmp_path / "abl"
    args = ["--quick", "--out", str(out), "--data", str(data), "--hard-data", str(data), "--doc", str(doc)]
    res = mod.main(args)
    for split in ("normal", "hard"):
        s = res["splits"][split]["summary"]
        assert set(s["variants"]) == set("abcde")
        for v, row in s["variants"].items():
            mean, half, n = row["metrics"]["pve_t"]
            assert n == 3 and np.isfinite(mean) and np.isfinite(half)
            diff = row["paired"]["pa_mpjpe"]
            assert (diff[0] == 0.0) if v == "a" else np.isfinite(diff[0])
        # every variant starts where stage 1 ended: the first point of its curve is stage 1's last
        c = res["splits"][split]["curves"]
        for v in "abcde":
            np.testing.assert_allclose(c[v]["pa_mpjpe"][0], c["stage1"]["pa_mpjpe"][-1], atol=0.05)
        # the true body (with the camera fitted to its keypoints) matches the keypoints better than the
        # same body 3 % bigger or smaller: the ground truth is put together right
        at = res["splits"][split]["at_truth"]
        assert at["1.00"]["keypoints"] < min(at["0.97"]["keypoints"], at["1.03"]["keypoints"])
        assert np.isfinite(at["1.00"]["dsr_c"]) and "stage1" in res["splits"][split]["fit_terms"]
        z = np.load(out / split / "e" / "fit_per_sample.npz")
        assert np.isfinite(z["term_dsr_mc"]).any() and np.isfinite(z["term_dsr_c"]).any()
    text = doc.read_text()
    assert "old" not in text and "before" in text and "after" in text and "(e) a + DSR-MC + DSR-C" in text
    assert (tmp_path / "fit_ablation.png").is_file() and (tmp_path / "fit_ablation_curves.png").is_file()
    assert json.loads((out / "results.json").read_text())["splits"]["hard"]["summary"]["variants"]["b"]
    # a second run with --skip-done reuses every stage
    again = mod.main([*args, "--skip-done"])
    same = [json.dumps(r["splits"]["normal"]["summary"]) for r in (res, again)]
    assert same[0] == same[1]
