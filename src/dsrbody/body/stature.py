"""A body's stature, and the shape that gives it a known stature (docs/design.md, "Known stature").

A crop of a person is scaled to the person's box, so it does not show how tall the person is: a tall
person far away and a short one nearby give the same crop. Where the height is known (a user knows it,
or an evaluation gives the ground truth's), the body's stature coefficient
(:attr:`~dsrbody.body.base.BodyModel.stature_index`: Anny's height phenotype, SMPL's first beta) is set
so that its rest mesh is that tall, the other coefficients kept.

- :func:`stature`: the height of rest meshes, metres.
- :func:`rest_stature`: the height of a body model's rest mesh for given shapes.
- :func:`with_stature`: the shapes whose rest meshes have the given heights (a grid over the
  coefficient's range finds a bracket, bisection narrows it), with the heights reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dsrbody.body.base import BodyModel

__all__ = ["stature", "rest_stature", "with_stature", "StatureFit"]


def stature(rest_vertices: torch.Tensor) -> torch.Tensor:
    """The height of rest-pose meshes: their extent along the model frame's up axis (y).

    Args:
        rest_vertices: ``(B, V, 3)`` rest-pose vertices, metres, model frame (y up).

    Returns:
        ``(B,)`` metres: top of the head to the soles.
    """
    y = rest_vertices[..., 1]
    return y.amax(dim=-1) - y.amin(dim=-1)


@torch.no_grad()
def rest_stature(body_model: BodyModel, shape: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """The stature of ``body_model``'s rest mesh for each shape.

    Args:
        body_model: the body model (its mesh is the one measured).
        shape: ``(B, S')`` shape coefficients (completed by the model's ``pad_shape``).
        chunk: shapes per body-model call (bounds the memory of a large ``B``).

    Returns:
        ``(B,)`` metres.
    """
    dev = body_model.faces.device
    shape = body_model.pad_shape(torch.as_tensor(shape).to(dev, torch.float32))
    J = int(body_model.num_joints)
    eye = torch.eye(3, device=dev)
    out = []
    for part in shape.split(chunk):
        b = part.shape[0]
        rest = body_model(eye.expand(b, 3, 3), eye.expand(b, J - 1, 3, 3), part).rest_vertices
        out.append(stature(rest.float()))
    return torch.cat(out) if out else shape.new_zeros(0)


@dataclass
class StatureFit:
    """What :func:`with_stature` returns.

    Attributes:
        shape: ``(B, S)`` the shapes with their stature coefficient set.
        stature: ``(B,)`` metres, the stature of the rest meshes of ``shape``.
        clamped: ``(B,)`` bool, the height asked for is outside what the stature coefficient's range
            gives with the other coefficients: ``shape`` is the closest the range allows.
    """

    shape: torch.Tensor
    stature: torch.Tensor
    clamped: torch.Tensor


def _search_range(body_model: BodyModel, index: int) -> tuple[float, float]:
    bounds = body_model.shape_bounds
    if bounds is not None:
        return float(bounds[0][index]), float(bounds[1][index])
    lo, hi = body_model.stature_range
    return float(lo), float(hi)


@torch.no_grad()
def with_stature(
    body_model: BodyModel,
    shape: torch.Tensor,
    height: torch.Tensor | float,
    grid: int = 17,
    iterations: int = 20,
    tolerance: float = 5e-4,
) -> StatureFit:
    """The shapes whose rest meshes are ``height`` tall, only the stature coefficient changed.

    The coefficient's range (:attr:`~dsrbody.body.base.BodyModel.stature_range`, or the shape bounds
    of a bounded model) is sampled on ``grid`` points; of the intervals where the stature crosses the
    height, the one nearest the shape's own coefficient (the smallest change, should the stature not
    be monotonic in it) is narrowed by ``iterations`` bisection steps (about ``range / (grid - 1) / 2
    ** iterations``, far under a millimetre). Where no interval crosses it, the grid point nearest in
    stature is kept (a bound of the range, for a monotonic stature) and the sample is marked
    ``clamped``.

    Args:
        body_model: the body model (:attr:`~dsrbody.body.base.BodyModel.stature_index` set).
        shape: ``(B, S')`` shape coefficients (completed by ``pad_shape``).
        height: ``(B,)``, ``(1,)`` or a number: the statures wanted, metres.
        grid: points of the first search.
        iterations: bisection steps.
        tolerance: metres; a height off by more than this after the search counts as ``clamped``.

    Returns:
        :class:`StatureFit`.

    Raises:
        ValueError: the body model has no stature coefficient, or a height is not a positive number.
    """
    index = body_model.stature_index
    if index is None:
        raise ValueError(f"{body_model.name}: its shape has no stature coefficient (stature_index)")
    dev = body_model.faces.device
    shape = body_model.pad_shape(torch.as_tensor(shape).to(dev, torch.float32)).clone()
    B = shape.shape[0]
    target = torch.as_tensor(height, dtype=torch.float32, device=dev).reshape(-1)
    if target.numel() not in (1, B):
        raise ValueError(f"{target.numel()} statures for {B} shapes: give one, or one per shape")
    target = target.expand(B).clone()
    if not bool(torch.isfinite(target).all()) or bool((target <= 0).any()):
        raise ValueError(f"a stature is a positive number of metres, got {target.tolist()}")
    lo, hi = _search_range(body_model, index)
    values = torch.linspace(lo, hi, grid, device=dev)
    trial = shape.repeat_interleave(grid, dim=0)
    trial[:, index] = values.repeat(B)
    h = rest_stature(body_model, trial).reshape(B, grid)
    d = h - target[:, None]
    crosses = (d[:, :-1] * d[:, 1:]) <= 0  # (B, grid - 1)
    found = crosses.any(dim=1)
    centres = (values[:-1] + values[1:]) / 2
    away = (centres[None, :] - shape[:, index : index + 1]).abs().masked_fill(~crosses, float("inf"))
    first = away.argmin(dim=1)  # the crossing nearest the shape's own coefficient
    a, b = values[first], values[(first + 1).clamp(max=grid - 1)]
    da = d.gather(1, first[:, None])[:, 0]
    nearest = values[d.abs().argmin(dim=1)]
    for _ in range(iterations if bool(found.any()) else 0):
        mid = (a + b) / 2
        shape[:, index] = mid
        dm = rest_stature(body_model, shape) - target
        left = (da * dm) <= 0  # the crossing is in [a, mid]
        b = torch.where(left, mid, b)
        a = torch.where(left, a, mid)
        da = torch.where(left, da, dm)
    shape[:, index] = torch.where(found, (a + b) / 2, nearest)
    reached = rest_stature(body_model, shape)
    return StatureFit(shape=shape, stature=reached, clamped=(reached - target).abs() > tolerance)
