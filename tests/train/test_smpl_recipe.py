"""The paper recipe's module on SMPL (generated official-layout files): every loss of a step is finite,
the DSR prior is the official bare ``semantic_prior.npy`` layout, the checkpoint metadata names SMPL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dsrbody.train import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def paper_root(smpl_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("paper")
    (root / "smpl").symlink_to(smpl_dir, target_is_directory=True)
    rng = np.random.default_rng(0)
    p = rng.random((13776, 20)).astype(np.float32)
    np.save(root / "semantic_prior.npy", p / p.sum(1, keepdims=True))
    return root


def _batch(B: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(B, 49, 3, generator=g) * 2 - 1
    kp[..., 2] = 1.0
    parsing = torch.zeros(B, 224, 224, dtype=torch.uint8)
    parsing[:, 40:200, 80:150] = 5  # upper clothes
    parsing[:, 30:60, 100:130] = 13  # face
    parsing[:, 60:150, 60:80] = 14  # left arm
    return {
        "img": torch.randn(B, 3, 224, 224, generator=g),
        "keypoints": kp,
        "pose_3d": torch.cat([torch.randn(B, 24, 3, generator=g) * 0.3, torch.ones(B, 24, 1)], -1),
        "has_pose_3d": torch.ones(B, dtype=torch.bool),
        "pose": torch.randn(B, 72, generator=g) * 0.2,
        "betas": torch.randn(B, 10, generator=g),
        "has_smpl": torch.tensor([True, False])[:B],
        "parsing": parsing,
        "has_parsing": torch.ones(B, dtype=torch.bool),
        "num_valid": B,
    }


def test_paper_recipe_step_on_smpl(paper_root):
    from dsrbody.train.module import DSRModule, checkpoint_meta

    cfg = load_config(
        CONFIGS / "dsr_paper.yaml",
        [
            f"data.root={paper_root}",
            "model.init_checkpoint=null",
            "model.backbone=resnet18",
            "data.clean_parsing=false",
        ],
    )
    module = DSRModule(cfg)
    assert module.body.name == "smpl" and module.dsr_loss is not None
    assert not module.dsr_active(2) and module.dsr_active(3)  # DSR when epoch > 2
    batch = _batch()
    pred = module.model(batch["img"])
    total, means, dropped, out = module.compute_losses(batch, pred, dsr=True)
    assert torch.isfinite(total)
    assert {"keypoints_2d", "keypoints_3d", "pose", "betas", "camera", "dsr_mc", "dsr_c"} <= set(means)
    assert sum(dropped.values()) == 0
    total.backward()
    assert module.model.head.decshape.weight.grad is not None
    meta = checkpoint_meta(module)
    assert (
        meta["body"]["name"] == "smpl" and meta["body"]["shape_dim"] == 10 and meta["backbone"] == "resnet18"
    )


def test_gender_specific_ground_truth(smpl_dir):
    from dsrbody.body.factory import build_body_model
    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import batch_metrics, gender_models
    from dsrbody.losses.params import as_rotmat

    neutral = build_body_model("smpl", model_path=smpl_dir)
    models = gender_models(neutral, smpl_dir)
    assert set(models) == {0, 1}
    batch = _batch(2)
    batch["has_smpl"] = torch.ones(2, dtype=torch.bool)
    batch["gender"] = torch.tensor([0, 1])
    R = as_rotmat(batch["pose"], 24)
    # "predictions" equal to each sample's gendered ground truth, posed by the neutral evaluation model's
    # interface: their metrics are 0 with gender-specific GT and not without
    male = models[0](R[:1, 0], R[:1, 1:], batch["betas"][:1])
    female = models[1](R[1:, 0], R[1:, 1:], batch["betas"][1:])
    pred = {
        "rotmat": R,
        "shape": batch["betas"],
        "joints": torch.cat([male.joints, female.joints]),
        "vertices": torch.cat([male.vertices, female.vertices]),
        "rest_vertices": torch.cat([male.rest_vertices, female.rest_vertices]),
    }
    sel = eval_joints(neutral)
    with_gender = batch_metrics(pred, batch, neutral, sel, rerun=False, gt_models=models)
    without = batch_metrics(pred, batch, neutral, sel, rerun=False)
    for k in ("mpjpe", "pve", "pve_t"):
        assert with_gender[k].abs().max().item() < 1e-3
        assert without[k].min().item() > 1e-3
    assert gender_models(neutral, None) is None
