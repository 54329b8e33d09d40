"""arc-replicates: intervals over arc-eval runs, recomputed by hand; the table, the plots, user errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arc.metrics.replicates import Interval, read_replicates, summarize, write_summary


def _results(path: Path, acc: dict[str, float], diversity: dict[str, float], seconds: float = 0.5) -> Path:
    """An arc-eval probes results.json with the given per-system acc_mean and diversity (the layout
    arc.metrics.evaluate.evaluate writes)."""
    systems = {}
    for name, steps in (("arc-pingpong1", 1), ("arc-pingpong8", 8), ("base-euler50", 50)):
        sampler = "euler" if name.startswith("base") else "pingpong"
        checkpoint = f"runs/{'base' if sampler == 'euler' else 'arc-s0'}/checkpoints/last.ckpt"
        systems[name] = {
            "source": {"checkpoint": checkpoint, "sampler": sampler, "steps": steps, "cfg_scale": 1.0},
            "audio": f"{name}/audio",
            "metrics": {"acc_mean": acc[name], "diversity": diversity[name], "clip_rate": 0.0},
            "files": {"evaluated": 8, "missing": [], "unreadable": {}},
            "generation": {"clips": 8, "seconds": 8 * seconds, "seconds_per_clip": seconds},
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": "probes", "systems": systems, "per_item": {}}))
    return path


@pytest.fixture
def three_runs(tmp_path):
    acc = [0.5, 0.6, 0.7]
    return [
        _results(tmp_path / f"rep{r}" / "results.json",
                 {"arc-pingpong1": a - 0.2, "arc-pingpong8": a, "base-euler50": 0.9},
                 {"arc-pingpong1": 0.3, "arc-pingpong8": 0.2 + 0.01 * r, "base-euler50": 0.1}, seconds=0.1 * (r + 1))
        for r, a in enumerate(acc)
    ]  # fmt: skip


def test_interval_is_the_student_t_interval():
    x = np.array([0.5, 0.6, 0.7])
    interval = Interval.of(x)
    assert interval.mean == pytest.approx(0.6)
    assert interval.half_width == pytest.approx(4.302652729911275 * 0.1 / np.sqrt(3))  # t(0.975, 2), sd 0.1
    assert interval.n == 3 and np.isnan(Interval.of([0.4]).half_width)
    assert Interval(0.5, 0.1, 3).overlaps(Interval(0.65, 0.06, 3))
    assert not Interval(0.5, 0.1, 3).overlaps(Interval(0.7, 0.05, 3))


def test_summary_over_runs(three_runs, tmp_path):
    kind, runs = read_replicates(three_runs)
    summary = summarize(runs)
    assert kind == "probes" and set(summary) == {"arc-pingpong1", "arc-pingpong8", "base-euler50"}
    assert summary["arc-pingpong8"]["acc_mean"] == Interval.of([0.5, 0.6, 0.7])
    assert summary["base-euler50"]["acc_mean"].half_width == 0.0
    assert summary["arc-pingpong8"]["seconds_per_clip"].mean == pytest.approx(0.2)
    table, written = write_summary(three_runs, tmp_path / "summary")
    assert "| arc-pingpong8 | " in table and "0.6 ± 0.25" in table and "| chance |" in table
    assert (
        json.loads((tmp_path / "summary" / "summary.json").read_text())["systems"]["arc-pingpong8"]["acc_mean"]["n"]
        == 3
    )
    for name in ("adherence_vs_diversity.png", "metrics_vs_steps.png"):
        assert (tmp_path / "summary" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arc_replicates_user_errors_exit_2(three_runs, tmp_path):
    script = Path(sys.executable).parent / "arc-replicates"
    missing = subprocess.run([str(script), str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "no such results file" in missing.stderr
    other = json.loads(three_runs[1].read_text())
    del other["systems"]["base-euler50"]
    three_runs[1].write_text(json.dumps(other))
    mismatch = subprocess.run([str(script), *map(str, three_runs), "--out", str(tmp_path / "o")],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert mismatch.returncode == 2 and "differ from the first run's" in mismatch.stderr
    assert len(mismatch.stderr.strip().splitlines()) == 1
