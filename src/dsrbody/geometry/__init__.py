"""Geometry: cameras and projections (SPIN/DSR convention), rotations, Procrustes alignment, mesh normals."""

from dsrbody.geometry.cameras import (
    FOCAL_LENGTH,
    IMG_RES,
    denormalize_keypoints,
    estimate_translation,
    focal_for_res,
    intrinsics_matrix,
    normalize_keypoints,
    perspective_projection,
    project_vertices,
    translation_to_weak_perspective,
    weak_perspective_to_translation,
)
from dsrbody.geometry.mesh import face_normals, vertex_normals
from dsrbody.geometry.procrustes import centre_and_scale, similarity_procrustes
from dsrbody.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
)

__all__ = [
    "centre_and_scale",
    "FOCAL_LENGTH",
    "focal_for_res",
    "IMG_RES",
    "axis_angle_to_matrix",
    "denormalize_keypoints",
    "estimate_translation",
    "face_normals",
    "intrinsics_matrix",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "normalize_keypoints",
    "perspective_projection",
    "project_vertices",
    "rot6d_to_matrix",
    "similarity_procrustes",
    "translation_to_weak_perspective",
    "vertex_normals",
    "weak_perspective_to_translation",
]
