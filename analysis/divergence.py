"""Divergence across environment steps: the distance of z^NT at step t to z^NT at step 1 against t, carry vs reset.

    python analysis/divergence.py RUN_DIR_OR_LATENTS_FILE... [--out DIR] [--measure mse|query]

For z_H and z_L, the final state of each step's forward pass compared with
that of the episode's first step; mean and 95 % confidence band over the
episodes (pooled across runs of a variant) that lasted at least t steps.
Reads the runs' ``latents.npz`` (``python -m hrm_agent.evaluate RUN_DIR
--save-latents``); writes ``divergence.png``, ``.svg`` and ``.csv`` (the
plotted numbers) to --out (``divergence_query`` with ``--measure query``,
the HRM-Agent authors' squared distance of the query token summed over the
hidden units; the default is the MSE over all positions). Definitions: ``hrm_agent/analysis.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "figures"


def main(argv: list[str] | None = None) -> int:
    from hrm_agent.analysis import MEASURES, load_latents, write_divergence
    from hrm_agent.experiments.cli import figure_command

    return figure_command(
        "python analysis/divergence.py", __doc__, "run directories with latents.npz, or latents files", DEFAULT_OUT,
        lambda args: write_divergence(load_latents(args.sources), args.out, args.measure), argv,
        extra=lambda p: p.add_argument("--measure", choices=MEASURES, default="mse",
                                       help="mean squared difference over all positions (default) or the authors' "
                                            "squared distance of the query token"),
    )


if __name__ == "__main__":
    sys.exit(main())
