"""Attribute accuracy split by caption kind, periodic (sine, square, sawtooth) against noise, per system: the mean
and 95 % interval over the study's arc-eval runs, from their per-clip ``items.csv``. Where each system's errors
are, and whether post-training moves them.

python experiments/tones/by_caption.py outputs/tones_study/eval/rep*/items.csv
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from arc.cli.errors import report_user_errors
from arc.data.tones import ToneAttributes
from arc.errors import InvalidInputError, MissingFileError
from arc.metrics.probes import ATTRIBUTES
from arc.metrics.replicates import Interval

COLUMNS = [*(f"acc_{name}" for name in ATTRIBUTES), "acc_mean"]
KINDS = ("periodic", "noise")


def caption_kind(caption: str) -> str:
    return "noise" if ToneAttributes.from_caption(caption).waveform == "noise" else "periodic"


def read_items(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file (an arc-eval run directory's items.csv)")
    rows = list(csv.DictReader(path.open()))
    missing = {"system", "caption", *COLUMNS} - set(rows[0] if rows else {})
    if missing:
        raise InvalidInputError(f"{path} lacks the columns {sorted(missing)}: score the run again with arc-eval")
    return rows


def split(paths: list[Path]) -> dict[tuple[str, str], tuple[dict[str, Interval], int]]:
    """``{(system, kind): ({column: interval over the runs}, clips per run)}``, systems in the runs' order."""
    per_run: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    clips: dict[tuple[str, str], list[int]] = defaultdict(list)
    for path in paths:
        groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
        for row in read_items(path):
            groups[row["system"], caption_kind(row["caption"])].append(row)
        for key, rows in groups.items():
            clips[key].append(len(rows))
            for column in COLUMNS:
                per_run[key][column].append(float(np.mean([float(row[column]) for row in rows])))
    systems = list(dict.fromkeys(system for system, _ in per_run))
    order = sorted(per_run, key=lambda key: (systems.index(key[0]), KINDS.index(key[1])))
    return {
        key: ({c: Interval.of(v) for c, v in per_run[key].items()}, round(float(np.mean(clips[key])))) for key in order
    }


def markdown(table: dict[tuple[str, str], tuple[dict[str, Interval], int]], runs: int) -> str:
    header = f"Mean ± 95 % half width over {runs} runs; clips: per run, on average." if runs > 1 else "One run."
    lines = [
        header,
        "",
        "| system | captions | " + " | ".join(COLUMNS) + " | clips |",
        "|" + "---|" * (len(COLUMNS) + 3),
    ]
    for (system, kind), (intervals, clips) in table.items():
        lines.append(f"| {system} | {kind} | " + " | ".join(str(intervals[c]) for c in COLUMNS) + f" | {clips} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("items", nargs="+", type=Path, help="items.csv of each arc-eval run (metrics=probes)")
    args = parser.parse_args()
    report_user_errors("by_caption.py", lambda: print(markdown(split(args.items), len(args.items))))


if __name__ == "__main__":
    main()
