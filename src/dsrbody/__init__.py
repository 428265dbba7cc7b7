"""dsrbody: 3D human body regression from images of clothed people with DSR losses.

Subpackages, by concept (docs/design.md, Layers, says which may import which):

- :mod:`dsrbody.geometry`  cameras, projections, Procrustes alignment, rotations
- :mod:`dsrbody.body`      the ``BodyModel`` interface, SMPL family, Anny adapter, keypoint sets
- :mod:`dsrbody.render`    differentiable soft semantic rasteriser, z-buffer pictures, overlays
- :mod:`dsrbody.semantics` human-parsing label sets, parsing maps, clothing prior
- :mod:`dsrbody.garments`  procedural garments on any body topology
- :mod:`dsrbody.data`      SPIN/DSR annotation files, crops and augmentation, synthetic data
- :mod:`dsrbody.models`    backbones and the iterative regressor head
- :mod:`dsrbody.losses`    keypoint, parameter and DSR losses
- :mod:`dsrbody.train`     Lightning training
- :mod:`dsrbody.eval`      metrics and benchmark protocols
- :mod:`dsrbody.cli`       the ``dsrbody`` command
"""

__version__ = "0.1.0"

# the two everyday entry points; dsrbody.api imports nothing heavy until they are called
from dsrbody.api import load_model, predict  # noqa: E402

__all__ = ["__version__", "load_model", "predict"]
