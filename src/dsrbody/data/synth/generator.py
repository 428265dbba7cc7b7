"""The synthetic clothed-human generator: exact body ground truth in the SPIN/DSR format.

One sample is a pure function of ``(seed, split, index)``: its random stream is
``numpy.random.SeedSequence([seed, SPLIT_CODES[split], index])``, and torch runs single-threaded
while generating, so a sample's bytes do not depend on the number of workers, on the order in
which samples are made, or on interruptions. Train and test streams differ by their split code,
so the two splits never share a sample for the same ``--seed``.

Per sample (see :class:`SampleMaker`):

1. a body: Anny phenotypes from anny's WHO-calibrated shape distribution restricted to adults
   (morphological age 16-80), with a fifth of the samples pushed toward slim or heavy weights; or
   SMPL betas from N(0, I) with a random gender when SMPL files are given;
2. a pose from :mod:`dsrbody.data.synth.poses` (families + joint limits), a yaw uniform over the
   full turn and a small tilt;
3. an outfit from :mod:`dsrbody.garments` (``--hard``: heavier clothing), the clothed surface =
   posed body + garment displacement along the posed vertex normals;
4. a camera framing the person like a detector crop (:mod:`dsrbody.data.synth.scene`);
5. a z-buffer render: the image (Lambert-shaded garment colours with texture, skin, hair over a
   background) and the parsing map (the clothed surface's face labels), 2D keypoints with
   visibility as confidence, 3D joints in the camera frame, the body parameters.

Output layout (``--out DIR``)::

    DIR/images/<split>_<index>.jpg
    DIR/grph_sequences/images/<split>_<index>.png   (palette-colour parsing map)
    DIR/synth_<split>.npz                           (SPIN/DSR annotations of the whole split)
    DIR/synth_<split>.json                          (the configuration, for resume checks)
    DIR/README.md                                   (dataset card)
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dsrbody.body.factory import BODY_MODELS, DEFAULT_BODY_MODEL, body_spec

log = logging.getLogger(__name__)

__all__ = [
    "SPLIT_CODES",
    "SynthConfig",
    "SampleMaker",
    "SynthError",
    "generate",
    "chunk_ranges",
    "CHUNK",
]

SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
#: ``--labels`` values (:class:`SynthConfig`)
LABEL_SETS = ("full", "3d", "2d")
#: seed-stream tag of the subjects' bodies (independent of split and index)
_SUBJECT_STREAM = 7919
#: Samples per chunk: the unit of work, of resume, and of batching inside a worker. Fixed, so a
#: sample never depends on how many workers there are.
CHUNK = 8
FORMAT_VERSION = 1


@dataclass
class SynthConfig:
    """What defines a synthetic split (everything but ``workers`` changes the data)."""

    num: int
    seed: int = 0
    split: str = "train"
    model: str = DEFAULT_BODY_MODEL
    model_path: str | None = None
    res: int = 224
    hard: bool = False
    truncation_prob: float = 0.1
    photo_prob: float = 0.5
    #: the mesh of a family with several (Anny; the key keeps its name for the files' resume checks)
    anny_topology: str = "anny"
    version: int = FORMAT_VERSION
    #: 0: a new body per sample; K > 0: every body is one of K subjects (the same K for any split and
    #: index with this seed), as in a few-subject motion-capture set (Human3.6M: 5-7 people)
    subjects: int = 0
    #: what the files keep (docs/ablation.md, "The paper's data regime"): "full" (pose and shape
    #: parameters, 3D joints, 2D keypoints, parsing maps); "3d" (no parameters: 3D joints, 2D, parsing,
    #: like MPI-INF-3DHP in SPIN's mix); "2d" (2D keypoints and parsing maps only, like in-the-wild images)
    labels: str = "full"

    def validate(self) -> None:
        """Raise ``ValueError`` on impossible settings."""
        if self.num <= 0:
            raise ValueError(f"--num must be a positive number of samples, got {self.num}")
        if self.split not in SPLIT_CODES:
            raise ValueError(f"--split must be one of {sorted(SPLIT_CODES)}, got {self.split!r}")
        spec = body_spec(self.model, missing_ok=True)
        if spec is None:
            raise ValueError(
                f"--model must be {' or '.join(repr(n) for n in BODY_MODELS)}, got {self.model!r}"
            )
        if spec.needs_files and not self.model_path:
            raise ValueError(
                f"--model {self.model} needs --model-path"
                + (" (a folder with male and female model files)" if spec.gendered else "")
            )
        if self.res < 32:
            raise ValueError(f"--res must be at least 32 pixels, got {self.res}")
        if self.subjects < 0:
            raise ValueError(f"--subjects must be >= 0 (0: a new body per sample), got {self.subjects}")
        if self.labels not in LABEL_SETS:
            raise ValueError(f"--labels must be one of {', '.join(LABEL_SETS)}, got {self.labels!r}")

    def to_json(self) -> dict:
        """The configuration as written to ``synth_<split>.json`` (``subjects`` and ``labels`` only when
        they are not the defaults, so that splits made before they existed still resume)."""
        d = asdict(self)
        for k, default in (("subjects", 0), ("labels", "full")):
            if d[k] == default:
                d.pop(k)
        return d


def chunk_ranges(num: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num)`` in fixed chunks."""
    return [(s, min(s + chunk, num)) for s in range(0, num, chunk)]


def _imgname(split: str, i: int) -> str:
    return f"images/{split}_{i:06d}.jpg"


def _parsing_name(imgname: str) -> str:
    return "grph_sequences/" + imgname[: -len(".jpg")] + ".png"


# --------------------------------------------------------------------------------------------
# per-sample work
# --------------------------------------------------------------------------------------------


class SampleMaker:
    """Builds the body model and garment machinery once, then makes samples by index."""

    def __init__(self, cfg: SynthConfig):
        torch.set_num_threads(1)
        self.cfg = cfg
        from dsrbody.body.factory import build_body_model

        spec = body_spec(cfg.model)
        # a gendered family: a male and a female model, picked per sample; else one model for all
        genders = ("male", "female") if spec.gendered else ("neutral",)
        self.models = {
            g[0]: build_body_model(
                cfg.model,
                model_path=cfg.model_path if spec.needs_files else None,
                gender=g,
                **spec.mesh_options(cfg.anny_topology),
            )
            for g in genders
        }
        self.some_model = next(iter(self.models.values()))
        self.spin_params = spec.spin_params
        self._prep = {}
        for key, model in self.models.items():
            self._prep[key] = self._prepare(model)

    # -- body --------------------------------------------------------------------------------
    def _prepare(self, model) -> dict:
        """Per-model constants: rest skeleton (for pose retargeting) and garment context."""
        from dsrbody.garments.geometry import BodyGeometry

        with torch.no_grad():
            mp_ = model.mean_params()
            zero = model(
                torch.eye(3)[None],
                torch.eye(3).expand(1, model.num_joints - 1, 3, 3),
                mp_["shape"][None].float(),
            )
        import scipy.sparse as sp

        from dsrbody.data.synth.poses import smpl_equivalents

        faces = model.faces.numpy()
        F, V = len(faces), model.num_vertices
        incidence = sp.csr_matrix(
            (np.ones(3 * F), (faces.reshape(-1), np.repeat(np.arange(F), 3))), shape=(V, F)
        )
        return {
            "faces": faces,
            "incidence": incidence,
            "rest_joints": zero.skeleton_joints[0],
            "geometry": BodyGeometry.from_model(model),
            "mean": mp_,
            "equivalents": smpl_equivalents(model),
        }

    def _sample_shape(self, rng: np.random.Generator) -> tuple[str, np.ndarray, str]:
        """``(model key, shape vector, gender 'm'/'f')``: a gendered family draws the gender first, then
        that model's shape; otherwise the model's shape gives the gender (Anny's gender phenotype).
        With ``subjects``, the body is subject ``k ~ U{0..K-1}``'s, drawn the same way from a generator
        seeded by ``(seed, k)`` only."""
        if self.cfg.subjects:
            k = int(rng.integers(self.cfg.subjects))
            rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, _SUBJECT_STREAM, k]))
        if len(self.models) > 1:
            gender = "m" if rng.random() < 0.5 else "f"
            shape, _ = self.models[gender].sample_shape(rng)
            return gender, shape, gender
        shape, gender = self.some_model.sample_shape(rng)
        return "n", shape, gender

    # -- one sample ----------------------------------------------------------------------------
    def make(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Make sample ``index``: ``(rgb (H,W,3) uint8, parsing labels (H,W) uint8, annotation dict)``."""
        from dsrbody.data.synth.appearance import sample_background
        from dsrbody.data.synth.poses import retarget_tpose, sample_pose
        from dsrbody.data.synth.render import render_clothed
        from dsrbody.data.synth.scene import frame_person, global_orientation, person_box
        from dsrbody.garments.outfit import dress_body, sample_outfit
        from dsrbody.geometry.rotations import matrix_to_axis_angle

        cfg = self.cfg
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLIT_CODES[cfg.split], index]))
        key, shape, gender = self._sample_shape(rng)
        model, prep = self.models[key], self._prep[key]
        pose = sample_pose(rng)
        R_rel = retarget_tpose(
            torch.from_numpy(pose.rotmats)[None],
            prep["rest_joints"].double(),
            model.joint_names,
            model.parents,
            prep["equivalents"],
        )[0]
        yaw = rng.uniform(0, 2 * np.pi)
        go = global_orientation(yaw, rng.normal(0, 0.08), rng.normal(0, 0.06))
        go_t = torch.from_numpy(go).float()[None]
        body_pose = R_rel[1:].float()[None]
        shape_t = torch.from_numpy(shape).float()[None]
        with torch.no_grad():
            out = model(go_t, body_pose, shape_t)
        joints = out.joints[0].double().numpy()

        outfit = sample_outfit(rng, hard=cfg.hard)
        clothed = dress_body(prep["geometry"], outfit)
        clothed_verts = _displace(out.vertices[0].double().numpy(), prep, clothed.displacement)
        cam = frame_person(clothed_verts, rng, cfg.res, truncation_prob=cfg.truncation_prob)
        background = sample_background(rng, (cfg.res, cfg.res), photo_prob=cfg.photo_prob)
        rgb, labels, depth = render_clothed(
            clothed_verts + cam.translation, clothed.faces, clothed.face_labels, cam, background, rng
        )

        # keypoints: projection of the body's keypoint set, visibility from the z-buffer
        Xc = joints + cam.translation
        uv = Xc[:, :2] / Xc[:, 2:3] * cam.focal + cam.principal_point
        conf = model.keypoint_confidence
        avail = np.asarray(torch.ones(len(joints)) if conf is None else conf, dtype=np.float64)
        H = W = cfg.res
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        ci = np.clip(uv[:, 0].astype(int), 0, W - 1)
        ri = np.clip(uv[:, 1].astype(int), 0, H - 1)
        surface = depth[ri, ci]
        visible = inside & (Xc[:, 2] - surface < 0.15)
        conf = avail * visible
        kp = np.concatenate([uv * (avail[:, None] > 0), conf[:, None]], axis=1)
        S = np.concatenate([Xc[25:] * (avail[25:, None] > 0), avail[25:, None]], axis=1)
        center, scale = person_box(labels > 0, rng)

        aa = matrix_to_axis_angle(torch.cat([go_t.double(), R_rel[1:].double()], 0)).numpy()
        ann = {
            "imgname": _imgname(cfg.split, index),
            "center": center,
            "scale": scale,
            "part": kp[25:],
            "openpose": kp[:25],
            "S": S,
            "pose": aa.reshape(-1),
            "shape": shape,
            "has_smpl": 1.0 if self.spin_params else 0.0,
            "has_params": 1.0,
            "gender": gender,
            "cam_t": cam.translation,
            "focal_length": cam.focal,
            "principal_point": cam.principal_point,
            "truncated": cam.truncated,
            "pose_family": pose.family,
            "outfit": _describe_outfit(outfit),
        }
        return rgb, labels, withhold_labels(ann, cfg.labels)


def withhold_labels(ann: dict, labels: str) -> dict:
    """An annotation with what ``labels`` withholds zeroed and flagged absent (:class:`SynthConfig`):
    "3d" and "2d" drop the pose and shape parameters (``has_params``/``has_smpl`` 0, values 0), "2d"
    also the 3D joints (``S`` 0, confidence 0). Images, 2D keypoints and parsing maps stay."""
    if labels == "full":
        return ann
    out = dict(ann)
    out["pose"] = np.zeros_like(ann["pose"])
    out["shape"] = np.zeros_like(ann["shape"])
    out["has_params"] = 0.0
    out["has_smpl"] = 0.0
    if labels == "2d":
        out["S"] = np.zeros_like(ann["S"])
    return out


def _displace(verts: np.ndarray, prep: dict, displacement: np.ndarray) -> np.ndarray:
    """Clothed surface: each vertex moved by its displacement (metres) along its area-weighted normal.

    The same surface as ``ClothedBody.displace``, with the vertex-face incidence as a cached sparse
    matrix (several times faster on the CPU than a scatter).
    """
    tri = verts[prep["faces"]]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = prep["incidence"] @ fn
    vn /= np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12
    return verts + displacement.astype(np.float64)[:, None] * vn


def _describe_outfit(outfit) -> str:
    """The outfit as compact JSON: kind and parameters of each garment, innermost first."""
    import dataclasses

    items = []
    for g in outfit.layered():
        d = {"kind": g.kind}
        if dataclasses.is_dataclass(g):
            for k, v in dataclasses.asdict(g).items():
                d[k] = round(float(v), 4) if isinstance(v, (float, np.floating)) else v
        items.append(d)
    return json.dumps(items, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# dataset writing
# --------------------------------------------------------------------------------------------


class SynthError(RuntimeError):
    """A generation run that failed for a reason other than its configuration: a generator worker that
    died, a sample that could not be made, a file that could not be written (full disk, permissions).

    The message is one line naming the folder or file; what was finished is kept (complete chunks
    only), so ``--resume`` continues from there.
    """


#: Test hook: ``DSRBODY_SYNTH_FAULT=exit@I`` (``kill@I``, ``raise@I``) makes the worker about to make
#: sample ``I`` end itself with ``os._exit`` (a SIGKILL, an exception). ``exit``/``kill`` end the
#: process that makes the sample: use them with ``workers > 1`` only.
FAULT_ENV = "DSRBODY_SYNTH_FAULT"

_MAKER: SampleMaker | None = None
_INIT_ERROR: BaseException | None = None


def _worker_init(cfg_dict: dict, defer_errors: bool = False) -> None:
    """Build the process's :class:`SampleMaker`.

    In a pool worker (``defer_errors``) an exception is kept and raised by the first chunk instead,
    so that it comes back to the parent as itself (a pool worker whose initializer fails just dies).
    """
    global _MAKER, _INIT_ERROR
    torch.set_num_threads(1)
    if defer_errors:
        from dsrbody.data.workers import exit_with_parent

        exit_with_parent()  # a killed dsrbody synth does not leave its workers behind
    try:
        _MAKER = SampleMaker(SynthConfig(**cfg_dict))
    except Exception as exc:
        if not defer_errors:
            raise
        _INIT_ERROR = exc


def _fault(index: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kind, _, at = spec.partition("@")
    if not at.isdigit() or int(at) != index:
        return
    if kind == "exit":
        os._exit(70)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "raise":
        raise RuntimeError(f"fault injected by {FAULT_ENV}={spec}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _os_error_reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "no space left on the device: the disk is full (or the quota is exceeded)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return " ".join((exc.strerror or str(exc) or type(exc).__name__).split())


@contextlib.contextmanager
def _writing(path: Path, what: str = "write", resume_hint: bool = True) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into a one-line :class:`SynthError` naming it."""
    try:
        yield
    except OSError as exc:
        hint = "; the samples finished so far are kept: fix this and rerun with --resume to continue"
        raise SynthError(
            f"{path}: could not {what} ({_os_error_reason(exc)}){hint if resume_hint else ''}"
        ) from exc


def _write_parsing_atomic(path: Path, labels: np.ndarray) -> None:
    from dsrbody.data.synth.io import atomic_path
    from dsrbody.semantics.parsing import write_parsing

    with atomic_path(path) as tmp:  # the temporary name keeps the .png suffix PIL goes by
        write_parsing(tmp, labels)


def _make_chunk(args: tuple[str, int, int]) -> tuple[int, int]:
    """Make and write samples ``[start, stop)``, then their chunk annotation file (the resume marker).

    Every file is written atomically and the marker last, so a chunk with a marker is complete.
    """
    out_dir, start, stop = args
    from dsrbody.data.synth.io import save_npz_deterministic, write_jpeg

    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    assert _MAKER is not None
    out = Path(out_dir)
    split = _MAKER.cfg.split
    anns = []
    for i in range(start, stop):
        try:
            _fault(i)
            rgb, labels, ann = _MAKER.make(i)
        except Exception as exc:
            raise SynthError(
                f"{out}: sample {i} of the '{split}' split could not be made ({_one_line(exc)}); "
                "DSRBODY_DEBUG=1 shows the traceback"
            ) from exc
        img = out / ann["imgname"]
        with _writing(img):
            write_jpeg(img, rgb)
        png = out / _parsing_name(ann["imgname"])
        with _writing(png):
            _write_parsing_atomic(png, labels)
        anns.append(ann)
    marker = _chunk_file(out, split, start)
    with _writing(marker):
        save_npz_deterministic(marker, _stack(anns))
    return start, stop


def _chunk_file(out: Path, split: str, start: int) -> Path:
    return out / f".synth_{split}_parts" / f"{start:08d}.npz"


def _stack(anns: list[dict]) -> dict[str, np.ndarray]:
    keys = anns[0].keys()
    arrays = {}
    for k in keys:
        vals = [a[k] for a in anns]
        if isinstance(vals[0], str):
            arrays[k] = np.array(vals, dtype=f"<U{max(len(v) for v in vals)}")
        else:
            arrays[k] = np.stack([np.asarray(v, dtype=np.float64) for v in vals]).astype(
                np.float32 if k not in ("pose", "shape") else np.float64
            )
    return arrays


def _merge(out: Path, cfg: SynthConfig) -> Path:
    from dsrbody.data.synth.io import save_npz_deterministic

    parts = []
    for s, _ in chunk_ranges(cfg.num):
        f = _chunk_file(out, cfg.split, s)
        try:
            with np.load(f, allow_pickle=False) as z:
                parts.append({k: z[k] for k in z.files})
        except Exception as exc:  # noqa: BLE001 - any unreadable chunk is one error line
            raise SynthError(
                f"{f}: chunk annotation file is unreadable ({_one_line(exc)}); delete it and rerun "
                "with --resume to make its samples again"
            ) from exc
    merged = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        if vals[0].dtype.kind == "U":
            width = max(v.dtype.itemsize // 4 for v in vals)
            vals = [v.astype(f"<U{width}") for v in vals]
        merged[k] = np.concatenate(vals)
    merged["body_model"] = np.array([cfg.model] * cfg.num)
    shape_field = body_spec(cfg.model).shape_field
    if shape_field:
        merged[shape_field] = merged["shape"].copy()
    path = out / f"synth_{cfg.split}.npz"
    with _writing(path):
        save_npz_deterministic(path, merged)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_stray_temps(out: Path, split: str) -> int:
    """Remove the temporary files an interrupted run of this split left behind; return how many.

    Only this split's files: another split may be generated into the same folder at the same time
    (the shared ``README.md`` is only cleared of temporaries whose writer has ended).
    """
    from dsrbody.data.synth.io import temp_target

    parts = _chunk_file(out, split, 0).parent
    removed = 0
    for folder in (out, out / "images", out / "grph_sequences" / "images", parts):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            stray = []
            for entry in entries:
                target = temp_target(entry.name)
                if target is None or not entry.is_file(follow_symlinks=False):
                    continue
                name, pid = target
                if folder == parts:
                    ours = True
                elif folder == out:
                    ours = name in (f"synth_{split}.npz", f"synth_{split}.json") or (
                        name == "README.md" and not _pid_alive(pid)
                    )
                else:
                    ours = name.startswith(f"{split}_")
                if ours:
                    stray.append(entry.path)
        for p in stray:
            with _writing(Path(p), "remove this stray temporary file", resume_hint=False):
                os.unlink(p)
            removed += 1
    return removed


def _check_folder(
    out: Path, cfg: SynthConfig, resume: bool, overwrite: bool, command: str | None = None
) -> list[tuple[int, int]]:
    """Validate the output folder; return the chunks still to make."""
    from dsrbody.data.synth.io import atomic_write_text, temp_target

    cfg_file = out / f"synth_{cfg.split}.json"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    existing = [p for p in out.iterdir()] if out.exists() else []
    if existing and overwrite:
        ours = {"images", "grph_sequences", "README.md"} | {p.name for p in out.glob("synth_*")}
        ours |= {p.name for p in out.glob(".synth_*_parts")}
        ours |= {
            p.name
            for p in existing
            if (t := temp_target(p.name)) and (t[0].startswith("synth_") or t[0] == "README.md")
        }
        foreign = [p.name for p in existing if p.name not in ours]
        if foreign:
            raise ValueError(
                f"{out}: --overwrite refuses to delete a folder with files that dsrbody synth did not write "
                f"({', '.join(sorted(foreign)[:5])})"
            )
        for p in existing:
            with _writing(p, "delete it", resume_hint=False):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        existing = []
    if existing:
        if not cfg_file.exists():
            others = sorted(p.name for p in out.glob("synth_*.json"))
            if not others:
                raise ValueError(
                    f"{out}: folder is not empty and holds no synthetic dataset; choose an empty folder "
                    "or pass --overwrite"
                )
        else:
            try:
                old = json.loads(cfg_file.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"{cfg_file}: unreadable configuration ({_one_line(exc)}); pass --overwrite to "
                    "start again"
                ) from None
            old.pop("command", None)
            new = cfg.to_json()
            diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            if diff:
                detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
                raise ValueError(
                    f"{out}: holds a '{cfg.split}' split made with another configuration ({detail}); "
                    "pass --overwrite to replace it or choose another folder"
                )
            if (out / f"synth_{cfg.split}.npz").exists():
                return []
            if not resume:
                raise ValueError(
                    f"{out}: holds an unfinished '{cfg.split}' split with this configuration; pass "
                    "--resume to continue it or --overwrite to start again"
                )
    with _writing(out, "create the folder", resume_hint=False):
        out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise SynthError(f"{out}: folder is not writable")
    with _writing(out, "create the dataset folders in it", resume_hint=False):
        (out / "images").mkdir(exist_ok=True)
        (out / "grph_sequences" / "images").mkdir(parents=True, exist_ok=True)
        _chunk_file(out, cfg.split, 0).parent.mkdir(exist_ok=True)
    _remove_stray_temps(out, cfg.split)
    with _writing(cfg_file, resume_hint=False):
        atomic_write_text(
            cfg_file, json.dumps({**cfg.to_json(), "command": command}, indent=2, sort_keys=True) + "\n"
        )
    return [(s, e) for s, e in chunk_ranges(cfg.num) if not _chunk_file(out, cfg.split, s).exists()]


def _done_samples(out: Path, cfg: SynthConfig) -> int:
    return sum(e - s for s, e in chunk_ranges(cfg.num) if _chunk_file(out, cfg.split, s).exists())


def generate(
    cfg: SynthConfig,
    out_dir: str | Path,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> Path:
    """Generate (or finish) a synthetic split.

    Args:
        cfg: the split's configuration.
        out_dir: dataset root.
        workers: processes (1 = in this process). The data do not depend on it.
        resume: continue an interrupted split with the same configuration.
        overwrite: delete a previous synthetic dataset in ``out_dir`` first.
        progress: show a progress bar.
        command: the command line, recorded in the dataset card.

    Returns:
        Path of the split's annotation file ``synth_<split>.npz``.

    Raises:
        ValueError: impossible settings, or a folder that does not fit them (one line).
        SynthError: a worker died, a sample could not be made, or a file could not be written (full
            disk, permissions); complete chunks are kept and ``resume=True`` continues after them.
    """
    cfg.validate()
    out = Path(out_dir)
    todo = _check_folder(out, cfg, resume, overwrite, command)
    npz = out / f"synth_{cfg.split}.npz"
    parts_dir = _chunk_file(out, cfg.split, 0).parent
    if not todo and npz.exists():
        if parts_dir.exists() or not (out / "README.md").exists():  # ended after the merge
            if parts_dir.exists():
                with _writing(parts_dir, "remove the chunk folder"):
                    shutil.rmtree(parts_dir)
            _write_card(out, cfg, command)
        log.info(f"{npz} is complete ({cfg.num} samples); nothing to do")
        return npz
    from tqdm import tqdm

    remaining = sum(e - s for s, e in todo)
    bar = tqdm(
        total=cfg.num,
        initial=cfg.num - remaining,
        desc=f"synth {cfg.split}",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    jobs = [(str(out), s, e) for s, e in todo]
    try:
        if workers <= 1 or not jobs:
            if jobs:
                _worker_init(cfg.to_json())
            for job in jobs:
                s, e = _make_chunk(job)
                bar.update(e - s)
        else:
            _run_pool(out, cfg, jobs, workers, bar)
    finally:
        bar.close()
    made = remaining
    dt = time.perf_counter() - t0
    path = _merge(out, cfg)
    with _writing(parts_dir, "remove the chunk folder"):
        shutil.rmtree(parts_dir)
    _write_card(out, cfg, command)
    log.info(f"wrote {path} ({cfg.num} samples; {made} made now in {dt:.1f} s, {made / max(dt, 1e-9):.1f}/s)")
    return path


def _run_pool(out: Path, cfg: SynthConfig, jobs: list[tuple[str, int, int]], workers: int, bar) -> None:
    """Make ``jobs`` in ``workers`` spawned processes; a worker that dies is a :class:`SynthError`.

    A ``ProcessPoolExecutor`` notices a dead worker (SIGKILL, out of memory, ``os._exit``) and fails
    the pending chunks, where ``multiprocessing.Pool`` would wait for its result forever. On any
    failure the chunks not started are cancelled; the ones running finish (or die with the pool).
    """
    pool = ProcessPoolExecutor(
        min(workers, len(jobs)),
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(cfg.to_json(), True),
    )
    broken: BrokenProcessPool | None = None
    try:
        futures = [pool.submit(_make_chunk, job) for job in jobs]
        for fut in as_completed(futures):
            s, e = fut.result()
            bar.update(e - s)
    except BrokenProcessPool as exc:
        broken = exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if broken is not None:
        raise SynthError(
            f"{out}: a generator worker died (killed or out of memory?) after {_done_samples(out, cfg)} "
            f"of {cfg.num} samples; rerun with --resume to continue"
        ) from broken


def _write_card(out: Path, cfg: SynthConfig, command: str | None) -> None:
    from dsrbody.data.synth.card import dataset_card
    from dsrbody.data.synth.io import atomic_write_text

    splits = {}
    for f in sorted(out.glob("synth_*.json")):
        c = json.loads(f.read_text())
        splits[c["split"]] = c
    card = out / "README.md"
    with _writing(card):
        atomic_write_text(card, dataset_card(splits, command))
