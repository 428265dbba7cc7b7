"""dsrbody.demo: run a trained regressor on photos, folders and videos (``dsrbody demo``).

- :mod:`~dsrbody.demo.inputs`: the official demo's boxes (OpenPose JSON, ``[x, y, w, h]`` JSON, whole image);
- :mod:`~dsrbody.demo.detect`: the optional offline detector (``dsrbody[detect]``, MediaPipe);
- :mod:`~dsrbody.demo.run`: cropping, regression and the pictures, meshes and parameter files.
"""

from dsrbody.demo.inputs import Person, people_from_boxes, people_from_openpose, read_box_json, whole_image
from dsrbody.demo.run import BoxSource, DemoOptions, predict_people, run_images, run_video

__all__ = [
    "BoxSource",
    "DemoOptions",
    "Person",
    "people_from_boxes",
    "people_from_openpose",
    "predict_people",
    "read_box_json",
    "run_images",
    "run_video",
    "whole_image",
]
