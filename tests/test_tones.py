"""The procedural tones set: determinism, item format, captions, coverage."""

import itertools

import numpy as np
import pytest
import torch

from arc.data.tones import (
    ENVELOPES,
    PANS,
    PEAK_AMPLITUDE,
    PITCHES,
    WAVEFORMS,
    ToneAttributes,
    TonesDataset,
    render_tone,
)

SAMPLE_RATE = 16000
NUM_SAMPLES = 16000


@pytest.fixture(scope="module")
def dataset():
    return TonesDataset(size=200, sample_rate=SAMPLE_RATE, num_samples=NUM_SAMPLES, seed=0)


def test_item_is_identical_on_every_call(dataset):
    again = TonesDataset(size=200, sample_rate=SAMPLE_RATE, num_samples=NUM_SAMPLES, seed=0)
    for index in (0, 7, 199):
        first, second, third = dataset[index], dataset[index], again[index]
        assert torch.equal(first["audio"], second["audio"]) and torch.equal(first["audio"], third["audio"])
        assert first["prompt"] == second["prompt"] == third["prompt"]


def test_items_match_golden_values():
    """Pins the rng draw order: item i must not change between versions or machines."""
    dataset = TonesDataset(size=4, sample_rate=SAMPLE_RATE, num_samples=NUM_SAMPLES, seed=0)
    assert [dataset[i]["prompt"] for i in range(4)] == [
        "a mid noise tone, pulsing, panned left",
        "a high sawtooth tone, fading, panned centre",
        "a low noise tone, steady, panned centre",
        "a high sawtooth tone, fading, panned right",
    ]
    np.testing.assert_allclose(
        dataset[3]["audio"][:, 1:4].numpy(),
        [[0.0085395, 0.014415, 0.025635], [0.0307115, 0.051843, 0.092195]],
        atol=1e-5,
    )  # since issue 12 a periodic tone starts at phase 0 (sample 0 is 0) on its pitch class's one note


def test_different_seeds_differ():
    a = TonesDataset(size=8, sample_rate=SAMPLE_RATE, num_samples=NUM_SAMPLES, seed=0)
    b = TonesDataset(size=8, sample_rate=SAMPLE_RATE, num_samples=NUM_SAMPLES, seed=1)
    assert all(not torch.equal(a[i]["audio"], b[i]["audio"]) for i in range(8))


def test_item_format(dataset):
    for index in range(0, 200, 25):
        item = dataset[index]
        audio = item["audio"]
        assert audio.shape == (2, NUM_SAMPLES) and audio.dtype == torch.float32
        assert PEAK_AMPLITUDE[0] - 1e-6 <= audio.abs().max().item() <= PEAK_AMPLITUDE[1] + 1e-6
        assert item["padding_mask"].shape == (NUM_SAMPLES,) and item["padding_mask"].dtype == torch.bool
        assert item["padding_mask"].all()
        assert item["seconds_start"] == 0.0 and item["seconds_total"] == pytest.approx(NUM_SAMPLES / SAMPLE_RATE)
        assert item["id"] == f"tones-0-{index}"
        ToneAttributes.from_caption(item["prompt"])


def test_collates_with_default_data_loader(dataset):
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["audio"].shape == (3, 2, NUM_SAMPLES) and len(batch["prompt"]) == 3


def test_every_attribute_value_appears(dataset):
    seen = [ToneAttributes.from_caption(dataset[i]["prompt"]) for i in range(len(dataset))]
    for name, values in (("waveform", WAVEFORMS), ("pitch", PITCHES), ("envelope", ENVELOPES), ("pan", PANS)):
        assert {getattr(attrs, name) for attrs in seen} == set(values)


def test_caption_round_trip():
    for waveform, pitch, envelope, pan in itertools.product(WAVEFORMS, PITCHES, ENVELOPES, PANS):
        attrs = ToneAttributes(waveform=waveform, pitch=pitch, envelope=envelope, pan=pan)
        assert ToneAttributes.from_caption(attrs.caption()) == attrs
    assert ToneAttributes.from_caption("  A Low Sine tone, pulsing, panned left ").caption() == (
        "a low sine tone, pulsing, panned left"
    )


def test_bad_captions_and_values_raise():
    with pytest.raises(ValueError, match="a shrill sine tone"):
        ToneAttributes.from_caption("a shrill sine tone, steady, panned left")
    with pytest.raises(ValueError, match="triangle"):
        ToneAttributes(waveform="triangle", pitch="low", envelope="steady", pan="left")


def test_index_out_of_range(dataset):
    with pytest.raises(IndexError):
        dataset[200]
    with pytest.raises(IndexError):
        dataset[-1]


def test_render_rejects_low_sample_rate():
    attrs = ToneAttributes(waveform="sine", pitch="high", envelope="steady", pan="centre")
    with pytest.raises(ValueError, match="sample_rate"):
        render_tone(attrs, np.random.default_rng(0), sample_rate=4000, num_samples=4000)


@pytest.mark.parametrize("sample_rate", [8000, 44100])
def test_render_stays_in_range_at_other_rates(sample_rate):
    rng = np.random.default_rng(0)
    for waveform in WAVEFORMS:
        attrs = ToneAttributes(waveform=waveform, pitch="high", envelope="steady", pan="right")
        audio = render_tone(attrs, rng, sample_rate, sample_rate // 2)
        assert audio.shape == (2, sample_rate // 2) and audio.dtype == np.float32
        assert np.isfinite(audio).all() and np.abs(audio).max() <= PEAK_AMPLITUDE[1] + 1e-6
