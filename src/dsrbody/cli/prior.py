"""``dsrbody prior``: build a semantic clothing prior and look at one.

    dsrbody prior build (--from-scans DIR | --procedural N) --model anny|smpl [--model-path P]
                        [--seed S] [--smooth K] [--hard] [--label-set cihp|atr] --out prior.npz
    dsrbody prior show prior.npz [--model anny|smpl] [--model-path P] --out grid.png
    dsrbody prior pose --data poses.npz [--data ...] [--model anny|smpl] [--components K] --out gmm.npz

``build`` writes the ``ClothingPrior`` ``.npz`` (plus the rest-pose face centroids used for nearest-face
transfer). ``show`` paints the prior on the model's mean body in its rest pose with the project's z-buffer
renderer (:func:`dsrbody.render.hard.render_mesh`, flat shading, a far camera), front view: an argmax panel
(CIHP colours; its back view beside it) and one panel per label whose area-weighted mass is at least
``--min-mass`` or whose largest face probability is at least 0.2. ``pose`` fits SMPLify's
Gaussian-mixture pose prior (:class:`dsrbody.fit.priors.PoseGMM`, used by ``dsrbody fit``) to the poses
of SPIN/DSR-format files (the rows whose parameters are the model's).
"""

from __future__ import annotations

import argparse
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dsrbody.cli import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody prior``."""
    parser.description = "Build a semantic clothing prior (per-face label probabilities) or paint one."
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    b = sub.add_parser("build", help="build a prior from labelled scans or procedural outfits")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-scans", metavar="DIR", help="folder of labelled scans (.npz 'labels' or .ply)")
    src.add_argument("--procedural", metavar="N", type=int, help="number of procedural outfits to average")
    _model_args(b)
    b.add_argument("--seed", type=int, default=0, help="random seed of the procedural outfits (default 0)")
    b.add_argument("--smooth", type=int, default=0, metavar="K", help="neighbour-smoothing iterations")
    b.add_argument("--hard", action="store_true", help="heavier-clothing outfit distribution (procedural)")
    b.add_argument("--label-set", default="cihp", choices=("cihp", "atr"), help="label set of the scans")
    b.add_argument("--out", required=True, help="output .npz")

    s = sub.add_parser("show", help="paint a prior on the body, one panel per label")
    s.add_argument("prior", help="prior file (.npz, or the official bare .npy for SMPL)")
    _model_args(s)
    s.add_argument("--min-mass", type=float, default=0.002, help="smallest area fraction of a shown label")
    s.add_argument("--out", required=True, help="output picture (.png)")

    g = sub.add_parser(
        "pose", help="fit a Gaussian-mixture pose prior (SMPLify's) to the poses of data files"
    )
    g.add_argument("--data", action="append", required=True, help="SPIN/DSR .npz with 'pose' (repeatable)")
    g.add_argument("--model", default="anny", help="body model whose poses to take (default anny)")
    g.add_argument("--components", type=int, default=8, help="mixture components (default 8, as SMPLify)")
    g.add_argument("--seed", type=int, default=0, help="EM initialisation seed (default 0)")
    g.add_argument("--out", required=True, help="output .npz")


def _model_args(p: argparse.ArgumentParser) -> None:
    from dsrbody.cli.options import add_body_options

    add_body_options(p, flag="--model", gender=False)


def _build_model(args: argparse.Namespace) -> torch.nn.Module:
    from dsrbody.body.factory import build_body_model

    return build_body_model(args.model, model_path=args.model_path)


def run(args: argparse.Namespace) -> int:
    """Run ``dsrbody prior build|show``."""
    if args.action == "build":
        return _build(args)
    if args.action == "pose":
        return _pose(args)
    return _show(args)


def _pose(args: argparse.Namespace) -> int:
    from dsrbody.body.factory import body_spec
    from dsrbody.fit.priors import fit_pose_gmm

    spec = body_spec(args.model)
    if args.components < 1:
        raise CLIError(f"--components must be >= 1, got {args.components}")
    chunks = [pose_rows(p, spec.name, spec.spin_params) for p in args.data]
    poses = np.concatenate(chunks)
    if len(poses) < 10 * args.components:
        raise CLIError(f"{len(poses)} {spec.label} poses in --data, need >= {10 * args.components}")
    print(f"fitting {args.components} components to {len(poses)} {spec.label} poses ...", file=sys.stderr)
    gmm = fit_pose_gmm(poses[:, 3:], components=args.components, seed=args.seed, body_model=spec.name)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    gmm.save(tmp)
    tmp.replace(out)
    print(f"wrote {out} ({args.components} components over {gmm.num_joints} joints)")
    return 0


def pose_rows(path: str | Path, body_name: str, spin_params: bool) -> np.ndarray:
    """``(N, 3 J)`` the axis-angle poses of a SPIN/DSR file whose parameters are ``body_name``'s.

    A row counts when its ``has_params`` (or, for SPIN's own body model, ``has_smpl``) is set and, where
    the file names each row's body model (``body_model``), it names this one.

    Raises:
        CLIError: the file is missing, unreadable or has no such rows (one line naming it).
    """
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{p}: --data file not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            if "pose" not in z.files:
                raise CLIError(f"{p}: no 'pose' array")
            pose = np.asarray(z["pose"], np.float64)
            n = len(pose)
            flag = z["has_params"] if "has_params" in z.files else None
            if flag is None and spin_params and "has_smpl" in z.files:
                flag = z["has_smpl"]
            ok = np.ones(n, bool) if flag is None else np.asarray(flag).reshape(n) > 0
            if "body_model" in z.files:
                ok &= np.asarray(z["body_model"]).astype(str).reshape(n) == body_name
            elif not spin_params:
                ok[:] = False  # a file without names holds SPIN's body model's parameters
    except CLIError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CLIError(f"{p}: not a readable .npz ({e})") from None
    rows = pose[ok & np.isfinite(pose).all(axis=1)]
    if not len(rows):
        raise CLIError(f"{p}: no {body_name} poses (has_params / body_model)")
    return rows


# ---------------------------------------------------------------------------------------------- build
def _build(args: argparse.Namespace) -> int:
    from dsrbody.garments.geometry import BodyGeometry
    from dsrbody.garments.prior import build_procedural_prior, face_centroids, save_prior
    from dsrbody.semantics.prior import ClothingPrior

    if args.smooth < 0:
        raise CLIError(f"--smooth must be >= 0, got {args.smooth}")
    if args.procedural is not None and args.procedural < 1:
        raise CLIError(f"--procedural must be >= 1, got {args.procedural}")
    if args.from_scans is not None and not Path(args.from_scans).is_dir():
        raise FileNotFoundError(f"scan folder not found: {args.from_scans}")
    out = Path(args.out)
    if out.suffix.lower() != ".npz":
        raise CLIError(f"--out must be a .npz file, got {out}")
    model = _build_model(args)
    geom = BodyGeometry.from_model(model) if args.procedural is not None else None
    if args.procedural is not None:
        prior = build_procedural_prior(
            geom, args.procedural, args.seed, hard=args.hard, smoothing_iterations=args.smooth, progress=True
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skipped files are listed below instead
            prior = ClothingPrior.from_scans(
                args.from_scans, model.faces, smoothing_iterations=args.smooth, label_set=args.label_set
            )
        if prior.skipped:
            print(f"skipped {len(prior.skipped)} unreadable scan file(s):", file=sys.stderr)
            for name, reason in prior.skipped:
                print(f"  {name}: {reason}", file=sys.stderr)
        geom = _try_geometry(model)
    save_prior(prior, out, face_centroids(geom) if geom is not None else None)
    print(f"wrote {out}: {prior.num_faces} faces, topology {prior.topology_id}, {prior.source}")
    return 0


def _try_geometry(model: torch.nn.Module):
    """Body coordinates when the body-part labels are available for the model, else None."""
    from dsrbody.garments.geometry import BodyGeometry

    try:
        return BodyGeometry.from_model(model)
    except (ImportError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- show
def _show(args: argparse.Namespace) -> int:
    from dsrbody.garments.geometry import _mean_rest_vertices
    from dsrbody.semantics.prior import ClothingPrior

    path = Path(args.prior)
    if not path.is_file():
        raise FileNotFoundError(f"clothing prior not found: {path}")
    model = _build_model(args)
    prior = ClothingPrior.load(path, expected_topology=model)
    verts = _mean_rest_vertices(model).double().numpy()
    faces = model.faces.detach().cpu().numpy().astype(np.int64)
    fig = prior_figure(prior.probs.numpy(), verts, faces, min_mass=args.min_mass, title=f"{path.name}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"wrote {out}")
    return 0


def shown_labels(probs: np.ndarray, areas: np.ndarray, min_mass: float) -> list[int]:
    """Labels worth a panel: area-weighted mass ``>= min_mass`` or a face probability ``>= 0.2``.

    Args:
        probs: ``(F, 20)`` prior.
        areas: ``(F,)`` face areas (any unit).
        min_mass: smallest area fraction.
    """
    mass = (probs * areas[:, None]).sum(0) / max(float(areas.sum()), 1e-12)
    keep = (mass >= min_mass) | (probs.max(0) >= 0.2)
    return [int(i) for i in np.nonzero(keep)[0]]


@dataclass
class BodyView:
    """A z-buffer view of a mesh: which face each pixel shows and its Lambert shade.

    Attributes:
        face_index: ``(H, W)`` int64, -1 for background.
        shade: ``(H, W)`` float in [0, 1] (shading of a white surface).
    """

    face_index: np.ndarray
    shade: np.ndarray

    def paint(self, face_colors: np.ndarray, background: float = 1.0) -> np.ndarray:
        """``(H, W, 3)`` float RGB: ``face_colors (F, 3)`` shaded, ``background`` grey elsewhere."""
        img = np.full((*self.face_index.shape, 3), background)
        m = self.face_index >= 0
        img[m] = face_colors[self.face_index[m]] * self.shade[m, None]
        return np.clip(img, 0.0, 1.0)


def body_views(verts: np.ndarray, faces: np.ndarray, height_px: int = 420) -> dict[str, BodyView]:
    """Front and back views of a body with :func:`dsrbody.render.hard.render_mesh` (near-orthographic:
    a far camera with a long focal length).

    Args:
        verts: ``(V, 3)`` body-model frame (y up, facing +z), metres.
        faces: ``(F, 3)``.
        height_px: picture height; the body fills 94 % of it.

    Returns:
        ``{"front": BodyView, "back": BodyView}``; in the front view the subject's left (+x) is on the
        picture's right, as for a person facing the camera.
    """
    from dsrbody.render.hard import render_mesh

    v = torch.as_tensor(verts, dtype=torch.float64)
    centre = (v.max(0).values + v.min(0).values) / 2
    extent = v.max(0).values - v.min(0).values
    v = v - centre
    distance = 50.0
    focal = 0.94 * height_px * distance / float(extent[1])
    width_px = int(np.ceil(height_px * float(max(extent[0], extent[2])) / float(extent[1]) / 0.94)) + 8
    views = {}
    for name, sign in (("front", 1.0), ("back", -1.0)):
        # camera frame (x right, y down, z forward): front camera looks along -z of the body
        cam = torch.stack([sign * v[:, 0], -v[:, 1], distance - sign * v[:, 2]], dim=1)
        out = render_mesh(
            cam.float(),
            torch.as_tensor(faces).long(),
            focal=focal,
            principal_point=(width_px / 2, height_px / 2),
            image_size=(height_px, width_px),
            face_colors=torch.ones(len(faces), 3),
            shading="flat",
            light_dir=(0.0, 0.0, -1.0),
            ambient=0.5,
            diffuse=0.5,
        )
        views[name] = BodyView(out.face_index[0].numpy(), out.rgba[0, ..., 0].numpy().astype(np.float64))
    return views


def prior_figure(
    probs: np.ndarray, verts: np.ndarray, faces: np.ndarray, min_mass: float = 0.002, title: str = ""
):
    """A matplotlib figure of a prior painted on a mesh.

    Panels: the argmax label per face (CIHP colours), front and back; then per shown label
    (:func:`shown_labels`) its probability per face on a 0..1 viridis scale, front view.

    Args:
        probs: ``(F, 20)`` prior.
        verts: ``(V, 3)`` mesh in the body-model frame (y up, facing +z), metres.
        faces: ``(F, 3)``.
        min_mass: see :func:`shown_labels`.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from dsrbody.semantics.labels import CIHP

    tri = verts[faces]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    labels = shown_labels(probs, areas, min_mass)
    mass = (probs * areas[:, None]).sum(0) / max(float(areas.sum()), 1e-12)
    n_panels = 2 + len(labels)
    ncols = min(6, n_panels)
    nrows = (n_panels + ncols - 1) // ncols
    fig, axs = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 3.4 * nrows + 1.0), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.93, top=0.93, bottom=0.1, wspace=0.02, hspace=0.12)
    for ax in axs.ravel():
        ax.axis("off")
    argmax = probs.argmax(1)
    palette = CIHP.palette.astype(np.float64) / 255.0
    views = body_views(verts, faces)
    for k, side in enumerate(("front", "back")):
        axs[0, k].imshow(views[side].paint(palette[argmax]))
        axs[0, k].set_title(f"argmax ({side})", fontsize=9)
    present = sorted(set(argmax.tolist()))
    fig.legend(
        handles=[Patch(color=palette[i], label=CIHP.names[i]) for i in present],
        loc="lower center",
        ncol=min(len(present), 10),
        fontsize=8,
        frameon=False,
        title="argmax colours (CIHP palette)",
        title_fontsize=8,
    )
    cmap = plt.get_cmap("viridis")
    for j, lab in enumerate(labels):
        ax = axs.ravel()[2 + j]
        ax.imshow(views["front"].paint(cmap(probs[:, lab])[:, :3]))
        ax.set_title(f"{CIHP.names[lab]} ({100 * mass[lab]:.1f}% area)", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, cax=fig.add_axes((0.945, 0.3, 0.012, 0.4)), label="probability")
    fig.suptitle(title, fontsize=10)
    return fig
