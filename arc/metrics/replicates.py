"""Metrics over replicates: several ``arc-eval`` runs of the same systems (same names; each run another training
seed of the trained systems, other prompts and other sampling seeds), summarised per system as the mean and a
95 % Student-t interval over the runs, with a table and two plots (adherence vs diversity; each metric vs the
number of sampling steps)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from arc.errors import InvalidInputError, MissingFileError
from arc.files import atomic_write
from arc.metrics.report import ADHERENCE, CHANCE, COLUMNS

# generation seconds per clip, from each system's generation.json, summarised with the metrics
SPEED = "seconds_per_clip"


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` replicate values and the half width of its 95 % Student-t interval (nan for n = 1)."""

    mean: float
    half_width: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        x = np.asarray(values, dtype=np.float64)
        if x.size < 2:
            return cls(float(x.mean()), float("nan"), int(x.size))
        half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
        return cls(float(x.mean()), float(half), int(x.size))

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share a point: a tie at this number of replicates."""
        return abs(self.mean - other.mean) <= self.half_width + other.half_width

    def __str__(self) -> str:
        """``mean ± half width``; the mean alone where one run gives no interval."""
        return f"{self.mean:.3g}" if self.n < 2 else f"{self.mean:.3g} ± {self.half_width:.2g}"


def read_replicates(paths: Sequence[Path]) -> tuple[str, dict[str, list[dict]]]:
    """``(metric set, {system: [{metric: value, "_source": how it was made} per run]})`` from ``arc-eval``
    ``results.json`` files; every run must hold the same metric set and the same systems."""
    kind, runs = None, defaultdict(list)
    names = None
    for path in paths:
        if not Path(path).is_file():
            raise MissingFileError(f"{path}: no such results file (an arc-eval run directory's results.json)")
        results = json.loads(Path(path).read_text())
        if kind is not None and results["metrics"] != kind:
            raise InvalidInputError(f"{path}: metric set {results['metrics']!r}, the first run's is {kind!r}")
        if names is not None and set(results["systems"]) != names:
            raise InvalidInputError(
                f"{path}: systems {sorted(results['systems'])} differ from the first run's {sorted(names)}"
            )
        kind, names = results["metrics"], set(results["systems"])
        for name, system in results["systems"].items():
            values = dict(system["metrics"])
            if "generation" in system:
                values[SPEED] = system["generation"][SPEED]
            runs[name].append(values | {"_source": system["source"]})
    if kind is None:
        raise InvalidInputError("no results files given")
    return kind, dict(runs)


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, Interval]]:
    """Per system and metric, the interval over the runs that report it."""
    return {
        name: {
            metric: Interval.of([v[metric] for v in values if metric in v])
            for metric in dict.fromkeys(k for v in values for k in v if k != "_source")
        }
        for name, values in runs.items()
    }


def markdown_table(kind: str, summary: dict[str, dict[str, Interval]]) -> str:
    """One row per system, ``mean ± half width`` per metric, the number of runs last."""
    columns = [*COLUMNS[kind], SPEED]
    lines = ["| system | " + " | ".join(columns) + " | runs |", "|" + "---|" * (len(columns) + 2)]
    for name, intervals in summary.items():
        cells = [str(intervals[c]) if c in intervals else "" for c in columns]
        runs = max(i.n for i in intervals.values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {runs} |")
    if kind == "probes":
        lines.append("| chance | " + " | ".join(f"{CHANCE[c]:.3f}" if c in CHANCE else "" for c in columns) + " | |")
    return "\n".join(lines)


def _step_series(runs: dict[str, list[dict]]) -> dict[str, list[tuple[int, str]]]:
    """Systems that differ only in their number of steps (same sampler, CFG scale and source model name), as
    ``{label: [(steps, system)]}`` sorted by steps; the label is the first system's name without its steps."""
    groups = defaultdict(list)
    for name, values in runs.items():
        source = values[0]["_source"]
        if "steps" not in source:
            continue
        model = source.get("checkpoint") or source.get("model") or source.get("audio")
        key = (Path(str(model)).parent.parent.name, source.get("sampler"), source.get("cfg_scale"))
        groups[key].append((int(source["steps"]), name))
    return {
        re.sub(rf"{steps}(?!\d)", "", name, count=1): sorted(g) for g in groups.values() for steps, name in [min(g)]
    }


def plot_adherence_diversity(kind: str, summary: dict[str, dict[str, Interval]], path: Path) -> Path:
    """One point per system: adherence against diversity, 95 % intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adherence, _, diversity = ADHERENCE[kind]
    fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    for name, m in summary.items():
        if adherence in m and diversity in m:
            a, d = m[adherence], m[diversity]
            ax.errorbar(a.mean, d.mean, xerr=a.half_width, yerr=d.half_width, fmt="o", capsize=3, label=name)
    ax.set_xlabel(f"{adherence} (prompt adherence)")
    ax.set_ylabel(f"{diversity} (same-prompt diversity)")
    ax.set_title("adherence vs diversity (mean, 95 % interval over runs)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_metrics_vs_steps(
    kind: str, runs: dict[str, list[dict]], summary: dict[str, dict[str, Interval]], path: Path
) -> Path:
    """A panel per metric: each series of systems that differ only in steps, as a line with error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [c for c in (*COLUMNS[kind], SPEED) if any(c in m for m in summary.values())]
    cols = 3
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), layout="constrained", squeeze=False)
    series = _step_series(runs)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for label, points in series.items():
            xs = [s for s, n in points if metric in summary[n]]
            ys = [summary[n][metric] for s, n in points if metric in summary[n]]
            ax.errorbar(xs, [y.mean for y in ys], yerr=[y.half_width for y in ys], marker="o", capsize=3,
                        label=label)  # fmt: skip
        if metric in CHANCE:
            ax.axhline(CHANCE[metric], color="black", linestyle="dashed", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps")
        ax.set_title(metric)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_summary(paths: Sequence[Path], out: Path) -> tuple[str, list[Path]]:
    """Read the runs, write ``summary.json`` (every interval), ``summary.md`` (the table) and the two plots into
    ``out``; return the table and the written paths."""
    kind, runs = read_replicates(paths)
    summary = summarize(runs)
    table = markdown_table(kind, summary)
    out.mkdir(parents=True, exist_ok=True)
    data = {"metrics": kind, "runs": [str(p) for p in paths],
            "systems": {n: {m: i.__dict__ for m, i in s.items()} for n, s in summary.items()}}  # fmt: skip
    atomic_write(out / "summary.json", lambda f: f.write((json.dumps(data, indent=1) + "\n").encode()))
    atomic_write(out / "summary.md", lambda f: f.write((table + "\n").encode()))
    written = [out / "summary.json", out / "summary.md"]
    written.append(plot_adherence_diversity(kind, summary, out / "adherence_vs_diversity.png"))
    written.append(plot_metrics_vs_steps(kind, runs, summary, out / "metrics_vs_steps.png"))
    return table, written
