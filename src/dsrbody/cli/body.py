"""``dsrbody body``: pose a body model and write its mesh.

    dsrbody body --model anny|smpl|... [--model-path P] [--gender neutral|male|female]
                 [--pose-file F.json|F.npz] [--shape v1 v2 ...] [--global-orient ax ay az]
                 [--topology anny|notoes_collapse10pc] --out mesh.obj|mesh.ply

Writes the posed mesh with trimesh (``.ply`` files also carry one colour per body part, see
:data:`dsrbody.body.parts.BODY_PARTS`) and prints the body's height (rest pose, metres) and its
vertex and face counts.

Pose files. Rotations are axis-angle vectors (radians, axes of the model frame: x the subject's
left, y up, z forward), each relative to the joint's parent, the zero vector meaning the model's
rest pose (Anny: an A-pose; SMPL: a T-pose). Every key is optional.

JSON::

    {
      "global_orient": [ax, ay, az],
      "body_pose": {"lowerarm01.R": [ax, ay, az], "right_knee": [ax, ay, az]},
      "shape": [v1, v2, ...]
    }

``body_pose`` is either an object by joint name (the model's own ``joint_names``; SMPL joint names
also work on Anny and Anny bone names on SMPL, through
:data:`dsrbody.body.anny.ANNY_SMPL_EQUIVALENTS`; joints left out stay at rest) or a list of the
``J - 1`` non-root joints in ``joint_names[1:]`` order (triples, or a flat list of ``3 (J - 1)``
numbers). Instead of ``global_orient`` + ``body_pose``, ``"pose"`` may hold all ``J`` joints root
first (SMPL's 72-vector layout). ``shape``: Anny's phenotypes (gender, age, muscle, weight, height,
proportions) or SMPL's betas; ``--shape`` overrides it.

NPZ: the same keys as arrays (``global_orient (3,)``, ``body_pose (J-1, 3)`` or flat, ``pose (J, 3)``
or ``(3 J,)``, ``shape`` or ``betas``); a leading batch axis of size 1 is accepted.

See ``examples/pose_wave.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dsrbody.cli import CLIError

#: One RGB colour per body part (``BODY_PARTS`` order) for ``.ply`` output.
PART_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 190, 150), (200, 160, 120), (70, 110, 180), (90, 70, 150), (230, 90, 60), (60, 170, 90),
    (240, 150, 90), (110, 210, 140), (250, 210, 110), (160, 230, 190), (200, 60, 90), (40, 130, 160),
    (230, 120, 150), (90, 180, 220), (120, 80, 60), (60, 100, 80),
)  # fmt: skip


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody body``."""
    parser.description = (
        "Pose a body model (Anny by default, or SMPL from the official files) and write its mesh."
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "pose files (JSON; NPZ with the same keys as arrays): axis-angle in radians, relative to the\n"
        "parent joint, model-frame axes (x the subject's left, y up, z forward), zero = rest pose:\n"
        '  {"global_orient": [ax, ay, az],\n'
        '   "body_pose": {"lowerarm01.R": [ax, ay, az], "right_knee": [ax, ay, az]},\n'
        '   "shape": [v1, v2, ...]}\n'
        'body_pose may also be a list of the J-1 non-root joints in joint order, or "pose" all J\n'
        "joints root first (SMPL's 72-vector). Example: examples/pose_wave.json"
    )
    from dsrbody.cli.options import add_body_options

    add_body_options(parser, flag="--model", topology=True)
    parser.add_argument("--pose-file", default=None, help="pose as JSON or NPZ (format below)")
    parser.add_argument(
        "--shape",
        type=float,
        nargs="+",
        default=None,
        help="Anny phenotypes (gender age muscle weight height proportions) or SMPL betas",
    )
    parser.add_argument(
        "--global-orient",
        type=float,
        nargs=3,
        default=None,
        metavar=("AX", "AY", "AZ"),
        help="root rotation, axis-angle in radians (overrides the pose file's)",
    )
    parser.add_argument("--out", required=True, help="output mesh: .obj or .ply")


# --------------------------------------------------------------------------------------------
# Pose files
# --------------------------------------------------------------------------------------------


def _aa_array(
    value, path: Path, key: str, rows: int | None, names: Sequence[str] | None = None
) -> np.ndarray:
    """``value`` as ``(rows, 3)`` float axis-angle (``rows=None``: any number of triples).

    ``names``: the joint of each row, to name the one holding a non-finite value.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {key!r} must hold numbers") from None
    if arr.ndim >= 2 and arr.shape[0] == 1 and (rows is None or rows != 1 or arr.ndim == 3):
        arr = arr[0]
    if arr.size % 3 != 0 or (rows is not None and arr.size != 3 * rows):
        want = f"{rows} x 3 = {3 * rows}" if rows is not None else "a multiple of 3"
        raise ValueError(f"{path}: {key!r} has {arr.size} numbers, expected {want}")
    if not np.all(np.isfinite(arr)):
        k = int(np.flatnonzero(~np.isfinite(arr.reshape(-1)))[0])
        row = k // 3
        where = f" (joint {names[row]})" if names is not None and row < len(names) else ""
        raise ValueError(
            f"{path}: {key!r} holds {arr.reshape(-1)[k]} at number {k + 1} of {arr.size}{where}; "
            "rotations must be finite axis-angle values in radians (JSON null reads as nan)"
        )
    return arr.reshape(-1, 3)


def _joint_lookup(model) -> dict[str, int]:
    """Name -> joint index, with the other family's names for the equivalent joints."""
    from dsrbody.body.anny import ANNY_SMPL_EQUIVALENTS

    names = list(model.joint_names)
    lookup = {n: i for i, n in enumerate(names)}
    for bone, smpl in ANNY_SMPL_EQUIVALENTS.items():
        if bone in lookup and smpl not in lookup:
            lookup[smpl] = lookup[bone]
        elif smpl in lookup and bone not in lookup:
            lookup[bone] = lookup[smpl]
    return lookup


def read_pose_file(path: str | Path, model) -> dict[str, np.ndarray]:
    """Read a pose file (JSON or NPZ, see the module docs) for ``model``.

    Returns:
        ``{"global_orient": (3,), "body_pose": (J-1, 3)}`` axis-angle, plus ``"shape": (S',)`` when
        the file has one.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, unknown joint names, wrong sizes (one line, naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pose file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
            ) from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text (JSON) file") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with 'global_orient' / 'body_pose' / 'shape'")
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - any unreadable archive is one error line
            raise ValueError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    else:
        raise ValueError(f"{path}: pose files must be .json or .npz")
    known = {"global_orient", "body_pose", "pose", "shape", "betas", "model", "description", "comment"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {unknown}; expected some of global_orient, body_pose, pose, shape"
        )
    J = model.num_joints
    out: dict[str, np.ndarray] = {"global_orient": np.zeros(3), "body_pose": np.zeros((J - 1, 3))}
    if "pose" in data:
        if "global_orient" in data or "body_pose" in data:
            raise ValueError(f"{path}: give either 'pose' or 'global_orient'/'body_pose', not both")
        pose = _aa_array(data["pose"], path, "pose", J, model.joint_names)
        out["global_orient"], out["body_pose"] = pose[0], pose[1:]
    if "global_orient" in data:
        out["global_orient"] = _aa_array(data["global_orient"], path, "global_orient", 1)[0]
    if "body_pose" in data:
        bp = data["body_pose"]
        if isinstance(bp, dict):
            lookup = _joint_lookup(model)
            for name, value in bp.items():
                if name not in lookup:
                    raise ValueError(
                        f"{path}: unknown joint {name!r} for {model.name}; its joints are "
                        f"{', '.join(model.joint_names)}"
                    )
                j = lookup[name]
                if j == 0:
                    raise ValueError(f"{path}: {name!r} is the root: give it as 'global_orient'")
                out["body_pose"][j - 1] = _aa_array(value, path, f"body_pose.{name}", 1)[0]
        else:
            out["body_pose"] = _aa_array(bp, path, "body_pose", J - 1, model.joint_names[1:])
    for key in ("shape", "betas"):
        if key in data:
            try:
                shape = np.asarray(data[key], dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise ValueError(f"{path}: {key!r} must be a list of numbers") from None
            out["shape"] = shape
    return out


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _shape_vector(model, args, file_shape: np.ndarray | None) -> torch.Tensor:
    values = args.shape if args.shape is not None else file_shape
    base = model.default_shape(args.gender)
    if values is not None:
        values = [float(v) for v in values]
        src = "--shape" if args.shape is not None else f"{args.pose_file} 'shape'"
        if len(values) > model.shape_dim:
            raise CLIError(
                f"{src}: {len(values)} values but {model.name} takes at most {model.shape_dim} "
                f"({model.shape_help})"
            )
        if not all(np.isfinite(values)):
            raise CLIError(f"{src}: values must be finite numbers, got {values}")
        model.check_shape(values, src)  # e.g. Anny would clamp out-of-range phenotypes silently
        base[: len(values)] = values
    return torch.tensor([base], dtype=torch.float32)


def run(args: argparse.Namespace) -> int:
    """Pose the body and write the mesh."""
    import trimesh

    from dsrbody.body.factory import BODY_MODELS, DEFAULT_BODY_MODEL, body_spec, build_body_model
    from dsrbody.body.parts import vertex_body_parts
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    out_path = Path(args.out)
    if out_path.suffix.lower() not in (".obj", ".ply"):
        raise CLIError(f"--out {out_path}: the mesh file must end in .obj or .ply")
    spec = body_spec(args.model)
    # a family with one mesh takes no --topology (the default family's default mesh is its own)
    if not spec.topologies and args.topology not in (None, body_spec(DEFAULT_BODY_MODEL).default_topology):
        meshed = [s.label for s in BODY_MODELS.values() if s.topologies]
        raise CLIError(f"--topology is an {'/'.join(meshed)} option")
    if spec.topologies and args.topology is not None and args.topology not in spec.topologies:
        raise CLIError(f"--topology {args.topology}: {spec.label} meshes are {', '.join(spec.topologies)}")
    model = build_body_model(
        args.model, model_path=args.model_path, gender=args.gender, **spec.mesh_options(args.topology)
    )

    pose = read_pose_file(args.pose_file, model) if args.pose_file else None
    J = model.num_joints
    go = np.zeros(3) if pose is None else pose["global_orient"]
    bp = np.zeros((J - 1, 3)) if pose is None else pose["body_pose"]
    if args.global_orient is not None:
        go = np.asarray(args.global_orient, dtype=np.float64)
        if not np.all(np.isfinite(go)):
            raise CLIError(f"--global-orient: values must be finite numbers, got {go.tolist()}")
    shape = _shape_vector(model, args, None if pose is None else pose.get("shape"))

    with torch.no_grad():
        R0 = axis_angle_to_matrix(torch.as_tensor(go, dtype=torch.float32)[None])
        Rs = axis_angle_to_matrix(torch.as_tensor(bp, dtype=torch.float32))[None]
        out = model(R0, Rs, shape)
    vertices = out.vertices[0].cpu().numpy().astype(np.float64)
    faces = model.faces.cpu().numpy()
    height = float(out.rest_vertices[0, :, 1].max() - out.rest_vertices[0, :, 1].min())

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if out_path.suffix.lower() == ".ply":
        parts = vertex_body_parts(model).cpu().numpy()
        colours = np.asarray(PART_COLOURS, dtype=np.uint8)[parts]
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.concatenate(
            [colours, np.full((len(colours), 1), 255, np.uint8)], axis=1
        ))  # fmt: skip
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mesh.export(out_path)
    except OSError as e:
        raise CLIError(f"cannot write {out_path}: {e.strerror or e}") from None
    print(
        f"{model.name}: height {height:.3f} m (rest pose), {vertices.shape[0]} vertices, "
        f"{faces.shape[0]} faces -> {out_path}"
    )
    return 0
