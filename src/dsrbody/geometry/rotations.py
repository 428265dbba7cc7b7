"""Rotation conversions (thin, typed wrappers over ``roma``).

The 6D representation follows SPIN/HMR's layout, which released checkpoints and
``smpl_mean_params.npz`` use: the 6 numbers of a joint are ``x.view(3, 2)``, i.e. the two columns
``a1 = x[[0, 2, 4]]`` and ``a2 = x[[1, 3, 5]]`` interleaved; Gram-Schmidt on (a1, a2) gives the
first two columns of the rotation matrix.
"""

from __future__ import annotations

import roma
import torch

__all__ = [
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
]


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """6D rotation (SPIN layout) to rotation matrix.

    Args:
        x: ``(..., 6)``.

    Returns:
        ``(..., 3, 3)`` rotation matrices whose first two columns are Gram-Schmidt of ``x.view(..., 3, 2)``.
    """
    if x.shape[-1] != 6:
        raise ValueError(f"rot6d_to_matrix expects (..., 6), got {tuple(x.shape)}")
    return roma.special_gramschmidt(x.reshape(*x.shape[:-1], 3, 2))


def matrix_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix to 6D (SPIN layout), the inverse of :func:`rot6d_to_matrix` on rotations.

    Args:
        R: ``(..., 3, 3)``.

    Returns:
        ``(..., 6)``: the first two columns, row-major (``R[..., :, :2].reshape(..., 6)``).
    """
    return R[..., :, :2].reshape(*R.shape[:-2], 6)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (rotation vector, radians) to rotation matrix.

    Args:
        aa: ``(..., 3)``; direction is the axis, norm the angle in radians.

    Returns:
        ``(..., 3, 3)``.
    """
    if aa.shape[-1] != 3:
        raise ValueError(f"axis_angle_to_matrix expects (..., 3), got {tuple(aa.shape)}")
    return roma.rotvec_to_rotmat(aa)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix to axis-angle (rotation vector, radians, angle in [0, pi]).

    Args:
        R: ``(..., 3, 3)``.

    Returns:
        ``(..., 3)``.
    """
    return roma.rotmat_to_rotvec(R)
