"""``arc-eval``'s outputs: ``results.json`` (everything), ``results.csv`` (a row per system), ``results.md`` (the
table), ``items.csv`` (per-clip values) and plots: the per-prompt distribution of the adherence metric (CLAP
cosine, or probe accuracy) per system, probe accuracies against chance, and diversity against adherence when
several systems are compared."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from arc.files import atomic_write

# metric set -> (columns in table order, adherence metric, per-item adherence, diversity metric)
COLUMNS = {
    "audio": ("fd_openl3", "kl_passt", "clap_score", "ccds", "recall_passt", "coverage_passt"),
    "probes": (
        "acc_waveform",
        "acc_pitch",
        "acc_envelope",
        "acc_pan",
        "acc_mean",
        "acc_all",
        "fd",
        "diversity",
        "clip_rate",
    ),
}
ADHERENCE = {"audio": ("clap_score", "clap", "ccds"), "probes": ("acc_mean", "acc_mean", "diversity")}
# what a random guess scores on each probe accuracy (4 waveforms, 3 classes of the others)
CHANCE = {"acc_waveform": 1 / 4, "acc_pitch": 1 / 3, "acc_envelope": 1 / 3, "acc_pan": 1 / 3}
CHANCE |= {"acc_mean": sum(CHANCE.values()) / 4, "acc_all": 1 / 108}


def _write_text(path: Path, text: str) -> Path:
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def markdown_table(results: dict) -> str:
    """One row per system: its source, the set's metrics (blank where not computed) and its file counts."""
    columns = COLUMNS[results["metrics"]]
    header = ["system", "source", *columns, "s/clip", "files", "missing", "unreadable"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, system in results["systems"].items():
        source = ", ".join(f"{k}={v}" for k, v in system["source"].items() if k not in ("audio", "use_ema"))
        values = [f"{system['metrics'][c]:.4g}" if c in system["metrics"] else "" for c in columns]
        files = system["files"]
        counts = [str(files["evaluated"]), str(len(files["missing"])), str(len(files["unreadable"]))]
        speed = f"{system['generation']['seconds_per_clip']:.3g}" if "generation" in system else ""
        lines.append("| " + " | ".join([name, source or system["audio"], *values, speed, *counts]) + " |")
    if results["metrics"] == "probes":
        chance = ["chance", "", *(f"{CHANCE[c]:.3f}" if c in CHANCE else "" for c in columns), "", "", "", ""]
        lines.append("| " + " | ".join(chance) + " |")
    return "\n".join(lines)


def _csv(rows: list[dict], fieldnames: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_results(results: dict, out: Path) -> list[Path]:
    """Every output file; returns their paths."""
    columns = list(COLUMNS[results["metrics"]])
    rows = []
    for name, system in results["systems"].items():
        files = system["files"]
        counts = {
            "files": files["evaluated"],
            "missing": len(files["missing"]),
            "unreadable": len(files["unreadable"]),
        }
        speed = {"seconds_per_clip": system["generation"]["seconds_per_clip"] if "generation" in system else ""}
        rows.append({"system": name, **{c: system["metrics"].get(c, "") for c in columns}, **speed, **counts})
    items = [
        {"system": name, **{k: column[i] for k, column in values.items()}}
        for name, values in results["per_item"].items()
        for i in range(len(values["id"]))
    ]
    keys = ["id", "rendering", "caption"]
    extra = sorted({k for values in results["per_item"].values() for k in values} - set(keys))
    item_fields = ["system", *keys, *extra]
    written = [
        _write_text(out / "results.json", json.dumps(results, indent=1) + "\n"),
        _write_text(
            out / "results.csv", _csv(rows, ["system", *columns, "seconds_per_clip", "files", "missing", "unreadable"])
        ),
        _write_text(out / "results.md", markdown_table(results) + "\n"),
        _write_text(out / "items.csv", _csv(items, item_fields)),
    ]
    return written + plot_results(results, out)


def plot_results(results: dict, out: Path) -> list[Path]:
    """The plots (PNG): per-prompt adherence per system, probe accuracies with chance, and diversity against
    adherence across systems (when two or more have both)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = results["metrics"]
    adherence, per_item, diversity = ADHERENCE[kind]
    systems = results["systems"]
    paths = []

    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    values = [results["per_item"][name].get(per_item, []) for name in systems]
    if any(values):
        ax.boxplot(values, showmeans=True)
        ax.set_xticks(range(1, len(systems) + 1), list(systems))
        ax.set_ylabel(f"{per_item} per clip" + (" (cosine, audio vs caption)" if kind == "audio" else ""))
        ax.set_title(f"{per_item} per clip ({results['prompts']} prompts)")
        paths.append(out / f"{per_item}_per_prompt.png")
        fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    if kind == "probes":
        paths.append(_plot_probe_accuracy(systems, out / "probe_accuracy.png"))

    both = {n: s["metrics"] for n, s in systems.items() if {adherence, diversity} <= s["metrics"].keys()}
    if len(both) >= 2:
        fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
        for name, m in both.items():
            ax.scatter(m[adherence], m[diversity])
            ax.annotate(name, (m[adherence], m[diversity]), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(f"{adherence} (prompt adherence)")
        ax.set_ylabel(f"{diversity} (diversity)")
        ax.set_title("diversity vs adherence")
        paths.append(out / "diversity_vs_adherence.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def _plot_probe_accuracy(systems: dict, path: Path) -> Path:
    """Grouped bars of each system's attribute accuracies, chance marked per attribute."""
    import matplotlib.pyplot as plt

    attributes = ["acc_waveform", "acc_pitch", "acc_envelope", "acc_pan", "acc_mean"]
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    for i, (name, system) in enumerate(systems.items()):
        offsets = [a + (i - (len(systems) - 1) / 2) * width for a in range(len(attributes))]
        ax.bar(offsets, [system["metrics"][a] for a in attributes], width, label=name)
    for a, name in enumerate(attributes):
        ax.hlines(
            CHANCE[name], a - 0.45, a + 0.45, colors="black", linestyles="dashed", label="chance" if a == 0 else None
        )
    ax.set_xticks(range(len(attributes)), [a.removeprefix("acc_") for a in attributes])
    ax.set_ylim(0, 1)
    ax.set_ylabel("probe accuracy")
    ax.legend(fontsize="small", loc="upper left")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
