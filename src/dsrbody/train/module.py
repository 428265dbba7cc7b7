"""The LightningModule: a :class:`~dsrbody.models.Regressor` trained with SPIN's and DSR's losses.

One training step: samples whose image, 2D keypoints, 3D joints or pose/shape targets hold NaN or
infinite values leave the batch before the forward pass (a masked NaN term still poisons the gradients:
``0 * NaN`` is NaN), counted per reason (``train/skipped_<reason>``, the epoch summary of the data);
regress bodies from the crops; SPIN's terms with their validity masks
(:func:`~dsrbody.losses.spin_loss_terms`); from ``epoch > loss.start_dsr`` on, the DSR terms from one
render call per batch (:class:`~dsrbody.losses.DSRLoss`); the weighted total
(:func:`~dsrbody.losses.combine_losses`), NaN/infinite samples dropped per term and counted
(``train/dropped_<term>``); a step is skipped only when no valid sample remains or its total or
gradients are not finite (counted per reason in ``step_skips``, ``train/skipped_steps_<reason>``).
Validation computes MPJPE, PA-MPJPE, PVE, PVE-T (``val/*``) and the selection score ``val/score`` =
1.5 PA-MPJPE + MPJPE.

Checkpoints are self-describing: ``checkpoint["dsrbody"]`` holds the dsrbody version, the body model
(name, options, mesh id, joints, shape size), the backbone and the resolved recipe, and the weights
are ``model.backbone.*`` / ``model.head.*`` (DSR's layout, so
:func:`~dsrbody.models.load_regressor_checkpoint` reads them). :func:`check_checkpoint` refuses a
checkpoint of another body model or backbone.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch

from dsrbody.eval.metrics import MetricAccumulator, eval_joints
from dsrbody.eval.synth_eval import METRIC_NAMES, batch_metrics, summarize
from dsrbody.losses import DSRLoss, DSRTargets, LossWeights, combine_losses, spin_loss_terms
from dsrbody.losses.targets import dsr_targets, gt_body, params_valid, spin_targets
from dsrbody.models.loader import check_checkpoint, plain_container, read_checkpoint_meta
from dsrbody.models.loader import checkpoint_meta as _checkpoint_meta
from dsrbody.train.build import body_options, build_body, build_model, build_prior
from dsrbody.train.config import config_from_dict, to_container

log = logging.getLogger(__name__)

__all__ = [
    "DSRModule",
    "cosine_schedule",
    "checkpoint_meta",
    "read_checkpoint_meta",
    "check_checkpoint",
    "plain_container",
    "DSR_TERMS",
    "STEP_SKIP_REASONS",
]

DSR_TERMS = ("dsr_mc", "dsr_c", "silhouette")
#: why a training step is skipped -> text for summaries.
STEP_SKIP_REASONS = {
    "no_valid_sample": "no valid sample in the batch",
    "nonfinite_loss": "non-finite loss",
    "nonfinite_grad": "non-finite gradients",
}


class DSRModule(L.LightningModule):
    """Regressor + losses + optimiser of a recipe.

    Args:
        config: the resolved recipe as a plain dict (:func:`~dsrbody.train.config.to_container`), or a
            ``DictConfig``; stored in the checkpoint's hyper-parameters.
    """

    def __init__(self, config: dict | Any):
        super().__init__()
        if not isinstance(config, dict):
            config = to_container(config)
        self.save_hyperparameters({"config": config})
        self.cfg = config_from_dict(config, "checkpoint config")
        cfg = self.cfg
        body = build_body(cfg)
        self.model = build_model(cfg, body)
        if bool(cfg.model.channels_last):
            self.model.backbone.to(memory_format=torch.channels_last)
        self.weights = LossWeights(**{k: float(v) for k, v in cfg.loss.weights.items()})
        conf = body.keypoint_confidence
        n_kp = int(body(*_rest_inputs(body)).joints.shape[1]) if conf is None else int(conf.numel())
        self.register_buffer(
            "kp_conf", conf.float().clone() if conf is not None else torch.ones(n_kp), persistent=False
        )
        w = self.weights
        self.dsr_enabled = any(getattr(w, t) != 0 for t in DSR_TERMS)
        self.dsr_loss = (
            DSRLoss(
                body.faces,
                build_prior(cfg, body),
                mc_form=str(cfg.loss.mc_form),
                c_form=str(cfg.loss.c_form),
                sigma=float(cfg.loss.sigma),
                gamma=float(cfg.loss.gamma),
                focal=float(self.model.focal),
                img_res=int(self.model.img_res),
            )
            if self.dsr_enabled
            else None
        )
        self.joints = eval_joints(body)
        self.__dict__["_eval_body"] = None  # not a submodule: its tensors stay out of checkpoints
        self._val_acc = MetricAccumulator()
        self._ref_acc: MetricAccumulator | None = None  # the mean body's, on the first validation only
        self._ref_logged = False
        self.step_skips: dict[str, int] = {}  # reason -> optimiser steps skipped (STEP_SKIP_REASONS)
        self.sample_skips: dict[str, int] = {}  # reason -> samples removed before the forward pass
        self.last_panel = None  # the last logged picture (H, W, 3) uint8, for tests and callers

    # ------------------------------------------------------------------------------------------
    @property
    def body(self):
        """The training body model."""
        return self.model.body_model

    def eval_body(self):
        """The evaluation body model (``body.eval_topology``; the training one when the mesh is the same)."""
        if self._eval_body is None:
            same = body_options(self.cfg, True) == body_options(self.cfg, False)
            body = self.body if same else build_body(self.cfg, for_eval=True).to(self.device)
            self.__dict__["_eval_body"] = body
        return self.__dict__["_eval_body"]

    def gt_models(self):
        """Gender-specific ground-truth body models for validation (SMPL with a model folder), or None."""
        if "_gt_models" not in self.__dict__:
            from dsrbody.eval.synth_eval import gender_models

            self.__dict__["_gt_models"] = gender_models(self.eval_body(), self.cfg.body.model_path)
        return self.__dict__["_gt_models"]

    def dsr_active(self, epoch: int | None = None) -> bool:
        """DSR terms are on when ``epoch > loss.start_dsr`` (and a DSR weight is non-zero)."""
        e = self.current_epoch if epoch is None else epoch
        return self.dsr_enabled and e > int(self.cfg.loss.start_dsr)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`Regressor.forward <dsrbody.models.Regressor.forward>` (channels-last when configured)."""
        if bool(self.cfg.model.channels_last):
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def predict_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The regressor's output for a batch: from its cached backbone features ``features (B, C)``
        when the datasets carry them (``model.feature_cache``), else from ``img``."""
        if "features" in batch:
            return self.model.forward_cached(batch["features"].float())
        return self(batch["img"])

    # ------------------------------------------------------------------------------------------
    def loss_targets(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The ground-truth dict of :func:`~dsrbody.losses.spin_loss_terms` for a batch
        (:func:`~dsrbody.losses.targets.spin_targets` with the training body model and the recipe's
        weights)."""
        return spin_targets(batch, self.body, self.weights, keypoint_confidence=self.kp_conf)

    def dsr_targets(self, batch: dict[str, Any]) -> DSRTargets:
        """DSR targets from the batch's parsing maps, cleaned around the keypoints when the recipe says
        (:func:`~dsrbody.losses.targets.dsr_targets`)."""
        return dsr_targets(
            batch,
            int(self.model.img_res),
            clean=bool(self.cfg.data.clean_parsing),
            with_distance=str(self.cfg.loss.mc_form) == "distance",
        )

    def compute_losses(
        self, batch: dict[str, Any], pred: dict[str, torch.Tensor], dsr: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, int], dict[str, Any]]:
        """``(total, term means, dropped counts, DSR outputs)`` of one batch (see the module docstring)."""
        terms = spin_loss_terms(pred, self.loss_targets(batch), self.weights)
        dsr_out: dict[str, Any] = {}
        if dsr and self.dsr_loss is not None:
            targets = self.dsr_targets(batch)
            w = self.weights
            dsr_out = self.dsr_loss(
                pred["vertices_cam"],
                targets,
                mc=w.dsr_mc != 0,
                clothing=w.dsr_c != 0,
                silhouette=w.silhouette != 0,
            )
            dsr_out["targets"] = targets
            for t in DSR_TERMS:
                if t in dsr_out:
                    terms[t] = (dsr_out[t], dsr_out[t + "_valid"])
        batch_mean = ("dsr_mc", "dsr_c") if bool(self.cfg.loss.dsr_batch_mean) else ()
        total, means, dropped = combine_losses(terms, self.weights, batch_mean=batch_mean)
        return total, means, dropped, dsr_out

    # ------------------------------------------------------------------------------------------
    @property
    def skipped_steps(self) -> int:
        """Optimiser steps skipped so far (every reason)."""
        return sum(self.step_skips.values())

    def _skip_step(self, reason: str):
        """Count a skipped step; the value :meth:`training_step` returns for it."""
        self.step_skips[reason] = self.step_skips.get(reason, 0) + 1
        self.log("train/skipped_steps", 1.0, on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1)
        self.log(
            f"train/skipped_steps_{reason}", 1.0, on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1
        )
        return self._zero_loss() if self.trainer.world_size > 1 else None

    def screen_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch without its samples holding NaN/infinite inputs or targets
        (:func:`~dsrbody.data.drop_nonfinite_samples`), counted per reason (``sample_skips``,
        ``train/skipped_<reason>``) and recorded in the training set's skip log (epoch summary)."""
        from dsrbody.data import drop_nonfinite_samples

        batch, counts = drop_nonfinite_samples(batch)
        if not counts:
            return batch
        for reason, k in counts.items():
            self.sample_skips[reason] = self.sample_skips.get(reason, 0) + k
            self.log(
                f"train/skipped_{reason}",
                float(k),
                on_step=False,
                on_epoch=True,
                reduce_fx="sum",
                batch_size=1,
            )
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        log = getattr(getattr(dm, "train_set", None), "skipped", None)
        if log is not None:
            log.update({"skipped": batch["skipped"]})
        return batch

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        batch = self.screen_batch(batch)  # no NaN target may reach a gradient, even through a masked term
        n = int(batch["num_valid"])
        bs = max(n, 1)
        if n == 0:  # every sample of the batch was unreadable or non-finite
            return self._skip_step("no_valid_sample")
        pred = self.predict_batch(batch)
        dsr = self.dsr_active()
        total, means, dropped, dsr_out = self.compute_losses(batch, pred, dsr)
        log_kw = dict(on_step=True, on_epoch=True, batch_size=bs)
        self.log("train/loss", total.detach(), prog_bar=True, **log_kw)
        for k, v in means.items():
            self.log(f"train/{k}", v.detach(), **log_kw)
        for k, v in dropped.items():
            self.log(
                f"train/dropped_{k}", float(v), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1
            )
        self.log("train/dsr_on", float(dsr), on_step=True, on_epoch=False, batch_size=1)
        self.log("train/num_valid", float(n), on_step=True, on_epoch=False, batch_size=1)
        every = int(self.cfg.logging.images_every_n_steps)
        if every > 0 and self.global_step % every == 0 and self.global_rank == 0:
            self._log_images(batch, pred, dsr_out)
        if not torch.isfinite(total):
            return self._skip_step("nonfinite_loss")
        return total

    def _zero_loss(self) -> torch.Tensor:
        # DDP needs every rank to run backward; a zero loss touching every parameter keeps them in step
        return sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)

    def on_before_optimizer_step(self, optimizer) -> None:
        bad = any(p.grad is not None and not torch.isfinite(p.grad).all() for p in self.model.parameters())
        if bad:  # a NaN from the prediction itself: do not let it reach the weights
            # gradients of None make the optimiser leave every parameter and its state alone (zeroed
            # gradients would still move Adam's weights through its momentum)
            for p in self.model.parameters():
                p.grad = None
            self._skip_step("nonfinite_grad")
            self.log(
                "train/nonfinite_grad_steps", 1.0, on_step=False, on_epoch=True, reduce_fx="sum", batch_size=1
            )

    # ------------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_acc.reset()
        want_ref = bool(self.cfg.logging.mean_body_reference) and not self._ref_logged
        self._ref_acc = MetricAccumulator() if (want_ref and not self.trainer.sanity_checking) else None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if int(batch["num_valid"]) == 0:
            return
        body = self.eval_body()
        preds = [(self._val_acc, self.predict_batch(batch))]
        if self._ref_acc is not None:  # the mean body on the same samples: the line to beat
            from dsrbody.models import at_mean

            if "_mean_model" not in self.__dict__:
                self.__dict__["_mean_model"] = at_mean(self.model).eval()
            images = batch["img"]
            if bool(self.cfg.model.channels_last):
                images = images.contiguous(memory_format=torch.channels_last)
            preds.append((self._ref_acc, self.__dict__["_mean_model"](images)))
        for acc, pred in preds:
            acc.add(
                batch_metrics(
                    pred,
                    batch,
                    body,
                    eval_joints(body),
                    rerun=body is not self.body,
                    gt_models=self.gt_models(),
                )
            )

    def _gathered(self, acc: MetricAccumulator) -> dict[str, float | int]:
        names = list(METRIC_NAMES)
        t = torch.tensor(
            [[acc.sums.get(k, 0.0), float(acc.counts.get(k, 0))] for k in names], dtype=torch.float64
        ).to(self.device)
        if self.trainer.world_size > 1:
            t = self.all_gather(t).reshape(-1, len(names), 2).sum(0)
        merged = MetricAccumulator()
        for i, k in enumerate(names):
            if t[i, 1] > 0:
                merged.sums[k], merged.counts[k] = float(t[i, 0]), int(t[i, 1])
        return summarize(merged) | {"n_samples": merged.count("mpjpe")}

    def on_validation_epoch_end(self) -> None:
        summary = self._gathered(self._val_acc)
        for k in METRIC_NAMES:
            if k in summary:
                self.log(f"val/{k}", float(summary[k]), sync_dist=False, batch_size=1)
        self.log("val/n_samples", float(summary["n_samples"]), sync_dist=False, batch_size=1)
        score = float(summary.get("score", math.inf))
        self.log("val/score", score, prog_bar=True, sync_dist=False, batch_size=1)
        if self._ref_acc is not None:
            ref = self._gathered(self._ref_acc)
            for k in (*METRIC_NAMES, "score"):
                if k in ref:
                    self.log(f"val_mean_body/{k}", float(ref[k]), sync_dist=False, batch_size=1)
            self._ref_acc, self._ref_logged = None, True
            self.__dict__.pop("_mean_model", None)

    # ------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.cfg.optim
        ratio = float(o.get("backbone_lr_ratio", 1.0))
        if ratio < 0:
            raise ValueError(f"optim.backbone_lr_ratio must be >= 0, got {ratio}")
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if ratio == 1.0:  # one group, as checkpoints written before the ratio existed hold
            groups = [{"params": trainable, "lr": float(o.lr)}]
        else:
            backbone = {id(p) for p in self.model.backbone.parameters()}
            groups = [
                {"params": [p for p in trainable if id(p) not in backbone], "lr": float(o.lr)},
                {"params": [p for p in trainable if id(p) in backbone], "lr": float(o.lr) * ratio},
            ]
        groups = [g for g in groups if g["params"]]
        opt = torch.optim.Adam(groups, lr=float(o.lr), weight_decay=float(o.weight_decay))
        schedule = str(o.schedule)
        if schedule == "constant":
            return opt
        if schedule != "cosine":
            raise ValueError(f"optim.schedule must be 'constant' or 'cosine', got {schedule!r}")
        total = int(self.cfg.trainer.max_steps)
        if total <= 0:
            raise ValueError("optim.schedule=cosine needs trainer.max_steps > 0 (the step the decay ends at)")
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, cosine_schedule(total, int(o.warmup_steps), float(o.min_lr_ratio))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dsrbody"] = checkpoint_meta(self)

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def make_panel(
        self, batch: dict[str, Any], pred: dict[str, torch.Tensor], dsr_out: dict[str, Any], i: int = 0
    ):
        """The picture row of sample ``i`` (:func:`dsrbody.train.visual.training_panel`)."""
        from dsrbody.train.visual import training_panel

        body = self.body
        faces = body.faces.cpu()
        gt_verts = gt_f = gt_pp = None
        valid = params_valid(batch, str(body.name))
        if bool(valid[i]):
            sel = torch.zeros_like(valid)
            sel[i] = True
            g = gt_body(body, batch, sel)
            if "crop_cam_t" in batch and "crop_focal_length" in batch:
                gt_verts = g.vertices[0].cpu() + batch["crop_cam_t"][i].float().cpu()
                gt_f = tuple(float(x) for x in batch["crop_focal_length"][i].reshape(-1)[:2])
                gt_pp = tuple(float(x) for x in batch["crop_principal_point"][i].reshape(-1)[:2])
            else:
                from dsrbody.geometry.cameras import denormalize_keypoints, estimate_translation

                res = int(self.model.img_res)
                kp = denormalize_keypoints(batch["keypoints"][i : i + 1].float(), res)
                kp[..., 2] = kp[..., 2] * self.kp_conf.cpu()
                t = estimate_translation(
                    g.joints[:, 25:].cpu().float(),
                    kp[:, 25:].cpu(),
                    focal=self.model.focal,
                    principal_point=(res / 2.0, res / 2.0),  # the crop's centre, not the 224 crop's
                )
                gt_verts = g.vertices[0].cpu() + t[0]
        rendered_mc = mc_mask = classes = merged = None
        idx = dsr_out.get("render_index")
        if idx is not None and "targets" in dsr_out:
            pos = (idx == i).nonzero()
            targets = dsr_out["targets"]
            merged, mc_mask = targets.merged[i], targets.mc_mask[i]
            if pos.numel():
                j = int(pos[0, 0])
                rendered_mc = dsr_out["rendered_mc"][j] if "rendered_mc" in dsr_out else None
                classes = dsr_out["rendered_classes"][j] if "rendered_classes" in dsr_out else None
        elif self.dsr_loss is not None:  # DSR not on yet: render this sample for the picture anyway
            targets = self.dsr_targets(
                {k: (v[i : i + 1] if torch.is_tensor(v) else v) for k, v in batch.items()}
            )
            mc, cls, _ = self.dsr_loss.render(pred["vertices_cam"][i : i + 1], targets.mc_present)
            rendered_mc, classes = mc[0], cls[0].clone()
            classes[0] = 1.0 - classes[1:].sum(0)
            merged, mc_mask = targets.merged[0], targets.mc_mask[0]
        return training_panel(
            batch["img"][i],
            faces,
            pred["vertices_cam"][i].detach().cpu(),
            float(self.model.focal),
            gt_vertices_cam=gt_verts,
            gt_focal=gt_f,
            gt_principal_point=gt_pp,
            rendered_mc=rendered_mc,
            mc_mask=mc_mask,
            rendered_classes=classes,
            merged_labels=merged,
        )

    def _log_images(self, batch, pred, dsr_out) -> None:
        from dsrbody.train.visual import grid

        try:
            k = min(int(self.cfg.logging.images_count), int(batch["num_valid"]))
            rows = [self.make_panel(batch, pred, dsr_out, i) for i in range(k)]
        except Exception as e:  # noqa: BLE001 - a picture must never stop training
            log.warning(f"dsrbody: could not draw the training picture ({type(e).__name__}: {e})")
            return
        if not rows:
            return
        panel = grid(rows)
        self.last_panel = panel
        for logger in self.loggers:
            exp = getattr(logger, "experiment", None)
            if hasattr(exp, "add_image"):
                exp.add_image(
                    "train/input|pred|gt|mc(red)_vs_mask(green)|rendered_classes|labels",
                    panel,
                    global_step=self.global_step,
                    dataformats="HWC",
                )


def cosine_schedule(total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.01):
    """``step -> lr factor``: linear warm-up from 0 over ``warmup_steps``, then cosine decay from 1 to
    ``min_ratio`` at ``total_steps`` (constant ``min_ratio`` after it)."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if step >= total_steps:
            return min_ratio
        span = max(total_steps - warmup_steps, 1)
        t = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def _rest_inputs(body) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mp = body.mean_params()
    return mp["global_orient"][None], mp["body_pose"][None], mp["shape"][None]


# ----------------------------------------------------------------------------------------------
# self-describing checkpoints
# ----------------------------------------------------------------------------------------------


def checkpoint_meta(module: DSRModule) -> dict[str, Any]:
    """What a checkpoint of ``module`` says about itself (:func:`dsrbody.models.loader.checkpoint_meta`)."""
    return _checkpoint_meta(
        module.body, body_options(module.cfg), str(module.cfg.model.backbone), to_container(module.cfg)
    )
