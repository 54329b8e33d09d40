"""stable-audio-metrics' reference files, written as its code writes them, and files that must be refused."""

import os
import pickle

import numpy as np
import pytest
import torch

from arc.errors import InvalidInputError, MissingFileError
from arc.metrics.references import load_fd_reference, load_passt_reference


def test_fd_reference_npz_as_openl3_fd_writes_it(tmp_path):
    mu, sigma = np.arange(4.0), np.eye(4) * 2
    np.savez(tmp_path / "ref.npz", mu_ref=mu, sigma_ref=sigma)  # src/openl3_fd.py
    got_mu, got_sigma = load_fd_reference(tmp_path / "ref.npz")
    assert np.array_equal(got_mu, mu) and np.array_equal(got_sigma, sigma)
    np.savez(tmp_path / "bad.npz", mu=mu)
    with pytest.raises(InvalidInputError, match="needs 'mu_ref' and 'sigma_ref'"):
        load_fd_reference(tmp_path / "bad.npz")
    np.savez(tmp_path / "objects.npz", mu_ref=np.array([{"a": 1}], dtype=object), sigma_ref=sigma)
    with pytest.raises(InvalidInputError, match="not a readable .npz"):
        load_fd_reference(tmp_path / "objects.npz")
    with pytest.raises(MissingFileError):
        load_fd_reference(tmp_path / "missing.npz")


def _probabilities(n: int, seed: int = 0) -> dict:
    logits = torch.randn(n, 527, generator=torch.Generator().manual_seed(seed))
    return {859 + i: p for i, p in enumerate(torch.softmax(logits, dim=1))}  # int ids, as in song_describer's


def test_passt_reference_pkl_as_passt_kld_writes_it(tmp_path):
    probs = _probabilities(3)
    with open(tmp_path / "ref.pkl", "wb") as f:
        pickle.dump(probs, f)  # src/passt_kld.py: pickle.dump(ref_p, fp)
    loaded = load_passt_reference(tmp_path / "ref.pkl")
    assert sorted(loaded) == ["859", "860", "861"]
    assert np.allclose(loaded["860"], probs[860].double().numpy())


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_passt_reference_refuses_anything_but_id_to_tensor(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": _Exploit()}))
    with pytest.raises(InvalidInputError, match=r"refused to load (posix|os)\.system"):
        load_passt_reference(tmp_path / "evil.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([torch.ones(527) / 527]))
    with pytest.raises(InvalidInputError, match="not a non-empty"):
        load_passt_reference(tmp_path / "list.pkl")
    (tmp_path / "shape.pkl").write_bytes(pickle.dumps({"a": torch.ones(10) / 10}))
    with pytest.raises(InvalidInputError, match="not a probability vector over 527 classes"):
        load_passt_reference(tmp_path / "shape.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(_probabilities(2))[:100])
    with pytest.raises(InvalidInputError, match="is not a PaSST reference file"):
        load_passt_reference(tmp_path / "cut.pkl")


def test_metric_weights_are_looked_up_in_the_cache_with_a_message_that_says_what_to_do(tmp_path, monkeypatch):
    from arc.hub import MissingWeightsError
    from arc.metrics.weights import WEIGHT_FILES, weight_path

    monkeypatch.setenv("ARC_METRICS_CACHE", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        weight_path("openl3_mel256_env")
    message = str(err.value)
    assert str(tmp_path / "openl3_audio_mel256_env.h5") in message and "gunzip" in message
    assert "https://github.com/marl/openl3/raw/models/openl3_audio_mel256_env-v0_4_0.h5.gz" in message
    (tmp_path / WEIGHT_FILES["passt"].filename).write_bytes(b"x")
    assert weight_path("passt") == tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt"
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "other")):  # an explicit cache_dir wins
        weight_path("passt", cache_dir=tmp_path / "other")
    with pytest.raises(KeyError, match="unknown metric weights 'vggish'"):
        weight_path("vggish")
