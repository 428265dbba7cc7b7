"""Run a regressor on images, folders and videos and write what a person wants to look at.

Per image ``NAME`` (in ``OUT``): ``NAME_result.png``, the picture to look at first: the input | every
body drawn over it, each person in its own colour with its box and its 2D keypoints (dots: the
person's keypoints from the detector, OpenPose or annotations; the body's projected joints are the
mesh itself) | everyone seen from the side (the scene turned 90 degrees about the vertical axis
through the people's centre).

Per person ``k`` of an image ``NAME``:

- ``NAME_p{k}_overlay.png``: the body drawn over the whole image;
- ``NAME_p{k}_side.png``: the body seen from its side (the crop's camera turned 90 degrees);
- ``NAME_p{k}.obj``: the mesh in a **y-up frame** centred on the body (metres, x to the image's right,
  y up, z towards the camera: it opens upright, facing the viewer, in y-up viewers such as Blender's
  OBJ import with "Y up", MeshLab or three.js). It is the camera frame (x right, y down, z forward)
  turned 180 degrees about x and moved by the body's translation: ``p_camera = R p_mesh + t`` with
  ``R = diag(1, -1, -1)``, ``t = translation``; ``mesh_to_camera`` in the parameter file is that 4 x 4
  transform;
- ``NAME_p{k}_params.npz`` / ``.json``: ``global_orient (3,)`` and ``body_pose (J-1, 3)`` axis-angle
  (camera-frame global orientation, as the SPIN/DSR ``pose`` field), ``shape (S,)``, ``cam (3,)`` weak
  perspective of the crop, ``translation (3,)`` metres, ``focal_length`` and ``principal_point``
  of the original image, ``mesh_to_camera (4, 4)``, ``center``/``scale`` of the box, ``keypoints_2d
  (K, 2)`` projected into the original image (pixels), the body model's name, the box's source,
  ``refined`` (whether the body was refined on the person's keypoints) and, when it was,
  ``keypoint_error_px_before``/``_after`` (mean over the person's keypoints) and ``refine_seconds``.

Video ``NAME.ext``: ``NAME_overlay.mp4`` (every frame with every tracked person drawn in the colour of
its track) and ``NAME_params.npz`` / ``.json`` (the same fields stacked over (frame, person) rows,
with ``frame``, ``person`` (index in the frame) and ``track`` (the person's id across frames) arrays).
People are tracked by box overlap (:func:`track_boxes`) and each track's parameters are smoothed over
time (:func:`smooth_tracks`) before the overlay video is drawn (a second pass over the video).

The crop camera (focal ``f`` px on an ``img_res`` crop centred on the box) is the original image's
camera with focal ``f * 200 * scale / img_res`` and principal point ``center``: the mesh is drawn
exactly where the regressor put it.
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
    people_from_coco,
    people_from_openpose,
    read_box_json,
    whole_image,
)
from dsrbody.demo.refine import RefineOptions, RefineReport

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
    "result_from_prediction",
    "MESH_FROM_CAMERA",
    "mesh_vertices",
    "track_boxes",
    "smooth_tracks",
]

#: rotation from the camera frame (y down, z forward) to the y-up mesh frame (z towards the camera).
MESH_FROM_CAMERA = np.diag([1.0, -1.0, -1.0])

#: one colour per person (RGB 0-255), cycled.
PERSON_COLORS = np.array(
    [[230, 80, 60], [60, 140, 230], [80, 190, 90], [240, 180, 40], [170, 90, 200], [40, 190, 190],
     [240, 120, 180], [140, 110, 70]],
    np.uint8,
)  # fmt: skip

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class DemoOptions:
    """What to write.

    Attributes:
        side_size: side of the side-view picture in pixels.
        batch_size: crops per regressor call.
        mesh: write ``.obj`` meshes.
        progress: show a progress bar on folders and videos.
        refine: refine each body on its person's 2D keypoints where there are some
            (:mod:`dsrbody.demo.refine`).
        refine_options: :class:`~dsrbody.demo.refine.RefineOptions` (default ones when None).
        flip: flip test-time augmentation: each crop's estimate averaged with its mirror's
            (:class:`~dsrbody.eval.protocols.FlipAveraged`; twice the regressor's time).
        smooth_sigma: video: standard deviation (frames) of the Gaussian that smooths each track's
            parameters over time (0: no smoothing).
        height: every person's stature in metres, when known (:func:`with_known_stature`, applied last);
            None: the regressor's estimate.
    """

    side_size: int = 448
    batch_size: int = 16
    mesh: bool = True
    progress: bool = True
    refine: bool = True
    refine_options: RefineOptions | None = None
    flip: bool = False
    smooth_sigma: float = 1.5
    height: float | None = None


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
    shape_raw: np.ndarray | None = None  # (S,) the regressor's raw shape vector (fitting starts from it)
    keypoint_confidence: np.ndarray | None = None  # (K,) 0 for keypoints the body model lacks
    refined: bool = False
    refine_report: RefineReport | None = None  # when refined

    def keypoints_2d(self) -> np.ndarray:
        """``(K, 2)`` joints projected into the original image (pixels)."""
        j = self.joints_cam
        return self.focal_length * j[:, :2] / j[:, 2:3] + self.principal_point

    def params(self, body_name: str) -> dict[str, np.ndarray | str | float]:
        """The parameter record (see the module docstring)."""
        from dsrbody.geometry.rotations import matrix_to_axis_angle

        aa = matrix_to_axis_angle(torch.from_numpy(self.rotmat)).numpy()
        to_cam = np.eye(4)
        to_cam[:3, :3] = MESH_FROM_CAMERA.T
        to_cam[:3, 3] = self.translation
        extra: dict[str, np.ndarray | str | float] = {"refined": np.bool_(self.refined)}
        rep = self.refine_report
        if rep is not None:
            extra["keypoint_error_px_before"] = np.float32(rep.error_before_px)
            extra["keypoint_error_px_after"] = np.float32(rep.error_after_px)
            extra["refine_seconds"] = np.float32(rep.seconds)
        if self.person.track is not None:
            extra["track"] = np.int64(self.person.track)
        return extra | {
            "body_model": body_name,
            "global_orient": aa[0].astype(np.float32),
            "body_pose": aa[1:].astype(np.float32),
            "shape": self.shape.astype(np.float32),
            "cam": self.cam.astype(np.float32),
            "translation": self.translation.astype(np.float32),
            "focal_length": np.float32(self.focal_length),
            "principal_point": self.principal_point.astype(np.float32),
            "mesh_to_camera": to_cam.astype(np.float32),
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
    regressor, image: np.ndarray, people: list[Person], batch_size: int = 16, flip: bool = False
) -> list[PersonResult]:
    """Crop every person's box, regress, and express the bodies in the original camera.

    Args:
        regressor: a :class:`~dsrbody.models.Regressor` (eval mode).
        image: ``(H, W, 3)`` uint8 RGB.
        people: the boxes.
        batch_size: crops per regressor call.
        flip: average each estimate with the mirrored crop's
            (:class:`~dsrbody.eval.protocols.FlipAveraged`).

    Returns:
        One :class:`PersonResult` per person, same order.
    """
    from dsrbody.data.crop_augment import AugmentParams, rgb_processing
    from dsrbody.eval.protocols import FlipAveraged

    res = int(regressor.img_res)
    dev = next(regressor.parameters()).device
    model = FlipAveraged(regressor) if flip else regressor
    out: list[PersonResult] = []
    for start in range(0, len(people), batch_size):
        chunk = people[start : start + batch_size]
        crops = np.stack([rgb_processing(image, p.center, p.scale, AugmentParams(), res) for p in chunk])
        pred = model(torch.from_numpy(crops).to(dev))
        out += [result_from_prediction(regressor, p, pred, i) for i, p in enumerate(chunk)]
    return out


def result_from_prediction(
    regressor, person: Person, pred: dict[str, torch.Tensor], i: int, shape_raw: torch.Tensor | None = None
) -> PersonResult:
    """The :class:`PersonResult` of sample ``i`` of a regressor output (or of ``regressor.pose_body``).

    Args:
        regressor: the model (crop focal length and size). person: the sample's box.
        pred: ``rotmat, shape, cam, translation, vertices, joints`` (batched), optionally ``shape_raw``.
        shape_raw: ``(S,)`` the raw shape vector when ``pred`` has none.
    """
    t = pred["translation"][i].detach().cpu().double().numpy()
    f, pp = original_camera(person, regressor.focal, int(regressor.img_res))
    raw = pred["shape_raw"][i] if "shape_raw" in pred else shape_raw
    conf = pred.get("keypoint_confidence")
    return PersonResult(
        person=person,
        rotmat=pred["rotmat"][i].detach().cpu().double().numpy(),
        shape=pred["shape"][i].detach().cpu().double().numpy(),
        cam=pred["cam"][i].detach().cpu().double().numpy(),
        translation=t,
        vertices_cam=pred["vertices"][i].detach().cpu().double().numpy() + t,
        joints_cam=pred["joints"][i].detach().cpu().double().numpy() + t,
        focal_length=f,
        principal_point=pp,
        shape_raw=None if raw is None else raw.detach().cpu().double().numpy(),
        keypoint_confidence=None if conf is None else conf.detach().cpu().numpy(),
    )


def check_height(height: float, source: str = "height") -> float:
    """``height`` as a float, or a one-line ``ValueError`` (naming ``source``) for a value that is not a
    person's stature in metres (0.3-3 m)."""
    try:
        value = float(height)
    except (TypeError, ValueError):
        raise ValueError(f"{source} is a stature in metres (0.3-3), got {height!r}") from None
    if not 0.3 <= value <= 3.0:
        raise ValueError(f"{source} is a stature in metres (0.3-3), got {height}")
    return value


def with_known_stature(
    regressor,
    results: list[PersonResult],
    height: float,
    batch_size: int = 32,
    out_of_reach: list[str] | None = None,
) -> list[PersonResult]:
    """The people made ``height`` metres tall, each as far from the camera as that size needs.

    A crop shows a person's shape but not their size: a tall person far away and a short one nearby
    give the same crop. A known height gives both: each body's stature coefficient is set so its rest
    mesh is ``height`` tall (:func:`dsrbody.body.stature.with_stature`, pose and the other shape
    coefficients kept), and the body is scaled about the camera by the stature's ratio, so it covers the
    same pixels (its mesh centroid moves from ``c`` to ``k c``; the shape change is a near-uniform scale)
    at the distance that size needs in the demo's camera. A refined person's ``refine_report`` still
    describes the body before the change (its projected keypoints move by a few pixels at most).

    Args:
        regressor: the model (its ``body_model``).
        results: the people (:func:`predict_people`, :func:`refine_results`).
        height: metres.
        batch_size: people per search (each runs the body model on ``17 x batch_size`` shapes).
        out_of_reach: None: a height that a person's other shape coefficients cannot reach is an error.
            A list: such a person is made the nearest height they can reach, and a line naming their
            box and the range possible is appended to it.

    Returns:
        New :class:`PersonResult` objects (``shape``, ``shape_raw``, ``cam``, ``translation``,
        ``vertices_cam``, ``joints_cam`` changed), same order.

    Raises:
        ValueError: ``height`` outside 0.3-3 m, or, without ``out_of_reach``, outside what a person's
            other shape coefficients allow (the range that is possible is named).
    """
    from dataclasses import replace

    from dsrbody.body.stature import rest_stature, with_stature

    height = check_height(height)
    if len(results) > batch_size:
        return [
            r
            for start in range(0, len(results), batch_size)
            for r in with_known_stature(
                regressor, results[start : start + batch_size], height, batch_size, out_of_reach
            )
        ]
    if not results:
        return []
    body = regressor.body_model
    dev = body.faces.device
    shape = torch.tensor(np.stack([r.shape for r in results]), dtype=torch.float32, device=dev)
    rot = torch.tensor(np.stack([r.rotmat for r in results]), dtype=torch.float32, device=dev)
    fit = with_stature(body, shape, height)
    for i in fit.clamped.nonzero().flatten().tolist():
        reach = with_stature(body, shape[i : i + 1].repeat(2, 1), torch.tensor([0.3, 3.0])).stature
        what = (
            f"the person in box {[round(float(x)) for x in results[i].person.box]} cannot be {height:.2f} m "
            f"tall with the rest of their estimated shape ({body.name}: {float(reach[0]):.2f}-"
            f"{float(reach[1]):.2f} m)"
        )
        if out_of_reach is None:
            raise ValueError(what)
        out_of_reach.append(f"{what}; made {float(fit.stature[i]):.2f} m")
    with torch.no_grad():
        before = body(rot[:, 0], rot[:, 1:], shape)
        after = body(rot[:, 0], rot[:, 1:], fit.shape)
        raw = regressor.raw_from_shape(fit.shape).double().cpu().numpy()
    k = (fit.stature / rest_stature(body, shape)).double().cpu().numpy()
    f, res = float(regressor.focal), int(regressor.img_res)
    out = []
    for i, r in enumerate(results):
        v_old = before.vertices[i].double().cpu().numpy()
        v_new = after.vertices[i].double().cpu().numpy()
        t = k[i] * (v_old.mean(0) + r.translation) - v_new.mean(0)
        out.append(
            replace(
                r,
                shape=fit.shape[i].double().cpu().numpy(),
                shape_raw=raw[i],
                cam=np.array([2.0 * f / (res * t[2]), t[0], t[1]]),  # weak_perspective_to_translation^-1
                translation=t,
                vertices_cam=v_new + t,
                joints_cam=after.joints[i].double().cpu().numpy() + t,
            )
        )
    return out


def mesh_vertices(result: PersonResult) -> np.ndarray:
    """``(V, 3)`` the body in the y-up mesh frame of the ``.obj`` (module docstring): ``R^T (v - t)``."""
    return (result.vertices_cam - result.translation) @ MESH_FROM_CAMERA


def person_color(k: int) -> np.ndarray:
    """The RGB colour (0-255) of person / track ``k``."""
    return PERSON_COLORS[int(k) % len(PERSON_COLORS)]


def _color_id(result: PersonResult, k: int) -> int:
    return result.person.track if result.person.track is not None else k


def draw_people(
    image: np.ndarray, results: list[PersonResult], faces: np.ndarray, annotate: bool = False
) -> np.ndarray:
    """Every body over the image (nearest drawn last), each in its person's colour.

    Args:
        image: ``(H, W, 3)`` uint8 RGB. results: the people. faces: ``(F, 3)``.
        annotate: also draw each person's box and 2D keypoints (confidence > 0.2) and its number.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    import cv2

    from dsrbody.render.overlay import overlay

    img = image
    order = sorted(range(len(results)), key=lambda k: -float(results[k].translation[2]))
    for k in order:
        r = results[k]
        color = np.broadcast_to(person_color(_color_id(r, k)) / 255.0 * 0.6 + 0.4, r.vertices_cam.shape)
        img = overlay(
            img,
            r.vertices_cam,
            faces,
            focal=r.focal_length,
            principal_point=tuple(r.principal_point),
            vertex_colors=np.ascontiguousarray(color),
        )
    if not annotate:
        return img
    img = np.ascontiguousarray(img[..., :3]).copy()
    th = max(1, round(max(img.shape[:2]) / 400))
    for k, r in enumerate(results):
        c = tuple(int(v) for v in person_color(_color_id(r, k)))
        x0, y0, x1, y1 = (round(v) for v in r.person.box)
        cv2.rectangle(img, (x0, y0), (x1, y1), c, th)
        label = f"p{k}" if r.person.track is None else f"id {r.person.track}"
        cv2.putText(img, label, (x0 + 2 * th, y0 + 12 * th), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * th, c, th)
        if r.person.keypoints is not None:
            for x, y, conf in np.asarray(r.person.keypoints)[:25]:
                if conf > 0.2:
                    cv2.circle(img, (round(x), round(y)), 2 * th + 1, (255, 255, 255), -1)
                    cv2.circle(img, (round(x), round(y)), 2 * th, c, -1)
    return img


def side_of_everyone(results: list[PersonResult], faces: np.ndarray, size: int) -> np.ndarray:
    """Everyone seen from the side: the camera-frame scene turned 90 degrees about the vertical axis
    through the people's centre, framed to fit a ``size`` x ``size`` picture (each person in its colour).
    """
    from dsrbody.render.overlay import rotate_about_vertical, side_view

    if not results:
        return np.full((size, size, 3), 255, np.uint8)
    verts = [np.asarray(r.vertices_cam, np.float64) for r in results]
    center = torch.from_numpy(np.concatenate(verts).mean(0, keepdims=True))
    turned = rotate_about_vertical(torch.from_numpy(np.concatenate(verts)), 90.0, center=center).numpy()
    lo, hi = turned.min(0), turned.max(0)
    mid = 0.5 * (lo + hi)
    half = 0.5 * float(max(hi[0] - lo[0], hi[1] - lo[1])) + 1e-6
    focal = float(size)
    depth = half * focal / (0.42 * size) + 0.5 * float(hi[2] - lo[2])
    # undo the turn side_view applies, so that it renders exactly the framed, turned scene
    framed = turned - mid + np.array([0.0, 0.0, depth])
    scene = rotate_about_vertical(torch.from_numpy(framed), -90.0).numpy()
    offsets = np.cumsum([0] + [len(v) for v in verts[:-1]])
    all_faces = np.concatenate([faces + o for o in offsets])
    colors = np.concatenate(
        [np.broadcast_to(person_color(_color_id(r, k)) / 255.0 * 0.6 + 0.4, v.shape) for k, (r, v) in
         enumerate(zip(results, verts))]
    )  # fmt: skip
    return side_view(
        scene, all_faces, focal=focal, image_size=(size, size), vertex_colors=np.ascontiguousarray(colors)
    )


def side_picture(
    result: PersonResult, faces: np.ndarray, size: int, focal: float, img_res: int
) -> np.ndarray:
    """The body of one person from its side, in a ``size`` x ``size`` view of its crop camera."""
    from dsrbody.render.overlay import side_view

    k = size / img_res
    v = result.vertices_cam - result.translation + np.array([0.0, 0.0, result.translation[2]])
    return side_view(v, faces, focal=focal * k, image_size=(size, size), principal_point=(size / 2, size / 2))


def result_picture(
    image: np.ndarray, results: list[PersonResult], faces: np.ndarray, regressor=None
) -> np.ndarray:
    """``input | every body over the input, with boxes and keypoints | everyone from the side``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB. results: the people of the image. faces: ``(F, 3)`` mesh faces.
        regressor: unused (kept for callers of the earlier signature).

    Returns:
        ``(H, 2 W + H, 3)`` uint8.
    """
    H = image.shape[0]
    panels = [image, draw_people(image, results, faces, annotate=True), side_of_everyone(results, faces, H)]
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
        trimesh.Trimesh(mesh_vertices(result), faces, process=False).export(obj)
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
    """Where the people are: an OpenPose folder/file, a box JSON (file or folder of ``<stem>.json``), a
    COCO keypoint JSON, a detector (callable image -> list of :class:`Person`), or nothing (the whole
    image).

    With a detector that finds nobody, the image is skipped with a message, unless
    ``whole_image_if_none`` (then the whole image is the box). ``messages`` collects what was skipped
    and why.
    """

    openpose: Path | None = None
    bbox: Path | None = None
    detector: Callable[[np.ndarray], list[Person]] | None = None
    coco: Path | None = None
    whole_image_if_none: bool = False
    messages: list[str] = field(default_factory=list)

    def people(self, image: np.ndarray, name: str, frame: int | None = None) -> list[Person]:
        """The people of one image (``name``: its file name; ``frame``: the frame number of a video).

        Returns:
            The people (empty when the detector found nobody: a message says so).

        Raises:
            FileNotFoundError: a missing JSON. ValueError: a malformed JSON or a box outside the image.
        """
        H, W = image.shape[:2]
        stem = Path(name).stem if frame is None else f"{Path(name).stem}_{frame:012d}"
        where = name if frame is None else f"{name} frame {frame}"
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
        elif self.coco is not None:
            people, msgs = people_from_coco(self.coco, Path(name).name)
            self.messages.extend(msgs)
        elif self.detector is not None:
            people = list(self.detector(image))
            if not people and self.whole_image_if_none:
                self.messages.append(f"{where}: the detector found nobody; using the whole image")
                people = [whole_image(H, W)]
            elif not people:
                self.messages.append(
                    f"{where}: the detector found nobody; skipped "
                    "(--whole-image-if-none uses the whole image)"
                )
        else:
            people = [whole_image(H, W)]
        for p in people:
            check_box(p, H, W, f"{where}: ")
        return people


def _read_rgb(path: Path) -> np.ndarray:
    from dsrbody.data.spin_npz import read_image

    return read_image(path)


def refine_results(regressor, results: list[PersonResult], options: DemoOptions) -> list[PersonResult]:
    """:func:`dsrbody.demo.refine.refine_people` on the results that have keypoints, the reports kept
    on the results (``refine_report``)."""
    from dataclasses import replace

    from dsrbody.demo.refine import refine_people

    new, reports = refine_people(regressor, results, options.refine_options)
    return [r if rep is None else replace(r, refine_report=rep) for r, rep in zip(new, reports)]


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
        n_messages = len(boxes.messages)
        try:
            img = _read_rgb(path)
            people = boxes.people(img, path.name)
        except (FileNotFoundError, ValueError) as e:
            if strict:
                raise
            boxes.messages.append(f"skipped: {e}")
            continue
        if not people:
            if len(boxes.messages) == n_messages:
                boxes.messages.append(f"{path}: nobody to reconstruct; nothing written")
            continue
        results = predict_people(regressor, img, people, opts.batch_size, flip=opts.flip)
        if opts.refine:
            results = refine_results(regressor, results, opts)
        if opts.height is not None:
            far: list[str] = []
            results = with_known_stature(regressor, results, opts.height, out_of_reach=far)
            boxes.messages += [f"{path.name}: {line}" for line in far]
        import imageio.v3 as iio

        summary = out / f"{path.stem}_result.png"
        iio.imwrite(summary, result_picture(img, results, faces, regressor))
        files: list[Path] = [summary]
        for k, r in enumerate(results):
            files += write_person(out, path.stem, k, img, r, faces, body_name, regressor, opts)
        written[str(path)] = files
    return written


def track_boxes(frames: list[np.ndarray], iou_threshold: float = 0.3, max_age: int = 10) -> list[list[int]]:
    """Track people across frames by box overlap.

    Frame by frame, boxes are matched greedily (highest IoU first) to the tracks seen in the last
    ``max_age`` frames (their latest box), when the IoU exceeds ``iou_threshold``; an unmatched box
    starts a new track. Ids are 0, 1, ... in order of appearance.

    Args:
        frames: per frame, the boxes ``(N_f, 4)`` ``(x0, y0, x1, y1)`` pixels.

    Returns:
        Per frame, the track id of each box (same order).
    """
    from dsrbody.demo.hog import box_iou

    last: dict[int, tuple[np.ndarray, int]] = {}  # id -> (box, frame)
    out: list[list[int]] = []
    for f, boxes in enumerate(frames):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = [-1] * len(boxes)
        alive = [t for t, (_, seen) in last.items() if f - seen <= max_age]
        if alive and len(boxes):
            iou = box_iou(boxes, np.stack([last[t][0] for t in alive]))
            for flat in np.argsort(-iou, axis=None):
                b, k = divmod(int(flat), len(alive))
                if iou[b, k] <= iou_threshold:
                    break
                if ids[b] == -1 and alive[k] not in ids:
                    ids[b] = alive[k]
        for b in range(len(boxes)):
            if ids[b] == -1:
                ids[b] = len(last) if not last else max(last) + 1
            last[ids[b]] = (boxes[b], f)
        out.append(ids)
    return out


def _project_rotations(m: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices ``(..., 3, 3)`` (SVD) of averaged ones."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return u @ vt


def smooth_tracks(
    values: dict[str, np.ndarray], frame: np.ndarray, track: np.ndarray, sigma: float
) -> dict[str, np.ndarray]:
    """Gaussian smoothing over time of each track's parameters.

    Each row (one person in one frame) becomes the average of the rows of the same track weighted by
    ``exp(-(frame difference)^2 / (2 sigma^2))`` (frames within 3 sigma); rotation matrices
    (``"rotmat"``, ``(N, J, 3, 3)``) are averaged then projected back onto rotations.

    Args:
        values: ``{name: (N, ...)}`` per-row arrays (rotations under ``"rotmat"``).
        frame, track: ``(N,)`` the rows' frame numbers and track ids.
        sigma: frames (0 returns the values as they are).

    Returns:
        The smoothed arrays (same shapes).
    """
    if sigma <= 0 or len(frame) == 0:
        return {k: np.array(v) for k, v in values.items()}
    frame, track = np.asarray(frame), np.asarray(track)
    out = {k: np.array(v, dtype=np.float64) for k, v in values.items()}
    for t in np.unique(track):
        rows = np.nonzero(track == t)[0]
        d = frame[rows][:, None] - frame[rows][None, :]
        w = np.exp(-(d.astype(np.float64) ** 2) / (2 * sigma**2)) * (np.abs(d) <= 3 * sigma)
        w /= w.sum(1, keepdims=True)
        for k, v in values.items():
            v = np.asarray(v, np.float64)[rows]
            sm = np.tensordot(w, v, axes=(1, 0))
            out[k][rows] = _project_rotations(sm) if k == "rotmat" else sm
    return out


def _frame_count(reader, max_frames: int | None) -> int | None:
    """Frames the run will process: the video's count (None if unknown) capped at ``max_frames``."""
    try:
        n = int(reader.count_frames())
    except Exception:  # noqa: BLE001 - imageio/ffmpeg raise many types
        n = None
    if max_frames is not None:
        return max_frames if n is None else min(n, max_frames)
    return n


def run_video(
    regressor,
    body_name: str,
    video: str | Path,
    boxes: BoxSource,
    out_dir: str | Path,
    options: DemoOptions | None = None,
    max_frames: int | None = None,
) -> dict[str, Path]:
    """Run on the frames of a video; track and smooth the people; write the overlay video and parameters.

    Boxes: an OpenPose folder holds OpenPose's per-frame files ``<video stem>_<frame:012d>_keypoints.json``;
    a box JSON gives the same boxes for every frame (or a folder of ``<video stem>_<frame:012d>.json``);
    else the detector. A frame without anybody is written unchanged. First pass: boxes, regression and
    refinement per frame, tracking (:func:`track_boxes`); then each track's boxes and parameters are
    smoothed (:func:`smooth_tracks`, ``options.smooth_sigma``), and a second pass draws the overlay
    video. Both passes show a progress bar whose total is the number of frames processed
    (``max_frames`` or fewer).

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

    def open_reader():
        try:
            r = imageio.get_reader(str(video), format="FFMPEG")
            return r, r.get_meta_data()
        except Exception as e:  # noqa: BLE001 - imageio/ffmpeg raise many types for undecodable files
            raise ValueError(
                f"{video}: cannot be decoded as a video ({type(e).__name__}: {str(e).splitlines()[0]})"
            ) from None

    reader, meta = open_reader()
    fps = float(meta.get("fps") or 25.0)
    faces = regressor.faces.cpu().numpy()
    total = _frame_count(reader, max_frames)
    per_frame: list[list[PersonResult]] = []
    nobody: list[int] = []
    try:
        bar = tqdm(total=total, desc="video: people", unit="frame", disable=not opts.progress)
        for i, frame in enumerate(reader):
            if max_frames is not None and i >= max_frames:
                break
            frame = np.ascontiguousarray(frame[..., :3])
            n_messages = len(boxes.messages)
            try:
                people = boxes.people(frame, video.name, frame=i)
            except (FileNotFoundError, ValueError) as e:
                boxes.messages.append(f"frame {i}: {e}")
                people = []
            if not people and boxes.detector is not None and len(boxes.messages) > n_messages:
                del boxes.messages[n_messages:]  # one line for the whole video, not one per frame
                nobody.append(i)
            results = predict_people(regressor, frame, people, opts.batch_size, opts.flip) if people else []
            if results and opts.refine:
                results = refine_results(regressor, results, opts)
            per_frame.append(results)
            bar.update(1)
        bar.close()
    except (OSError, RuntimeError, ValueError) as e:
        if not per_frame:
            raise ValueError(
                f"{video}: cannot be decoded as a video ({type(e).__name__}: {str(e).splitlines()[0]})"
            ) from None
        boxes.messages.append(f"{video}: decoding stopped after {len(per_frame)} frames ({type(e).__name__})")
    finally:
        reader.close()
    n_frames = len(per_frame)
    if n_frames == 0:
        raise ValueError(f"{video}: no frame could be decoded")
    if nobody:
        first = ", ".join(str(i) for i in nobody[:8]) + (", ..." if len(nobody) > 8 else "")
        boxes.messages.append(
            f"{video.name}: the detector found nobody in {len(nobody)} of {n_frames} frames ({first}); "
            "those frames are written unchanged"
        )
    ids = track_boxes([np.array([r.person.box for r in rs]).reshape(-1, 4) for rs in per_frame])
    rows = [(f, k, r) for f, rs in enumerate(per_frame) for k, r in enumerate(rs)]
    for f, k, r in rows:
        r.person.track = ids[f][k]
    if rows and opts.smooth_sigma > 0:
        rows = _smoothed_rows(regressor, rows, opts.smooth_sigma)
    if rows and opts.height is not None:
        far: list[str] = []
        tall = with_known_stature(regressor, [r for _, _, r in rows], opts.height, out_of_reach=far)
        rows = [(f, k, r) for (f, k, _), r in zip(rows, tall)]
        if far:
            boxes.messages.append(
                f"{video.name}: {len(far)} of {len(rows)} bodies could not be {opts.height:.2f} m tall with "
                f"the rest of their estimated shape and were made the nearest height they can reach (first: "
                f"{far[0]})"
            )
    if rows and (opts.smooth_sigma > 0 or opts.height is not None):
        per_frame = [[] for _ in range(n_frames)]
        for f, _, r in rows:
            per_frame[f].append(r)
    out_video = out / f"{video.stem}_overlay.mp4"
    reader, _ = open_reader()
    writer = imageio.get_writer(
        str(out_video), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=2, quality=8
    )
    try:
        bar = tqdm(total=n_frames, desc="video: drawing", unit="frame", disable=not opts.progress)
        for i, frame in enumerate(reader):
            if i >= n_frames:
                break
            frame = np.ascontiguousarray(frame[..., :3])
            writer.append_data(
                draw_people(frame, per_frame[i], faces, annotate=True) if per_frame[i] else frame
            )
            bar.update(1)
        bar.close()
    finally:
        reader.close()
        writer.close()
    table: dict[str, list] = {}
    for f, k, r in rows:
        rec = r.params(body_name)
        rec["frame"], rec["person"] = np.int64(f), np.int64(k)
        for key, v in rec.items():
            table.setdefault(key, []).append(v)
    stacked = {k: np.stack([np.asarray(x) for x in v]) for k, v in table.items()}
    stacked["fps"] = np.float32(fps)
    stacked["num_frames"] = np.int64(n_frames)
    npz = out / f"{video.stem}_params.npz"
    np.savez(npz, **stacked)
    js = out / f"{video.stem}_params.json"
    js.write_text(json.dumps(_json_ready(stacked)))
    return {"video": out_video, "params_npz": npz, "params_json": js}


@torch.no_grad()
def _smoothed_rows(regressor, rows: list, sigma: float) -> list:
    """``(frame, index, PersonResult)`` rows with each track's box, rotations, shape and camera smoothed."""
    from dataclasses import replace

    frame = np.array([f for f, _, _ in rows])
    track = np.array([r.person.track for _, _, r in rows])
    values = {
        "rotmat": np.stack([r.rotmat for _, _, r in rows]),
        "shape_raw": np.stack([r.shape_raw if r.shape_raw is not None else r.shape for _, _, r in rows]),
        "cam": np.stack([r.cam for _, _, r in rows]),
        "center": np.stack([np.asarray(r.person.center, np.float64) for _, _, r in rows]),
        "scale": np.array([r.person.scale for _, _, r in rows], np.float64),
    }
    sm = smooth_tracks(values, frame, track, sigma)
    dev = next(regressor.parameters()).device
    raw = torch.from_numpy(sm["shape_raw"]).float().to(dev)
    has_raw = all(r.shape_raw is not None for _, _, r in rows)
    shape = regressor.shape_from_raw(raw) if has_raw else raw
    out = []
    for start in range(0, len(rows), 64):
        sl = slice(start, start + 64)
        pred = regressor.pose_body(
            torch.from_numpy(sm["rotmat"][sl]).float().to(dev),
            shape[sl],
            torch.from_numpy(sm["cam"][sl]).float().to(dev),
        )
        for j, (f, k, r) in enumerate(rows[sl]):
            person = replace(r.person, center=sm["center"][start + j], scale=float(sm["scale"][start + j]))
            new = result_from_prediction(
                regressor, person, pred, j, shape_raw=raw[start + j] if has_raw else None
            )
            out.append((f, k, replace(new, refined=r.refined, refine_report=r.refine_report)))
    return out
