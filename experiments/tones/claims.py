"""The paper's claims, one by one, on the tones study's summary (arc-replicates' summary.json): each comparison of
two 95 % intervals is "higher", "lower" or "tie" (the intervals overlap), and a claim is supported only when every
comparison it needs goes its way (README.md states the rules).

python experiments/tones/claims.py outputs/tones_study/summary/summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BASE, ARC = "base-euler50-cfg1p5", "arc-pingpong8"
STEPS = ("arc-pingpong1", "arc-pingpong2", "arc-pingpong4", ARC)
# metric -> +1 when higher is better, -1 when lower is better
BETTER = {"acc_mean": +1, "fd": -1, "diversity": +1}
# "graceful": the largest drop in mean attribute accuracy allowed per halving of the number of steps
MAX_LOSS = 0.1


def compare(summary: dict, a: str, b: str, metric: str) -> str:
    """``"higher"``, ``"lower"`` or ``"tie"``: system ``a``'s interval on ``metric`` against ``b``'s."""
    x, y = summary[a][metric], summary[b][metric]
    if abs(x["mean"] - y["mean"]) <= x["half_width"] + y["half_width"]:
        return "tie"
    return "higher" if x["mean"] > y["mean"] else "lower"


def _fmt(summary: dict, name: str, metric: str) -> str:
    m = summary[name][metric]
    return f"{m['mean']:.3g} ± {m['half_width']:.2g}"


def _kept(summary: dict, a: str, b: str, metric: str) -> bool:
    """``a`` is not worse than ``b`` on ``metric`` (better or a tie)."""
    return compare(summary, a, b, metric) != ("lower" if BETTER[metric] > 0 else "higher")


def _better(summary: dict, a: str, b: str, metric: str) -> bool:
    return compare(summary, a, b, metric) == ("higher" if BETTER[metric] > 0 else "lower")


def claims(summary: dict) -> list[tuple[str, str, str]]:
    """``[(claim, evidence, verdict)]``: the evidence is every comparison the verdict rests on."""
    rows = []

    def row(claim: str, checks: list[tuple[str, str, str]], ok: bool) -> None:
        evidence = "; ".join(
            f"{metric}: {a} {_fmt(summary, a, metric)} vs {b} {_fmt(summary, b, metric)} "
            f"({compare(summary, a, b, metric)})"
            for a, b, metric in checks
        )
        rows.append((claim, evidence, "supported" if ok else "not supported"))

    row("ARC at 8 steps keeps the base model's adherence", [(ARC, BASE, "acc_mean")],
        _kept(summary, ARC, BASE, "acc_mean"))  # fmt: skip
    row("ARC at 8 steps keeps the base model's quality (probe FD)", [(ARC, BASE, "fd")],
        _kept(summary, ARC, BASE, "fd"))  # fmt: skip
    row("ARC is more diverse than CFG sampling", [(ARC, BASE, "diversity")], _better(summary, ARC, BASE, "diversity"))
    nc = "arc-no-contrastive-pingpong8"
    row("removing the contrastive loss lowers adherence (and raises diversity)",
        [(nc, ARC, "acc_mean"), (nc, ARC, "diversity")], _better(summary, ARC, nc, "acc_mean"))  # fmt: skip
    ls = "arc-lsgan-pingpong8"
    row("the relativistic loss beats least squares (better adherence or FD, worse in neither)",
        [(ARC, ls, "acc_mean"), (ARC, ls, "fd")],
        (_better(summary, ARC, ls, "acc_mean") or _better(summary, ARC, ls, "fd"))
        and _kept(summary, ARC, ls, "acc_mean") and _kept(summary, ARC, ls, "fd"))  # fmt: skip
    halvings = list(zip(STEPS[:-1], STEPS[1:], strict=True))
    graceful = all(summary[b]["acc_mean"]["mean"] - summary[a]["acc_mean"]["mean"] <= MAX_LOSS for a, b in halvings)
    row(f"quality degrades gracefully from 8 to 1 step (each halving of steps loses <= {MAX_LOSS} acc_mean)",
        [(a, b, "acc_mean") for a, b in halvings] + [("arc-pingpong1", ARC, "fd")], graceful)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summary", type=Path, help="arc-replicates' summary.json")
    summary = json.loads(parser.parse_args().summary.read_text())["systems"]
    print("| claim | evidence (mean ± 95 % half width) | verdict |\n|---|---|---|")
    for claim, evidence, verdict in claims(summary):
        print(f"| {claim} | {evidence} | {verdict} |")


if __name__ == "__main__":
    main()
