"""How many of the annotated people of ``../shared/real`` the built-in HOG detector finds.

    python benchmarks/real_detect.py [--real ../shared/real] [--threshold 0.3]

COCO: every annotated person with at least one keypoint; MPII: the one annotated person per image
(MPII annotates one person per entry; other people in the picture are not counted). An annotated
person is *found* when a detection box contains the centre of their box and its height is 0.7 to 3
times theirs (the detector's box is the 128-pixel window, ~1.3 x the person); each detection matches
at most one person. Prints per image the annotated, found and unmatched ("extra") counts and the time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def annotated_boxes(real: Path) -> dict[Path, list[tuple[float, float, float]]]:
    """``{image: [(centre x, centre y, height), ...]}`` of the annotated people."""
    out: dict[Path, list] = {}
    coco = json.loads((real / "coco" / "test_coco.json").read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    for a in coco["annotations"]:
        path = real / "coco" / names[a["image_id"]]
        out.setdefault(path, [])
        if a["num_keypoints"] > 0:
            x, y, w, h = a["bbox"]
            out[path].append((x + w / 2, y + h / 2, h))
    for e in json.loads((real / "mpii" / "test_mpii.json").read_text()):
        out.setdefault(real / "mpii" / e["image"], []).append((*e["center"], 200.0 * e["scale"]))
    return out


def match(det: np.ndarray, people: list[tuple[float, float, float]]) -> int:
    """How many annotated people a detection (``(N, 4)`` boxes) covers, one detection each."""
    used: set[int] = set()
    found = 0
    for cx, cy, h in people:
        for i, (x0, y0, x1, y1) in enumerate(det):
            if i not in used and x0 <= cx <= x1 and y0 <= cy <= y1 and 0.7 * h <= y1 - y0 <= 3.0 * h:
                used.add(i)
                found += 1
                break
    return found


def main() -> None:
    from dsrbody.data.spin_npz import read_image
    from dsrbody.demo.hog import HOGPeopleDetector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "real"))
    ap.add_argument(
        "--threshold", type=float, default=None, help="SVM score threshold (default: the detector's)"
    )
    args = ap.parse_args()
    real = Path(args.real)
    if not (real / "coco" / "test_coco.json").is_file():
        raise SystemExit(f"{real}: no coco/test_coco.json (the shared real photos)")
    det = HOGPeopleDetector() if args.threshold is None else HOGPeopleDetector(threshold=args.threshold)
    tot = {"annotated": 0, "found": 0, "detections": 0, "seconds": 0.0}
    print(f"{'image':<24} {'annotated':>9} {'found':>5} {'extra':>5} {'s':>5}")
    for path, people in sorted(annotated_boxes(real).items()):
        img = read_image(path)
        t0 = time.perf_counter()
        boxes, _ = det.boxes(img)
        dt = time.perf_counter() - t0
        found = match(boxes, people)
        print(
            f"{path.parent.name + '/' + path.name:<24} {len(people):>9} {found:>5} "
            f"{len(boxes) - found:>5} {dt:>5.1f}"
        )
        for k, v in (
            ("annotated", len(people)),
            ("found", found),
            ("detections", len(boxes)),
            ("seconds", dt),
        ):
            tot[k] += v
    n = len(annotated_boxes(real))
    print(
        f"total: {tot['found']} of {tot['annotated']} annotated people found, "
        f"{tot['detections'] - tot['found']} other detections, {tot['seconds'] / n:.1f} s per image"
    )


if __name__ == "__main__":
    main()
