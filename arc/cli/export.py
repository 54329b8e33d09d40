"""``arc-export``: write an export directory (SPEC 7) from an arc-train checkpoint, an official release or a model
preset, from the Hydra config ``conf/export.yaml``.

arc-export checkpoint=<run>/checkpoints/last.ckpt out_dir=exports/tones
arc-export model=stabilityai/stable-audio-open-small out_dir=exports/sao_small decoder_fp16=true
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from arc.cli.errors import debug_requested, report_user_errors
from arc.config import CONF_DIR
from arc.export.pipeline import run


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    report_user_errors("arc-export", lambda: run(cfg), debug=debug_requested("HYDRA_FULL_ERROR"))


if __name__ == "__main__":
    main()
