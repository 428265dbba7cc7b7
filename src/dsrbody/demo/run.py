"""Run a regressor on images, folders and videos and write what a person wants to look at.

Per image ``NAME`` (in ``OUT``): ``NAME_result.png``, the picture to look at first: the input | every
body drawn over it | each body seen from its side.

Per person ``k`` of an image ``NAME``:

- ``NAME_p{k}_overlay.png``: the body drawn over the whole image;
- ``NAME_p{k}_side.png``: the body seen from its side (the crop's camera turned 90 degrees);
- ``NAME_p{k}.obj``: the mesh in the original image's camera frame (metres, x right, y down, z forward;
  the camera of ``params``: focal ``focal_length`` px, principal point ``principal_point``);
- ``NAME_p{k}_params.npz`` / ``.json``: ``global_orient (3,)`` and ``body_pose (J-1, 3)`` axis-angle
  (camera-frame global orientation, as the SPIN/DSR ``pose`` field), ``shape (S,)``, ``cam (3,)`` weak
  perspective of the 224 crop, ``translation (3,)`` metres, ``focal_length`` and ``principal_point``
  of the original image, ``center``/``scale`` of the box, ``keypoints_2d (K, 2)`` projected into the
  original image (pixels), the body model's name and the box's source.

Video ``NAME.ext``: ``NAME_overlay.mp4`` (every frame with every person drawn) and
``NAME_params.npz`` / ``.json`` (the same fields stacked over (frame, person) rows, with ``frame``
and ``person`` index arrays).

The crop camera (focal 5000 px on a 224 crop centred on the box) is the original image's camera with
focal ``5000 * 200 * scale / 224`` and principal point ``center``: the mesh is drawn exactly where the
regressor put it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dsrbody.demo.inputs import (
    Person,
    check_box,
    openpose_file_for,
    people_from_boxes,
    people_from_openpose,
    read_box_json,
    whole_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "DemoOptions",
    "PersonResult",
    "BoxSource",
    "predict_people",
    "original_camera",
    "write_person",
    "result_picture",
    "run_images",
    "run_video",
    "list_images",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class DemoOptions:
    """What to write.

    Attributes:
        side_size: side of the side-view picture in pixels.
        batch_size: crops per regressor call.
        mesh: write ``.obj`` meshes.
        progress: show a progress bar on folders and videos.
    """

    side_size: int = 448
    batch_size: int = 16
    mesh: bool = True
    progress: bool = True


@dataclass
class PersonResult:
    """The regressor's output for one person (numpy, CPU)."""

    person: Person
    rotmat: np.ndarray  # (J, 3, 3)
    shape: np.ndarray  # (S,)
    cam: np.ndarray  # (3,)
    translation: np.ndarray  # (3,)
    vertices_cam: np.ndarray  # (V, 3) crop camera frame (= original camera frame), metres
    joints_cam: np.ndarray  # (K, 3)
    focal_length: float  # original-image pixels
    principal_point: np.ndarray  # (2,) original-image pixels

    def keypoints_2d(self) -> np.ndarray:
        """``(K, 2)`` joints projected into the original image (pixels)."""
        j = self.joints_cam
        return self.focal_length * j[:, :2] / j[:, 2:3] + self.principal_point

    def params(self, body_name: str) -> dict[str, np.ndarray | str | float]:
        """The parameter record (see the module docstring)."""
        from dsrbody.geometry.rotations import matrix_to_axis_angle

        aa = matrix_to_axis_angle(torch.from_numpy(self.rotmat)).numpy()
        return {
            "body_model": body_name,
            "global_orient": aa[0].astype(np.float32),
            "body_pose": aa[1:].astype(np.float32),
            "shape": self.shape.astype(np.float32),
            "cam": self.cam.astype(np.float32),
            "translation": self.translation.astype(np.float32),
            "focal_length": np.float32(self.focal_length),
            "principal_point": self.principal_point.astype(np.float32),
            "center": np.asarray(self.person.center, np.float32),
            "scale": np.float32(self.person.scale),
            "box_source": self.person.source,
            "keypoints_2d": self.keypoints_2d().astype(np.float32),
        }


def original_camera(person: Person, focal: float, img_res: int) -> tuple[float, np.ndarray]:
    """``(focal px, principal point (2,) px)`` of the original image for a crop camera.

    The crop maps original pixels by ``u = (x - center) * img_res / (200 scale) + img_res / 2``; a crop
    camera with focal ``f`` and principal point at the crop centre is therefore the original camera
    with focal ``f * 200 scale / img_res`` and principal point ``center``.
    """
    return float(focal) * 200.0 * float(person.scale) / img_res, np.asarray(person.center, np.float64)


@torch.no_grad()
def predict_people(
    regressor, image: np.ndarray, people: list[Person], batch_size: int = 16
) -> list[PersonResult]:
    """Crop every person's box, regress, and express the bodies in the original camera.

    Args:
        regressor: a :class:`~dsrbody.models.Regressor` (eval mode).
        image: ``(H, W, 3)`` uint8 RGB.
        people: the boxes.

    Returns:
        One :class:`PersonResult` per person, same order.
    """
    from dsrbody.data.crop_augment import AugmentParams, rgb_processing

    res = int(regressor.img_res)
    dev = next(regressor.parameters()).device
    out: list[PersonResult] = []
    for start in range(0, len(people), batch_size):
        chunk = people[start : start + batch_size]
        crops = np.stack([rgb_processing(image, p.center, p.scale, AugmentParams(), res) for p in chunk])
        pred = regressor(torch.from_numpy(crops).to(dev))
        t = pred["translation"].cpu().double().numpy()
        for i, p in enumerate(chunk):
            f, pp = original_camera(p, regressor.focal, res)
            out.append(
                PersonResult(
                    person=p,
                    rotmat=pred["rotmat"][i].cpu().double().numpy(),
                    shape=pred["shape"][i].cpu().double().numpy(),
                    cam=pred["cam"][i].cpu().double().numpy(),
                    translation=t[i],
                    vertices_cam=pred["vertices"][i].cpu().double().numpy() + t[i],
                    joints_cam=pred["joints"][i].cpu().double().numpy() + t[i],
                    focal_length=f,
                    principal_point=pp,
                )
            )
    return out


def draw_people(image: np.ndarray, results: list[PersonResult], faces: np.ndarray) -> np.ndarray:
    """Every body over the image (nearest drawn last)."""
    from dsrbody.render.overlay import overlay

    img = image
    for r in sorted(results, key=lambda r: -float(r.translation[2])):
        img = overlay(
            img, r.vertices_cam, faces, focal=r.focal_length, principal_point=tuple(r.principal_point)
        )
    return img


def side_picture(
    result: PersonResult, faces: np.ndarray, size: int, focal: float, img_res: int
) -> np.ndarray:
    """The body of one person from its side, in a ``size`` x ``size`` view of its crop camera."""
    from dsrbody.render.overlay import side_view

    k = size / img_res
    v = result.vertices_cam - result.translation + np.array([0.0, 0.0, result.translation[2]])
    return side_view(v, faces, focal=focal * k, image_size=(size, size), principal_point=(size / 2, size / 2))


def result_picture(
    image: np.ndarray, results: list[PersonResult], faces: np.ndarray, regressor
) -> np.ndarray:
    """``input | every body over the input | each body from its side``, at the input's height.

    Args:
        image: ``(H, W, 3)`` uint8 RGB. results: the people of the image. faces: ``(F, 3)`` mesh faces.
        regressor: the model (its crop focal length and size place the side views).

    Returns:
        ``(H, 2 W + n H, 3)`` uint8 for ``n`` people.
    """
    H = image.shape[0]
    panels = [image, draw_people(image, results, faces)]
    for r in results:
        panels.append(side_picture(r, faces, H, regressor.focal, regressor.img_res))
    return np.concatenate([np.ascontiguousarray(p[..., :3]).astype(np.uint8) for p in panels], axis=1)


def _json_ready(d: dict) -> dict:
    """numpy values to plain Python (lists, floats, ints, strings) for ``json.dumps``."""
    return {
        k: (np.asarray(v).tolist() if isinstance(v, (np.ndarray, np.generic)) else v) for k, v in d.items()
    }


def write_person(
    out_dir: Path,
    stem: str,
    k: int,
    image: np.ndarray,
    result: PersonResult,
    faces: np.ndarray,
    body_name: str,
    regressor,
    options: DemoOptions,
) -> list[Path]:
    """Write one person's files (module docstring); returns their paths."""
    import imageio.v3 as iio

    base = out_dir / f"{stem}_p{k}"
    paths = [
        Path(f"{base}_overlay.png"),
        Path(f"{base}_side.png"),
        Path(f"{base}_params.npz"),
        Path(f"{base}_params.json"),
    ]
    iio.imwrite(paths[0], draw_people(image, [result], faces))
    iio.imwrite(paths[1], side_picture(result, faces, options.side_size, regressor.focal, regressor.img_res))
    params = result.params(body_name)
    np.savez(paths[2], **params)
    paths[3].write_text(json.dumps(_json_ready(params), indent=1))
    if options.mesh:
        import trimesh

        obj = Path(f"{base}.obj")
        trimesh.Trimesh(result.vertices_cam, faces, process=False).export(obj)
        paths.append(obj)
    return paths


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder (sorted by name; not recursive).

    Raises:
        FileNotFoundError: no such folder. ValueError: no image in it.
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: image folder not found")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"{d}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


@dataclass
class BoxSource:
    """Where the boxes come from: an OpenPose folder/file, a box JSON (file or folder of ``<stem>.json``),
    a detector (callable image -> Person or None), or nothing (the whole image).

    ``messages`` collects what was skipped and why.
    """

    openpose: Path | None = None
    bbox: Path | None = None
    detector: Callable[[np.ndarray], Person | None] | None = None
    messages: list[str] = field(default_factory=list)

    def people(self, image: np.ndarray, name: str, frame: int | None = None) -> list[Person]:
        """The people of one image (``name``: its file name; ``frame``: the frame number of a video).

        Raises:
            FileNotFoundError: a missing JSON. ValueError: a malformed JSON or a box outside the image.
        """
        H, W = image.shape[:2]
        stem = Path(name).stem if frame is None else f"{Path(name).stem}_{frame:012d}"
        if self.openpose is not None:
            people, msgs = people_from_openpose(openpose_file_for(self.openpose, stem))
            self.messages.extend(msgs)
        elif self.bbox is not None:
            if self.bbox.is_dir():
                path = self.bbox / f"{stem}.json"
                people = people_from_boxes(read_box_json(path))
            else:
                people = people_from_boxes(
                    read_box_json(self.bbox, Path(name).name if frame is None else None)
                )
        elif self.detector is not None:
            p = self.detector(image)
            if p is None:
                self.messages.append(f"{name}: the detector found nobody; using the whole image")
                p = whole_image(H, W)
            people = [p]
        else:
            people = [whole_image(H, W)]
        for p in people:
            check_box(p, H, W, f"{name}: ")
        return people


def _read_rgb(path: Path) -> np.ndarray:
    from dsrbody.data.spin_npz import read_image

    return read_image(path)


def run_images(
    regressor,
    body_name: str,
    images: Iterable[Path],
    boxes: BoxSource,
    out_dir: str | Path,
    options: DemoOptions | None = None,
    strict: bool = True,
) -> dict[str, list[Path]]:
    """Run on image files.

    Args:
        regressor: the model. body_name: its body model's name (recorded in the parameters).
        images: the image files.
        boxes: where the people are.
        out_dir: output folder (created).
        options: what to write.
        strict: raise on the first bad image (single-image runs); otherwise skip it with a message
            in ``boxes.messages`` (folders).

    Returns:
        ``{image path: written files}`` for the images that produced something.
    """
    from tqdm import tqdm

    opts = options or DemoOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    faces = regressor.faces.cpu().numpy()
    images = list(images)
    written: dict[str, list[Path]] = {}
    for path in tqdm(images, desc="demo", unit="image", disable=not opts.progress or len(images) < 2):
        try:
            img = _read_rgb(path)
            people = boxes.people(img, path.name)
        except (FileNotFoundError, ValueError) as e:
            if strict:
                raise
            boxes.messages.append(f"skipped: {e}")
            continue
        if not people:
            boxes.messages.append(f"{path}: nobody to reconstruct; nothing written")
            continue
        results = predict_people(regressor, img, people, opts.batch_size)
        import imageio.v3 as iio

        summary = out / f"{path.stem}_result.png"
        iio.imwrite(summary, result_picture(img, results, faces, regressor))
        files: list[Path] = [summary]
        for k, r in enumerate(results):
            files += write_person(out, path.stem, k, img, r, faces, body_name, regressor, opts)
        written[str(path)] = files
    return written


def run_video(
    regressor,
    body_name: str,
    video: str | Path,
    boxes: BoxSource,
    out_dir: str | Path,
    options: DemoOptions | None = None,
    max_frames: int | None = None,
) -> dict[str, Path]:
    """Run on every frame of a video; write the overlay video and the per-frame parameters.

    Boxes: an OpenPose folder holds OpenPose's per-frame files ``<video stem>_<frame:012d>_keypoints.json``;
    a box JSON gives the same boxes for every frame (or a folder of ``<video stem>_<frame:012d>.json``).
    A frame without anybody is written unchanged.

    Returns:
        ``{"video": overlay video, "params_npz": ..., "params_json": ...}``.

    Raises:
        FileNotFoundError: no such file. ValueError: the file cannot be decoded as a video.
    """
    import imageio.v2 as imageio
    from tqdm import tqdm

    opts = options or DemoOptions()
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"{video}: video file not found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        reader = imageio.get_reader(str(video), format="FFMPEG")
        meta = reader.get_meta_data()
    except Exception as e:  # noqa: BLE001 - imageio/ffmpeg raise many types for undecodable files
        raise ValueError(
            f"{video}: cannot be decoded as a video ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    fps = float(meta.get("fps") or 25.0)
    faces = regressor.faces.cpu().numpy()
    out_video = out / f"{video.stem}_overlay.mp4"
    rows: dict[str, list] = {}
    n_frames = 0
    writer = None
    try:
        total = reader.count_frames() if opts.progress else None
    except Exception:  # noqa: BLE001
        total = None
    try:
        frames = enumerate(reader)
        for i, frame in tqdm(frames, desc="video", unit="frame", total=total, disable=not opts.progress):
            if max_frames is not None and i >= max_frames:
                break
            frame = np.ascontiguousarray(frame[..., :3])
            try:
                people = boxes.people(frame, video.name, frame=i)
            except (FileNotFoundError, ValueError) as e:
                boxes.messages.append(f"frame {i}: {e}")
                people = []
            results = predict_people(regressor, frame, people, opts.batch_size) if people else []
            drawn = draw_people(frame, results, faces) if results else frame
            if writer is None:
                writer = imageio.get_writer(
                    str(out_video), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=2, quality=8
                )
            writer.append_data(drawn)
            for k, r in enumerate(results):
                rec = r.params(body_name)
                rec["frame"], rec["person"] = np.int64(i), np.int64(k)
                for key, v in rec.items():
                    rows.setdefault(key, []).append(v)
            n_frames += 1
    except (OSError, RuntimeError, ValueError) as e:
        if n_frames == 0:
            raise ValueError(
                f"{video}: cannot be decoded as a video ({type(e).__name__}: {str(e).splitlines()[0]})"
            ) from None
        boxes.messages.append(f"{video}: decoding stopped after {n_frames} frames ({type(e).__name__})")
    finally:
        reader.close()
        if writer is not None:
            writer.close()
    if n_frames == 0:
        raise ValueError(f"{video}: no frame could be decoded")
    stacked = {k: np.stack([np.asarray(x) for x in v]) for k, v in rows.items()}
    stacked["fps"] = np.float32(fps)
    stacked["num_frames"] = np.int64(n_frames)
    npz = out / f"{video.stem}_params.npz"
    np.savez(npz, **stacked)
    js = out / f"{video.stem}_params.json"
    js.write_text(json.dumps(_json_ready(stacked)))
    return {"video": out_video, "params_npz": npz, "params_json": js}
