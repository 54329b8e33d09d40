"""``arc-eval``: score systems (directories of audio, or models to generate from) with FD_openl3, KL_passt, CLAP
score, CCDS and R/C_passt, or the tones probes (``metrics=probes``), from the Hydra configs ``conf/eval.yaml`` and
``conf/metrics/``.

arc-eval prompts=prompts.jsonl reference.audio=ref/ +systems.mine.audio=gen/
arc-eval prompts=prompts.jsonl renderings=5 reference.kl_passt=ref.pkl +systems.arc.checkpoint=arc.ckpt
arc-eval metrics=probes +systems.base.checkpoint=pre.ckpt +systems.arc.checkpoint=arc.ckpt
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from arc.cli.errors import debug_requested, report_user_errors
from arc.config import CONF_DIR
from arc.metrics.evaluate import run


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    report_user_errors("arc-eval", lambda: run(cfg), debug=debug_requested("HYDRA_FULL_ERROR"))


if __name__ == "__main__":
    main()
