"""Synthetic training data generated on the fly: :class:`SynthStreamDataset`.

Item ``i`` is sample ``i`` of a :class:`~dsrbody.data.synth.generator.SynthConfig`, made when it is
asked for, and turned into exactly the item that :class:`~dsrbody.data.SpinNpzDataset` gives for
that sample when it reads the files ``dsrbody synth`` writes for the same configuration: the
annotation arrays are those of ``synth_<split>.npz`` and go through the same item code
(:func:`dsrbody.data.spin_npz.build_item`: crop, augmentation, keypoints, pose, parsing map). Only
the image differs, by the JPEG compression the files have and the stream does not; ``img_path`` and
``parsing_path`` name no file (``synth:<split>:seed<seed>/<imgname>``).

Determinism: a sample is a pure function of ``(seed, split, index)`` (the generator's contract),
and its augmentation is drawn from :func:`~dsrbody.data.crop_augment.augment_rng` with the
dataset's (augmentation) ``seed``, as :class:`~dsrbody.data.SpinNpzDataset` does, so items do not
depend on DataLoader workers or on the order of requests.

Each process (the training process or each DataLoader worker) builds its
:class:`~dsrbody.data.synth.generator.SampleMaker` once, on its first item (seconds: body model,
garment geometry; an error there is raised); generation runs with torch single-threaded (the
thread count of the calling process is restored afterwards). A sample whose generation raises is
dropped like an unreadable image: the item has ``valid=False`` and ``skip_reason``
``"generation_failed"``, it is counted in ``dataset.skipped``, and
:func:`~dsrbody.data.collate_samples` leaves it out of its batch (the first failure of each process
is also warned about, with the error).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dsrbody.body.factory import body_spec
from dsrbody.body.keypoints import KeypointSet
from dsrbody.data.crop_augment import (
    PARSING_INTERPOLATIONS,
    AugmentParams,
    augment_rng,
    sample_augment_params,
)
from dsrbody.data.spin_npz import SharedEpoch, SkipLog, SpinAnnotations, build_item, check_annotations
from dsrbody.data.synth.generator import SampleMaker, SynthConfig, _imgname, _stack

__all__ = ["SynthStreamDataset", "sample_annotations"]


def sample_annotations(cfg: SynthConfig, ann: dict) -> dict[str, np.ndarray]:
    """One generated sample's annotation arrays (first dimension 1) as ``synth_<split>.npz`` holds them.

    Args:
        cfg: the split's configuration.
        ann: the annotation dict of :meth:`SampleMaker.make`.

    Returns:
        the arrays, keys sorted as in the file: the generator's per-sample stacking (float32, pose and
        shape float64, strings as unicode) plus the fields it adds to the whole split (``body_model``,
        and the shape again under the family's ``shape_field``: ``phenotype`` for Anny).
    """
    arrays = _stack([ann])
    # as generator._merge adds them to the split file
    arrays["body_model"] = np.array([cfg.model])
    shape_field = body_spec(cfg.model).shape_field
    if shape_field:
        arrays[shape_field] = arrays["shape"].copy()
    return dict(sorted(arrays.items()))


class SynthStreamDataset(Dataset):
    """A synthetic split's samples, generated when asked for, as :class:`~dsrbody.data.SpinNpzDataset` items.

    Args:
        cfg: the split (``num`` distinct samples, ``seed``, ``split``, ``res``, ``hard``, ...); item ``i``
            is the generator's sample ``i``.
        name: ``dataset_name`` of its samples (default ``synth_<split>``, the name
            :class:`~dsrbody.data.SpinNpzDataset` gives the split's file).
        augment: draw the training augmentation; ``False``: the plain crop.
        parsing: give the parsing maps (``False``: ``has_parsing`` is always false).
        parsing_interp: one of :data:`~dsrbody.data.crop_augment.PARSING_INTERPOLATIONS`.
        res: crop side (224; independent of the generated image size ``cfg.res``).
        seed: augmentation seed (the generation seed is ``cfg.seed``).
        ignore_3d: give no body parameters and no 3D joints (SPIN's ``ignore_3d``).
        pose_joints: the pose's joint names (default: from the body model, as for the files).
        rot_factor, scale_factor, noise_factor, flip_prob, rot_zero_prob: augmentation settings
            (official values by default).

    Items: see :class:`~dsrbody.data.SpinNpzDataset`.
    """

    def __init__(
        self,
        cfg: SynthConfig,
        *,
        name: str | None = None,
        augment: bool = False,
        parsing: bool = True,
        parsing_interp: str = "nearest",
        res: int = 224,
        seed: int = 0,
        ignore_3d: bool = False,
        pose_joints: KeypointSet | tuple[str, ...] | None = None,
        rot_factor: float = 30.0,
        scale_factor: float = 0.25,
        noise_factor: float = 0.4,
        flip_prob: float = 0.5,
        rot_zero_prob: float = 0.6,
    ) -> None:
        super().__init__()
        cfg.validate()
        if parsing_interp not in PARSING_INTERPOLATIONS:
            raise ValueError(
                f"parsing_interp must be one of {PARSING_INTERPOLATIONS}, got {parsing_interp!r}"
            )
        self.cfg = dataclasses.replace(cfg)
        self.name = name or f"synth_{cfg.split}"
        self.augment = augment
        self.parsing = parsing
        self.parsing_interp = parsing_interp
        self.res = res
        self.seed = seed
        self.ignore_3d = ignore_3d
        self.pose_joints = pose_joints
        self._epoch = SharedEpoch()
        self.aug_settings = dict(
            rot_factor=rot_factor,
            scale_factor=scale_factor,
            noise_factor=noise_factor,
            flip_prob=flip_prob,
            rot_zero_prob=rot_zero_prob,
        )
        self.skipped = SkipLog()
        self._maker: SampleMaker | None = None
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        # a worker started by pickling (spawn) builds its own maker
        state = self.__dict__.copy()
        state["_maker"] = None
        return state

    def __len__(self) -> int:
        return self.cfg.num

    @property
    def epoch(self) -> int:
        """The epoch whose augmentation draws are used."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of an epoch (they depend on seed, epoch and index only)."""
        self._epoch.set(epoch)

    def summary(self) -> str:
        """Text summary of the skipped samples counted so far."""
        return f"{self.name}: " + self.skipped.summary()

    def augment_params(self, index: int) -> AugmentParams:
        """The augmentation of sample ``index`` in the current epoch (identity when ``augment`` is off)."""
        if not self.augment:
            return AugmentParams()
        return sample_augment_params(augment_rng(self.seed, self.epoch, index), **self.aug_settings)

    def image_path(self, index: int) -> str:
        """What stands for sample ``index``'s image path (no file): ``synth:<split>:seed<seed>/<imgname>``."""
        return f"synth:{self.cfg.split}:seed{self.cfg.seed}/{_imgname(self.cfg.split, index)}"

    @property
    def maker(self) -> SampleMaker:
        """This process's sample maker, built on first use (the body model and garment machinery)."""
        if self._maker is None:
            threads = torch.get_num_threads()
            try:
                self._maker = SampleMaker(self.cfg)  # it sets torch to 1 thread
            finally:
                torch.set_num_threads(threads)
        return self._maker

    def make(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Generate sample ``index`` (:meth:`SampleMaker.make`), torch single-threaded meanwhile."""
        maker = self.maker
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return maker.make(index)
        finally:
            torch.set_num_threads(threads)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} ({len(self)} samples)")
        img_path = self.image_path(index)
        source = f"{self.name} sample {index}"
        self.maker  # noqa: B018 - a maker that cannot be built is an error of the setup, not of a sample
        try:
            rgb, labels, raw = self.make(index)
            ann = SpinAnnotations(
                check_annotations(sample_annotations(self.cfg, raw), source),
                source,
                ignore_3d=self.ignore_3d,
                pose_joints=self.pose_joints,
            )
            reason = ""
        except Exception as e:  # noqa: BLE001 - any failure drops this sample only
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{self.name}: generating sample {index} failed ({type(e).__name__}: {e}); such samples "
                    "are skipped and counted (this warning is shown once per process)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            placeholder = {
                "imgname": np.array([_imgname(self.cfg.split, index)]),
                "center": np.zeros((1, 2)),
                "scale": np.ones(1),
            }
            ann, rgb, labels, reason = SpinAnnotations(placeholder, source), None, None, "generation_failed"

        return build_item(
            ann,
            0,
            index=index,
            name=self.name,
            params=self.augment_params(index),
            res=self.res,
            load_image=lambda: (rgb, False),
            img_path=img_path,
            load_parsing=(lambda shape: (labels, False)) if self.parsing else None,
            parsing_path=img_path[: -len(".jpg")] + ".png",
            parsing_interp=self.parsing_interp,
            skipped=self.skipped,
            skip_reason=reason,
        )
