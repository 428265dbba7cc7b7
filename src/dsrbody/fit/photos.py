"""Turn a folder of photos into a SPIN/DSR annotation file that :func:`~dsrbody.fit.fit_dataset` reads.

People come from OpenPose JSONs, box JSONs, or a person detector (:mod:`dsrbody.demo.inputs`,
:func:`dsrbody.demo.detect.make_detector`; by default the built-in BlazePose); their OpenPose
keypoints become the file's ``openpose (N, 25, 3)`` (the 24 "GT" keypoints are absent: confidence 0).
Parsing maps are read from ``DIR/grph_sequences/<stem>.png`` (CIHP labels, e.g. Graphonomy's output).
With the detector, the person masks of every person of a photo are written as one parsing map
``OUT/grph_sequences/<stem>.png`` labelled "upperclothes" (a clothed-person mask: it carries no
minimally-clothed label, so it feeds the silhouette term ``sil`` and not DSR-MC/DSR-C).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["photos_to_npz"]


def photos_to_npz(
    folder: str | Path,
    out_dir: str | Path,
    *,
    bbox: str | None = None,
    openpose: str | None = None,
    detector: str = "auto",
) -> tuple[Path, Path, Path]:
    """Write ``OUT/photos.npz`` for the photos of ``folder``.

    Returns:
        ``(npz path, image root, parsing root)``.

    Raises:
        FileNotFoundError, ValueError: no images; bad JSONs; nobody found in any photo.
        DetectorUnavailable: the detector cannot load (:func:`dsrbody.demo.detect.make_detector`).
    """
    from dsrbody.data.spin_npz import read_image
    from dsrbody.demo.run import BoxSource, list_images
    from dsrbody.semantics.labels import CIHP
    from dsrbody.semantics.parsing import write_parsing

    folder, out = Path(folder), Path(out_dir)
    images = list_images(folder)
    det = None
    if not (bbox or openpose) and detector != "none":
        from dsrbody.demo.detect import make_detector

        det = make_detector(detector)
    boxes = BoxSource(
        openpose=Path(openpose) if openpose else None,
        bbox=Path(bbox) if bbox else None,
        detector=det,
        whole_image_if_none=True,
    )
    rows: dict[str, list] = {k: [] for k in ("imgname", "center", "scale", "openpose")}
    parsing_root = folder
    upper = list(CIHP.names).index("upperclothes")
    for path in images:
        try:
            img = read_image(path)
            people = boxes.people(img, path.name)
        except (FileNotFoundError, ValueError) as e:
            boxes.messages.append(f"skipped: {e}")
            continue
        masks = [p.mask for p in people if p.mask is not None]
        if masks:  # every person of the photo in one map
            parsing_root = out
            (out / "grph_sequences").mkdir(parents=True, exist_ok=True)
            write_parsing(
                out / "grph_sequences" / f"{path.stem}.png",
                np.where(np.logical_or.reduce(masks), upper, 0).astype(np.uint8),
            )
        for p in people:
            rows["imgname"].append(path.name)
            rows["center"].append(np.asarray(p.center, np.float32))
            rows["scale"].append(np.float32(p.scale))
            kp = p.keypoints if p.keypoints is not None else np.zeros((25, 3))
            rows["openpose"].append(np.asarray(kp, np.float32))
    for m in boxes.messages:
        log.warning(f"dsrbody fit: {m}")
    if not rows["imgname"]:
        raise ValueError(f"{folder}: nobody found in any photo")
    n = len(rows["imgname"])
    out.mkdir(parents=True, exist_ok=True)
    npz = out / "photos.npz"
    np.savez(
        npz,
        imgname=np.array(rows["imgname"]),
        center=np.stack(rows["center"]),
        scale=np.array(rows["scale"], np.float32),
        openpose=np.stack(rows["openpose"]),
        part=np.zeros((n, 24, 3), np.float32),
    )
    return npz, folder, parsing_root
