"""dsrbody.render: the differentiable soft semantic rasteriser and the picture renderer.

- :func:`dsrbody.render.soft.soft_render` / :class:`~dsrbody.render.soft.SoftRasterizer`: SoftRas
  soft rasterisation of C feature channels in one pass (docs/design.md, Soft rasteriser), for the DSR
  losses; its settings in one :class:`~dsrbody.render.soft.SoftRasterSettings`.
- :func:`dsrbody.render.hard.rasterize` / :func:`~dsrbody.render.hard.render_mesh`: z-buffer with
  flat / Lambert shading; :func:`dsrbody.render.overlay.overlay` and
  :func:`~dsrbody.render.overlay.side_view` for pictures. See docs/renderer.md.
- :mod:`dsrbody.render.pairs`: the face-pixel pair enumeration both rasterisers are built on.
"""

from dsrbody.render.hard import Fragments, HardRender, rasterize, render_mesh
from dsrbody.render.overlay import overlay, side_view
from dsrbody.render.soft import SoftRasterizer, SoftRasterSettings, soft_render

__all__ = [
    "soft_render",
    "SoftRasterizer",
    "SoftRasterSettings",
    "rasterize",
    "render_mesh",
    "Fragments",
    "HardRender",
    "overlay",
    "side_view",
]
