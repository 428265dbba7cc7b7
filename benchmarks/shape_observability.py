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

    .venv/bin/python benchmarks/shape_observability.py --data DATA/test128 [--train DATA/train128]
        [--topology anny]
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
    for label, shape in rows:
        p = rest(shape)
        print(f"{label:40s} {pve_t(p, g).mean():9.1f} {pve_t_sc(p, g).mean():12.1f}")


if __name__ == "__main__":
    main()
