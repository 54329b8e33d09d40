"""What a user sees when the input is wrong: one line naming the problem, exit status 2, no traceback; through
the installed console scripts, as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_DATA

BIN = Path(sys.executable).parent
PROMPT = "a low sine tone, steady, panned left"


def run(prog: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / prog), *args], capture_output=True, text=True, timeout=timeout)


def user_error_line(result: subprocess.CompletedProcess, prog: str) -> str:
    """The one error line (the last on stderr), after checking the exit status and that no traceback came."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith(f"{prog}: error:")] == lines[-1:], result.stderr[-3000:]
    assert "weights_only=False" not in result.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "last.ckpt"
    path.write_bytes(b"PK\x03\x04 this is not a whole zip archive")
    return path


def test_arc_sample_corrupt_checkpoint(corrupt, tmp_path):
    line = user_error_line(run("arc-sample", "--checkpoint", str(corrupt), "--prompt", PROMPT), "arc-sample")
    assert f"{corrupt} is not a readable checkpoint" in line and "arc-train" in line


def test_arc_sample_missing_checkpoint(tmp_path):
    line = user_error_line(
        run("arc-sample", "--checkpoint", str(tmp_path / "nope.ckpt"), "--prompt", PROMPT), "arc-sample"
    )
    assert "nope.ckpt does not exist" in line


def test_arc_sample_duration_too_long(pretrained, tmp_path):
    args = ["--checkpoint", str(pretrained), "--prompt", PROMPT, "--seconds", "30", "--out", str(tmp_path)]
    assert "duration 30.0 s is outside (0, 0.51] s" in user_error_line(run("arc-sample", *args), "arc-sample")


def test_arc_sample_empty_prompt(pretrained, tmp_path):
    args = ["--checkpoint", str(pretrained), "--prompt", "  ", "--out", str(tmp_path)]
    assert "prompt 0 is empty" in user_error_line(run("arc-sample", *args), "arc-sample")


def test_arc_sample_impossible_step_count_and_missing_prompts_file(pretrained, tmp_path):
    args = ["--checkpoint", str(pretrained), "--prompt", PROMPT, "--steps", "0"]
    assert "--steps must be >= 1, got 0" in user_error_line(run("arc-sample", *args), "arc-sample")
    args = ["--checkpoint", str(pretrained), "--prompts-file", str(tmp_path / "prompts.txt")]
    assert "prompts.txt does not exist" in user_error_line(run("arc-sample", *args), "arc-sample")


def test_arc_sample_debug_flag_keeps_the_traceback(corrupt):
    result = run("arc-sample", "--checkpoint", str(corrupt), "--prompt", PROMPT, "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr and "NotACheckpointError" in result.stderr


def test_arc_eval_corrupt_checkpoint_and_bad_step_count(pretrained, corrupt, tmp_path):
    common = ["metrics=probes", f"hydra.run.dir={tmp_path}", f"+systems.base.checkpoint={pretrained}"]
    line = user_error_line(run("arc-eval", *common, f"+systems.bad.checkpoint={corrupt}"), "arc-eval")
    assert f"{corrupt} is not a readable checkpoint" in line
    assert not (tmp_path / "base").exists()  # every checkpoint is checked before any sampling
    line = user_error_line(run("arc-eval", *common, "+systems.base.steps=many"), "arc-eval")
    assert "system 'base': steps must be an integer >= 1, got 'many'" in line


def test_arc_train_corrupt_pretrained_checkpoint(corrupt, tmp_path):
    args = ["experiment=tones_arc", f"pretrained={corrupt}", *TINY_DATA, f"hydra.run.dir={tmp_path}"]
    line = user_error_line(run("arc-train", *args), "arc-train")
    assert f"{corrupt} is not a readable checkpoint" in line


def test_arc_encode_missing_manifest(tmp_path):
    args = ["--manifest", str(tmp_path / "missing.jsonl"), "--audio-root", str(tmp_path), "--out", str(tmp_path / "o")]
    line = user_error_line(
        run("arc-encode", *args, "--sample-rate", "8000", "--num-samples", "4096", "--patch-size", "64"), "arc-encode"
    )
    assert "manifest" in line and "missing.jsonl does not exist" in line
    assert not (tmp_path / "o").exists()


def test_arc_encode_bad_row_is_one_line_after_the_bar_and_leaves_no_finished_index(tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "a.wav", 0.5 * np.sin(np.linspace(0, 2000, 16000)).reshape(8000, 2), 8000)
    rows = [{"path": "a.wav", "caption": "a tone"}, {"path": "gone.wav", "caption": "another"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "latents"
    args = ["--manifest", str(tmp_path / "m.jsonl"), "--audio-root", str(tmp_path), "--out", str(out),
            "--sample-rate", "8000", "--num-samples", "4096", "--patch-size", "64", "--shard-size", "1"]  # fmt: skip
    line = user_error_line(run("arc-encode", *args), "arc-encode")
    assert "gone.wav" in line and "--skip-bad" in line
    assert not (out / "index.json").exists() and (out / "plan.json").exists()
    (tmp_path / "gone.wav").write_bytes((tmp_path / "a.wav").read_bytes())  # fix the data, rerun: it resumes
    result = run("arc-encode", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "index.json").exists() and not (out / "plan.json").exists()
