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

import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "figures"


def main(argv: list[str] | None = None) -> int:
    from hrm_agent.experiments.cli import figure_command
    from hrm_agent.experiments.figures import write_learning_curves

    return figure_command(
        "python analysis/learning_curves.py", __doc__, "training run directories", DEFAULT_OUT,
        lambda args: write_learning_curves(args.sources, args.out), argv,
    )


if __name__ == "__main__":
    sys.exit(main())
