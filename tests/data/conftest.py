"""Fixture building tiny datasets in the exact SPIN/DSR layout (``.npz`` + image folder + grph_sequences)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from spin_files import spin_arrays, write_image, write_parsing


@pytest.fixture
def make_dataset(tmp_path):
    """Factory ``make_dataset(n=4, filename="train.npz", drop=(), **overrides) -> (npz, img_dir, arrays)``.

    Writes ``n`` JPEG images (120x160, smooth random colours) under ``img_dir/images`` and a parsing map
    per image under ``img_dir/grph_sequences/images`` (colour PNG for even, index PNG for odd samples).
    ``drop`` removes keys from the file; ``overrides`` replace arrays.
    """

    def make(n: int = 4, filename: str = "train.npz", drop=(), seed: int = 0, **overrides):
        rng = np.random.default_rng(seed)
        arrays = spin_arrays(n, rng)
        arrays.update(overrides)
        img_dir = tmp_path / "imgs"
        for i, name in enumerate(arrays["imgname"]):
            base = cv2.resize(rng.integers(0, 256, (6, 8, 3)).astype(np.uint8), (160, 120))
            write_image(img_dir / name, base)
            labels = np.zeros((120, 160), np.uint8)
            labels[30:90, 40:70] = 14
            labels[30:90, 90:120] = 5
            write_parsing(
                img_dir / "grph_sequences" / Path(name).with_suffix(".png"), labels, colour=i % 2 == 0
            )
        for k in drop:
            arrays.pop(k)
        npz = tmp_path / filename
        np.savez(npz, **arrays)
        return npz, img_dir, arrays

    return make
