"""The everyday entry points: ``from dsrbody import load_model, predict``.

    import dsrbody
    model = dsrbody.load_model()                  # the shipped model (as ``dsrbody demo``)
    people = dsrbody.predict(model, "photo.jpg")  # or an (H, W, 3) uint8 RGB array
    people[0].vertices_cam, people[0].keypoints_2d(), people[0].params(model.body_name)

Both are thin: :func:`load_model` is :func:`dsrbody.models.loader.load_model` with the shipped model as
the default file and the device chosen automatically; :func:`predict` finds the people the way
``dsrbody demo`` does (:class:`dsrbody.demo.run.BoxSource`), crops and regresses them
(:func:`dsrbody.demo.run.predict_people`) and refines the ones with 2D keypoints
(:func:`dsrbody.demo.run.refine_results`). Everything heavy is imported inside the functions, so
``import dsrbody`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from dsrbody.demo.run import PersonResult
    from dsrbody.models.loader import LoadedModel

__all__ = ["load_model", "predict"]


def load_model(path: str | Path | None = None, *, device: str = "auto", **kwargs: Any) -> LoadedModel:
    """Load a regressor for inference.

    Args:
        path: a checkpoint (``dsrbody train``/``export``, SPIN, DSR, a bare state dict); None: the
            model shipped in the package (docs/model_card.md).
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ...
        **kwargs: passed to :func:`dsrbody.models.loader.load_model` (``body``, ``model_path``,
            ``gender``, ``topology``, ``mesh``).

    Returns:
        A :class:`~dsrbody.models.loader.LoadedModel` (``.regressor``, ``.body_name``, ``.describe()``).

    Raises:
        FileNotFoundError: no such file, or no shipped model in this installation.
        ValueError: a file dsrbody cannot read or that does not match the options.
    """
    from dsrbody.devices import resolve_device
    from dsrbody.models.loader import load_model as _load

    if path is None:
        from dsrbody.models.shipped import shipped_model_path

        path = shipped_model_path()
    return _load(path, device=resolve_device(device), **kwargs)


def predict(
    model: Any,
    image: str | Path | np.ndarray,
    box: Any = None,
    *,
    refine: bool = True,
    batch_size: int = 16,
    flip: bool = False,
    height: float | None = None,
) -> list[PersonResult]:
    """The bodies of the people in one image, in one call.

    Args:
        model: what :func:`load_model` returns, or a :class:`~dsrbody.models.Regressor`.
        image: an image file, or an ``(H, W, 3)`` uint8 RGB array.
        box: where the people are: None (the built-in BlazePose detector, as ``dsrbody demo``; the
            whole image when it finds nobody), ``"image"`` (the whole image), one ``[x, y, w, h]`` box
            in pixels or a list of them, or a list of :class:`~dsrbody.demo.inputs.Person`.
        refine: refine the bodies of people with 2D keypoints on them (as ``dsrbody demo``: the
            detector's keypoints; boxes alone have none).
        batch_size: crops per regressor call.
        flip: flip test-time augmentation (as ``dsrbody demo --flip``): each estimate averaged with the
            mirrored crop's; twice the regressor's time.
        height: every person's stature in metres, when known (as ``dsrbody demo --height``): the body is
            made that tall and placed at the distance its size needs
            (:func:`dsrbody.demo.run.with_known_stature`); None: the regressor's estimate.

    Returns:
        One :class:`~dsrbody.demo.run.PersonResult` per person: ``rotmat (J, 3, 3)`` (camera-frame
        global orientation first), ``shape (S,)``, ``cam (3,)`` weak perspective of the crop,
        ``translation (3,)``, ``vertices_cam (V, 3)`` and ``joints_cam (K, 3)`` in the image's camera
        frame (metres), ``keypoints_2d()`` in image pixels, ``params(body_name)`` the record
        ``dsrbody demo`` writes (axis-angle pose, ...).

    Raises:
        FileNotFoundError: no such image file. ValueError: not an RGB image, a bad box, a ``height``
        outside 0.3-3 m or out of a person's reach with the rest of their estimated shape.
    """
    import numpy as np

    from dsrbody.demo.inputs import Person, check_box, people_from_boxes, whole_image
    from dsrbody.demo.run import BoxSource, DemoOptions, _read_rgb, predict_people, refine_results

    if height is not None:
        from dsrbody.demo.run import check_height

        height = check_height(height)
    regressor = getattr(model, "regressor", model)
    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: image file not found")
        img, name = _read_rgb(p), p.name
    else:
        img, name = np.asarray(image), "image"
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {tuple(img.shape)}")
    H, W = img.shape[:2]
    if box is None:
        from dsrbody.demo.detect import make_detector

        people = BoxSource(detector=make_detector("auto"), whole_image_if_none=True).people(img, name)
    elif isinstance(box, str):
        if box != "image":
            raise ValueError(f"box: expected None, 'image', [x, y, w, h] or a list of boxes, got {box!r}")
        people = [whole_image(H, W)]
    elif len(box) and all(isinstance(b, Person) for b in box):
        people = list(box)
    else:
        arr = np.asarray(box, np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"box: expected [x, y, w, h] or a list of such boxes, got shape {arr.shape}")
        people = people_from_boxes(arr.tolist())
    for person in people:
        check_box(person, H, W)
    results = predict_people(regressor, img, people, batch_size, flip=flip)
    if refine:
        results = refine_results(regressor, results, DemoOptions(refine=True))
    if height is not None:
        from dsrbody.demo.run import with_known_stature

        results = with_known_stature(regressor, results, height)
    return results
