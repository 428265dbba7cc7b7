"""``dsrbody fetch``: lists assets, fetches from a local server, prints the override, one-line errors."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import torch

from dsrbody.cli import main
from dsrbody.testing.http_files import FileServer, free_port


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["fetch", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _error_line(capsys, *argv: str) -> str:
    rc, out, err = _run(capsys, *argv)
    assert rc == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dsrbody fetch: error: ")
    return lines[0]


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def test_list(capsys):
    rc, out, _ = _run(capsys, "--list")
    assert rc == 0
    for name in ("spin", "spin-data", "spin-checkpoint", "imagenet-resnet50"):
        assert name in out
    assert "http://visiondata.cis.upenn.edu/spin/data.tar.gz" in out
    assert "resnet50-0676ba61.pth" in out and "no published SHA-256" in out


def test_fetch_spin_from_a_local_mirror(server, tmp_path, capsys):
    server.files["data.tar.gz"] = _tar({"data/smpl_mean_params.npz": b"m", "data/J_regressor_h36m.npy": b"h"})
    server.files["dataset_extras.tar.gz"] = _tar({"dataset_extras/3dpw_test.npz": b"t"})
    server.files["model_checkpoint.pt"] = b"ckpt"
    out = tmp_path / "data"
    rc, stdout, _ = _run(capsys, "spin", "--out", str(out), "--url", server.base, "--no-progress")
    assert rc == 0, stdout
    assert (out / "smpl_mean_params.npz").read_bytes() == b"m"
    assert (out / "dataset_extras" / "3dpw_test.npz").read_bytes() == b"t"
    assert (out / "model_checkpoint.pt").read_bytes() == b"ckpt"
    assert "spin-checkpoint: downloaded" in stdout and f"{out / 'smpl'}/" in stdout
    rc, stdout, _ = _run(capsys, "spin", "--out", str(out), "--url", server.base)
    assert rc == 0 and stdout.count("already there") == 3


def test_fetch_imagenet_prints_the_override(server, tmp_path, capsys):
    from dsrbody.models.backbones import resnet50

    with torch.device("meta"):
        sd = resnet50(with_fc=True).state_dict()
    src = tmp_path / "src.pth"
    torch.save({k: torch.zeros((1,) * v.dim(), dtype=v.dtype).expand(v.shape) for k, v in sd.items()}, src)
    blob = src.read_bytes()
    server.files["resnet50-0676ba61.pth"] = blob
    out = tmp_path / "data"
    rc, stdout, _ = _run(
        capsys, "imagenet-resnet50", "--out", str(out), "--url", server.base,
        "--sha256", hashlib.sha256(blob).hexdigest(), "--no-progress",
    )  # fmt: skip
    assert rc == 0, stdout
    assert f"model.backbone=resnet50 model.pretrained_backbone={out / 'resnet50-0676ba61.pth'}" in stdout
    assert "loads into the ResNet-50 backbone" in stdout


def test_errors_are_one_line(server, tmp_path, capsys):
    out = str(tmp_path / "data")
    assert "--list" in _error_line(capsys, "--out", out)
    assert "unknown asset 'smpl'" in _error_line(capsys, "smpl", "--out", out)
    assert "HTTP 404" in _error_line(capsys, "spin-checkpoint", "--out", out, "--url", server.url("gone.pt"))
    dead = f"http://127.0.0.1:{free_port()}/"
    assert "cannot reach" in _error_line(
        capsys, "spin-checkpoint", "--out", out, "--url", dead, "--timeout", "5"
    )
    server.files["model_checkpoint.pt"] = b"abc"
    line = _error_line(capsys, "spin-checkpoint", "--out", out, "--url", server.base, "--sha256", "1" * 64)
    assert "SHA-256 mismatch for model_checkpoint.pt" in line and "1" * 64 in line
    assert hashlib.sha256(b"abc").hexdigest() in line
