"""dsrbody.fit: optimisation-based fitting (SMPLify/EFT-like) with the training losses (``dsrbody fit``).

- :mod:`~dsrbody.fit.priors`: pose (angle Gaussian, joint limits) and shape priors per body family;
- :mod:`~dsrbody.fit.fitter`: :class:`BodyFitter`, batched Adam over rotations, shape and camera with
  2D keypoints, DSR-MC, DSR-C (and an optional silhouette term);
- :mod:`~dsrbody.fit.dataset`: fit a SPIN/DSR ``.npz`` and write the fits in the same format.
"""

from dsrbody.fit.dataset import fit_dataset, resolve_data
from dsrbody.fit.fitter import (
    LOSS_NAMES,
    BodyFitter,
    FitConfig,
    FitResult,
    FitWeights,
    mean_regressor,
    parse_losses,
)

__all__ = [
    "LOSS_NAMES",
    "BodyFitter",
    "FitConfig",
    "FitResult",
    "FitWeights",
    "fit_dataset",
    "mean_regressor",
    "parse_losses",
    "resolve_data",
]
