"""Cost of the DSR losses in a regressor training step (forward + backward, no data loading).

    .venv/bin/python benchmarks/dsr_loss.py [--batch 8] [--repeats 5] [--threads 2] [--backbone resnet50]
        [--no-per-channel]

Setup: the SMPL-sized regressor (a ResNet + the HMR head + SMPL from files generated in the official
layout, 6890 vertices, 13776 faces), random 224x224 images, a random clothing prior on the SMPL
topology and person-like parsing maps (every sample has MC labels, so every sample is rendered).
Three steps are timed alternately (median wall and process-CPU time of ``--repeats`` runs):

- ``spin``: regressor forward + SPIN losses + backward (the baseline step);
- ``dsr 1 call``: the same plus :class:`~dsrbody.losses.dsr.DSRLoss` (DSR-MC + DSR-C), all 9 channels
  in one render call;
- ``dsr 9 calls``: the same DSR losses, but the renderer called once per channel, as the official code
  does (it renders 9 copies of every mesh).

Printed: step times, the DSR overhead relative to the baseline step, and the ratio of the two DSR
variants' overheads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from _timing import time_alternating


def _time_alternating(fns, repeats: int, warmup: int = 1):
    return time_alternating(fns, repeats, warmup)


def _per_channel(render):
    """A renderer that draws each feature channel in its own call (the official code's structure)."""

    def fn(vertices, faces, *, face_features, **kw):
        outs = [
            render(vertices, faces, face_features=face_features[..., c : c + 1], **kw)
            for c in range(face_features.shape[-1])
        ]
        return torch.cat([o[0] for o in outs], dim=1), outs[0][1]

    return fn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--no-per-channel", action="store_true", help="skip the slow 9-call variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from dsrbody.body.smpl import SMPL
    from dsrbody.losses import DSRLoss, DSRTargets, LossWeights, combine_losses, spin_loss_terms
    from dsrbody.models import build_regressor
    from dsrbody.render.soft import soft_render
    from dsrbody.semantics.prior import ClothingPrior
    from dsrbody.testing.smpl_files import write_smpl_files

    sys.path.insert(0, str(Path(__file__).parent))
    from parsing import synthetic_person  # the person-like CIHP map of benchmarks/parsing.py

    tmp = tempfile.TemporaryDirectory()
    body = SMPL(write_smpl_files(Path(tmp.name), genders=("neutral",), formats=("npz",)))
    reg = build_regressor(body, backbone=args.backbone).train()
    F = body.faces.shape[0]
    prior = ClothingPrior(torch.distributions.Dirichlet(torch.ones(20)).sample((F,)), body.topology_id)
    B = args.batch
    images = torch.randn(B, 3, 224, 224)
    labels = torch.from_numpy(synthetic_person(224)[0]).long()[None].expand(B, -1, -1).contiguous()
    targets = DSRTargets.from_parsing(labels)
    gt = {
        "keypoints": torch.cat([torch.rand(B, 49, 2) * 2 - 1, torch.ones(B, 49, 1)], -1),
        "pose_3d": torch.cat([torch.randn(B, 24, 3) * 0.3, torch.ones(B, 24, 1)], -1),
        "has_pose_3d": torch.ones(B),
        "pose": torch.randn(B, 72) * 0.2,
        "betas": torch.randn(B, 10),
        "has_smpl": torch.ones(B),
    }
    w = LossWeights()
    dsr_one = DSRLoss(body.faces, prior)
    dsr_nine = DSRLoss(body.faces, prior, render_fn=_per_channel(soft_render))
    coverage = []

    def step(dsr: DSRLoss | None) -> Callable[[], None]:
        def fn() -> None:
            reg.zero_grad(set_to_none=True)
            pred = reg(images)
            terms = spin_loss_terms(pred, gt, w)
            if dsr is not None:
                out = dsr(pred["vertices_cam"], targets)
                terms["dsr_mc"] = (out["dsr_mc"], out["dsr_mc_valid"])
                terms["dsr_c"] = (out["dsr_c"], out["dsr_c_valid"])
                coverage.append(float((out["rendered_silhouette"] > 0.5).float().mean()))
            total, _, _ = combine_losses(terms, w)
            total.backward()

        return fn

    names = ["spin", "dsr 1 call", "dsr 9 calls"]
    fns = [step(None), step(dsr_one), step(dsr_nine)]
    if args.no_per_channel:
        names, fns = names[:2], fns[:2]
    wall, cpu = _time_alternating(fns, args.repeats)
    print(
        f"backbone {args.backbone}, B={B}, 224x224, SMPL topology ({F} faces), {args.threads} threads, "
        f"mean silhouette coverage {statistics.mean(coverage):.0%}"
    )
    print(f"{'step':<14}{'wall ms':>10}{'cpu ms':>10}{'overhead vs spin (wall)':>26}")
    for n, t, c in zip(names, wall, cpu):
        print(f"{n:<14}{t:>10.0f}{c:>10.0f}{(t - wall[0]) / wall[0]:>26.1%}")
    print(f"DSR overhead in process-CPU time: {(cpu[1] - cpu[0]) / cpu[0]:.1%}")
    if len(names) == 3:
        print(
            f"DSR cost, 9 calls / 1 call: wall {(wall[2] - wall[0]) / max(wall[1] - wall[0], 1e-9):.2f}x, "
            f"cpu {(cpu[2] - cpu[0]) / max(cpu[1] - cpu[0], 1e-9):.2f}x"
        )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
