"""Refinement on real people's annotated keypoints: error before/after and the time per person.

    python benchmarks/real_refine.py [--real ../shared/real] [--ckpt K [--model-path SMPL]] [--iters 40]

Runs the demo's regression and refinement (:mod:`dsrbody.demo.refine`) on every annotated person of
the COCO photos of ``../shared/real`` (17 keypoints mapped to BODY_25; people with fewer than 6
labelled keypoints are skipped) with the shipped model (or ``--ckpt``), and prints per person the
mean distance (pixels) between the body's projected keypoints and the annotated ones before and after
refinement, and the refinement's wall time per person (people of an image are refined as one batch;
the time is the batch's divided by its size; one torch thread).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    from dsrbody.data.spin_npz import read_image
    from dsrbody.demo.inputs import people_from_coco
    from dsrbody.demo.refine import RefineOptions, keypoint_error_px, refine_people
    from dsrbody.demo.run import predict_people
    from dsrbody.models.loader import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "real"))
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--model-path", default=None, help="SMPL files for SPIN/DSR checkpoints")
    ap.add_argument("--iters", type=int, default=RefineOptions().iters)
    args = ap.parse_args()
    torch.set_num_threads(1)
    real = Path(args.real)
    ann = real / "coco" / "test_coco.json"
    if not ann.is_file():
        raise SystemExit(f"{real}: no coco/test_coco.json (the shared real photos)")
    if args.ckpt is None:
        from dsrbody.models.shipped import shipped_model_path

        args.ckpt = str(shipped_model_path())
    loaded = load_model(args.ckpt, model_path=args.model_path)
    reg = loaded.regressor
    print(f"{loaded.describe()}; {args.iters} steps")
    before, after, secs = [], [], []
    for img_path in sorted((real / "coco").glob("*.jpg")):
        img = read_image(img_path)
        people, _ = people_from_coco(ann, img_path.name)
        if not people:
            continue
        t0 = time.perf_counter()
        results = predict_people(reg, img, people)
        t_reg = (time.perf_counter() - t0) / len(people)
        refined, reports = refine_people(reg, results, RefineOptions(iters=args.iters))
        for k, (r, rep) in enumerate(zip(refined, reports)):
            b, _ = keypoint_error_px(results[k])
            a, n = keypoint_error_px(r)
            before.append(b)
            after.append(a)
            secs.append(rep.seconds)
            print(
                f"{img_path.name} p{k}: {n:2d} keypoints, error {b:6.1f} -> {a:5.1f} px "
                f"({100 * a / (200 * r.person.scale / 1.2):4.1f}% of the person's size), "
                f"regression {t_reg:.2f} s, refinement {rep.seconds:.2f} s"
            )
    print(
        f"{len(before)} people: mean error {statistics.mean(before):.1f} -> {statistics.mean(after):.1f} px, "
        f"median {statistics.median(before):.1f} -> {statistics.median(after):.1f} px; refinement "
        f"{statistics.mean(secs):.2f} s per person (max {max(secs):.2f} s)"
    )


if __name__ == "__main__":
    main()
