"""arc-sample on a real (2-step) tones checkpoint: files, records, reproduction from the JSONL."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from arc.cli.sample import sample as sample_main
from arc.data.audio import BadItemError
from arc.errors import InvalidInputError

PROMPTS = ["a low sine tone, steady, panned left", "a high square tone, pulsing, panned right"]


def test_sample_jsonl_seeds_reproduce_the_same_audio(pretrained, tmp_path):
    common = ["--checkpoint", str(pretrained), "--steps", "3", "--sampler", "euler", "--cfg-scale", "2"]
    prompt_args = [arg for p in PROMPTS for arg in ("--prompt", p)]
    records = sample_main([*common, *prompt_args, "--num", "2", "--batch-size", "3", "--out", str(tmp_path / "a")])
    assert len(records) == 4 and [r["seed"] for r in records] == [0, 1, 0, 1]
    lines = [json.loads(line) for line in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert lines == records
    audio, rate = sf.read(records[3]["path"])
    assert rate == 8000 and audio.shape == (4096, 2)

    # one record, regenerated alone from its JSONL fields, in a batch of one
    r = lines[3]
    again = sample_main(
        ["--checkpoint", str(pretrained), "--prompt", r["prompt"], "--seed", str(r["seed"]), "--steps",
         str(r["steps"]), "--sampler", r["sampler"], "--cfg-scale", str(r["cfg_scale"]), "--out", str(tmp_path / "b")]
    )  # fmt: skip
    assert (tmp_path / "b" / "00000.wav").read_bytes() == (tmp_path / "a" / "00003.wav").read_bytes()
    assert again[0]["seed"] == r["seed"]


def test_console_script_exits_zero(pretrained, tmp_path):
    """Through the installed entry point, which exits with main()'s return value."""
    script = Path(sys.executable).parent / "arc-sample"
    args = ["--checkpoint", str(pretrained), "--prompt", PROMPTS[0], "--steps", "1", "--out", str(tmp_path)]
    result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "00000.wav").is_file()


def test_audio_to_audio_starts_from_the_init_file(pretrained, tmp_path):
    t = np.arange(44100) / 44100  # 1 s mono at 44.1 kHz: resampled to 8 kHz and duplicated to stereo
    sf.write(tmp_path / "init.wav", 0.5 * np.sin(2 * np.pi * 220 * t), 44100)
    common = ["--checkpoint", str(pretrained), "--prompt", PROMPTS[0], "--steps", "2"]
    near = sample_main(
        [*common, "--init-audio", str(tmp_path / "init.wav"), "--sigma-max", "0.05", "--out", str(tmp_path / "a")]
    )
    assert near[0]["sigma_max"] == 0.05 and near[0]["init_audio"].endswith("init.wav")
    audio, _ = sf.read(near[0]["path"])
    reference = 0.5 * np.sin(2 * np.pi * 220 * np.arange(4096) / 8000)
    assert np.corrcoef(audio[:, 0], reference)[0, 1] > 0.9  # 5 % noise: still the init tone

    with pytest.raises(InvalidInputError, match="--init-audio and --sigma-max"):
        sample_main([*common, "--init-audio", str(tmp_path / "init.wav"), "--out", str(tmp_path / "b")])
    with pytest.raises(BadItemError, match="missing.wav: file not found"):
        sample_main(
            [
                *common,
                "--init-audio",
                str(tmp_path / "missing.wav"),
                "--sigma-max",
                "0.5",
                "--out",
                str(tmp_path / "c"),
            ]
        )
