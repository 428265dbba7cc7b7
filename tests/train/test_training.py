"""End-to-end training on a 16-sample synthetic set: every loss on, the loss goes down, a killed run
resumes from its last checkpoint with the right step count, pictures are logged, bad samples are
skipped and counted, checkpoints describe themselves and refuse another body model or backbone."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from train_testkit import tiny_overrides

from dsrbody.train import load_config
from dsrbody.train.run import run_training

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
pytestmark = pytest.mark.slow


class Kill(Callback):
    """Stops the run like a crash when ``global_step`` reaches ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise RuntimeError("simulated kill")


class Probe(Callback):
    """Records (global_step, epoch) of every trained batch, and the loss on a fixed batch (eval mode,
    every loss on) at the start and the end of the run."""

    def __init__(self, batch):
        self.batch = batch
        self.steps: list[tuple[int, int]] = []
        self.loss: dict[str, float] = {}
        self.panel = None

    def _loss(self, m) -> float:
        was = m.training
        m.eval()
        with torch.no_grad():
            pred = m.model(self.batch["img"])
            total, means, _, _ = m.compute_losses(self.batch, pred, dsr=True)
        m.train(was)
        assert {
            "keypoints_2d",
            "keypoints_3d",
            "pose",
            "betas",
            "vertices",
            "dsr_mc",
            "dsr_c",
            "silhouette",
        } <= set(means)
        return float(total)

    def on_train_start(self, trainer, pl_module):
        self.loss["start"] = self._loss(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append((trainer.global_step, trainer.current_epoch))

    def on_train_end(self, trainer, pl_module):
        self.loss["end"] = self._loss(pl_module)
        self.panel = pl_module.last_panel


def _fixed_batch(cfg):
    from dsrbody.data import collate_samples
    from dsrbody.train.build import build_dataset

    ds = build_dataset(cfg.data.train[0], cfg, augment=False)
    return collate_samples([ds[i] for i in range(8)])


@pytest.fixture(scope="module")
def resumed_run(synth16, tmp_path_factory):
    """20 steps with every loss on, killed at step 7 (last checkpoint at step 5), resumed to 20."""
    out = tmp_path_factory.mktemp("train_resume")
    cfg = load_config(
        CONFIGS / "synth_dsr.yaml",
        tiny_overrides(
            synth16,
            "data.val=[]",
            "trainer.max_steps=20",
            "trainer.max_epochs=100",
            "trainer.checkpoint_every_n_steps=5",
            "loss.start_dsr=-1",
            "loss.weights.vertices=1.0",
            "loss.weights.silhouette=0.1",
            "optim.lr=3e-4",
            "logging.images_every_n_steps=10",
        ),
    )
    batch = _fixed_batch(cfg)
    first = Probe(batch)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_training(cfg, out_dir=out, callbacks=[Kill(7), first])
    killed_ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    second = Probe(batch)
    res = run_training(cfg, out_dir=out, resume=True, callbacks=[second])
    return {"out": out, "cfg": cfg, "first": first, "second": second, "res": res, "killed": killed_ckpt}


def _csv_rows(out: Path) -> list[dict]:
    rows = []
    for f in sorted((out / "csv").glob("version_*/metrics.csv")):
        rows += list(csv.DictReader(open(f)))
    return rows


def test_every_loss_lowers_the_loss(resumed_run):
    rows = _csv_rows(resumed_run["out"])
    logged = {k for r in rows for k, v in r.items() if v}
    for term in (
        "keypoints_2d",
        "keypoints_3d",
        "pose",
        "betas",
        "vertices",
        "dsr_mc",
        "dsr_c",
        "silhouette",
    ):
        assert f"train/{term}_step" in logged
    epoch_loss = {int(r["epoch"]): float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")}
    assert sorted(epoch_loss) == [0, 1, 2, 3, 4]
    assert epoch_loss[4] < epoch_loss[0]
    # the probe saw every term at the start (initial weights) and at the end
    assert set(resumed_run["first"].loss) == {"start"} and set(resumed_run["second"].loss) == {"start", "end"}


def test_resume_continues_from_the_checkpoint_with_the_right_step(resumed_run):
    first, second, res = resumed_run["first"], resumed_run["second"], resumed_run["res"]
    assert [s for s, _ in first.steps] == list(range(7))  # steps 0..6 trained, killed at the start of 7
    assert resumed_run["killed"]["global_step"] == 5
    assert resumed_run["killed"]["dsrbody"]["body"]["name"] == "anny"
    steps = [s for s, _ in second.steps]
    assert steps[0] == 5 and steps == list(range(5, 20))
    assert second.steps[0][1] == 1  # step 5 is in the second epoch (4 batches of 4 per epoch)
    assert res.global_step == 20
    final = torch.load(res.last, map_location="cpu", weights_only=False)
    assert final["global_step"] == 20


def test_checkpoint_is_self_describing_and_loads(resumed_run):
    from dsrbody.models import build_regressor, load_regressor_checkpoint
    from dsrbody.train.build import build_body

    ck = torch.load(resumed_run["res"].last, map_location="cpu", weights_only=False)
    meta = ck["dsrbody"]
    assert meta["backbone"] == "resnet18" and meta["body"]["topology"] == "notoes_collapse10pc"
    assert meta["body"]["num_joints"] == 24 and meta["body"]["shape_dim"] == 6
    assert meta["config"]["loss"]["weights"]["silhouette"] == 0.1
    assert all(k.startswith(("model.backbone.", "model.head.")) for k in ck["state_dict"])
    reg = build_regressor(build_body(resumed_run["cfg"], for_eval=True), backbone="resnet18")
    report = load_regressor_checkpoint(reg, resumed_run["res"].last)
    assert not report.missing and not report.unexpected


def test_checkpoint_of_another_body_or_backbone_is_refused(resumed_run):
    from dsrbody.train.module import check_checkpoint, read_checkpoint_meta

    path = resumed_run["res"].last
    meta = read_checkpoint_meta(path)
    cfg = load_config(CONFIGS / "synth_dsr.yaml", ["body.name=smpl"])
    with pytest.raises(ValueError, match=r"trained with body model 'anny' and backbone 'resnet18'.*'smpl'"):
        check_checkpoint(meta, cfg, path)
    cfg = load_config(CONFIGS / "synth_dsr.yaml", ["model.backbone=resnet50"])
    with pytest.raises(ValueError, match=r"last\.ckpt: checkpoint was trained with .*'resnet50'"):
        check_checkpoint(meta, cfg, path)
    # starting a run from it with another backbone is refused too
    from dsrbody.train.build import build_body, build_model

    cfg = load_config(
        CONFIGS / "synth_dsr.yaml", ["model.backbone=resnet34", f"model.init_checkpoint={path}"]
    )
    with pytest.raises(ValueError, match="backbone 'resnet34'"):
        build_model(cfg, build_body(cfg))
    # resuming into another backbone is refused before anything is built
    cfg = load_config(CONFIGS / "synth_dsr.yaml", ["model.backbone=resnet34", f"data.root={path.parent}"])
    with pytest.raises(ValueError, match="backbone 'resnet34'"):
        run_training(cfg, out_dir=resumed_run["out"], resume=True)


def test_resuming_with_another_number_of_parameter_groups_is_refused(resumed_run):
    """The run had one Adam group (optim.backbone_lr_ratio 1); a ratio of 0.5 gives two: a one-line
    error naming the key, before anything is trained or written."""
    from dsrbody.train.config import ConfigError

    cfg = OmegaConf.merge(resumed_run["cfg"], {"optim": {"backbone_lr_ratio": 0.5}})
    last = resumed_run["res"].last
    stamp = last.stat().st_mtime_ns
    with pytest.raises(
        ConfigError, match=r"1 parameter group\(s\), this recipe gives 2 \(optim.backbone_lr_ratio=0.5"
    ):
        run_training(cfg, out_dir=resumed_run["out"], resume=True)
    assert last.stat().st_mtime_ns == stamp


def test_training_pictures_are_logged(resumed_run):
    panel = resumed_run["second"].panel
    assert panel is not None and panel.dtype.name == "uint8"
    assert panel.shape[1] == 6 * 224 and panel.shape[0] >= 224
    # the MC panel (4th) shows the rendered map in red and the mask in green: both present
    mc = panel[:224, 3 * 224 : 4 * 224].astype(int)
    assert mc[..., 0].max() > 100 and mc[..., 1].max() > 100
    events = list((resumed_run["out"] / "tensorboard").rglob("events.out.tfevents.*"))
    assert events


def test_corrupt_image_is_skipped_and_counted(synth16, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    data = tmp_path / "data"
    shutil.copytree(synth16, data)
    (data / "images" / "train_000002.jpg").write_bytes(b"not a jpeg")
    cfg = load_config(
        CONFIGS / "synth_dsr.yaml",
        tiny_overrides(
            data, "data.val=[]", "data.epoch_length=4", "trainer.max_steps=1", "data.augment=false"
        ),
    )
    run_training(cfg, out_dir=tmp_path / "out")
    rows = _csv_rows(tmp_path / "out")
    skipped = [float(r["data/train_skipped"]) for r in rows if r.get("data/train_skipped")]
    valid = [float(r["train/num_valid"]) for r in rows if r.get("train/num_valid")]
    assert skipped == [1.0] and valid == [3.0]
    assert "synth_train: 1 x unreadable image" in caplog.text  # the epoch summary names it


def test_nonfinite_sample_is_dropped_counted_and_does_not_poison_the_batch(synth16):
    from dsrbody.train.module import DSRModule

    cfg = load_config(CONFIGS / "synth_dsr.yaml", tiny_overrides(synth16, "loss.start_dsr=1"))
    module = DSRModule(cfg)
    assert not module.dsr_active(0) and not module.dsr_active(1) and module.dsr_active(2)
    batch = _fixed_batch(cfg)
    torch.manual_seed(0)
    module.eval()
    with torch.no_grad():
        pred = module.model(batch["img"])
        clean, means, dropped, _ = module.compute_losses(batch, pred, dsr=True)
        assert all(v == 0 for v in dropped.values()) and torch.isfinite(clean)
        bad = dict(pred)
        bad["keypoints_2d"] = pred["keypoints_2d"].clone()
        bad["keypoints_2d"][3] = float("nan")
        bad["vertices_cam"] = pred["vertices_cam"].clone()
        bad["vertices_cam"][5] = float("inf")
        total, means2, dropped2, _ = module.compute_losses(batch, bad, dsr=True)
    assert torch.isfinite(total)
    assert dropped2["keypoints_2d"] == 1 and dropped2["dsr_mc"] == 1 and dropped2["dsr_c"] == 1
    # the 2D term is the mean over the 7 remaining samples
    keep = [i for i in range(8) if i != 3]

    def take(d):
        out = {}
        for k, v in d.items():
            if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == 8:
                out[k] = v[keep]
            elif isinstance(v, list) and len(v) == 8:
                out[k] = [v[i] for i in keep]
            else:
                out[k] = v
        return out

    sub, sub_pred = take(batch), take(pred)
    with torch.no_grad():
        _, means3, _, _ = module.compute_losses(sub, sub_pred, dsr=False)
    assert means2["keypoints_2d"].item() == pytest.approx(means3["keypoints_2d"].item(), rel=1e-5)


class WeightProbe(Callback):
    """Records, per trained batch, its size, whether the optimiser step changed the weights, and whether
    they stayed finite."""

    def __init__(self):
        self.before = None
        self.steps: list[tuple[int, bool, bool]] = []

    def _weights(self, m) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in m.model.head.parameters()]).clone()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = self._weights(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        after = self._weights(pl_module)
        self.steps.append(
            (int(batch["num_valid"]), not torch.equal(after, self.before), bool(after.isfinite().all()))
        )


def test_nan_samples_leave_the_batch_and_the_others_still_train(synth16, tmp_path, capsys):
    """4 of 12 samples with a NaN 2D keypoint or 3D joint: every step is applied (weights change, stay
    finite) from the other samples; the skips are counted per reason and the summary says so. A NaN pose
    only takes that sample's pose/shape targets away (it trains on the rest), counted too."""
    import numpy as np

    from dsrbody.cli.train import run as train_cli

    data = tmp_path / "data"
    shutil.copytree(synth16, data)
    with np.load(data / "synth_train.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["part"] = arrays["part"].astype(np.float64)
    arrays["S"] = arrays["S"].astype(np.float64)
    arrays["part"][[1, 5], 3, 0] = np.nan
    arrays["part"][9, 7, 2] = np.inf
    arrays["S"][[2], 0, 1] = np.nan
    assert arrays["has_params"][10] == 1
    arrays["pose"] = arrays["pose"].astype(np.float64)
    arrays["pose"][10, 4] = np.nan
    np.savez(data / "synth_train.npz", **arrays)
    cfg = load_config(
        CONFIGS / "synth_dsr.yaml",
        tiny_overrides(
            data,
            "data.val=[]",
            "data.epoch_length=12",
            "trainer.max_steps=3",
            "data.augment=false",
            "loss.start_dsr=-1",
        ),  # fmt: skip
    )
    probe = WeightProbe()
    res = run_training(cfg, out_dir=tmp_path / "out", callbacks=[probe])
    assert res.global_step == 3 and len(probe.steps) == 3
    assert all(changed and finite for _, changed, finite in probe.steps), probe.steps
    assert res.skipped_steps == {}
    assert res.skipped_samples == {"keypoints_nonfinite": 3, "joints3d_nonfinite": 1}
    assert res.partial_samples == {"params_target_nonfinite": 1}
    text = res.skip_summary()
    assert "1 x non-finite pose/shape in the file (no pose/shape loss)" in text
    assert (
        "skipped 0 step(s)" in text and "3 x non-finite 2D keypoints" in text and "1 x non-finite 3D" in text
    )
    rows = _csv_rows(tmp_path / "out")
    valid = [float(r["train/num_valid"]) for r in rows if r.get("train/num_valid")]
    assert sum(valid) == 8.0
    # the command prints the same summary
    import argparse

    args = argparse.Namespace(
        config=str(CONFIGS / "synth_dsr.yaml"), out=str(tmp_path / "out2"), resume=False, resume_if_any=False,
        overrides=tiny_overrides(
            data, "data.val=[]", "data.epoch_length=12", "trainer.max_steps=1", "data.augment=false"
        ),
    )  # fmt: skip
    assert train_cli(args) == 0
    assert "skipped 0 step(s)" in capsys.readouterr().out


def test_a_step_is_skipped_only_when_no_valid_sample_remains(synth16, tmp_path):
    import numpy as np

    data = tmp_path / "data"
    shutil.copytree(synth16, data)
    with np.load(data / "synth_train.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["part"] = np.full(arrays["part"].shape, np.nan)
    np.savez(data / "synth_train.npz", **arrays)
    cfg = load_config(
        CONFIGS / "synth_dsr.yaml",
        tiny_overrides(
            data, "data.val=[]", "data.epoch_length=8", "trainer.max_epochs=1", "data.augment=false"
        ),
    )
    probe = WeightProbe()
    res = run_training(cfg, out_dir=tmp_path / "out", callbacks=[probe])
    assert [changed for _, changed, _ in probe.steps] == [False, False]  # nothing reached the weights
    assert res.skipped_steps == {"no_valid_sample": 2}
    assert res.skipped_samples == {"keypoints_nonfinite": 8}
    assert "skipped 2 step(s): 2 x no valid sample in the batch" in res.skip_summary()


def test_a_training_file_without_2d_keypoints_is_refused_when_the_set_is_built(synth16, tmp_path):
    """Without ``part`` a file would train with no 2D keypoint loss and no warning: building the training
    set names the file, the key and what needs it; a recipe without the 2D keypoint term accepts it."""
    import numpy as np

    from dsrbody.train.build import build_train_set, training_keys

    data = tmp_path / "data"
    shutil.copytree(synth16, data)
    with np.load(data / "synth_train.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "part"}
    np.savez(data / "synth_train.npz", **arrays)
    cfg = load_config(CONFIGS / "synth_dsr.yaml", tiny_overrides(data, "data.val=[]"))
    assert training_keys(cfg) == ("part",)
    with pytest.raises(ValueError) as e:
        build_train_set(cfg)
    msg = str(e.value)
    assert (
        "\n" not in msg and str(data / "synth_train.npz") in msg and "'part'" in msg and "2D keypoint" in msg
    )
    off = load_config(
        CONFIGS / "synth_dsr.yaml", tiny_overrides(data, "data.val=[]", "loss.weights.keypoints_2d=0")
    )
    assert training_keys(off) == () and len(build_train_set(off)) > 0
