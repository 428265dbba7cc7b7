"""How much of the rest-pose shape error (PVE-T) is stature, which a crop cannot show.

A crop is scaled to the person's box, so a tall person far away and a short person near look alike:
height is only visible through the proportions it changes. This script measures, on a synthetic split's
ground truth (``dsrbody synth`` folder, Anny bodies), the PVE-T and PVE-T-SC
(:func:`dsrbody.eval.metrics.pve_t_sc`) of a constant prediction, the split's mean phenotype, and of that
mean with one ground-truth phenotype put back at a time. If putting back the height alone brings PVE-T
near a target, the target asks for stature, not for shape the image shows.

The converse bound: every phenotype true except the height, which is nearly a uniform scale and so
invisible in a box-scaled crop. With ``--train DATA/train128`` the height is predicted from the other
five phenotypes by a least-squares fit (quadratic terms) on that split's bodies, the best an estimator
that saw the rest of the shape perfectly could do if height is a pure scale; it is printed beside the
split's mean height put in its place.

With ``--ckpt`` (a checkpoint, or ``shipped`` for the packaged model) the regressor runs on the split's
images: per phenotype its mean, spread and correlation with the truth, its PVE-T / PVE-T-SC beside the
rows above (and with the true height put in), and how much of its joint error is shape: PA-MPJPE and
MPJPE of its pose on its own shape, the true shape and the split's mean shape, and of the true pose on
its shape and on the mean shape.

    .venv/bin/python benchmarks/shape_observability.py --data DATA/test128 [--train DATA/train128]
        [--topology anny] [--ckpt shipped|CKPT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a dsrbody synth folder (synth_<split>.npz inside)")
    ap.add_argument("--topology", default="anny", help="Anny mesh the errors are measured on")
    ap.add_argument("--train", help="a training synth folder: predict height from the other phenotypes")
    ap.add_argument(
        "--ckpt", help="a regressor to diagnose on the split's images ('shipped': the packaged one)"
    )
    args = ap.parse_args()

    from dsrbody.body.anny import ANNY_PHENOTYPES
    from dsrbody.body.factory import build_body_model
    from dsrbody.eval.metrics import pve_t, pve_t_sc

    files = sorted(Path(args.data).glob("synth_*.npz"))
    if not files:
        raise SystemExit(f"{args.data}: no synth_*.npz (not a dsrbody synth folder)")
    d = np.load(files[0], allow_pickle=False)
    gt = torch.tensor(d["shape"][:, : len(ANNY_PHENOTYPES)], dtype=torch.float32)
    body = build_body_model("anny", topology=args.topology)
    eye = torch.eye(3).expand(len(gt), body.num_joints, 3, 3)

    @torch.no_grad()
    def rest(shape: torch.Tensor) -> torch.Tensor:
        return body(eye[:, 0], eye[:, 1:], shape).rest_vertices

    g = rest(gt)
    mean = gt.mean(0, keepdim=True).expand_as(gt)
    print(f"{files[0]}: {len(gt)} bodies, mesh {args.topology}; phenotype mean / std:")
    for k, name in enumerate(ANNY_PHENOTYPES):
        print(f"  {name:12s} {gt[:, k].mean():.3f} / {gt[:, k].std():.3f}")
    print(f"\n{'prediction':40s} {'PVE-T mm':>9s} {'PVE-T-SC mm':>12s}")
    rows = [("the split's mean phenotype", mean)]
    for k, name in enumerate(ANNY_PHENOTYPES):
        s = mean.clone()
        s[:, k] = gt[:, k]
        rows.append((f"mean, true {name}", s))
    h = ANNY_PHENOTYPES.index("height")
    others = [k for k in range(len(ANNY_PHENOTYPES)) if k != h]
    s = gt.clone()
    s[:, h] = gt[:, h].mean()
    rows.append(("true phenotypes but the mean height", s))
    if args.train:
        tfiles = sorted(Path(args.train).glob("synth_*.npz"))
        if not tfiles:
            raise SystemExit(f"{args.train}: no synth_*.npz (not a dsrbody synth folder)")
        tr = np.load(tfiles[0], allow_pickle=False)["shape"][:, : len(ANNY_PHENOTYPES)].astype(np.float64)

        def design(x: np.ndarray) -> np.ndarray:
            o = x[:, others]
            quad = [o[:, i : i + 1] * o[:, j:] for i in range(o.shape[1]) for j in [i]] + [
                o[:, i : i + 1] * o[:, i + 1 :] for i in range(o.shape[1] - 1)
            ]
            return np.concatenate([np.ones((len(x), 1)), o, *quad], 1)

        coef, *_ = np.linalg.lstsq(design(tr), tr[:, h], rcond=None)
        pred = design(gt.double().numpy()) @ coef
        r2 = 1 - ((gt[:, h].numpy() - pred) ** 2).mean() / gt[:, h].numpy().var()
        s = gt.clone()
        s[:, h] = torch.from_numpy(pred).float()
        rows.append((f"true phenotypes, height fitted (R2 {r2:.2f})", s))
    model = None
    if args.ckpt:
        split = files[0].stem.removeprefix("synth_")
        model = run_regressor(args.ckpt, args.data, split, len(ANNY_PHENOTYPES))
        if len(model["shape"]) != len(gt):
            n = len(model["shape"])
            raise SystemExit(f"{args.data}: only {n} of {len(gt)} samples could be read; fix the split")
        shape = model["shape"]
        rows.append(("the model", shape))
        s = shape.clone()
        s[:, h] = gt[:, h]
        rows.append(("the model, true height put in", s))
    for label, shape in rows:
        p = rest(shape)
        print(f"{label:40s} {pve_t(p, g).mean():9.1f} {pve_t_sc(p, g).mean():12.1f}")
    if model is not None:
        print(f"\n{'phenotype':12s} {'truth mean/std':>15s} {'model mean/std':>15s} {'correlation':>12s}")
        for k, name in enumerate(ANNY_PHENOTYPES):
            t, m = gt[:, k], model["shape"][:, k]
            r = float(np.corrcoef(t.numpy(), m.numpy())[0, 1]) if m.std() > 0 else float("nan")
            print(f"{name:12s} {t.mean():8.3f}/{t.std():.3f} {m.mean():8.3f}/{m.std():.3f} {r:12.2f}")
        print(f"\n{'joints (12 LSP)':40s} {'PA-MPJPE':>9s} {'MPJPE':>9s}")
        for label, pa, mp in model["joints"]:
            print(f"{label:40s} {pa:9.1f} {mp:9.1f}")


def run_regressor(ckpt: str, data: str, split: str, n_shape: int) -> dict:
    """The regressor's shapes ``(N, n_shape)`` on a synth folder's images, and the PA-MPJPE / MPJPE (mm)
    of its pose with its own shape, the true shape and the split's mean shape, and of the true pose with
    its shape and the mean shape (the error its shape alone causes)."""
    import argparse as _argparse

    from torch.utils.data import DataLoader

    from dsrbody.cli.eval import default_checkpoint, eval_config, load_trained
    from dsrbody.data import collate_samples
    from dsrbody.eval.metrics import eval_joints, mpjpe, pa_mpjpe
    from dsrbody.losses.params import as_rotmat
    from dsrbody.losses.targets import gt_body
    from dsrbody.train.build import build_eval_set

    ns = _argparse.Namespace(config=None, ckpt=None if ckpt == "shipped" else ckpt, overrides=[], data=data,
                             split=split, quiet=True)  # fmt: skip
    default_checkpoint(ns, "shape_observability")
    cfg = eval_config(ns)
    reg, body = load_trained(cfg, ns.ckpt)
    reg.eval()
    idx = list(eval_joints(body).indices)
    pelvis = eval_joints(body).pelvis
    data_set = build_eval_set(cfg, split, features=False)
    loader = DataLoader(data_set, batch_size=64, collate_fn=collate_samples)
    shapes, rots, gts, gshapes, grots = [], [], [], [], []
    with torch.no_grad():
        for b in loader:
            out = reg(b["img"])
            shapes.append(out["shape"])
            rots.append(out["rotmat"])
            gts.append(gt_body(body, b, torch.ones(len(b["img"]), dtype=torch.bool)).joints[:, idx])
            gshapes.append(torch.as_tensor(b["betas"], dtype=torch.float32))
            grots.append(as_rotmat(torch.as_tensor(b["pose"], dtype=torch.float32), body.num_joints))
        shape, rot, gj, gshape, grot = (torch.cat(x) for x in (shapes, rots, gts, gshapes, grots))
        mean = gshape.mean(0, keepdim=True).expand_as(gshape)
        joints = []
        for label, r, s in (("its pose, its shape", rot, shape), ("its pose, the true shape", rot, gshape),
                            ("its pose, the split's mean shape", rot, mean),
                            ("the true pose, its shape", grot, shape),
                            ("the true pose, the split's mean shape", grot, mean)):  # fmt: skip
            pj = body(r[:, 0], r[:, 1:], s).joints[:, idx]
            joints.append((label, float(pa_mpjpe(pj, gj).mean()), float(mpjpe(pj, gj, pelvis).mean())))
    return {"shape": shape[:, :n_shape], "joints": joints}


if __name__ == "__main__":
    main()
