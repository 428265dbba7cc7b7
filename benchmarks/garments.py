"""Procedural garments speed: dressing a body and building the procedural prior.

Run: ``.venv/bin/python benchmarks/garments.py`` (see docs/benchmarks.md, section "Procedural garments").

There is no other garment implementation to compare with; the reference is the cost that every synthetic
sample pays anyway: one forward pass of the same body model (B=1, no grad). The script prints, per body
mesh, the median time of ``dress_body`` (one random outfit: labels per vertex and face + displacement),
``ClothedBody.displace`` (normals + offset on a posed body), the one-off ``BodyGeometry`` construction,
and their ratio to the body forward pass; then the procedural prior throughput.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from dsrbody.garments import BodyGeometry, build_procedural_prior, dress_body, sample_outfit


def median_ms(fn, repeat: int) -> float:
    """Median wall time of ``fn()`` in milliseconds (one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def bodies() -> list[tuple[str, torch.nn.Module]]:
    from dsrbody.body.anny import AnnyBody
    from dsrbody.body.smpl import SMPL
    from dsrbody.testing.smpl_files import write_smpl_files

    smpl_dir = write_smpl_files(tempfile.mkdtemp())
    return [
        ("anny (13,718 v, 27,420 f)", AnnyBody()),
        ("anny low-poly (1,229 v, 2,454 f)", AnnyBody(topology="notoes_collapse10pc")),
        ("smpl layout (6,890 v, 13,776 f)", SMPL(smpl_dir)),
    ]


def measure(name: str, model: torch.nn.Module, repeat: int) -> str:
    """One table row: geometry build, dress_body, displace and body forward times for ``model``."""
    mp = _mean(model)
    t = time.perf_counter()
    g = BodyGeometry.from_model(model, model(**mp).rest_vertices[0])
    geom_ms = 1000 * (time.perf_counter() - t)
    rng = np.random.default_rng(0)
    outfits = [sample_outfit(rng, hard=i % 2 == 1) for i in range(64)]
    it = iter(range(10**9))
    dress_ms = median_ms(lambda: dress_body(g, outfits[next(it) % 64]), repeat)
    body = dress_body(g, outfits[0])
    with torch.no_grad():
        posed = model(**mp).vertices
        fwd_ms = median_ms(lambda: model(**mp), max(20, repeat // 10))
        disp_ms = median_ms(lambda: body.displace(posed), repeat)
    ratio = dress_ms / fwd_ms
    return f"| {name} | {geom_ms:.0f} | {dress_ms:.2f} | {disp_ms:.2f} | {fwd_ms:.1f} | {ratio:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--prior-outfits", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print("| mesh | geometry (once) ms | dress_body ms | displace ms | body forward ms | dress/forward |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, model in bodies():
        print(measure(name, model, args.repeat))

    model = bodies()[0][1]
    g = BodyGeometry.from_model(model)
    t = time.perf_counter()
    build_procedural_prior(g, args.prior_outfits, seed=0)
    s = time.perf_counter() - t
    n = args.prior_outfits
    print(f"\nprocedural prior on anny: {n} outfits in {s:.1f} s ({n / s:.0f} outfits/s)")


def _mean(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    mp = model.mean_params()
    return {
        "global_orient": mp["global_orient"][None],
        "body_pose": mp["body_pose"][None],
        "shape": mp["shape"][None],
    }


if __name__ == "__main__":
    main()
