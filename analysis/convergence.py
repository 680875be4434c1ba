"""Convergence within a forward pass: the distance of z^i to z^NT against iteration i, for z_H and z_L.

    python analysis/convergence.py RUN_DIR_OR_LATENTS_FILE... [--out DIR] [--split path|any]
        [--measure mse|query] [--include-first-step]

Four conditions: carry z / reset z x environment changed / unchanged at the
step. By default (the HRM-Agent authors' protocol) a step counts as changed
only when the change touched the agent's shortest path; ``--split any``
counts every change of a wall or door. ``--measure mse`` (default) is the mean
over all positions and hidden units of the squared difference; ``--measure
query`` is the authors': the squared difference of the query-token vector
summed over the hidden units. Mean and 95 % confidence band over all steps,
pooling the episodes and runs of each variant; each episode's first step is
left out (both variants start it from the initial state) unless
--include-first-step. Reads the runs' ``latents.npz`` (``python -m
hrm_agent.evaluate RUN_DIR --save-latents``); writes ``convergence.png``,
``.svg`` and ``.csv`` (the plotted numbers) to --out, named
``convergence_any-change``/``convergence_query`` for the other views.
Definitions: ``hrm_agent/analysis.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "figures"


def main(argv: list[str] | None = None) -> int:
    from hrm_agent.analysis import load_latents, write_convergence
    from hrm_agent.experiments.cli import figure_command

    return figure_command(
        "python analysis/convergence.py", __doc__, "run directories with latents.npz, or latents files", DEFAULT_OUT,
        lambda args: write_convergence(load_latents(args.sources), args.out, args.include_first_step, args.split,
                                       args.measure), argv,
        extra=options,
    )


def options(parser: argparse.ArgumentParser) -> None:
    from hrm_agent.analysis import MEASURES, SPLITS

    parser.add_argument("--include-first-step", action="store_true", help="keep each episode's first step")
    parser.add_argument("--split", choices=SPLITS, default="path",
                        help="a step counts as changed when the change touched the shortest path (default) or "
                             "when any wall or door changed")
    parser.add_argument("--measure", choices=MEASURES, default="mse",
                        help="mean squared difference over all positions (default) or the authors' squared "
                             "distance of the query token")


if __name__ == "__main__":
    sys.exit(main())
