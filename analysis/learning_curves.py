"""Learning curves: proportion of episodes reaching the goal against env steps, one line per run.

    python analysis/learning_curves.py RUN_DIR... [--out DIR]

Reads ``eval/success_rate`` (periodic greedy evaluation) and
``rollout/success_rate`` (the last 100 training episodes) from each run's
TensorBoard event files, and env/variant/seed from its ``config.yaml``; lines
are coloured by variant (carry z / reset z), one row of panels per env.
Writes ``learning_curves.png``, ``.svg`` and ``.csv`` (the plotted numbers)
to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "figures"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python analysis/learning_curves.py", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training run directories")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    from hrm_agent.analysis import AnalysisError, write_learning_curves

    try:
        paths = write_learning_curves(args.runs, args.out)
    except (AnalysisError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
