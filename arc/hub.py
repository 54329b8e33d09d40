"""Loading pretrained files from a local directory or the Hugging Face hub cache, with errors that say what to do."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from arc.errors import UserError

T = TypeVar("T")


class MissingWeightsError(UserError, FileNotFoundError):
    """A pretrained file is neither at the given path nor in the local hub cache, and cannot be downloaded."""


def _cache_dir() -> str:
    return os.environ.get("HF_HUB_CACHE") or str(
        Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"
    )


def explain_missing(name: str, files: str) -> str:
    return (
        f"could not load {files} of {name!r}: it is not a local directory and not in the Hugging Face cache "
        f"({_cache_dir()}), and it could not be downloaded. On a machine with internet access run "
        f"`huggingface-cli download {name}` (gated repos need `huggingface-cli login` first), or pass the path "
        f"of a local directory that holds the files."
    )


def pretrained_or_explain(loader: Callable[[str], T], name: str) -> T:
    """Call ``loader(name)`` (a ``from_pretrained``); turn "not found / offline" into a ``MissingWeightsError``."""
    try:
        return loader(name)
    except OSError as err:  # transformers and diffusers raise OSError (or subclasses) for missing files
        raise MissingWeightsError(explain_missing(name, "the weights")) from err


def hub_file(repo_or_dir: str, filename: str) -> Path:
    """Path of ``filename`` inside a local directory, or inside the hub cache snapshot of ``repo_or_dir``."""
    local = Path(repo_or_dir).expanduser()
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise MissingWeightsError(f"{path} does not exist: the directory {local} must hold {filename}")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_or_dir, filename))
    except Exception as err:  # noqa: BLE001 - the hub raises many types (offline, gated, 404); all mean "not here"
        raise MissingWeightsError(explain_missing(repo_or_dir, filename)) from err
