"""stable-audio-metrics' precomputed reference files, read without running arbitrary code.

- FD_openl3: ``np.savez(path, mu_ref=..., sigma_ref=...)`` (``src/openl3_fd.py``), read with
  ``allow_pickle=False``.
- KL_passt: ``pickle.dump({id: tensor(527)}, f)`` (``src/passt_kld.py``; e.g. its
  ``load/passt_kld/song_describer__collectmean__reference_probabilities.pkl``, whose ids are ints). A pickle can
  call any function, so it is read by an unpickler that resolves only the three globals such a file uses
  (``torch._utils._rebuild_tensor_v2``, ``torch.storage._load_from_bytes`` — replaced by a
  ``torch.load(weights_only=True)`` of the storage bytes — and ``collections.OrderedDict``) and refuses any
  other with an error naming it; the result must be exactly ``{id: 1-D probability tensor}``.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch._utils

from arc.errors import InvalidInputError, MissingFileError

PASST_CLASSES = 527  # AudioSet


def load_fd_reference(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(mu_ref, sigma_ref)`` of a stable-audio-metrics ``.npz`` (float64), shapes checked."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"FD reference {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise InvalidInputError(f"{path} is not a readable .npz of reference statistics ({err})") from err
    if {"mu_ref", "sigma_ref"} - arrays.keys():
        raise InvalidInputError(f"{path} holds {sorted(arrays)}; a reference needs 'mu_ref' and 'sigma_ref'")
    mu, sigma = arrays["mu_ref"].astype(np.float64), arrays["sigma_ref"].astype(np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise InvalidInputError(f"{path}: mu_ref {mu.shape} and sigma_ref {sigma.shape} do not fit together")
    return mu, sigma


def _storage_from_bytes(data: bytes) -> object:
    return torch.load(io.BytesIO(data), weights_only=True)


class _ReferenceUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return self.ALLOWED[module, name]


def load_passt_reference(path: str | Path) -> dict[str, np.ndarray]:
    """``{id: (527,) probabilities}`` of a stable-audio-metrics PaSST reference ``.pkl``; ids become strings (the
    generated files' names without extension are matched against them)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"PaSST reference {path} does not exist")
    try:
        with path.open("rb") as f:
            blob = _ReferenceUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as err:
        raise InvalidInputError(
            f"{path} is not a PaSST reference file of {{id: tensor({PASST_CLASSES})}} ({err}); nothing else is loaded"
        ) from err
    if not isinstance(blob, dict) or not blob:
        raise InvalidInputError(f"{path} holds a {type(blob).__name__}, not a non-empty {{id: tensor}} dict")
    references = {}
    for key, value in blob.items():
        if not isinstance(key, str | int) or not isinstance(value, torch.Tensor):
            raise InvalidInputError(f"{path}: entry {key!r} is a {type(value).__name__}, expected id -> tensor")
        probs = value.detach().double().numpy()
        if probs.shape != (PASST_CLASSES,) or not np.isfinite(probs).all() or abs(probs.sum() - 1) > 1e-3:
            raise InvalidInputError(
                f"{path}: entry {key!r} is not a probability vector over {PASST_CLASSES} classes "
                f"(shape {probs.shape}, sum {probs.sum():.4g})"
            )
        references[str(key)] = probs
    return references
