"""``arc-train``: fit a model from the Hydra configs in ``conf/``.

arc-train experiment=tones_pretrain
arc-train experiment=sao_small_pretrain trainer=ddp trainer.num_nodes=2 paths.data_dir=/data/set
arc-train experiment=tones_pretrain ckpt_path=logs/tones_pretrain/runs/<date>/checkpoints/last.ckpt
"""

from __future__ import annotations

import logging

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from arc.cli.errors import debug_requested, report_user_errors
from arc.config import CONF_DIR
from arc.data.latents import describe_pretransform
from arc.data.module import base_datasets
from arc.models.wrapper import AudioDiffusionModel

log = logging.getLogger(__name__)


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a ``callbacks`` / ``logger`` group (``null`` entries disable one)."""
    if cfg is None:
        return []
    return [instantiate(node) for node in cfg.values() if node is not None]


def check_data_fits_model(datasets: list[Dataset], model: AudioDiffusionModel) -> None:
    """Refuse latents encoded by another pretransform, or audio at another sample rate, before training on them."""
    expected = describe_pretransform(model.pretransform)
    for dataset in datasets:
        encoded_with = getattr(dataset, "pretransform", None)
        if encoded_with is not None and encoded_with != expected:
            raise ValueError(
                f"{type(dataset).__name__} holds latents from pretransform {encoded_with}, but the model's is "
                f"{expected}: re-encode the data with the model's pretransform (arc-encode)"
            )
        rate = getattr(dataset, "sample_rate", None)
        if rate is not None and rate != model.sample_rate:
            raise ValueError(
                f"{type(dataset).__name__} yields audio at {rate} Hz but the model works at {model.sample_rate} Hz"
            )


def instantiate_run(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Seed everything, then build the data module, the training module (with the resolved config to store in
    its checkpoints), callbacks, loggers and trainer from ``cfg``."""
    if OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=False) is None:
        raise ValueError(
            "paths.output_dir does not resolve: it comes from Hydra's run directory, which exists only under "
            "arc-train; when composing the config in Python, set it (e.g. paths.output_dir=/tmp/run)"
        )
    L.seed_everything(cfg.seed, workers=True)
    # plain containers, resolved: stored in every checkpoint, read back with weights_only=True
    run_config = OmegaConf.to_container(cfg, resolve=True)

    log.info("instantiating data <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data)
    log.info("instantiating module <%s> with model <%s>", cfg.module._target_, cfg.model._target_)
    # run_config is passed after instantiation: Hydra would otherwise instantiate the _target_ nodes inside it
    module = instantiate(cfg.module, _partial_=True)(run_config=run_config)
    datasets = base_datasets(datamodule.train) + ([] if datamodule.val is None else base_datasets(datamodule.val))
    check_data_fits_model(datasets, module.model)

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    return datamodule, module, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the run described by ``cfg`` (resuming from ``cfg.ckpt_path`` if set); return the final metrics."""
    datamodule, module, trainer = instantiate_run(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    for name, value in sorted(metrics.items()):
        log.info("%s = %.4g", name, value)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    report_user_errors("arc-train", lambda: train(cfg), debug=debug_requested("HYDRA_FULL_ERROR"))


if __name__ == "__main__":
    main()
