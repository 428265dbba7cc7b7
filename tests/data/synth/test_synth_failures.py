"""Generation that fails cleanly: a dead worker, a full disk, a sample that raises.

Each failure is one error line naming the folder or file, leaves no truncated file under a final
name and no chunk marker for an incomplete chunk, and ``--resume`` then finishes the split with the
bytes of an uninterrupted run. Tiny splits (16 samples of 48 px) keep these fast.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from dsrbody.cli import main
from dsrbody.data.synth import SynthConfig, generate
from dsrbody.data.synth import generator as gen
from dsrbody.data.synth.io import temp_path, temp_target

N, RES, SEED = 16, 48, 5


def _args(out: Path, *extra: str, num: int = N) -> list[str]:
    return ["synth", "--out", str(out), "--num", str(num), "--res", str(RES), "--seed", str(SEED), "--quiet",
            *extra]  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    for k in ("README.md", "synth_train.json"):  # they record the command line
        files.pop(k, None)
    return files


def _temps(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if temp_target(p.name) is not None]


def _assert_no_truncated_files(partial: Path, reference: Path) -> None:
    """Every file under a final name is complete: it is byte-identical to the uninterrupted run's."""
    ref = _files(reference)
    for name, data in _files(partial).items():
        if name.startswith(".synth_train_parts/") or temp_target(Path(name).name) is not None:
            continue  # chunk markers: checked through the resumed merge; temporaries: not final names
        assert data == ref[name], f"{name} differs from the uninterrupted run's (truncated?)"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dsrbody synth: error: ")
    return err


@pytest.fixture(scope="module")
def reference(tmp_path_factory, anny_body):
    out = tmp_path_factory.mktemp("synth_ref")
    generate(SynthConfig(num=N, seed=SEED, res=RES), out, workers=1, progress=False)
    return out


def test_dead_worker_is_a_clean_error_and_resume_completes(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ds"
    monkeypatch.setenv(gen.FAULT_ENV, "exit@9")  # the worker making chunk [8, 16) dies at sample 9
    result = {}
    run = threading.Thread(
        target=lambda: result.setdefault("rc", main(_args(out, "--workers", "2"))),
        daemon=True,
    )
    run.start()
    run.join(timeout=240)
    assert not run.is_alive(), "generation hung after a worker died"
    assert result["rc"] == 1
    line = _one_error_line(capsys)
    assert str(out) in line and "a generator worker died" in line and f"of {N} samples" in line
    assert "--resume" in line
    assert not (out / "synth_train.npz").exists()
    assert not gen._chunk_file(out, "train", 8).exists()  # the dead worker's chunk is not counted
    _assert_no_truncated_files(out, reference)

    # a temporary file a killed writer left behind is removed by the resumed run
    stray = temp_path(out / "images" / "train_000010.jpg")
    stray.write_bytes(b"\xff\xd8 half a jpeg")
    monkeypatch.delenv(gen.FAULT_ENV)
    assert main(_args(out, "--workers", "2", "--resume")) == 0  # workers do not change the bytes
    assert not stray.exists() and not _temps(out)
    assert _files(out) == _files(reference)


class _DiskFull:
    """A file whose write stores half the data, then fails as on a full disk."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(name)``: writing the file called ``name`` stores part of it, then fails with ENOSPC."""
    import dsrbody.data.synth.io as synth_io
    import dsrbody.semantics.parsing as parsing

    real_open, real_write_parsing = open, parsing.write_parsing

    def arm(name: str) -> None:
        def is_target(path) -> bool:
            t = temp_target(Path(path).name)
            return t is not None and t[0] == name

        def full_open(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            return _DiskFull(f) if "w" in mode and is_target(file) else f

        def full_write_parsing(path, labels, **kwargs):
            real_write_parsing(path, labels, **kwargs)
            if is_target(path):  # part of a PNG on disk, then the disk is full
                Path(path).write_bytes(Path(path).read_bytes()[:100])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(synth_io, "open", full_open, raising=False)
        monkeypatch.setattr(parsing, "write_parsing", full_write_parsing)

    return arm


@pytest.mark.parametrize(
    "target",
    ["images/train_000011.jpg", "grph_sequences/images/train_000012.png", ".synth_train_parts/00000008.npz"],
)
def test_full_disk_is_one_line_no_marker(reference, tmp_path, monkeypatch, capsys, disk_full, target):
    out = tmp_path / "ds"
    disk_full(Path(target).name)
    assert main(_args(out, "--workers", "1")) == 1
    line = _one_error_line(capsys)
    assert str(out / target) in line and "disk is full" in line and "--resume" in line
    assert gen._chunk_file(out, "train", 0).exists()
    assert not gen._chunk_file(out, "train", 8).exists()  # the incomplete chunk has no marker
    assert not (out / target).exists() and not _temps(out)
    _assert_no_truncated_files(out, reference)

    monkeypatch.undo()
    assert main(_args(out, "--workers", "1", "--resume")) == 0
    assert _files(out) == _files(reference)


def test_full_disk_on_the_merged_file_keeps_the_chunks(anny_body, tmp_path, monkeypatch, capsys, disk_full):
    out = tmp_path / "ds"
    disk_full("synth_train.npz")
    assert main(_args(out, "--workers", "1", num=8)) == 1
    line = _one_error_line(capsys)
    assert str(out / "synth_train.npz") in line and "disk is full" in line
    assert gen._chunk_file(out, "train", 0).exists() and not (out / "synth_train.npz").exists()
    assert not _temps(out)
    monkeypatch.undo()
    assert main(_args(out, "--resume", num=8)) == 0
    assert len(np.load(out / "synth_train.npz")["imgname"]) == 8
    assert not (out / ".synth_train_parts").exists() and (out / "README.md").exists()


def test_a_failing_sample_is_named(anny_body, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(gen.FAULT_ENV, "raise@10")
    out = tmp_path / "ds"
    assert main(_args(out, "--workers", "1")) == 1
    line = _one_error_line(capsys)
    assert "sample 10 of the 'train' split could not be made" in line and gen.FAULT_ENV in line
    assert gen._chunk_file(out, "train", 0).exists() and not gen._chunk_file(out, "train", 8).exists()
