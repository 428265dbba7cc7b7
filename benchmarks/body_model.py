"""Body model speed: forward + backward at B=64, float32, baseline and candidate side by side.

    .venv/bin/python benchmarks/body_model.py [--batch 64] [--repeats 20] [--threads 2] [--smpl-dir DIR]
        [--only smpl|anny]

``bench_anny``: dsrbody's :class:`~dsrbody.body.anny.AnnyBody` against raw ``anny.Anny`` with the
same 24-bone rig and mesh (full and low-poly), see :func:`bench_anny`.

``bench_smpl``: dsrbody's :class:`~dsrbody.body.smpl.SMPL` against ``smplx.SMPL`` on the same model file
(generated in the official layout by :mod:`dsrbody.testing.smpl_files` unless ``--smpl-dir`` points at
real files), both fed rotation matrices (``smplx``: ``pose2rot=False``), the loss being the sum of
vertices and joints, gradients to pose and shape. Timings alternate between the two models so that
load from other processes hits both alike; the median of ``--repeats`` runs is reported.

Each comparison is one ``bench_*`` function returning rows ``(name, baseline ms, candidate ms)``;
:func:`main` prints them as a table with the ratio candidate / baseline.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from _timing import time_alternating as _time_alternating  # noqa: E402


def bench_smpl(batch: int, repeats: int, smpl_dir: Path | None = None) -> list[tuple[str, float, float]]:
    """dsrbody SMPL vs smplx SMPL, forward + backward, same file, same inputs."""
    import roma
    import smplx

    from dsrbody.body.smpl import SMPL

    tmp = None
    if smpl_dir is None:
        from dsrbody.testing.smpl_files import write_smpl_files

        tmp = tempfile.TemporaryDirectory()
        smpl_dir = write_smpl_files(tmp.name, genders=("neutral",), regressors=False, mean_params=False)
    ours = SMPL(smpl_dir, gender="neutral")
    from dsrbody.body.smpl_io import load_smpl_dict

    # smplx gets the arrays our loader read (the restricted unpickler: no pickle from the folder runs code)
    npz = Path(ours.model_file).with_suffix(".npz")
    struct = smplx.utils.Struct(**load_smpl_dict(npz if npz.is_file() else ours.model_file))
    ref = smplx.SMPL(str(smpl_dir), data_struct=struct, num_betas=ours.shape_dim)

    g = torch.Generator().manual_seed(0)
    go = roma.rotvec_to_rotmat(torch.randn(batch, 3, generator=g))
    bp = roma.rotvec_to_rotmat(0.4 * torch.randn(batch, 23, 3, generator=g))
    betas = torch.randn(batch, ours.shape_dim, generator=g)

    def run_ours() -> None:
        a, b, c = (t.clone().requires_grad_(True) for t in (go, bp, betas))
        out = ours(a, b, c)
        (out.vertices.sum() + out.skeleton_joints.sum()).backward()

    def run_smplx() -> None:
        a, b, c = (t.clone().requires_grad_(True) for t in (go, bp, betas))
        out = ref(global_orient=a.unsqueeze(1), body_pose=b, betas=c, pose2rot=False)
        (out.vertices.sum() + out.joints[:, :24].sum()).backward()

    def fwd_ours() -> None:
        with torch.no_grad():
            ours(go, bp, betas)

    def fwd_smplx() -> None:
        with torch.no_grad():
            ref(global_orient=go.unsqueeze(1), body_pose=bp, betas=betas, pose2rot=False)

    (w_ref, w_ours), (c_ref, c_ours) = _time_alternating([run_smplx, run_ours], repeats)
    (fw_ref, fw_ours), (fc_ref, fc_ours) = _time_alternating([fwd_smplx, fwd_ours], repeats)
    if tmp is not None:
        tmp.cleanup()
    return [
        (f"SMPL fwd+bwd B={batch}, wall (smplx -> dsrbody)", w_ref, w_ours),
        (f"SMPL fwd+bwd B={batch}, CPU time (smplx -> dsrbody)", c_ref, c_ours),
        (f"SMPL fwd B={batch}, wall (smplx -> dsrbody)", fw_ref, fw_ours),
        (f"SMPL fwd B={batch}, CPU time (smplx -> dsrbody)", fc_ref, fc_ours),
    ]


def bench_anny(batch: int, repeats: int, topologies: tuple[str, ...] = ("anny", "notoes_collapse10pc")):
    """dsrbody's Anny adapter vs raw ``anny.Anny`` with the same 24-bone rig and mesh, forward + backward.

    Raw anny gets random ``"local-ref"`` deltas ``(B, 24, 4, 4)`` and phenotypes, gradients to both,
    loss = sum of vertices. The adapter gets SMPL-style rotations and phenotypes, gradients to all
    three, and does everything it always does (pose conversion, SMPL frame, rest vertices, SPIN-49
    keypoints), loss = sum of vertices. A third row adds the keypoints to both losses (raw anny then
    also runs anny's own COCO regressor, ``anny.KeypointsRegressor.coco``).
    """
    import anny
    import roma

    from dsrbody.body.anny import AnnyBody, load_anny

    rows = []
    g = torch.Generator().manual_seed(0)
    go = roma.rotvec_to_rotmat(torch.randn(batch, 3, generator=g))
    bp = roma.rotvec_to_rotmat(0.4 * torch.randn(batch, 23, 3, generator=g))
    phen = torch.rand(batch, 6, generator=g)
    deltas = torch.eye(4).repeat(batch, 24, 1, 1)
    deltas[..., :3, :3] = roma.rotvec_to_rotmat(0.4 * torch.randn(batch, 24, 3, generator=g))
    for topology in topologies:
        ours = AnnyBody(topology=topology)
        raw = load_anny("smpl24", topology)  # the very anny.Anny the adapter wraps (same rig, mesh)
        coco = anny.KeypointsRegressor.coco(raw) if topology == "anny" else None

        def run_raw(with_keypoints: bool = False, raw=raw, coco=coco) -> None:
            d, s = deltas.clone().requires_grad_(True), phen.clone().requires_grad_(True)
            out = raw(pose_parameters=d, phenotype_kwargs=s)
            loss = out["vertices"].sum()
            if with_keypoints:
                loss = loss + coco(out).sum()
            loss.backward()

        def run_ours(with_keypoints: bool = False, ours=ours) -> None:
            a, b, c = (t.clone().requires_grad_(True) for t in (go, bp, phen))
            out = ours(a, b, c)
            loss = out.vertices.sum() + (out.joints.sum() if with_keypoints else 0.0)
            loss.backward()

        V = ours.num_vertices
        (w_raw, w_ours), (c_raw, c_ours) = _time_alternating([run_raw, run_ours], repeats)
        rows.append((f"Anny {V}v fwd+bwd B={batch}, wall (anny -> adapter)", w_raw, w_ours))
        rows.append((f"Anny {V}v fwd+bwd B={batch}, CPU time (anny -> adapter)", c_raw, c_ours))
        if coco is not None:
            (w_raw, w_ours), (c_raw, c_ours) = _time_alternating(
                [lambda: run_raw(True), lambda: run_ours(True)], repeats
            )
            rows.append((f"Anny {V}v +keypoints fwd+bwd B={batch}, wall", w_raw, w_ours))
            rows.append((f"Anny {V}v +keypoints fwd+bwd B={batch}, CPU time", c_raw, c_ours))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the comparisons and print a table of ms per call and ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--smpl-dir", type=Path, default=None, help="folder with SMPL_NEUTRAL.pkl/.npz (default: generated)"
    )
    p.add_argument("--only", choices=("smpl", "anny"), default=None, help="run one family's comparison")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    if args.only in (None, "smpl"):
        rows += bench_smpl(args.batch, args.repeats, args.smpl_dir)
    if args.only in (None, "anny"):
        rows += bench_anny(args.batch, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, median of {args.repeats}")
    print(f"{'comparison':<56} {'baseline ms':>12} {'candidate ms':>13} {'ratio':>7}")
    for name, base, cand in rows:
        print(f"{name:<56} {base:>12.1f} {cand:>13.1f} {cand / base:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
