"""Synthetic clothed-human data with exact body ground truth, in the SPIN/DSR format.

Entry points: :func:`generate` (``dsrbody synth``), :class:`SynthConfig`, :class:`SampleMaker`
(one sample at a time), and the pose distribution in :mod:`dsrbody.data.synth.poses`.
"""

from dsrbody.data.synth.generator import SampleMaker, SynthConfig, generate

__all__ = ["SampleMaker", "SynthConfig", "generate"]
