"""arc-replicates: summarise several ``arc-eval`` runs of the same systems (other training seeds, prompts and
sampling seeds) as mean and 95 % Student-t interval per system and metric, with a table and plots
(``arc.metrics.replicates``).

arc-replicates runs/eval/rep*/results.json --out runs/summary
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from arc.cli.errors import debug_requested, report_user_errors
from arc.metrics.replicates import write_summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arc-replicates", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="arc-eval results.json files, one per run")
    parser.add_argument("--out", type=Path, required=True, help="directory for summary.{json,md} and the plots")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def run() -> None:
        table, written = write_summary(args.results, args.out)
        print(table)
        print("wrote " + ", ".join(str(p) for p in written))

    report_user_errors("arc-replicates", run, debug=args.debug or debug_requested())


if __name__ == "__main__":
    main()
