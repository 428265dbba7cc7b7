"""Training: YAML recipes (:mod:`~dsrbody.train.config`), the LightningModule
(:class:`~dsrbody.train.module.DSRModule`), the data module and callbacks, and :func:`run_training`.

Scripts run a recipe with overrides like the command line does::

    from dsrbody.train import load_config, run_training
    cfg = load_config("configs/synth_dsr.yaml", ["trainer.max_epochs=2", "loss.weights.dsr_c=0"])
    ckpt = run_training(cfg, out_dir="outputs/ablation/mc_only")   # path of the best checkpoint

Lightning is imported only by the modules that need it.
"""

from dsrbody.train.config import ConfigError, TrainConfig, apply_overrides, config_from_dict, load_config

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "run_training",
    "DSRModule",
    "DSRDataModule",
]


def __getattr__(name: str):
    if name == "run_training":
        from dsrbody.train.run import run_training

        return run_training
    if name == "DSRModule":
        from dsrbody.train.module import DSRModule

        return DSRModule
    if name == "DSRDataModule":
        from dsrbody.train.datamodule import DSRDataModule

        return DSRDataModule
    raise AttributeError(f"module 'dsrbody.train' has no attribute {name!r}")
