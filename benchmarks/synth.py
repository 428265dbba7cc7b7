"""Synthetic generator throughput: samples per second with 1 and with N worker processes.

    .venv/bin/python benchmarks/synth.py [--num 96] [--workers 2] [--res 224]

Both runs make the same samples (the data do not depend on the number of workers; checked here
by comparing the annotation files), side by side in one process; the ratio is the parallel
speed-up. Target (docs/design.md, Performance targets): at least 20 samples/s on 2 cores at 224x224.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from dsrbody.data.synth import SynthConfig, generate


def run(num: int, workers: int, res: int, root: Path) -> tuple[float, Path]:
    out = root / f"w{workers}"
    cfg = SynthConfig(num=num, seed=123, split="train", res=res)
    t0 = time.perf_counter()
    path = generate(cfg, out, workers=workers, progress=False)
    return num / (time.perf_counter() - t0), path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=96)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--res", type=int, default=224)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run(8, 1, args.res, root / "warm")  # build caches (anny, skimage photos) outside the timing
        one, p1 = run(args.num, 1, args.res, root)
        many, pn = run(args.num, args.workers, args.res, root)
        a, b = np.load(p1), np.load(pn)
        same = all(np.array_equal(a[k], b[k]) for k in a.files)
    print(f"samples: {args.num} at {args.res}x{args.res}, cores: {os.cpu_count()}")
    print(f"{'workers':>8} {'samples/s':>10} {'ms/sample':>10}")
    print(f"{1:>8} {one:>10.1f} {1000 / one:>10.1f}")
    print(f"{args.workers:>8} {many:>10.1f} {1000 / many:>10.1f}")
    verdict = "met" if many >= 20 else "NOT met"
    print(f"speed-up {many / one:.2f}x; identical annotations: {same}; target >= 20/s: {verdict}")


if __name__ == "__main__":
    main()
