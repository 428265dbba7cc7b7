"""Download the public weights and data the paper's code starts from, with checksums and resume.

What can be downloaded anonymously is in :data:`ASSETS` (name -> where it comes from, its size and
SHA-256 where known, what it unpacks to); :data:`BUNDLES` groups them (``spin`` = what SPIN's
``fetch_data.sh`` downloads for evaluation and training). The licensed files (SMPL, the DSR
checkpoints, the benchmark datasets, the parsing maps) need a registration and are not here; the
README says where each comes from.

How a download goes (:func:`download`):

- into ``<file>.part`` next to the final file; an interrupted transfer is resumed with an HTTP
  ``Range`` request (``If-Range`` on the server's ``ETag``/``Last-Modified``, so a file that changed
  on the server starts over instead of being spliced), retried a few times within one call and
  resumed by the next call otherwise;
- the size is checked against the server's ``Content-Length``, the SHA-256 against the registry's
  hash, torchvision's hash prefix (the 8 hex digits in its file names), a pinned ``sha256=``, or the
  ``<file>.sha256`` record of an earlier download, whichever is known; a mismatch deletes the
  download and names the file and both hashes;
- then ``<file>.part`` is renamed to ``<file>`` (atomic) and ``<file>.sha256`` (``sha256sum``
  format) is written next to it. Where the registry has no checksum (SPIN publishes none), that
  record is the reference for every later download and check; pin one with ``sha256=``.

Archives are downloaded under ``<out>/.fetch/``, checked member by member (absolute paths, ``..``,
links leading outside the folder, device files and FIFOs refuse the whole archive before anything is
written; extraction also runs with :func:`tarfile.data_filter` where Python has it), unpacked into a
temporary folder inside ``<out>`` and only then moved into place, so a failure leaves no half-written
file where a complete one is expected. ``<out>/.fetch/<asset>.json`` lists what an archive brought.

Every failure is a :class:`FetchError` with a one-line message (network unreachable, HTTP errors,
interrupted transfer, checksum mismatch, disk full, unsafe archive).
"""

from __future__ import annotations

import copy
import errno
import hashlib
import http.client
import json
import os
import posixpath
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ASSETS",
    "BUNDLES",
    "DEFAULT_OUT",
    "Asset",
    "DownloadResult",
    "FetchError",
    "FetchResult",
    "asset_names",
    "check_resnet50_weights",
    "download",
    "fetch",
    "fetch_asset",
    "format_asset_list",
    "resolve_target",
    "safe_extract",
    "sha256_file",
]

#: Default data folder: the ``data.root`` of ``configs/dsr_paper.yaml``.
DEFAULT_OUT = "data"
#: Folder inside the data folder for archives, records and temporary extraction.
STATE_DIR = ".fetch"
CHUNK = 1 << 20

SPIN_BASE = "http://visiondata.cis.upenn.edu/spin/"
TORCHVISION_BASE = "https://download.pytorch.org/models/"
_NO_CHECKSUM = (
    "no published SHA-256: the first download's hash is recorded in {file}.sha256 and checked on every "
    "later download; pin one with --sha256"
)


class FetchError(Exception):
    """A download, check or extraction that failed; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class Asset:
    """One downloadable file.

    Attributes:
        name: the name ``dsrbody fetch NAME`` takes.
        filename: the file's name on the server and on disk.
        urls: sources, tried in order (mirrors).
        description: one line.
        size: bytes, where known (checked); ``None`` otherwise (the server's ``Content-Length`` is
            checked then).
        sha256: full hex digest where known.
        sha256_prefix: leading hex digits of the digest where only those are known (torchvision puts
            them in its file names).
        archive: a tar archive unpacked into the data folder (kept under ``.fetch/`` only with
            ``keep_archive``); otherwise the file itself is the result, in the data folder.
        strip: leading folder removed from the archive's member names (``"data/"`` for SPIN's, whose
            ``fetch_data.sh`` unpacks into the repository root to get ``data/``); members outside it
            keep their names.
        expected: paths relative to the data folder that the asset provides; all present means the
            asset is there already.
        check: ``"resnet50"``: the file must load into dsrbody's ResNet-50 backbone.
        note: what else to know (checksum status, format quirks).
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    description: str
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    archive: bool = False
    strip: str | None = None
    expected: tuple[str, ...] = ()
    check: str | None = None
    note: str = ""

    @property
    def checksum_status(self) -> str:
        """How the download is verified, in words."""
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix} (torchvision's file name); full hash recorded"
        return _NO_CHECKSUM.format(file=self.filename)


_ASSET_LIST = [
    Asset(
        "spin-data",
        "data.tar.gz",
        (SPIN_BASE + "data.tar.gz",),
        "SPIN's model constants: smpl_mean_params.npz, J_regressor_extra.npy, J_regressor_h36m.npy, ...",
        archive=True,
        strip="data/",
        expected=("smpl_mean_params.npz", "J_regressor_extra.npy", "J_regressor_h36m.npy"),
        note="a plain tar despite its name (opened either way); its data/ folder is unpacked into the "
        "data folder itself",
    ),
    Asset(
        "spin-dataset-extras",
        "dataset_extras.tar.gz",
        (SPIN_BASE + "dataset_extras.tar.gz",),
        "SPIN's preprocessed annotation files: dataset_extras/3dpw_test.npz, h36m_valid_protocol{1,2}.npz, "
        "mpi_inf_3dhp_valid.npz, training files",
        archive=True,
        strip="data/",
        expected=(
            "dataset_extras/3dpw_test.npz",
            "dataset_extras/h36m_valid_protocol1.npz",
            "dataset_extras/h36m_valid_protocol2.npz",
            "dataset_extras/mpi_inf_3dhp_valid.npz",
        ),
        note="unpacks to dataset_extras/ (SPIN: tar -xf dataset_extras.tar.gz --directory data); the "
        "images of each dataset come from its own site",
    ),
    Asset(
        "spin-checkpoint",
        "model_checkpoint.pt",
        (SPIN_BASE + "model_checkpoint.pt",),
        "SPIN's released regressor (ResNet-50 + HMR head): model.init_checkpoint of configs/dsr_paper.yaml, "
        "or dsrbody eval --ckpt",
        expected=("model_checkpoint.pt",),
    ),
    Asset(
        "imagenet-resnet50",
        "resnet50-0676ba61.pth",
        (TORCHVISION_BASE + "resnet50-0676ba61.pth",),
        "torchvision's ImageNet ResNet-50 (IMAGENET1K_V1, what SPIN's ResNet-50 starts from): "
        "model.pretrained_backbone",
        sha256_prefix="0676ba61",
        expected=("resnet50-0676ba61.pth",),
        check="resnet50",
    ),
    Asset(
        "imagenet-resnet50-v2",
        "resnet50-11ad3fa6.pth",
        (TORCHVISION_BASE + "resnet50-11ad3fa6.pth",),
        "torchvision's newer ImageNet ResNet-50 (IMAGENET1K_V2, 80.9 % top-1): model.pretrained_backbone",
        sha256_prefix="11ad3fa6",
        expected=("resnet50-11ad3fa6.pth",),
        check="resnet50",
    ),
]

#: The registry: asset name -> :class:`Asset`.
ASSETS: dict[str, Asset] = {a.name: a for a in _ASSET_LIST}

#: Names that fetch several assets, in order. ``spin`` is what SPIN's ``fetch_data.sh`` downloads for
#: evaluation and training (its static fits and GMM prior are for SMPLify and are left out).
BUNDLES: dict[str, tuple[str, ...]] = {
    "spin": ("spin-data", "spin-dataset-extras", "spin-checkpoint"),
}


def asset_names() -> list[str]:
    """Every name :func:`fetch` takes: bundles first, then single assets."""
    return [*BUNDLES, *ASSETS]


def resolve_target(name: str) -> list[Asset]:
    """The assets of a bundle or single asset name.

    Raises:
        FetchError: unknown name (the message lists the known ones).
    """
    if name in BUNDLES:
        return [ASSETS[n] for n in BUNDLES[name]]
    if name in ASSETS:
        return [ASSETS[name]]
    raise FetchError(
        f"unknown asset {name!r}; choose one of {', '.join(asset_names())} (list them with --list)"
    )


def format_asset_list() -> str:
    """The registry as text (``dsrbody fetch --list``)."""
    lines = []
    for name, members in BUNDLES.items():
        lines.append(f"{name}  (bundle: {', '.join(members)})")
    for a in ASSETS.values():
        size = f"{a.size / 2**20:.1f} MiB" if a.size else "size unknown here"
        lines.append(f"{a.name}")
        lines.append(f"    {a.description}")
        lines.append(f"    file {a.filename} ({size}) from {', '.join(a.urls)}")
        lines.append(f"    checksum: {a.checksum_status}")
        if a.note:
            lines.append(f"    note: {a.note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# checksums
# ------------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_record(path: Path) -> str | None:
    """The hash in ``<path>.sha256`` (``sha256sum`` format), or ``None``."""
    rec = _record_path(path)
    try:
        text = rec.read_text().strip()
    except OSError:
        return None
    digest = text.split()[0].lower() if text else ""
    return digest if _is_hex(digest, 64) else None


def _write_record(path: Path, digest: str) -> None:
    rec = _record_path(path)
    tmp = rec.with_name(rec.name + ".tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, rec)


def _is_hex(s: str, n: int | None = None) -> bool:
    return bool(s) and (n is None or len(s) == n) and all(c in "0123456789abcdef" for c in s.lower())


def _normalise_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if not _is_hex(v, 64):
        raise FetchError(f"--sha256 {value!r} is not a SHA-256 (64 hex digits)")
    return v


# ------------------------------------------------------------------------------------------------
# download
# ------------------------------------------------------------------------------------------------


class _Unavailable(Exception):
    """The source cannot serve the file (unreachable, HTTP error): try the next mirror."""


class _Interrupted(Exception):
    """The transfer stopped part-way: retry with a Range request."""


@dataclass
class DownloadResult:
    """A completed download: ``path``, its ``sha256`` and ``size``, the ``url`` it came from, and the
    byte offset it was resumed from (0 for a fresh download)."""

    path: Path
    sha256: str
    size: int
    url: str
    resumed_from: int = 0


def _open_part(path: Path, mode: str):
    """Open the ``.part`` file (a seam for the disk-full tests)."""
    return open(path, mode)


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _reason(exc: BaseException) -> str:
    r = getattr(exc, "reason", None)
    if isinstance(r, BaseException):
        exc = r
    elif r:
        return str(r)
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _disk_full(path: Path, done: int | None = None, total: int | None = None) -> FetchError:
    what = f" ({done} of {total} bytes written)" if done is not None and total else ""
    return FetchError(
        f"disk full while writing {path}{what}: free some space (or choose --out on another disk) and run "
        "the command again to resume"
    )


def _check_space(folder: Path, need: int, what: Path) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        raise FetchError(
            f"not enough disk space for {what}: {need / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free "
            f"in {folder}; free some space or choose --out on another disk"
        )


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes a-b/N`` -> ``(a, N)``; ``bytes */N`` -> ``(None, N)``; unknown parts ``None``."""
    if not value or not value.startswith("bytes "):
        return None, None
    spec, _, total = value[6:].partition("/")
    start = None
    if spec != "*":
        try:
            start = int(spec.split("-", 1)[0])
        except ValueError:
            start = None
    try:
        n = int(total)
    except ValueError:
        n = None
    return start, n


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=(None if enabled is None else not enabled),
        leave=True,
        dynamic_ncols=True,
    )


def _transfer(
    url: str, part: Path, meta: Path, size: int | None, timeout: float, progress: bool | None, state: dict
) -> tuple[int, int]:
    """One HTTP request writing into ``part`` (appending after a Range request).

    Returns ``(bytes on disk, offset resumed from)``. Raises :class:`_Unavailable` or
    :class:`_Interrupted` or :class:`FetchError`.
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "dsrbody-fetch", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        try:
            validator = json.loads(meta.read_text()).get("validator")
        except (OSError, ValueError):
            validator = None
        if validator:
            headers["If-Range"] = validator
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked beyond the end: complete already, or the file shrank
            _, total = _parse_content_range(e.headers.get("Content-Range"))
            e.close()
            if total == have:
                return have, have
            part.unlink(missing_ok=True)
            raise _Interrupted(
                "the server's file is shorter than the partial download; starting over"
            ) from None
        e.close()
        raise _Unavailable(f"HTTP {e.code} {e.reason} for {url}") from None
    except urllib.error.URLError as e:
        raise _Unavailable(f"cannot reach {_host(url)} ({_reason(e)}) for {url}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _Unavailable(f"cannot reach {_host(url)} ({_reason(e)}) for {url}") from None

    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        start = 0
        if have and status == 206:
            start, total = _parse_content_range(resp.headers.get("Content-Range"))
            if start != have:  # not the range asked for: start over
                part.unlink(missing_ok=True)
                raise _Interrupted("the server answered another byte range; starting over") from None
            mode = "ab"
        else:  # a fresh download (or a server that ignores Range / a file that changed): from byte 0
            total = length
            mode = "wb"
            validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            meta.write_text(json.dumps({"url": url, "validator": validator}))
        state.setdefault("resumed_from", start)
        if total is None and length is not None:
            total = start + length
        if size is not None and total is not None and total != size:
            raise FetchError(
                f"{url}: the server's file has {total} bytes, the registry expects {size}; it is another "
                "file (pass --url to a mirror with the right one)"
            )
        total = total if total is not None else size
        if total is not None:
            _check_space(part.parent, total - start, part.with_suffix(""))
        done = start
        bar = _progress_bar(total, start, part.name[: -len(".part")], progress)
        try:
            with _open_part(part, mode) as f:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Interrupted(_reason(e)) from None
                    if not chunk:
                        break
                    try:
                        f.write(chunk)
                    except OSError as e:
                        if e.errno in (errno.ENOSPC, errno.EDQUOT):
                            raise _disk_full(part, done, total) from None
                        raise FetchError(f"cannot write {part}: {_reason(e)}") from None
                    done += len(chunk)
                    bar.update(len(chunk))
        except OSError as e:  # flushing on close
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(part, done, total) from None
            raise FetchError(f"cannot write {part}: {_reason(e)}") from None
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise _Interrupted(f"connection closed after {got} of {total} bytes")
    return got, start


def download(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    size: int | None = None,
    retries: int = 3,
    retry_wait: float = 1.0,
    timeout: float = 30.0,
    progress: bool | None = None,
    validate: Callable[[Path], None] | None = None,
) -> DownloadResult:
    """Download a file to ``dest`` with resume, size and checksum checks, and an atomic rename.

    Args:
        urls: one URL or mirrors tried in order (a mirror that cannot serve the file passes to the
            next; a checksum mismatch does not).
        dest: the final path; ``<dest>.part`` holds the transfer, ``<dest>.sha256`` gets the hash.
        sha256: the expected full hex digest (otherwise the one in ``<dest>.sha256`` if present).
        sha256_prefix: expected leading hex digits (torchvision), used when ``sha256`` is not given.
        size: the expected size in bytes, where known.
        retries: how many times an interrupted transfer is resumed within this call.
        retry_wait: seconds before the first retry (doubling).
        timeout: socket timeout in seconds.
        progress: show a progress bar (``None``: only on a terminal).
        validate: called on the complete, verified ``.part`` file before it is renamed; raises
            :class:`FetchError` (or ``ValueError``) to refuse it (the file is then deleted).

    Returns:
        A :class:`DownloadResult`.

    Raises:
        FetchError: one line naming the URL or file: unreachable, HTTP error, interrupted more than
            ``retries`` times (the ``.part`` stays for the next call to resume), size or SHA-256
            mismatch (the download is deleted), disk full, refused by ``validate``.
    """
    dest = Path(dest)
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise FetchError(f"no URL to download {dest.name} from")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    meta = dest.with_name(dest.name + ".part.json")
    expected = sha256.lower() if sha256 else None
    from_record = False
    if expected is None and not sha256_prefix:
        expected = _read_record(dest)
        from_record = expected is not None
    failures: list[str] = []
    for url in url_list:
        attempt = 0
        state: dict = {}
        while True:
            try:
                got, _ = _transfer(url, part, meta, size, timeout, progress, state)
                break
            except _Interrupted as e:
                attempt += 1
                if attempt > retries:
                    have = part.stat().st_size if part.exists() else 0
                    raise FetchError(
                        f"download of {dest.name} from {url} interrupted ({e}) with {have} bytes in {part}; "
                        "run the command again to resume"
                    ) from None
                time.sleep(retry_wait * 2 ** (attempt - 1))
            except _Unavailable as e:
                failures.append(str(e))
                got = None
                break
        if got is None:
            continue
        if size is not None and got != size:
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            raise FetchError(
                f"{dest.name}: downloaded {got} bytes, expected {size}; the download was deleted"
            )
        digest = sha256_file(part)
        mismatch = None
        if expected is not None and digest != expected:
            src = f" (recorded in {_record_path(dest)} on an earlier download)" if from_record else ""
            mismatch = f"expected {expected}{src}, got {digest}"
        elif expected is None and sha256_prefix and not digest.startswith(sha256_prefix.lower()):
            mismatch = f"expected a hash starting with {sha256_prefix} (from the file name), got {digest}"
        if mismatch:
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            hint = (
                "; if the source really changed, delete that record or pin the new hash with --sha256"
                if from_record
                else ""
            )
            raise FetchError(
                f"SHA-256 mismatch for {dest.name} from {url}: {mismatch}; the download was deleted{hint}"
            )
        if validate is not None:
            try:
                validate(part)
            except (FetchError, ValueError) as e:
                part.unlink(missing_ok=True)
                meta.unlink(missing_ok=True)
                raise FetchError(f"{dest.name} from {url}: {e}; the download was deleted") from None
        os.replace(part, dest)
        meta.unlink(missing_ok=True)
        _write_record(dest, digest)
        return DownloadResult(dest, digest, got, url, state.get("resumed_from", got))
    if len(failures) == 1:
        raise FetchError(f"{failures[0]}; check the network or pass --url to a mirror")
    raise FetchError(f"no source could serve {dest.name}: " + "; ".join(failures))


# ------------------------------------------------------------------------------------------------
# safe extraction
# ------------------------------------------------------------------------------------------------


def _strip(name: str, prefix: str | None) -> str | None:
    """Member name without ``prefix`` (``None`` for the stripped folder itself)."""
    if not prefix:
        return name
    bare = prefix.rstrip("/")
    n = name[2:] if name.startswith("./") else name
    if n.rstrip("/") == bare:
        return None
    if n.startswith(bare + "/"):
        return n[len(bare) + 1 :]
    return name


def _outside(name: str) -> bool:
    """Absolute, or leads out of the folder once normalised."""
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return True
    norm = posixpath.normpath(name.replace("\\", "/"))
    return norm == ".." or norm.startswith("../")


def _unsafe(m: tarfile.TarInfo, name: str, strip: str | None) -> str | None:
    """Why a member must not be extracted, or ``None``."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in parts:
        return "path with '..' (outside the folder)"
    if m.ischr() or m.isblk() or m.isfifo():
        return "device file or FIFO"
    if m.issym():
        target = m.linkname
        if target.startswith(("/", "\\")) or os.path.isabs(target):
            return f"symbolic link to an absolute path ({target})"
        if _outside(posixpath.join(posixpath.dirname(name), target)):
            return f"symbolic link leading outside the folder ({target})"
    elif m.islnk():
        target = _strip(m.linkname, strip) or ""
        if _outside(target) or ".." in target.split("/"):
            return f"hard link to outside the folder ({m.linkname})"
    elif not (m.isfile() or m.isdir()):
        return "unsupported member type"
    return None


def safe_extract(
    archive: str | os.PathLike, dest: str | os.PathLike, *, strip: str | None = None
) -> list[str]:
    """Unpack a tar archive (plain, gzip, bzip2 or xz) into ``dest`` safely.

    Every member is checked first; one that is absolute, contains ``..``, is a link leading outside
    ``dest``, a device file or a FIFO refuses the whole archive before anything is written. The
    members are unpacked (with :func:`tarfile.data_filter` where available) into a temporary folder
    inside ``dest`` and then moved into place, replacing files of the same name.

    Args:
        archive: the ``.tar`` / ``.tar.gz`` file.
        dest: the folder to unpack into (created).
        strip: a leading folder removed from member names (e.g. ``"data/"``).

    Returns:
        the paths (relative to ``dest``, ``/``-separated) of the files and links placed.

    Raises:
        FetchError: an unsafe member (named), an unreadable archive, disk full.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise FetchError(f"{archive}: not a readable tar archive ({_reason(e)})") from None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise FetchError(f"{archive}: damaged tar archive ({_reason(e)})") from None
        plan: list[tarfile.TarInfo] = []
        for m in members:
            name = _strip(m.name, strip)
            if name is None or name in ("", "."):
                continue
            problem = _unsafe(m, name, strip)
            if problem:
                raise FetchError(
                    f"{archive.name}: refusing to extract {m.name!r} ({problem}); nothing was extracted"
                )
            new = copy.copy(m)
            new.name = name
            if m.islnk():
                new.linkname = _strip(m.linkname, strip) or m.linkname
            plan.append(new)
        _check_space(dest, sum(m.size for m in plan if m.isfile()), archive)
        tmp = dest / STATE_DIR / f"extract-{archive.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            try:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=plan, filter="data")
                else:  # pragma: no cover - Python without the extraction filters; members checked above
                    tf.extractall(tmp, members=plan)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise FetchError(
                        f"disk full while extracting {archive.name} into {dest}: free some space and run "
                        "again; nothing was moved into place"
                    ) from None
                raise FetchError(f"{archive.name}: extraction failed ({_reason(e)})") from None
            except (tarfile.TarError, EOFError) as e:
                raise FetchError(f"{archive.name}: extraction refused or failed ({_reason(e)})") from None
            placed = _move_tree(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return placed


def _move_tree(src: Path, dest: Path) -> list[str]:
    """Move every file and link of ``src`` to the same relative place under ``dest``."""
    placed = []
    for root, dirs, files in os.walk(src):
        rel_root = Path(root).relative_to(src)
        for d in list(dirs):
            p = Path(root) / d
            if p.is_symlink():  # a link to a folder: move it as a file, do not descend
                files.append(d)
                dirs.remove(d)
            else:
                (dest / rel_root / d).mkdir(parents=True, exist_ok=True)
        for f in files:
            target = dest / rel_root / f
            if target.is_dir() and not target.is_symlink():
                raise FetchError(f"cannot place {rel_root / f}: {target} is a folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(root) / f, target)
            placed.append((rel_root / f).as_posix())
    return sorted(placed)


# ------------------------------------------------------------------------------------------------
# assets
# ------------------------------------------------------------------------------------------------


def check_resnet50_weights(path: str | os.PathLike) -> str:
    """Load a weight file into dsrbody's ResNet-50 backbone as ``model.pretrained_backbone`` does.

    Returns:
        a one-line summary (how many tensors were loaded, what was ignored).

    Raises:
        ValueError: the file does not load (not a PyTorch file, wrong keys or shapes).
    """
    import warnings

    import torch

    from dsrbody.models.backbones import load_pretrained, resnet50

    # Keys and shapes are what decide; a backbone on the meta device checks them without the ~100 MB
    # of weights and their initialisation (the file itself is read with torch.load(weights_only=True)).
    with torch.device("meta"):
        net = resnet50()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")
        report = load_pretrained(net, path)
    ignored = sum(len(v) for v in report.ignored.values())
    return (
        f"loads into the ResNet-50 backbone ({len(report.loaded)} tensors, {ignored} classifier keys ignored)"
    )


@dataclass
class FetchResult:
    """What :func:`fetch_asset` did.

    Attributes:
        asset: the asset.
        status: ``"downloaded"`` or ``"present"`` (nothing downloaded).
        files: paths (under the data folder) the asset provides.
        sha256: the downloaded (or recorded) file's hash, where there is one.
        notes: one-line remarks (expected files missing from an archive, how the file was checked).
    """

    asset: Asset
    status: str
    files: list[Path]
    sha256: str | None = None
    notes: list[str] = field(default_factory=list)


def _manifest_path(out: Path, asset: Asset) -> Path:
    return out / STATE_DIR / f"{asset.name}.json"


def _read_manifest(out: Path, asset: Asset) -> dict | None:
    try:
        return json.loads(_manifest_path(out, asset).read_text())
    except (OSError, ValueError):
        return None


def _validator(asset: Asset, notes: list[str]) -> Callable[[Path], None] | None:
    """The check of ``asset.check`` on a downloaded file; appends its summary to ``notes``."""
    if asset.check == "resnet50":

        def validate(p: Path) -> None:
            try:
                notes.append(check_resnet50_weights(p))
            except ValueError as e:
                raise FetchError(
                    f"does not load as ResNet-50 backbone weights ({str(e).splitlines()[0]})"
                ) from None

        return validate
    return None


def fetch_asset(
    asset: str | Asset,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    urls: Sequence[str] | None = None,
    sha256: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    retries: int = 3,
    retry_wait: float = 1.0,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> FetchResult:
    """Download one asset into the data folder ``out`` (and unpack it if it is an archive).

    Nothing is downloaded when the asset is there already: a file asset whose file matches its
    checksum (registry, pin or ``.sha256`` record), an archive whose manifest's files all exist, or
    any asset whose expected files all exist (e.g. brought by an earlier archive). ``force`` downloads
    again.

    Args:
        asset: a name of :data:`ASSETS` or an :class:`Asset`.
        out: the data folder.
        urls: sources replacing the registry's (mirrors, a local server).
        sha256: pinned hex digest replacing the registry's hash and prefix.
        force: download even when present.
        keep_archive: keep a downloaded archive under ``out/.fetch/`` after unpacking.
        retries, retry_wait, timeout, progress: as :func:`download`.

    Raises:
        FetchError: one line (see :func:`download` and :func:`safe_extract`); also when a present file
        does not match its checksum.
    """
    if isinstance(asset, str):
        if asset not in ASSETS:
            raise FetchError(f"unknown asset {asset!r}; choose one of {', '.join(ASSETS)}")
        asset = ASSETS[asset]
    a = asset
    out = Path(out)
    pin = _normalise_sha256(sha256)
    expected_paths = [out / p for p in a.expected]
    notes: list[str] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"cannot create the data folder {out}: {_reason(e)}") from None

    if not force:
        present = _present(a, out, pin, expected_paths)
        if present is not None:
            return present

    kwargs = dict(
        size=a.size,
        retries=retries,
        retry_wait=retry_wait,
        timeout=timeout,
        progress=progress,
    )
    sources = tuple(urls) if urls else a.urls
    if not a.archive:
        dest = out / a.filename
        res = download(
            sources,
            dest,
            sha256=pin or a.sha256,
            sha256_prefix=None if pin else a.sha256_prefix,
            validate=_validator(a, notes),
            **kwargs,
        )
        if res.resumed_from:
            notes.append(f"resumed from byte {res.resumed_from}")
        return FetchResult(a, "downloaded", [dest], res.sha256, notes)

    state = out / STATE_DIR
    archive = state / a.filename
    res = download(
        sources, archive, sha256=pin or a.sha256, sha256_prefix=None if pin else a.sha256_prefix, **kwargs
    )
    if res.resumed_from:
        notes.append(f"resumed from byte {res.resumed_from}")
    placed = safe_extract(archive, out, strip=a.strip)
    manifest = {
        "asset": a.name,
        "url": res.url,
        "archive": a.filename,
        "sha256": res.sha256,
        "size": res.size,
        "files": placed,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    mp = _manifest_path(out, a)
    tmp = mp.with_name(mp.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, mp)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    missing = [p for p in a.expected if not (out / p).exists()]
    if missing:
        notes.append(f"the archive has no {', '.join(missing)}")
    return FetchResult(a, "downloaded", [out / p for p in placed], res.sha256, notes)


def _present(a: Asset, out: Path, pin: str | None, expected_paths: list[Path]) -> FetchResult | None:
    """The asset as already on disk, or ``None`` when it has to be downloaded."""
    if a.archive:
        man = _read_manifest(out, a)
        if (
            man
            and man.get("files")
            and all((out / f).exists() or (out / f).is_symlink() for f in man["files"])
        ):
            if pin and man.get("sha256") != pin:
                return None
            return FetchResult(a, "present", [out / f for f in man["files"]], man.get("sha256"))
        if expected_paths and all(p.exists() for p in expected_paths):
            return FetchResult(
                a, "present", expected_paths, None, ["found in the data folder; not downloaded"]
            )
        return None
    dest = out / a.filename
    if not dest.is_file():
        if expected_paths and all(p.exists() for p in expected_paths):
            return FetchResult(
                a, "present", expected_paths, None, ["found in the data folder; not downloaded"]
            )
        return None
    expected = pin or a.sha256 or _read_record(dest)
    if expected is None and not a.sha256_prefix:
        return FetchResult(a, "present", [dest], None, ["found without a .sha256 record; not checked"])
    digest = sha256_file(dest)
    if expected is not None and digest != expected:
        raise FetchError(
            f"SHA-256 mismatch for {dest}: expected {expected}, got {digest}; delete it or pass --force to "
            "download it again"
        )
    if expected is None and not digest.startswith(a.sha256_prefix or ""):
        raise FetchError(
            f"SHA-256 mismatch for {dest}: expected a hash starting with {a.sha256_prefix}, got {digest}; "
            "delete it or pass --force to download it again"
        )
    if _read_record(dest) is None:
        _write_record(dest, digest)
    return FetchResult(a, "present", [dest], digest, ["checksum verified; not downloaded"])


def fetch(
    name: str,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    urls: dict[str, Sequence[str]] | None = None,
    sha256: dict[str, str] | None = None,
    **kwargs,
) -> list[FetchResult]:
    """Fetch a bundle (``"spin"``) or a single asset into ``out``.

    Args:
        name: a key of :data:`BUNDLES` or :data:`ASSETS`.
        out: the data folder.
        urls: asset name -> sources replacing the registry's.
        sha256: asset name -> pinned digest.
        **kwargs: passed to :func:`fetch_asset` (``force``, ``keep_archive``, ``retries``, ...).

    Returns:
        one :class:`FetchResult` per asset, in order.
    """
    assets = resolve_target(name)
    urls = urls or {}
    sha256 = sha256 or {}
    return [fetch_asset(a, out, urls=urls.get(a.name), sha256=sha256.get(a.name), **kwargs) for a in assets]


def split_overrides(
    name: str, url_args: Iterable[str] = (), sha_args: Iterable[str] = ()
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Turn ``--url`` / ``--sha256`` values into per-asset maps for :func:`fetch`.

    ``--url`` takes ``URL`` (a single asset: the file's URL, or a folder URL ending in ``/`` that the
    file name is appended to; a bundle: a folder URL every file name is appended to) or
    ``ASSET=URL`` (``ASSET`` an asset or file name of the target); repeated values are mirrors tried
    in order. ``--sha256`` takes ``HEX`` (single asset) or ``ASSET=HEX``.

    Raises:
        FetchError: a value naming an asset outside the target, a plain ``--sha256`` for a bundle.
    """
    assets = resolve_target(name)
    by_key = {a.name: a for a in assets} | {a.filename: a for a in assets}

    def split(value: str) -> tuple[Asset | None, str]:
        key, sep, rest = value.partition("=")
        if sep and key in by_key:
            return by_key[key], rest
        if sep and key in set(asset_names()) | {x.filename for x in ASSETS.values()}:
            raise FetchError(f"{key!r} is not part of {name!r} ({', '.join(a.name for a in assets)})")
        return None, value

    urls: dict[str, list[str]] = {}
    for value in url_args:
        target, url = split(value)
        if "://" not in url:
            raise FetchError(f"--url {value!r} is not a URL (http://..., https://...)")
        for a in [target] if target else assets:
            full = url
            if target is None and (len(assets) > 1 or url.endswith("/")):
                full = url.rstrip("/") + "/" + a.filename
            urls.setdefault(a.name, []).append(full)
    shas: dict[str, str] = {}
    for value in sha_args:
        target, digest = split(value)
        if target is None:
            if len(assets) > 1:
                raise FetchError(
                    f"{name!r} has {len(assets)} files: pin one with --sha256 ASSET=HEX "
                    f"(ASSET one of {', '.join(a.name for a in assets)})"
                )
            target = assets[0]
        shas[target.name] = _normalise_sha256(digest) or ""
    return urls, shas
