"""Byte-reproducible, atomic file writers for the synthetic datasets.

``numpy.savez`` stamps each member with the current time, so two runs with the same seed would
differ in bytes; :func:`save_npz_deterministic` writes the same ``.npz`` layout with a fixed
timestamp. Images are written through OpenCV with fixed encoder settings.

Every writer is atomic: the bytes go to a temporary file in the destination folder, named by
:func:`temp_path` (``.<name>.tmp<pid><suffix>``, hidden, with the final suffix so that format
sniffing writers work), which is then renamed over the final name with :func:`os.replace`. A
crash or a full disk therefore never leaves a truncated file under a final name; a failed write
removes its temporary file, and a killed process may leave one behind, which
:func:`temp_target` recognises so that a resumed run can remove it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "save_npz_deterministic",
    "write_jpeg",
    "write_png_rgb",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_path",
    "temp_path",
    "temp_target",
]

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)(?:\.[^.]*)?$")


def temp_path(path: str | Path) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under (same folder, same suffix)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")


def temp_target(name: str) -> tuple[str, int] | None:
    """``(final file name, writer's process id)`` if ``name`` is a :func:`temp_path` name, else ``None``."""
    m = _TEMP_RE.match(name)
    return (m["name"], int(m["pid"])) if m else None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Context manager yielding a temporary path to write; on success it is renamed to ``path``.

    On any exception (including ``KeyboardInterrupt``) the temporary file is removed and ``path``
    is left as it was (absent or the previous complete file).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no half-written files)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_npz_deterministic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed ``.npz`` (readable by ``np.load``) with fixed member timestamps.

    Args:
        path: output file (written atomically).
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
    """Write an ``(H, W, 3)`` uint8 RGB image as JPEG (baseline, fixed quality, no metadata), atomically."""
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path} as JPEG")
    atomic_write_bytes(path, enc.tobytes())


def write_png_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG (lossless; palette-colour parsing maps), atomically."""
    ok, enc = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, enc.tobytes())
