"""The official weight files of the metric models, in one table, looked up in one cache directory.

Nothing is downloaded by arc: a missing file is an error that names it, its official URL and where to put it.
The cache is ``$ARC_METRICS_CACHE`` if set, else ``~/.cache/arc/metrics``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from arc.hub import MissingWeightsError


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: its name in the cache, where it is published, and how to unpack it."""

    filename: str
    url: str
    unpack: str = ""  # what to do with the download, if it is not the file itself


_OPENL3 = "https://github.com/marl/openl3/raw/models/"  # openl3 0.4.x's setup.py: v0_4_0 weights, gzipped
WEIGHT_FILES = {
    "openl3_mel256_env": WeightFile(
        "openl3_audio_mel256_env.h5", _OPENL3 + "openl3_audio_mel256_env-v0_4_0.h5.gz", "gunzip it"
    ),
    "openl3_mel256_music": WeightFile(
        "openl3_audio_mel256_music.h5", _OPENL3 + "openl3_audio_mel256_music-v0_4_0.h5.gz", "gunzip it"
    ),
    # hear21passt / PaSST's default_cfgs for passt_s_swa_p16_128_ap476 (527 AudioSet classes)
    "passt": WeightFile(
        "passt-s-f128-p16-s10-ap.476-swa.pt",
        "https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    ),
    # laion-clap's own checkpoint list (HTSAT-tiny + RoBERTa, fusion), what stable-audio-metrics' CLAP score loads
    "laion_clap_fusion": WeightFile(
        "630k-audioset-fusion-best.pt",
        "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-fusion-best.pt",
    ),
}


def metrics_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$ARC_METRICS_CACHE``, else ``~/.cache/arc/metrics``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("ARC_METRICS_CACHE", "~/.cache/arc/metrics")).expanduser()


def weight_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """The path of the weight file ``name`` (a key of ``WEIGHT_FILES``) in the cache; it must exist."""
    if name not in WEIGHT_FILES:
        raise KeyError(f"unknown metric weights {name!r}; known: {sorted(WEIGHT_FILES)}")
    entry = WEIGHT_FILES[name]
    path = metrics_cache_dir(cache_dir) / entry.filename
    if not path.is_file():
        how = f"download {entry.url}" + (f", {entry.unpack}," if entry.unpack else "")
        raise MissingWeightsError(
            f"metric weights {entry.filename} are not at {path}: {how} and put the file there "
            "(or point ARC_METRICS_CACHE at the directory that holds it)"
        )
    return path
