"""``dsrbody render``: pictures of a posed body (shaded, body parts, soft silhouette, overlay).

    dsrbody render --model anny|smpl|... [--model-path P] [--gender G] [--pose-file F.json|F.npz]
                   [--shape v1 v2 ...] [--image IMG] [--camera S TX TY] [--size 224] [--focal 5000]
                   [--sigma 1e-5] [--view front|raw] --out DIR

Writes into DIR:

- ``shaded.png``: the body with Lambert shading (z-buffer, :mod:`dsrbody.render.hard`);
- ``parts.png``: the body coloured by body part (:data:`dsrbody.body.parts.BODY_PARTS`, colours of
  :data:`dsrbody.cli.body.PART_COLOURS`);
- ``silhouette.png``: the soft silhouette of :func:`dsrbody.render.soft.soft_render` (``--sigma``);
- ``side.png``: the body turned 90 degrees about the vertical axis through its centre;
- ``overlay.png`` (with ``--image``): the shaded body over the image;
- ``panel.png``: all of the above side by side.

Camera: the DSR crop camera: ``--size`` pixels square, focal length ``--focal`` pixels, principal point
at the centre, and the body placed by a weak-perspective camera ``(s, tx, ty)`` (``--camera``, default
``0.9 0 0``), i.e. translated by ``(tx, ty, 2 f / (size s))``. With ``--view front`` (default) the
model is first turned 180 degrees about x, so that a zero global orientation shows the body upright and
facing the camera; ``--view raw`` uses the model's output as camera-frame coordinates (the SPIN/DSR
convention, where dataset global orientations already contain that turn). ``--image`` is taken as the
crop the camera sees; it is resized to ``--size`` x ``--size`` when needed. Pose files: see
``dsrbody body --help`` (:mod:`dsrbody.cli.body`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dsrbody.cli import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody render``."""
    parser.description = "Render a posed body: shaded, body parts, soft silhouette, side view, overlay."
    from dsrbody.cli.options import add_body_options

    add_body_options(parser, flag="--model")
    parser.add_argument("--pose-file", default=None, help="pose as JSON or NPZ (see dsrbody body --help)")
    parser.add_argument("--shape", type=float, nargs="+", default=None, help="Anny phenotypes or SMPL betas")
    parser.add_argument("--image", default=None, help="image to draw the body over (the camera's crop)")
    parser.add_argument(
        "--camera",
        type=float,
        nargs=3,
        default=(0.9, 0.0, 0.0),
        metavar=("S", "TX", "TY"),
        help="weak-perspective camera (scale, x shift, y shift); default 0.9 0 0",
    )
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--focal", type=float, default=5000.0, help="focal length in pixels (default 5000)")
    parser.add_argument("--sigma", type=float, default=1e-5, help="soft silhouette sigma (default 1e-5)")
    parser.add_argument("--view", default="front", choices=("front", "raw"), help="see the module docs")
    parser.add_argument("--out", required=True, help="output folder")


def _read_image(path: str, size: int) -> np.ndarray:
    import cv2
    import imageio.v3 as iio

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist")
    try:
        img = np.asarray(iio.imread(p))
    except Exception as e:  # noqa: BLE001 - any unreadable image is one error line
        raise ValueError(f"{p}: not a readable image ({type(e).__name__})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"{p}: expected an RGB(A) or grey image, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        scale = 255.0 / max(1.0, float(img.max()))
        img = np.clip(img.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def run(args: argparse.Namespace) -> int:
    """Pose the body, render it and write the PNGs."""
    import imageio.v3 as iio

    from dsrbody.body.factory import build_body_model
    from dsrbody.body.parts import face_body_parts
    from dsrbody.cli.body import PART_COLOURS, _shape_vector, read_pose_file
    from dsrbody.geometry.cameras import weak_perspective_to_translation
    from dsrbody.geometry.rotations import axis_angle_to_matrix
    from dsrbody.render.hard import render_mesh
    from dsrbody.render.overlay import overlay, side_view
    from dsrbody.render.soft import soft_render

    size = int(args.size)
    if size < 8 or size > 4096:
        raise CLIError(f"--size {size}: must be between 8 and 4096 pixels")
    if not args.focal > 0 or not args.sigma > 0:
        raise CLIError("--focal and --sigma must be positive")
    s, tx, ty = args.camera
    if not s > 0:
        raise CLIError(f"--camera: the scale must be positive, got {s}")
    image = _read_image(args.image, size) if args.image else None
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"--out {out_dir}: exists and is not a folder")

    model = build_body_model(args.model, model_path=args.model_path, gender=args.gender)
    pose = read_pose_file(args.pose_file, model) if args.pose_file else None
    J = model.num_joints
    go = np.zeros(3) if pose is None else pose["global_orient"]
    bp = np.zeros((J - 1, 3)) if pose is None else pose["body_pose"]
    shape = _shape_vector(model, args, None if pose is None else pose.get("shape"))
    with torch.no_grad():
        R0 = axis_angle_to_matrix(torch.as_tensor(go, dtype=torch.float32)[None])
        Rs = axis_angle_to_matrix(torch.as_tensor(bp, dtype=torch.float32))[None]
        verts = model(R0, Rs, shape).vertices[0].float()
    faces = model.faces.long()
    if args.view == "front":
        verts = verts * torch.tensor([1.0, -1.0, -1.0])  # 180 deg about x: y down, facing the camera
    t = weak_perspective_to_translation(torch.tensor([[s, tx, ty]]), focal=args.focal, img_res=size)[0]
    verts = verts + t
    if not bool((verts[:, 2] > 0).all()):
        raise CLIError("the body reaches behind the camera: use a smaller --camera scale")
    cam = dict(focal=args.focal, principal_point=(size / 2.0, size / 2.0), image_size=(size, size))

    shaded = render_mesh(verts, faces, **cam).to_uint8()[0]
    part_rgb = torch.tensor(PART_COLOURS, dtype=torch.float32)[face_body_parts(model).cpu()] / 255.0
    parts = render_mesh(verts, faces, **cam, face_colors=part_rgb, ambient=0.55, diffuse=0.45).to_uint8()[0]
    with torch.no_grad():
        _, sil = soft_render(verts[None], faces, sigma=args.sigma, **cam)
    silhouette = (sil[0, 0].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    side = side_view(verts, faces, focal=args.focal, image_size=(size, size))
    pictures = {"shaded": shaded, "parts": parts, "silhouette": silhouette, "side": side}
    if image is not None:
        pictures["overlay"] = overlay(image, verts, faces, focal=args.focal)

    out_dir.mkdir(parents=True, exist_ok=True)
    order = ["overlay", "shaded", "parts", "silhouette", "side"]
    tiles = [
        np.repeat(p[..., None], 3, 2) if p.ndim == 2 else p
        for k in order
        if (p := pictures.get(k)) is not None
    ]
    pictures["panel"] = np.concatenate(tiles, axis=1)
    try:
        for name, pic in pictures.items():
            iio.imwrite(out_dir / f"{name}.png", pic)
    except OSError as e:
        raise CLIError(f"cannot write into {out_dir}: {e.strerror or e}") from None
    cover = float((sil > 0.5).float().mean())
    print(
        f"{model.name}: {verts.shape[0]} vertices, {faces.shape[0]} faces, silhouette covers "
        f"{100 * cover:.1f} % of the {size}x{size} image -> {out_dir}/{{{','.join(pictures)}}}.png"
    )
    return 0
