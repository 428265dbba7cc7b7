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


def test_compare_models_scores_gendered_smpl_against_that_gender(smpl_dir, tmp_path, monkeypatch):
    """A folder of male and female SMPL people (as ``dsrbody synth`` renders them) is scored against
    each gender's model, from ``--body-model-path``; without it the script says which folder it needs
    instead of scoring them against the checkpoint's neutral body."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    import dsrbody.models.loader as loader
    from dsrbody.body.smpl import SMPL
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    from protocol_files import base_arrays, random_smpl_params, write_images

    rng = np.random.default_rng(3)
    n = 4
    pose, shape = random_smpl_params(n, rng)
    folder = tmp_path / "data"
    arrays = base_arrays(n, rng, "images") | {
        "pose": pose, "shape": shape, "has_smpl": np.ones(n), "has_params": np.ones(n),
        "body_model": np.array(["smpl"] * n), "gender": np.array(["m", "f", "m", "f"]),
    }  # fmt: skip
    folder.mkdir()
    np.savez(folder / "synth_test.npz", **arrays)
    write_images(folder, arrays["imgname"], rng)
    neutral = SMPL(smpl_dir, gender="neutral").eval()

    class TrueParameters(torch.nn.Module):
        """Predicts each sample's own pose and shape (the batches come in file order)."""

        body_model, img_res, seen = neutral, 224, 0

        def forward(self, img):
            i = slice(self.seen, self.seen + img.shape[0])
            self.seen += img.shape[0]
            rot = axis_angle_to_matrix(torch.as_tensor(pose[i], dtype=torch.float32).reshape(-1, 24, 3))
            return {"rotmat": rot, "shape": torch.as_tensor(shape[i], dtype=torch.float32)}

    def load(path):  # a fresh regressor per call: it counts the samples it has seen
        return SimpleNamespace(regressor=TrueParameters(), meta={})

    monkeypatch.setattr(loader, "load_model", load)
    mod = _script()
    with pytest.raises(SystemExit, match="male and female smpl bodies; pass --body-model-path"):
        mod.per_sample("model.ckpt", [folder], False, n)
    scored = mod.per_sample("model.ckpt", [folder], False, n, body_model_path=str(smpl_dir))
    assert scored["pve"].min() > 1.0  # the neutral body at the true parameters is not the rendered one
    arrays["gender"] = np.array(["n"] * n)  # the same people, rendered with the neutral model
    np.savez(folder / "synth_test.npz", **arrays)
    neutral_gt = mod.per_sample("model.ckpt", [folder], False, n, body_model_path=str(smpl_dir))
    assert neutral_gt["pve"].max() < 1e-3
