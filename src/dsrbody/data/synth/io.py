"""Byte-reproducible file writers for the synthetic datasets.

``numpy.savez`` stamps each member with the current time, so two runs with the same seed would
differ in bytes; :func:`save_npz_deterministic` writes the same ``.npz`` layout with a fixed
timestamp. Images are written through OpenCV with fixed encoder settings.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np

__all__ = ["save_npz_deterministic", "write_jpeg", "write_png_rgb", "atomic_write_bytes"]

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no half-written files)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save_npz_deterministic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed ``.npz`` (readable by ``np.load``) with fixed member timestamps.

    Args:
        path: output file.
        arrays: name -> array; object arrays are refused (``np.load`` would need pickles).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            arr = np.asanyarray(arrays[key])
            if arr.dtype == object:
                raise TypeError(
                    f"{path}: array {key!r} has dtype object; store strings as fixed-width unicode"
                )
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    atomic_write_bytes(path, buf.getvalue())


def write_jpeg(path: str | Path, rgb: np.ndarray, quality: int = 92) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image as JPEG (baseline, fixed quality, no metadata)."""
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path} as JPEG")
    atomic_write_bytes(path, enc.tobytes())


def write_png_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG (lossless; palette-colour parsing maps)."""
    ok, enc = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, enc.tobytes())
