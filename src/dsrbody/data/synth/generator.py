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

import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SPLIT_CODES",
    "SynthConfig",
    "SampleMaker",
    "generate",
    "chunk_ranges",
    "CHUNK",
]

SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
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
    model: str = "anny"
    model_path: str | None = None
    res: int = 224
    hard: bool = False
    truncation_prob: float = 0.1
    photo_prob: float = 0.5
    anny_topology: str = "anny"
    version: int = FORMAT_VERSION

    def validate(self) -> None:
        """Raise ``ValueError`` on impossible settings."""
        if self.num <= 0:
            raise ValueError(f"--num must be a positive number of samples, got {self.num}")
        if self.split not in SPLIT_CODES:
            raise ValueError(f"--split must be one of {sorted(SPLIT_CODES)}, got {self.split!r}")
        if self.model not in ("anny", "smpl"):
            raise ValueError(f"--model must be 'anny' or 'smpl', got {self.model!r}")
        if self.model == "smpl" and not self.model_path:
            raise ValueError("--model smpl needs --model-path (a folder with SMPL_MALE/FEMALE files)")
        if self.res < 32:
            raise ValueError(f"--res must be at least 32 pixels, got {self.res}")

    def to_json(self) -> dict:
        """The configuration as written to ``synth_<split>.json``."""
        return asdict(self)


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

        if cfg.model == "anny":
            self.models = {"n": build_body_model("anny", topology=cfg.anny_topology)}
        else:
            self.models = {
                g[0]: build_body_model("smpl", model_path=cfg.model_path, gender=g)
                for g in ("male", "female")
            }
        self.some_model = next(iter(self.models.values()))
        self._shape_dist = None
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
        """``(model key, shape vector, gender 'm'/'f')``."""
        if self.cfg.model == "smpl":
            gender = "m" if rng.random() < 0.5 else "f"
            betas = rng.normal(0.0, 1.0, self.models[gender].shape_dim)
            return gender, betas, gender
        if self._shape_dist is None:
            import anny.shape_distribution as sd

            raw = self.some_model.anny_model if hasattr(self.some_model, "anny_model") else None
            if raw is None:
                raise RuntimeError("the Anny adapter does not expose its anny model as .anny_model")
            self._shape_dist = sd.SimpleShapeDistribution(
                raw,
                morphological_age_distribution=torch.distributions.Uniform(
                    torch.tensor(16.0, dtype=raw.dtype), torch.tensor(80.0, dtype=raw.dtype)
                ),
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            _, ph = self._shape_dist.sample(1)
        names = ("gender", "age", "muscle", "weight", "height", "proportions")
        vec = np.array([float(ph[n][0]) for n in names])
        if rng.random() < 0.2:  # push toward slim or heavy bodies
            vec[3] = rng.uniform(0.0, 0.15) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)
        vec[[0, 2, 3, 4, 5]] = np.clip(vec[[0, 2, 3, 4, 5]], 0.0, 1.0)
        return "n", vec, ("m" if vec[0] < 0.5 else "f")

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
        avail = np.asarray(getattr(model, "keypoint_confidence", torch.ones(len(joints))), dtype=np.float64)
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
            "has_smpl": 1.0 if cfg.model == "smpl" else 0.0,
            "has_params": 1.0,
            "gender": gender,
            "cam_t": cam.translation,
            "focal_length": cam.focal,
            "principal_point": cam.principal_point,
            "truncated": cam.truncated,
            "pose_family": pose.family,
            "outfit": _describe_outfit(outfit),
        }
        return rgb, labels, ann


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

_MAKER: SampleMaker | None = None


def _worker_init(cfg_dict: dict) -> None:
    global _MAKER
    torch.set_num_threads(1)
    _MAKER = SampleMaker(SynthConfig(**cfg_dict))


def _make_chunk(args: tuple[str, int, int]) -> tuple[int, int]:
    """Make and write samples ``[start, stop)``, then their chunk annotation file (the resume marker)."""
    out_dir, start, stop = args
    from dsrbody.data.synth.io import save_npz_deterministic, write_jpeg
    from dsrbody.semantics.parsing import write_parsing

    assert _MAKER is not None
    out = Path(out_dir)
    anns = []
    for i in range(start, stop):
        rgb, labels, ann = _MAKER.make(i)
        write_jpeg(out / ann["imgname"], rgb)
        write_parsing(out / _parsing_name(ann["imgname"]), labels)
        anns.append(ann)
    arrays = _stack(anns)
    save_npz_deterministic(_chunk_file(out, _MAKER.cfg.split, start), arrays)
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

    parts = [np.load(_chunk_file(out, cfg.split, s)) for s, _ in chunk_ranges(cfg.num)]
    merged = {}
    for k in parts[0].files:
        vals = [p[k] for p in parts]
        if vals[0].dtype.kind == "U":
            width = max(v.dtype.itemsize // 4 for v in vals)
            vals = [v.astype(f"<U{width}") for v in vals]
        merged[k] = np.concatenate(vals)
    merged["body_model"] = np.array([cfg.model] * cfg.num)
    if cfg.model == "anny":
        merged["phenotype"] = merged["shape"].copy()
    path = out / f"synth_{cfg.split}.npz"
    save_npz_deterministic(path, merged)
    return path


def _check_folder(
    out: Path, cfg: SynthConfig, resume: bool, overwrite: bool, command: str | None = None
) -> list[tuple[int, int]]:
    """Validate the output folder; return the chunks still to make."""
    cfg_file = out / f"synth_{cfg.split}.json"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    existing = [p for p in out.iterdir()] if out.exists() else []
    if existing and overwrite:
        ours = {"images", "grph_sequences", "README.md"} | {p.name for p in out.glob("synth_*")}
        ours |= {p.name for p in out.glob(".synth_*_parts")}
        foreign = [p.name for p in existing if p.name not in ours]
        if foreign:
            raise ValueError(
                f"{out}: --overwrite refuses to delete a folder with files that dsrbody synth did not write "
                f"({', '.join(sorted(foreign)[:5])})"
            )
        for p in existing:
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
            old = json.loads(cfg_file.read_text())
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
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(f"{out}: folder is not writable")
    (out / "images").mkdir(exist_ok=True)
    (out / "grph_sequences" / "images").mkdir(parents=True, exist_ok=True)
    _chunk_file(out, cfg.split, 0).parent.mkdir(exist_ok=True)
    cfg_file.write_text(json.dumps({**cfg.to_json(), "command": command}, indent=2, sort_keys=True) + "\n")
    return [(s, e) for s, e in chunk_ranges(cfg.num) if not _chunk_file(out, cfg.split, s).exists()]


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
    """
    cfg.validate()
    out = Path(out_dir)
    todo = _check_folder(out, cfg, resume, overwrite, command)
    npz = out / f"synth_{cfg.split}.npz"
    if not todo and npz.exists():
        print(f"{npz} is complete ({cfg.num} samples); nothing to do")
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
    if workers <= 1:
        _worker_init(cfg.to_json())
        for job in jobs:
            s, e = _make_chunk(job)
            bar.update(e - s)
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(cfg.to_json(),)) as pool:
            for s, e in pool.imap_unordered(_make_chunk, jobs):
                bar.update(e - s)
    bar.close()
    made = remaining
    dt = time.perf_counter() - t0
    path = _merge(out, cfg)
    shutil.rmtree(_chunk_file(out, cfg.split, 0).parent)
    _write_card(out, cfg, command)
    if progress:
        print(
            f"wrote {path} ({cfg.num} samples; {made} made now in {dt:.1f} s, {made / max(dt, 1e-9):.1f}/s)"
        )
    return path


def _write_card(out: Path, cfg: SynthConfig, command: str | None) -> None:
    from dsrbody.data.synth.card import dataset_card

    splits = {}
    for f in sorted(out.glob("synth_*.json")):
        c = json.loads(f.read_text())
        splits[c["split"]] = c
    (out / "README.md").write_text(dataset_card(splits, command))
