"""Helpers of the training tests (imported by tests/train and tests/cli)."""

from __future__ import annotations

from pathlib import Path

#: folder name under pytest's session base folder (tests/train and tests/cli share it: made once).
SYNTH_DIR = "dsrbody_synth16"


def make_synth16(base: Path) -> Path:
    """``base/dsrbody_synth16`` with ``synth_train.npz`` (16 samples) and ``synth_test.npz`` (4)."""
    from dsrbody.data.synth import SynthConfig, generate

    root = base / SYNTH_DIR
    if not (root / "synth_test.npz").is_file():
        generate(SynthConfig(num=16, split="train"), root, workers=1, resume=True, progress=False)
        generate(SynthConfig(num=4, split="test"), root, workers=1, resume=True, progress=False)
    return root


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """Overrides making ``configs/synth_dsr.yaml`` small: batch 4, no workers, no pictures."""
    return [
        f"data.root={root}",
        "data.batch_size=4",
        "data.val_batch_size=4",
        "data.num_workers=0",
        "trainer.progress_bar=false",
        "logging.images_every_n_steps=0",
        "logging.every_n_steps=1",
        *extra,
    ]


#: the shared tiny run of configs/synth_cpu.yaml (tests/models, tests/cli, tests/train use it: made once).
CPU_RUN_DIR = "dsrbody_tiny_cpu_run"
#: its length: validations (on the 4 test samples) after steps 2 and 4, at batch 4.
CPU_RUN_STEPS, CPU_RUN_VAL_EVERY, CPU_RUN_BATCH = 4, 2, 4


def cpu_recipe_root(synth16: Path) -> Path:
    """A data root with the layout of the synthetic CPU recipes (every training folder that a
    ``configs/synth_*.yaml`` names, e.g. ``train128/``, ``train128b/``, ``train128_hard/``): each the
    16-sample set."""
    import yaml

    names = set()
    for config in sorted((Path(__file__).resolve().parents[2] / "configs").glob("synth_*.yaml")):
        data = yaml.safe_load(config.read_text()).get("data") or {}
        names |= {str(t["img_dir"]).replace("${data.root}/", "") for t in data.get("train") or []}
    root = synth16.parent / "dsrbody_cpu_recipe_root"
    root.mkdir(exist_ok=True)
    for name in sorted(names):
        if not (root / name).exists():
            (root / name).symlink_to(synth16, target_is_directory=True)
    return root


def cpu_run_args(synth16: Path, out: Path, *extra: str) -> list[str]:
    """``dsrbody train --resume-if-any`` of configs/synth_cpu.yaml on the 16-sample set, validated (and
    tested) on its 4 test samples every CPU_RUN_VAL_EVERY steps, CPU_RUN_STEPS steps, no pictures."""
    config = Path(__file__).resolve().parents[2] / "configs" / "synth_cpu.yaml"
    test = [f"data.{s}.0.{k}={v}" for s in ("val", "test")
            for k, v in (("npz", synth16 / "synth_test.npz"), ("img_dir", synth16))]  # fmt: skip
    return [
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
        "--resume-if-any",
        *tiny_overrides(
            cpu_recipe_root(synth16),
            *test,
            f"data.batch_size={CPU_RUN_BATCH}",
            f"trainer.max_steps={CPU_RUN_STEPS}",
            f"trainer.val_every_n_steps={CPU_RUN_VAL_EVERY}",
            "trainer.checkpoint_every_n_steps=0",
            "optim.warmup_steps=1",
            "optim.lr=1e-3",
            *extra,
        ),
    ]


def make_cpu_run(base: Path) -> Path:
    """``base/dsrbody_tiny_cpu_run``: the output folder of a CPU_RUN_STEPS-step ``dsrbody train`` run of
    configs/synth_cpu.yaml (config.yaml, checkpoints/last.ckpt and best.ckpt, csv/version_0), made once
    per session through the CLI (``--resume-if-any`` on an empty folder: a fresh start)."""
    from dsrbody.cli import main

    out = base / CPU_RUN_DIR
    if not (out / "checkpoints" / "last.ckpt").is_file():
        synth16 = make_synth16(base)
        if main(cpu_run_args(synth16, out)) != 0:
            raise RuntimeError(f"the tiny CPU run in {out} failed")
    return out
