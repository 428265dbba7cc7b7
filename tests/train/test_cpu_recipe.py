"""The CPU recipe (configs/synth_cpu.yaml) on the 16-sample synthetic set: 96 px crops with the focal
length that follows them, a channels-last ResNet-18, the cosine learning-rate schedule step by step,
and the metric shape term ``rest_vertices`` logged finite."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from train_testkit import tiny_overrides

from dsrbody.train import load_config
from dsrbody.train.module import cosine_schedule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MAX_STEPS, WARMUP, LR, MIN_RATIO = 5, 2, 1e-3, 0.1


def cpu_root(synth16: Path) -> Path:
    """A data root with the recipe's layout (every training folder it names), each the 16-sample set."""
    from train_testkit import cpu_recipe_root

    return cpu_recipe_root(synth16)


def cpu_config(synth16: Path, *extra: str):
    """configs/synth_cpu.yaml on the 16-sample set: its two training sets as they are, batch 4, no
    validation, no workers."""
    return load_config(
        CONFIGS / "synth_cpu.yaml",
        tiny_overrides(
            cpu_root(synth16),
            "data.val=[]",
            "data.test=[]",
            "trainer.val_every_n_steps=0",
            "trainer.checkpoint_every_n_steps=0",
            *extra,
        ),
    )


class LrProbe(Callback):
    """Records (global_step, learning rate) at the start of every trained batch."""

    def __init__(self):
        self.lrs: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))


@pytest.fixture(scope="module")
def cosine_run(synth16, tmp_path_factory):
    from dsrbody.train.run import run_training

    out = tmp_path_factory.mktemp("cpu_recipe")
    cfg = cpu_config(
        synth16,
        f"trainer.max_steps={MAX_STEPS}",
        "optim.schedule=cosine",
        f"optim.warmup_steps={WARMUP}",
        f"optim.lr={LR}",
        f"optim.min_lr_ratio={MIN_RATIO}",
    )
    probe = LrProbe()
    res = run_training(cfg, out_dir=out, callbacks=[probe])
    rows = []
    for f in sorted((out / "csv").glob("version_*/metrics.csv")):
        rows += list(csv.DictReader(open(f)))
    return {"cfg": cfg, "res": res, "lrs": probe.lrs, "rows": rows}


def test_recipe_settings(synth16):
    cfg = cpu_config(synth16)
    assert cfg.model.img_res == 96 and cfg.model.channels_last and cfg.model.backbone == "resnet18"
    assert cfg.optim.schedule == "cosine" and cfg.loss.weights.rest_vertices > 0
    import yaml

    recipe = yaml.safe_load((CONFIGS / "synth_cpu.yaml").read_text())["data"]["train"]
    assert cfg.data.batch_size == 4 and [d.ratio for d in cfg.data.train] == [t["ratio"] for t in recipe]
    assert len(recipe) >= 2 and sum(t["ratio"] for t in recipe) == pytest.approx(1.0)


def test_learning_rate_follows_the_cosine_schedule(cosine_run):
    lrs = cosine_run["lrs"]
    assert [s for s, _ in lrs] == list(range(MAX_STEPS))
    f = cosine_schedule(MAX_STEPS, WARMUP, MIN_RATIO)
    for step, lr in lrs:
        assert lr == pytest.approx(LR * f(step), rel=1e-9), step
    got = [lr for _, lr in lrs]
    assert got[0] == pytest.approx(LR / WARMUP)  # warm-up: linear from LR / WARMUP ...
    assert got[WARMUP - 1] == pytest.approx(LR)  # ... to the peak at its last step
    assert all(a >= b for a, b in zip(got[WARMUP - 1 :], got[WARMUP:]))  # then decreasing
    assert got[-1] > LR * MIN_RATIO  # the last trained step is before the end of the decay
    assert cosine_run["res"].global_step == MAX_STEPS


def test_rest_vertices_term_is_logged_finite(cosine_run):
    rows = cosine_run["rows"]
    values = [float(r["train/rest_vertices_step"]) for r in rows if r.get("train/rest_vertices_step")]
    assert len(values) == MAX_STEPS
    assert all(math.isfinite(v) and 0 < v < 1.0 for v in values)  # metres: a body is not 1 m off
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert losses and all(math.isfinite(v) for v in losses)


def test_module_crops_renders_and_weights_at_the_recipe_resolution(synth16):
    from dsrbody.data import collate_samples
    from dsrbody.losses import LossWeights
    from dsrbody.train.build import build_dataset
    from dsrbody.train.module import DSRModule

    cfg = cpu_config(synth16, "loss.weights.dsr_mc=0.1")
    module = DSRModule(cfg)
    assert module.model.img_res == 96 and module.model.focal == pytest.approx(5000.0 * 96 / 224)
    assert module.dsr_loss is not None and module.dsr_loss.img_res == 96
    assert module.dsr_loss.focal == pytest.approx(module.model.focal)
    conv = module.model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    ds = build_dataset(cfg.data.train[0], cfg, augment=False)
    batch = collate_samples([ds[i] for i in range(4)])
    assert tuple(batch["img"].shape) == (4, 3, 96, 96)
    assert tuple(batch["parsing"].shape[-2:]) == (96, 96)
    module.eval()
    with torch.no_grad():
        pred = module(batch["img"])
        total, means, dropped, _ = module.compute_losses(batch, pred, dsr=True)
    assert torch.isfinite(total) and torch.isfinite(means["rest_vertices"])
    assert 0 < means["rest_vertices"].item() < 1.0 and dropped["rest_vertices"] == 0
    assert "dsr_mc" in means and torch.isfinite(means["dsr_mc"])
    # the term is the mean rest-pose distance to the ground truth's body, in metres
    gt = module.loss_targets(batch)
    assert gt["rest_vertices"].shape == pred["rest_vertices"].shape
    ref = (pred["rest_vertices"] - gt["rest_vertices"]).norm(dim=-1).mean(1)
    valid = gt["has_smpl"].bool()
    assert valid.any()
    assert means["rest_vertices"].item() == pytest.approx(ref[valid].mean().item(), rel=1e-4)
    # weight 0: the term (and its ground truth) is not computed
    module.weights = LossWeights(**{**module.weights.as_dict(), "rest_vertices": 0.0})
    assert "rest_vertices" not in module.loss_targets(batch)
    with torch.no_grad():
        _, means0, _, _ = module.compute_losses(batch, pred, dsr=False)
    assert "rest_vertices" not in means0


def test_module_targets_are_the_shared_targets(synth16):
    """The training step takes its targets from dsrbody.losses.targets (as fitting does), with the
    recipe's body model, weights, crop size (96 px), parsing cleaning and DSR-MC form."""
    from dsrbody.data import collate_samples
    from dsrbody.losses.targets import dsr_targets, spin_targets
    from dsrbody.train.build import build_dataset
    from dsrbody.train.module import DSRModule

    weights = ("loss.weights.dsr_mc=0.1", "loss.weights.vertices=1.0")
    cfg = cpu_config(synth16, *weights, "data.train.0.parsing=true")
    module = DSRModule(cfg)
    batch = collate_samples([build_dataset(cfg.data.train[0], cfg, augment=False)[i] for i in range(4)])
    gt, ref = module.loss_targets(batch), spin_targets(batch, module.body, module.weights)
    assert {"keypoints", "pose_3d", "pose", "betas", "has_smpl", "vertices", "rest_vertices"} <= set(gt)
    assert set(gt) == set(ref) and all(torch.equal(gt[k], ref[k]) for k in gt)
    fields = ("mc_present", "mc_mask", "merged", "class_weights", "distance", "has_parsing")

    def same(a, b) -> bool:
        return all(
            (getattr(a, k) is None and getattr(b, k) is None) or torch.equal(getattr(a, k), getattr(b, k))
            for k in fields
        )

    assert same(module.dsr_targets(batch), dsr_targets(batch, 96, clean=True))
    assert not same(module.dsr_targets(batch), dsr_targets(batch, 224, clean=True))  # the crop's size counts
    module.cfg.data.clean_parsing, module.cfg.loss.mc_form = False, "distance"
    assert same(module.dsr_targets(batch), dsr_targets(batch, 96, clean=False, with_distance=True))


def test_cosine_needs_max_steps(synth16):
    from dsrbody.train.module import DSRModule

    module = DSRModule(cpu_config(synth16, "trainer.max_steps=-1"))
    with pytest.raises(ValueError, match="needs trainer.max_steps > 0"):
        module.configure_optimizers()
    module.cfg.optim.schedule = "linear"
    with pytest.raises(ValueError, match="'constant' or 'cosine'"):
        module.configure_optimizers()
    module.cfg.optim.schedule = "constant"
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == module.cfg.optim.lr


def test_training_picture_places_the_gt_body_in_the_96px_crop(synth16, monkeypatch):
    """Without the crop camera in the batch (SPIN files), the picture's ground-truth mesh is placed by
    fitting its joints to the keypoints in the crop's pixels: the principal point is the 96 px crop's."""
    import dsrbody.train.visual as visual
    from dsrbody.data import collate_samples
    from dsrbody.eval.synth_eval import gt_body
    from dsrbody.geometry.cameras import denormalize_keypoints, perspective_projection
    from dsrbody.train.build import build_dataset
    from dsrbody.train.module import DSRModule

    cfg = cpu_config(synth16)
    module = DSRModule(cfg).eval()
    ds = build_dataset(cfg.data.train[0], cfg, augment=False)
    batch = collate_samples([ds[i] for i in range(2)])
    for k in ("crop_cam_t", "crop_focal_length", "crop_principal_point"):
        batch.pop(k, None)
    seen = {}
    monkeypatch.setattr(visual, "training_panel", lambda *a, **kw: seen.update(kw))
    with torch.no_grad():
        pred = module(batch["img"])
        module.make_panel(batch, pred, {}, 0)
        sel = torch.tensor([True, False])
        g = gt_body(module.body, batch, sel)
    t = seen["gt_vertices_cam"][0] - g.vertices[0, 0]  # the translation the picture used
    uv = perspective_projection(g.joints[:, 25:], t[None], focal=module.model.focal, principal_point=(48, 48))
    kp = denormalize_keypoints(batch["keypoints"][:1].float(), 96)[:, 25:]
    conf = (kp[..., 2] * module.kp_conf[25:]) > 0
    err = (uv - kp[..., :2]).norm(dim=-1)[conf]
    assert conf.sum() >= 10 and err.mean() < 2.0  # pixels (the wrong principal point: ~90 px)
