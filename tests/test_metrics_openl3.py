"""OpenL3 mel256: a Keras-2 HDF5 weight file written here in the official layout (layer groups named as Keras
names them, weightless front-end and pooling layers included) loads by layer order; shapes and errors."""

import h5py
import numpy as np
import pytest
import torch

from arc.errors import InvalidInputError
from arc.metrics.openl3 import load_openl3, slaney_mel, slaney_mel_filters, slaney_mel_inverse
from tests.official_layouts import write_keras_h5


def test_official_layout_loads_by_layer_order(tmp_path):
    write_keras_h5(tmp_path / "openl3_audio_mel256_env.h5")
    model = load_openl3("env", tmp_path / "openl3_audio_mel256_env.h5")
    with h5py.File(tmp_path / "openl3_audio_mel256_env.h5") as f:
        kernel = np.asarray(f["audio_embedding_layer/audio_embedding_layer/kernel:0"])
        variance = np.asarray(f["batch_normalization_3/batch_normalization_3/moving_variance:0"])
    last_conv = model.net.layers[-1]
    assert torch.equal(last_conv.weight, torch.from_numpy(kernel).permute(3, 2, 0, 1))
    norms = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 8 and torch.equal(norms[3].running_var, torch.from_numpy(variance))
    assert sum(p.numel() for p in model.parameters()) + sum(m.running_mean.numel() * 2 for m in norms) == 4_689_860
    with torch.no_grad():
        mel = model.front_end(0.1 * torch.randn(2, 48000))
        assert mel.shape == (2, 1, 256, 199) and mel.max() == 0 and mel.min() >= -80
        assert model(0.1 * torch.randn(2, 48000)).shape == (2, 512)


def test_a_file_of_another_architecture_is_named(tmp_path):
    write_keras_h5(tmp_path / "short.h5", drop_last=True)
    with pytest.raises(InvalidInputError, match="short.h5 has 15 layers with weights; OpenL3 mel256 has 16"):
        load_openl3("env", tmp_path / "short.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InvalidInputError, match="junk.h5 is not a Keras HDF5 weight file"):
        load_openl3("env", tmp_path / "junk.h5")
    with pytest.raises(InvalidInputError, match="'env' or 'music'"):
        load_openl3("speech", tmp_path / "short.h5")


def test_slaney_mel_scale_and_filters():
    f = np.array([0.0, 500.0, 1000.0, 4000.0, 24000.0])
    assert np.allclose(slaney_mel_inverse(slaney_mel(f)), f)
    assert slaney_mel(1000.0) == pytest.approx(15.0) and slaney_mel(200.0) == pytest.approx(3.0)
    filters = slaney_mel_filters(48000, 2048, 256, 0.0, 24000.0)
    assert filters.shape == (256, 1025) and (filters >= 0).all()
    # slaney normalisation: each triangle has unit area in Hz (up to the sampling of narrow low bands)
    area = filters.sum(axis=1) * 48000 / 2048
    assert np.allclose(area[150:], 1.0, rtol=0.02) and abs(area.mean() - 1) < 0.05


def test_openl3_framing_as_openl3_core():
    from arc.metrics.openl3 import openl3_frames

    sr = 48000
    # 2 s: 0.5 s of zeros in front -> 2.5 s -> frames at 0, 0.5, 1.0 and 1.5 s (the last one padded to 2.5 s)
    frames = openl3_frames(np.ones(2 * sr))
    assert frames.shape == (4, sr)
    assert not frames[0, : sr // 2].any() and frames[0, sr // 2 :].all()
    assert frames[3, :sr].all()
    assert openl3_frames(np.ones(2 * sr + 1)).shape == (5, sr)  # one more sample needs one more hop
    assert openl3_frames(np.ones(sr // 4)).shape == (1, sr)  # shorter than a frame: one padded frame
    with pytest.raises(InvalidInputError, match="non-empty mono"):
        openl3_frames(np.ones((2, 10)))
