"""dsrbody.data.fetch against a local HTTP server: checksums, resume, errors, safe extraction, weights."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest
import torch

from dsrbody.data import fetch as F
from dsrbody.data.fetch import FetchError, download, fetch, fetch_asset, safe_extract, split_overrides
from dsrbody.testing.http_files import FileServer, free_port


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _tar(entries: dict[str, bytes], mode: str = "w:gz", extra=()) -> bytes:
    """A tar archive of ``name -> content`` (folders implied), plus raw TarInfo members ``extra``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        dirs = sorted({os.path.dirname(n) for n in entries} - {""})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for ti in extra:
            tf.addfile(ti, io.BytesIO(b"x" * ti.size) if ti.isfile() else None)
    return buf.getvalue()


SPIN_FILES = {
    "data/smpl_mean_params.npz": b"mean params",
    "data/J_regressor_extra.npy": b"extra regressor",
    "data/J_regressor_h36m.npy": b"h36m regressor",
}


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def test_full_download_checksum_and_extraction(server, tmp_path):
    blob = _tar(SPIN_FILES)
    server.files["data.tar.gz"] = blob
    out = tmp_path / "data"
    res = fetch_asset("spin-data", out, urls=[server.url("data.tar.gz")], sha256=_sha(blob), retry_wait=0)
    assert res.status == "downloaded" and res.sha256 == _sha(blob)
    for name, content in SPIN_FILES.items():  # data/ stripped: the files sit in the data folder itself
        assert (out / name[len("data/") :]).read_bytes() == content
    assert not (out / "data").exists()
    manifest = json.loads((out / ".fetch" / "spin-data.json").read_text())
    assert manifest["sha256"] == _sha(blob) and len(manifest["files"]) == 3
    assert (out / ".fetch" / "data.tar.gz.sha256").read_text().split()[0] == _sha(blob)
    assert not (out / ".fetch" / "data.tar.gz").exists()  # archive removed after unpacking
    assert not list(out.rglob("*.part")) and not (out / ".fetch" / "extract-data.tar.gz").exists()
    # a second call finds it there and downloads nothing
    n = len(server.requests)
    again = fetch_asset("spin-data", out, urls=[server.url("data.tar.gz")])
    assert again.status == "present" and len(server.requests) == n


def test_spin_bundle_from_a_mirror_folder(server, tmp_path):
    # SPIN's data.tar.gz is a plain tar despite its name
    server.files["data.tar.gz"] = _tar(SPIN_FILES, mode="w")
    server.files["dataset_extras.tar.gz"] = _tar(
        {f"dataset_extras/{n}": n.encode() for n in ("3dpw_test.npz", "h36m_valid_protocol2.npz")}
    )
    server.files["model_checkpoint.pt"] = b"checkpoint bytes" * 100
    out = tmp_path / "data"
    urls, shas = split_overrides("spin", [server.base])
    assert urls["spin-checkpoint"] == [server.url("model_checkpoint.pt")] and shas == {}
    results = fetch("spin", out, urls=urls, retry_wait=0)
    assert [r.asset.name for r in results] == ["spin-data", "spin-dataset-extras", "spin-checkpoint"]
    assert (out / "J_regressor_h36m.npy").read_bytes() == b"h36m regressor"
    assert (out / "dataset_extras" / "3dpw_test.npz").read_bytes() == b"3dpw_test.npz"
    ckpt = out / "model_checkpoint.pt"
    assert ckpt.read_bytes() == server.files["model_checkpoint.pt"]
    # unknown upstream checksum: the first download's hash is recorded next to the file
    assert (
        out / "model_checkpoint.pt.sha256"
    ).read_text() == f"{_sha(ckpt.read_bytes())}  model_checkpoint.pt\n"
    assert any("h36m_valid_protocol1.npz" in n for n in results[1].notes)  # missing expected file noted
    # a corrupted file on disk is caught on the next run against that record
    ckpt.write_bytes(b"tampered")
    with pytest.raises(
        FetchError, match=r"SHA-256 mismatch for .*model_checkpoint\.pt: expected [0-9a-f]{64}, got"
    ):
        fetch_asset("spin-checkpoint", out, urls=urls["spin-checkpoint"])


def test_resume_after_a_connection_cut_midway(server, tmp_path):
    blob = os.urandom(300_000)
    server.files["model_checkpoint.pt"] = blob
    server.drop_after["model_checkpoint.pt"] = 100_000
    dest = tmp_path / "model_checkpoint.pt"
    with pytest.raises(FetchError, match="interrupted.*run the command again to resume") as e:
        download(server.url("model_checkpoint.pt"), dest, retries=0)
    assert "\n" not in str(e.value)
    part = tmp_path / "model_checkpoint.pt.part"
    assert not dest.exists() and part.stat().st_size == 100_000  # nothing where the complete file goes
    res = download(server.url("model_checkpoint.pt"), dest, sha256=_sha(blob), retries=0)
    assert dest.read_bytes() == blob and not part.exists() and res.resumed_from == 100_000
    assert server.requests[-1] == ("model_checkpoint.pt", "bytes=100000-")
    assert server.bytes_sent == len(blob)  # nothing sent twice


def test_cut_download_is_resumed_within_one_call(server, tmp_path):
    blob = os.urandom(200_000)
    server.files["f.bin"] = blob
    server.drop_after["f.bin"] = 50_000
    res = download(server.url("f.bin"), tmp_path / "f.bin", sha256=_sha(blob), retries=2, retry_wait=0)
    assert res.path.read_bytes() == blob and [r for _, r in server.requests] == [None, "bytes=50000-"]


def test_server_without_range_support_starts_over(server, tmp_path):
    blob = os.urandom(100_000)
    server.files["f.bin"] = blob
    (tmp_path / "f.bin.part").write_bytes(b"junk" * 1000)
    server.ignore_range = True
    res = download(server.url("f.bin"), tmp_path / "f.bin", sha256=_sha(blob))
    assert res.path.read_bytes() == blob and res.resumed_from == 0


def test_checksum_mismatch_names_file_and_both_hashes(server, tmp_path):
    blob = b"the real file"
    server.files["model_checkpoint.pt"] = blob
    wrong = "0" * 64
    with pytest.raises(FetchError) as e:
        fetch_asset("spin-checkpoint", tmp_path, urls=[server.url("model_checkpoint.pt")], sha256=wrong)
    msg = str(e.value)
    assert "model_checkpoint.pt" in msg and wrong in msg and _sha(blob) in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # the bad download is deleted, no .part left


def test_torchvision_hash_prefix_is_checked(server, tmp_path):
    server.files["resnet50-0676ba61.pth"] = b"not the weights"
    with pytest.raises(FetchError, match="expected a hash starting with 0676ba61"):
        fetch_asset("imagenet-resnet50", tmp_path, urls=[server.url("resnet50-0676ba61.pth")])
    assert not (tmp_path / "resnet50-0676ba61.pth").exists()


def test_http_404_is_one_line(server, tmp_path):
    with pytest.raises(FetchError) as e:
        fetch_asset("spin-checkpoint", tmp_path, urls=[server.url("nothing-here.pt")])
    msg = str(e.value)
    assert "HTTP 404" in msg and "nothing-here.pt" in msg and "\n" not in msg
    assert not (tmp_path / "model_checkpoint.pt").exists()


def test_unreachable_server_and_mirror_fallback(server, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/model_checkpoint.pt"
    with pytest.raises(FetchError, match=r"cannot reach 127\.0\.0\.1:\d+ \(connection refused\)"):
        fetch_asset("spin-checkpoint", tmp_path, urls=[dead], timeout=5)
    server.files["model_checkpoint.pt"] = b"ok"
    res = fetch_asset("spin-checkpoint", tmp_path, urls=[dead, server.url("model_checkpoint.pt")], timeout=5)
    assert res.status == "downloaded" and (tmp_path / "model_checkpoint.pt").read_bytes() == b"ok"


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.size = kind, link, size
    return ti


@pytest.mark.parametrize(
    "bad, reason",
    [
        (_member("data/../evil", size=4), "'..'"),
        (_member("/tmp/dsrbody-evil-abs", size=4), "absolute path"),
        (_member("data/link", tarfile.SYMTYPE, "../../outside"), "symbolic link leading outside"),
        (_member("data/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link to an absolute path"),
        (_member("data/hard", tarfile.LNKTYPE, "../../etc/passwd"), "hard link"),
        (_member("data/dev", tarfile.CHRTYPE), "device file"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out", "device"],
)
def test_malicious_archive_is_refused(bad, reason, tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar({"data/good.npy": b"fine"}, extra=[bad]))
    out = tmp_path / "out" / "data"
    with pytest.raises(FetchError, match="refusing to extract") as e:
        safe_extract(archive, out, strip="data/")
    assert reason in str(e.value) and "nothing was extracted" in str(e.value)
    assert not (out / "good.npy").exists()  # refused as a whole, before anything is written
    assert not (tmp_path / "out" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not os.path.exists("/tmp/dsrbody-evil-abs")


def test_malicious_archive_through_fetch_leaves_nothing(server, tmp_path):
    server.files["data.tar.gz"] = _tar(SPIN_FILES, extra=[_member("../evil", size=3)])
    out = tmp_path / "data"
    with pytest.raises(FetchError, match=r"refusing to extract '\.\./evil'"):
        fetch_asset("spin-data", out, urls=[server.url("data.tar.gz")])
    assert not (tmp_path / "evil").exists() and not (out / "smpl_mean_params.npz").exists()
    assert not (out / ".fetch" / "spin-data.json").exists()


def test_links_inside_the_folder_are_kept(tmp_path):
    archive = tmp_path / "ok.tar"
    link = _member("data/sub/alias.npy", tarfile.SYMTYPE, "../real.npy")
    archive.write_bytes(_tar({"data/real.npy": b"real", "data/sub/x": b"x"}, mode="w", extra=[link]))
    placed = safe_extract(archive, tmp_path / "out", strip="data/")
    assert (tmp_path / "out" / "sub" / "alias.npy").read_bytes() == b"real"
    assert placed == ["real.npy", "sub/alias.npy", "sub/x"]


def test_disk_full_before_and_during_the_download(server, tmp_path, monkeypatch):
    server.files["model_checkpoint.pt"] = os.urandom(50_000)
    url = server.url("model_checkpoint.pt")

    class Usage:
        free = 1000

    monkeypatch.setattr(F.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(FetchError, match="not enough disk space for .*model_checkpoint.pt"):
        fetch_asset("spin-checkpoint", tmp_path, urls=[url])
    monkeypatch.undo()

    class FullFile(io.RawIOBase):
        def __init__(self, path, mode):
            self.f = open(path, mode)

        def write(self, b):
            raise OSError(28, "No space left on device")

        def close(self):
            self.f.close()

    monkeypatch.setattr(F, "_open_part", lambda path, mode: FullFile(path, mode))
    with pytest.raises(FetchError, match="disk full while writing .*model_checkpoint.pt.part") as e:
        fetch_asset("spin-checkpoint", tmp_path, urls=[url])
    assert "\n" not in str(e.value) and not (tmp_path / "model_checkpoint.pt").exists()


def _fake_resnet50_file(path) -> bytes:
    """A tiny file with every key and shape of torchvision's ResNet-50 state dict (fc included): each
    tensor is a broadcast view of one stored number, so the file stays a few hundred kB."""
    from dsrbody.models.backbones import resnet50

    with torch.device("meta"):  # keys and shapes only, no 100 MB initialisation
        sd = resnet50(with_fc=True).state_dict()
    fake = {k: torch.full((1,) * v.dim(), 0.5, dtype=v.dtype).expand(v.shape) for k, v in sd.items()}
    torch.save(fake, path)
    return path.read_bytes()


def test_imagenet_weights_load_into_the_resnet50_backbone(server, tmp_path, monkeypatch):
    from dsrbody.models.backbones import build_backbone

    blob = _fake_resnet50_file(tmp_path / "src.pth")
    assert len(blob) < 2_000_000
    server.files["resnet50-0676ba61.pth"] = blob
    out = tmp_path / "data"
    urls, shas = split_overrides("imagenet-resnet50", [server.base], [_sha(blob)])
    (res,) = fetch("imagenet-resnet50", out, urls=urls, sha256=shas)
    path = out / "resnet50-0676ba61.pth"
    assert res.files == [path] and any("loads into the ResNet-50 backbone" in n for n in res.notes)
    # what model.pretrained_backbone does, on a real backbone (its random init skipped: the file replaces it)
    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", lambda t, **kw: t)
    net, dim = build_backbone("resnet50", pretrained=path)
    assert dim == 2048 and torch.all(net.conv1.weight == 0.5)


def test_weights_that_do_not_load_are_refused(server, tmp_path):
    blob = b"\x00" * 1000
    server.files["resnet50-0676ba61.pth"] = blob
    with pytest.raises(FetchError, match="does not load as ResNet-50 backbone weights"):
        fetch_asset(
            "imagenet-resnet50", tmp_path, urls=[server.url("resnet50-0676ba61.pth")], sha256=_sha(blob)
        )
    assert list(tmp_path.iterdir()) == []


def test_overrides_and_unknown_names():
    urls, shas = split_overrides(
        "spin", ["spin-checkpoint=http://m/x.pt", "http://m2/spin"], ["data.tar.gz=" + "a" * 64]
    )
    assert urls["spin-checkpoint"] == ["http://m/x.pt", "http://m2/spin/model_checkpoint.pt"]
    assert urls["spin-data"] == ["http://m2/spin/data.tar.gz"] and shas == {"spin-data": "a" * 64}
    assert split_overrides("spin-checkpoint", ["http://m/file.pt"])[0] == {
        "spin-checkpoint": ["http://m/file.pt"]
    }
    with pytest.raises(FetchError, match="unknown asset 'smpl'"):
        split_overrides("smpl")
    with pytest.raises(FetchError, match="not part of 'spin'"):
        split_overrides("spin", ["imagenet-resnet50=http://m/r.pth"])
    with pytest.raises(FetchError, match="not a SHA-256"):
        split_overrides("spin-checkpoint", [], ["abc"])
