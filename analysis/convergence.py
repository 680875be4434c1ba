"""Convergence within a forward pass: MSE(z^i, z^NT) against iteration i, for z_H and z_L.

    python analysis/convergence.py RUN_DIR_OR_LATENTS_FILE... [--out DIR]

Four conditions: carry z / reset z x environment changed / unchanged at the
step (the walls or doors changed in the env step that produced the
observation); mean and 95 % confidence band over all steps, pooling the
episodes and runs of each variant. Each episode's first step is left out
(both variants start it from the initial state) unless --include-first-step.
Reads the runs' ``latents.npz`` (``python -m hrm_agent.evaluate RUN_DIR
--save-latents``); writes ``convergence.png``, ``.svg`` and ``.csv`` (the
plotted numbers) to --out. Definitions: ``hrm_agent/analysis.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "figures"


def main(argv: list[str] | None = None) -> int:
    from hrm_agent.analysis import figure_command, load_latents, write_convergence

    return figure_command(
        "python analysis/convergence.py", __doc__, "run directories with latents.npz, or latents files", DEFAULT_OUT,
        lambda args: write_convergence(load_latents(args.sources), args.out, args.include_first_step), argv,
        extra=lambda p: p.add_argument("--include-first-step", action="store_true",
                                       help="keep each episode's first step"),
    )


if __name__ == "__main__":
    sys.exit(main())
