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
