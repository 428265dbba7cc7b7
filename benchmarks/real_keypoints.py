"""PCK of the demo's bodies on the annotated real people of ``../shared/real`` (COCO and MPII photos).

    python benchmarks/real_keypoints.py [--real ../shared/real] [--ckpt K [--model-path SMPL]]
        [--iters 40] [--holdout sides|alternate] [--detector blazepose|hog] [--refine-mask inside|iou|none]
        [--mask-margin 0.06] [--window-scales 1 0.5] [--detect-only]
        [--json OUT.json]

People: every COCO person of ``coco/test_coco.json`` with at least 6 labelled keypoints (the demo's
``--coco`` rule) and the one annotated person of each MPII image (``mpii/test_mpii.json``). Their
keypoints become BODY_25 (:func:`~dsrbody.demo.inputs.coco_to_openpose`,
:func:`~dsrbody.demo.inputs.mpii_to_openpose`), and the score is PCK of the 12 limb joints
(:data:`~dsrbody.demo.refine.LIMB_KEYPOINTS`: shoulders, elbows, wrists, hips, knees, ankles) that are
labelled (COCO ``v > 0``, visible or occluded; MPII ``joints_vis > 0``): a joint is correct when the
body's projected joint is within 0.1 (0.2) of the longer side of the person's annotated box.

Annotated box: COCO's ``bbox``; MPII has none, so the box of the person's labelled joints (all 16;
the head top gives its top). The regressor's crop in that box: COCO, the bbox's longer side x 1.2
around its centre (the 1.2 margin of SPIN and of the shipped model's training crops); MPII, the
dataset's ``center`` and ``scale`` (side ``200 scale``, the crop SPIN trains on).

Rows:

- mean pose: the regressor's start point (``dsrbody.models.at_mean``) in the annotated box;
- regression in the annotated box;
- + refinement on all annotated keypoints (:func:`~dsrbody.demo.refine.refine_people`): scored on the
  points it was fitted to, an upper bound;
- + refinement, held out: two folds per person; each refines on the annotated keypoints minus one
  fold of limb joints (``sides``: the left limb joints, then the right ones; ``alternate``: shoulders,
  wrists and knees, then elbows, hips and ankles), also without the neck / mid-hip where they are
  midpoints of a held-out shoulder / hip, and scores only the held-out joints; every limb joint is
  scored once;
- the same with a detector's boxes (``--detector``: the built-in BlazePose, :mod:`dsrbody.demo.blazepose`,
  the default; or HOG, :mod:`dsrbody.demo.hog`), the crop the demo takes from each detection, instead of
  the annotated ones: an annotated person is found by the detection whose person box (BlazePose: the
  box of its landmarks; HOG, :func:`person_box`: the 64 x 128 window less its 16-pixel margins) has
  the highest IoU with their annotated box, when it is at least ``--iou`` (0.5; each detection matches
  one person); these rows refine on the person's annotated keypoints. "found only" scores the found
  people; "misses counted" scores everybody, a missed person's joints all wrong;
- **the demo as it runs** (BlazePose only): the detector's box and the detector's own keypoints, refined
  on those (what ``dsrbody demo --image`` does with no other input), scored against the annotations.

Time per person: regression (batch of the image's people / its size) plus refinement (the batch's time
/ its size; held out: one fold's), one torch thread; the detector's time per image is printed apart.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

FRACTIONS = (0.1, 0.2)
# BODY_25: R shoulder 2, elbow 3, wrist 4, L shoulder 5, elbow 6, wrist 7, R hip 9, knee 10, ankle 11,
# L hip 12, knee 13, ankle 14; neck 1 = mid-shoulders, mid-hip 8 = mid-hips.
HOLDOUT = {
    "sides": ((5, 6, 7, 12, 13, 14), (2, 3, 4, 9, 10, 11)),
    "alternate": ((2, 5, 4, 7, 10, 13), (3, 6, 9, 12, 11, 14)),
}
MIDPOINTS = {1: (2, 5), 8: (9, 12)}


@dataclass
class Annotated:
    """One annotated person."""

    image: Path
    dataset: str  # "coco" or "mpii"
    keypoints: np.ndarray  # (25, 3) BODY_25 pixels + 1/0 labelled
    box: tuple[float, float, float, float]  # annotated box (x0, y0, x1, y1): PCK size, detector IoU
    center: np.ndarray  # the crop in the annotated box
    scale: float

    @property
    def size(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)


def annotated_people(real: Path, margin: float = 1.2, min_keypoints: int = 6) -> list[Annotated]:
    from dsrbody.demo.inputs import coco_to_openpose, mpii_to_openpose

    out: list[Annotated] = []
    coco = json.loads((real / "coco" / "test_coco.json").read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    for a in coco["annotations"]:
        kp17 = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        if int((kp17[:, 2] > 0).sum()) < min_keypoints:
            continue
        x, y, w, h = a["bbox"]
        out.append(
            Annotated(
                real / "coco" / names[a["image_id"]],
                "coco",
                coco_to_openpose(kp17),
                (x, y, x + w, y + h),
                np.array([x + w / 2, y + h / 2]),
                margin * max(w, h) / 200.0,
            )
        )
    for e in json.loads((real / "mpii" / "test_mpii.json").read_text()):
        j, vis = np.asarray(e["joints"], np.float64), np.asarray(e["joints_vis"]) > 0
        lo, hi = j[vis].min(0), j[vis].max(0)
        out.append(
            Annotated(
                real / "mpii" / e["image"],
                "mpii",
                mpii_to_openpose(j, vis),
                (lo[0], lo[1], hi[0], hi[1]),
                np.asarray(e["center"], np.float64),
                float(e["scale"]),
            )
        )
    return out


def without(keypoints: np.ndarray, held: tuple[int, ...]) -> np.ndarray:
    """The keypoints with the ``held`` ones (and the midpoints built from them) set unlabelled."""
    kp = keypoints.copy()
    kp[list(held), 2] = 0.0
    for mid, (a, b) in MIDPOINTS.items():
        if a in held or b in held:
            kp[mid, 2] = 0.0
    return kp


@dataclass
class Row:
    """PCK counts of one setting."""

    name: str
    people: int = 0
    joints: int = 0
    hits: np.ndarray = field(default_factory=lambda: np.zeros(len(FRACTIONS), np.int64))
    by_dataset: dict = field(default_factory=dict)  # dataset -> [joints, hits (F,)]
    seconds: list = field(default_factory=list)

    def add(self, dataset: str, hits: np.ndarray, n: int, seconds: float | None) -> None:
        self.people += 1
        self.joints += n
        self.hits += hits
        d = self.by_dataset.setdefault(dataset, [0, np.zeros(len(FRACTIONS), np.int64)])
        d[0] += n
        d[1] += hits
        if seconds is not None:
            self.seconds.append(seconds)

    def pck(self, k: int, dataset: str | None = None) -> float:
        n, h = (self.joints, self.hits) if dataset is None else self.by_dataset.get(dataset, [0, [0, 0]])
        return float(h[k]) / n if n else float("nan")

    def record(self) -> dict:
        return {
            "setting": self.name,
            "people": self.people,
            "joints": self.joints,
            **{f"pck@{a}": self.pck(k) for k, a in enumerate(FRACTIONS)},
            **{f"{d}_joints": v[0] for d, v in self.by_dataset.items()},
            **{f"{d}_pck@{a}": self.pck(k, d) for d in ("coco", "mpii") for k, a in enumerate(FRACTIONS)},
            "seconds_per_person": float(np.mean(self.seconds)) if self.seconds else None,
        }


def person_box(p) -> tuple[float, float, float, float]:
    """The person inside a HOG detection: its 64 x 128 window (height = the crop's side ``200 scale``)
    less the window's margin of 16 pixels on each side (Dalal and Triggs: the person is the central
    32 x 96 pixels)."""
    from dsrbody.demo.hog import WIN_H, WIN_W

    px = 200.0 * p.scale / WIN_H  # image pixels per window pixel
    half = np.array([WIN_W / 2 - 16, WIN_H / 2 - 16]) * px
    return (*(p.center - half), *(p.center + half))


def detection_box(p) -> tuple[float, float, float, float]:
    """The person box of a detection: BlazePose's landmark box, else the HOG window's person."""
    return tuple(p.extent) if p.extent is not None else person_box(p)


def match_detections(det: np.ndarray, boxes: list[tuple], min_iou: float) -> list[int | None]:
    """Per annotated box, the index of its detection (highest IoU first, one person per detection)."""
    from dsrbody.demo.hog import box_iou

    out: list[int | None] = [None] * len(boxes)
    if len(det) == 0 or not boxes:
        return out
    iou = box_iou(np.asarray(boxes, np.float64), det)
    used: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        p, d = divmod(int(flat), iou.shape[1])
        if iou[p, d] < min_iou:
            break
        if out[p] is None and d not in used:
            out[p] = d
            used.add(d)
    return out


def evaluate(reg, img, people, crops, opts, holdout, flip: bool = False) -> dict[str, list]:
    """Regression, refinement and held-out refinement of ``people`` in the ``crops`` boxes
    (``flip``: flip test-time augmentation of the regression, as ``dsrbody demo --flip``).

    Returns:
        ``{"reg" | "ref" | "held": [(dataset, hits (F,), scored joints, seconds), ...]}`` per person.
    """
    from dsrbody.demo.refine import keypoint_pck, refine_people
    from dsrbody.demo.run import predict_people

    out: dict[str, list] = {"reg": [], "ref": [], "held": []}
    t0 = time.perf_counter()
    results = predict_people(reg, img, crops, flip=flip)
    t_reg = (time.perf_counter() - t0) / len(people)
    for a, r in zip(people, results):
        out["reg"].append((a.dataset, *keypoint_pck(r, a.keypoints, a.size, FRACTIONS), t_reg))
    refined, reports = refine_people(reg, results, opts)
    for a, r, rep in zip(people, refined, reports):
        t = t_reg + (rep.seconds if rep is not None else 0.0)
        out["ref"].append((a.dataset, *keypoint_pck(r, a.keypoints, a.size, FRACTIONS), t))
    hits = [np.zeros(len(FRACTIONS), np.int64) for _ in people]
    scored = [0] * len(people)
    secs: list[list[float]] = [[] for _ in people]
    for held in holdout:
        told = [
            replace(r, person=replace(r.person, keypoints=without(a.keypoints, held)))
            for a, r in zip(people, results)
        ]
        refined, reports = refine_people(reg, told, opts)
        for k, (a, r, rep) in enumerate(zip(people, refined, reports)):
            h, n = keypoint_pck(r, a.keypoints, a.size, FRACTIONS, joints=held)
            hits[k] += h
            scored[k] += n
            secs[k].append(rep.seconds if rep is not None else 0.0)
    for k, a in enumerate(people):
        out["held"].append((a.dataset, hits[k], scored[k], t_reg + float(np.mean(secs[k]))))
    return out


def main() -> None:
    from dsrbody.data.spin_npz import read_image
    from dsrbody.demo.blazepose import BlazePoseDetector
    from dsrbody.demo.hog import HOGPeopleDetector, box_iou
    from dsrbody.demo.inputs import Person
    from dsrbody.demo.refine import LIMB_KEYPOINTS, RefineOptions, keypoint_pck, refine_people
    from dsrbody.demo.run import predict_people
    from dsrbody.models import at_mean
    from dsrbody.models.loader import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "real"))
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--model-path", default=None, help="SMPL files for SPIN/DSR checkpoints")
    ap.add_argument("--iters", type=int, default=RefineOptions().iters, help="refinement steps")
    ap.add_argument(
        "--refine-mask", choices=("inside", "iou", "none"), default="inside", help="as dsrbody demo's"
    )
    ap.add_argument(
        "--mask-margin",
        type=float,
        default=None,
        help="grow the mask by this share of the crop (default 0.06)",
    )
    ap.add_argument(
        "--window-scales", type=float, nargs="*", default=None, help="BlazePose's windows (default 1 0.5)"
    )
    ap.add_argument(
        "--flip",
        action="store_true",
        help="flip test-time augmentation of the regressor (dsrbody demo --flip)",
    )
    ap.add_argument("--detect-only", action="store_true", help="only count the people the detector finds")
    ap.add_argument("--holdout", choices=sorted(HOLDOUT), default="sides", help="the held-out folds")
    ap.add_argument("--detector", choices=("blazepose", "hog"), default="blazepose", help="person detector")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU a detection needs to match a person")
    ap.add_argument("--margin", type=float, default=1.2, help="COCO crop side / the bbox's longer side")
    ap.add_argument("--json", default=None, help="write the table (and per-image detector results) here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    real = Path(args.real)
    if not (real / "coco" / "test_coco.json").is_file() or not (real / "mpii" / "test_mpii.json").is_file():
        raise SystemExit(f"{real}: no coco/test_coco.json or mpii/test_mpii.json (the shared real photos)")
    if args.ckpt is None:
        from dsrbody.models.shipped import shipped_model_path

        args.ckpt = str(shipped_model_path())
    loaded = load_model(args.ckpt, model_path=args.model_path)
    reg = loaded.regressor.eval()
    mean_reg = at_mean(reg).eval()
    opts = RefineOptions(iters=args.iters)
    if args.refine_mask == "none":
        opts.silhouette = 0.0
    else:
        opts.mask_form = args.refine_mask
    if args.mask_margin is not None:
        opts.mask_margin = float(args.mask_margin)
    holdout = HOLDOUT[args.holdout]
    assert sorted(holdout[0] + holdout[1]) == sorted(LIMB_KEYPOINTS)
    print(
        f"{loaded.describe()}; {args.iters} refinement steps; mask term: {args.refine_mask}; "
        f"held-out folds: {args.holdout}" + ("; flip test-time augmentation" if args.flip else "")
    )

    names = {
        "mean": "mean pose, annotated box",
        "reg": "regression, annotated box",
        "ref": "+ refinement (scored on its own keypoints)",
        "held": f"+ refinement, held out ({args.holdout})",
        "det_reg": "detector boxes, found only: regression",
        "det_ref": "detector, found only: + refinement",
        "det_held": "detector, found only: + refinement, held out",
        "all_reg": "detector boxes, misses counted: regression",
        "all_ref": "detector, misses counted: + refinement",
        "all_held": "detector, misses counted: + refinement, held out",
    }
    if args.detector == "blazepose":
        names["demo_found"] = "demo: detector box + keypoints, refined, found only"
        names["demo_all"] = "demo: detector box + keypoints, refined, misses counted"
    rows = {k: Row(v) for k, v in names.items()}
    people = annotated_people(real, args.margin)
    by_image: dict[Path, list[Annotated]] = {}
    for a in people:
        by_image.setdefault(a.image, []).append(a)
    if args.detector == "blazepose":
        scales = (1.0, 0.5) if args.window_scales is None else tuple(args.window_scales)
        detector = BlazePoseDetector(window_scales=scales)
        print(f"detector: blazepose, window scales {scales}")
    else:
        detector = HOGPeopleDetector()
        print("detector: hog")
    if args.detect_only:
        found_n = dets = 0
        seconds = []
        for path, ann in sorted(by_image.items()):
            img = read_image(path)
            t0 = time.perf_counter()
            found = detector(img)
            seconds.append(time.perf_counter() - t0)
            boxes = np.array([detection_box(p) for p in found]).reshape(-1, 4)
            found_n += sum(m is not None for m in match_detections(boxes, [a.box for a in ann], args.iou))
            dets += len(found)
        print(
            f"detector: {found_n} of {len(people)} annotated people found (IoU >= {args.iou}), {dets} "
            f"detections, {np.mean(seconds):.2f} s per image"
        )
        return
    det_log = []
    for path, ann in sorted(by_image.items()):
        img = read_image(path)
        crops = [Person(a.center, a.scale, "bbox", keypoints=a.keypoints) for a in ann]
        for a, r in zip(ann, predict_people(mean_reg, img, crops)):
            rows["mean"].add(a.dataset, *keypoint_pck(r, a.keypoints, a.size, FRACTIONS), None)
        for k, recs in evaluate(reg, img, ann, crops, opts, holdout, args.flip).items():
            for rec in recs:
                rows[k].add(*rec)
        t0 = time.perf_counter()
        found = detector(img)
        t_det = time.perf_counter() - t0
        det_boxes = np.array([detection_box(p) for p in found]).reshape(-1, 4)  # the person in each detection
        match = match_detections(det_boxes, [a.box for a in ann], args.iou)
        hit = [(a, found[m]) for a, m in zip(ann, match) if m is not None]
        if hit:
            sub = [a for a, _ in hit]
            det_crops = [replace(p, keypoints=a.keypoints) for a, p in hit]
            for k, recs in evaluate(reg, img, sub, det_crops, opts, holdout, args.flip).items():
                for rec in recs:
                    rows["det_" + k].add(*rec)
                    rows["all_" + k].add(*rec)
            if "demo_found" in rows:  # the demo: the detector's own keypoints
                t0 = time.perf_counter()
                results = predict_people(reg, img, [p for _, p in hit], flip=args.flip)
                t_reg = (time.perf_counter() - t0) / len(hit)
                refined, reports = refine_people(reg, results, opts)
                for (a, _), r, rep in zip(hit, refined, reports):
                    t = t_reg + (rep.seconds if rep is not None else 0.0)
                    rec = (a.dataset, *keypoint_pck(r, a.keypoints, a.size, FRACTIONS), t)
                    rows["demo_found"].add(*rec)
                    rows["demo_all"].add(*rec)
        for a, m in zip(ann, match):
            if m is None:  # missed: every labelled limb joint is wrong
                n = sum(int(a.keypoints[j, 2] > 0) for j in LIMB_KEYPOINTS)
                for k in ("reg", "ref", "held") + (("demo",) if "demo_all" in rows else ()):
                    key = "demo_all" if k == "demo" else "all_" + k
                    rows[key].add(a.dataset, np.zeros(len(FRACTIONS), np.int64), n, None)
        boxes = np.asarray([a.box for a in ann])
        best = box_iou(boxes, det_boxes).max(1) if len(det_boxes) else np.zeros(len(ann))
        det_log.append(
            {
                "image": f"{path.parent.name}/{path.name}",
                "people": len(ann),
                "detections": len(det_boxes),
                "found": len(hit),
                "best_iou": [round(float(x), 3) for x in best],
                "seconds": t_det,
            }
        )
        print(
            f"{path.parent.name}/{path.name}: {len(ann)} people, {len(det_boxes)} detections, {len(hit)} "
            f"matched (best IoU per person: {', '.join(f'{x:.2f}' for x in best)}), detector {t_det:.1f} s",
            flush=True,
        )
    print()
    print(
        f"{'setting':<56} {'people':>6} {'joints':>6} {'PCK@0.1':>7} {'PCK@0.2':>7} "
        f"{'COCO@0.2':>8} {'MPII@0.2':>8} {'s/person':>8}"
    )
    for r in rows.values():
        s = f"{np.mean(r.seconds):8.2f}" if r.seconds else f"{'':>8}"
        print(
            f"{r.name:<56} {r.people:>6} {r.joints:>6} {r.pck(0):>7.3f} {r.pck(1):>7.3f} "
            f"{r.pck(1, 'coco'):>8.3f} {r.pck(1, 'mpii'):>8.3f} {s}"
        )
    per = {d: sum(a.dataset == d for a in people) for d in ("coco", "mpii")}
    print("; ".join(f"{d.upper()}: {per[d]} people, {rows['reg'].by_dataset[d][0]} joints" for d in per))
    n_found = sum(d["found"] for d in det_log)
    t_det = float(np.mean([d["seconds"] for d in det_log]))
    print(
        f"detector: {n_found} of {len(people)} annotated people found (IoU >= {args.iou}); "
        f"{t_det:.1f} s per image"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model": loaded.describe(),
                    "iters": args.iters,
                    "holdout": args.holdout,
                    "iou": args.iou,
                    "detector_name": args.detector,
                    "margin": args.margin,
                    "rows": [r.record() for r in rows.values()],
                    "detector": det_log,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
