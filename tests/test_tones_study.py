"""The tones study's split of attribute accuracy by caption kind (experiments/tones/by_caption.py) on items.csv files
written as arc-eval writes them, against a hand computation; its user errors."""

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "experiments" / "tones" / "by_caption.py"
FIELDS = ["system", "id", "rendering", "caption", "acc_envelope", "acc_mean", "acc_pan", "acc_pitch", "acc_waveform"]
SINE, NOISE = "a low sine tone, steady, panned left", "a high noise tone, fading, panned right"


def _load():
    spec = importlib.util.spec_from_file_location("by_caption", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(system: str, caption: str, hits: tuple[int, int, int, int]) -> dict:
    waveform, pitch, envelope, pan = hits
    return {"system": system, "id": "tones000", "rendering": 0, "caption": caption, "acc_waveform": waveform,
            "acc_pitch": pitch, "acc_envelope": envelope, "acc_pan": pan, "acc_mean": sum(hits) / 4}  # fmt: skip


def _write(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_accuracy_is_split_by_caption_kind_with_an_interval_over_runs(tmp_path):
    by_caption = _load()
    run0 = [_row("arc", NOISE, (1, 0, 0, 0)), _row("arc", SINE, (1, 1, 1, 1)), _row("arc", NOISE, (1, 1, 0, 0)),
            _row("base", SINE, (0, 1, 1, 1))]  # fmt: skip
    run1 = [_row("arc", NOISE, (0, 0, 0, 0)), _row("arc", SINE, (1, 1, 1, 0)), _row("base", SINE, (1, 1, 1, 1))]
    run0, run1 = _write(tmp_path / "r0.csv", run0), _write(tmp_path / "r1.csv", run1)
    table = by_caption.split([run0, run1])
    assert list(table) == [("arc", "periodic"), ("arc", "noise"), ("base", "periodic")]
    noise, clips = table["arc", "noise"]
    assert clips == 2  # (2 + 1) / 2 per run, rounded half to even
    assert noise["acc_waveform"].mean == pytest.approx((1.0 + 0.0) / 2)  # run 0: 2 of 2 right; run 1: 0 of 1
    assert noise["acc_pitch"].mean == pytest.approx((0.5 + 0.0) / 2)
    assert noise["acc_mean"].mean == pytest.approx((0.375 + 0.0) / 2)
    assert noise["acc_mean"].half_width == pytest.approx(12.7062 * 0.375 / 2, rel=1e-4)  # t(0.975, 1) s / sqrt(2)
    periodic, _ = table["arc", "periodic"]
    assert periodic["acc_pan"].mean == pytest.approx(0.5) and periodic["acc_mean"].mean == pytest.approx(0.875)
    printed = by_caption.markdown(table, 2)
    assert "| arc | noise | 0.5 ± 6.4 | 0.25 ± 3.2 | 0 ± 0 | 0 ± 0 | 0.188 ± 2.4 | 2 |" in printed
    one_run = by_caption.markdown(by_caption.split([run0]), 1)
    assert "| arc | noise | 1 | 0.5 | 0 | 0 | 0.375 | 2 |" in one_run and "nan" not in one_run


def test_items_without_captions_or_files_are_one_line_errors(tmp_path):
    old = tmp_path / "items.csv"
    old.write_text("system,id,rendering,acc_mean,clipped\narc,tones000,0,1.0,False\n")  # arc-eval before captions
    for path, message in [(old, "lacks the columns"), (tmp_path / "none.csv", "no such file")]:
        result = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stderr.startswith("by_caption.py: error: ")
        assert message in result.stderr
