"""All figures for a set of training runs: learning curves, latent convergence and divergence.

    python analysis/make_figures.py RUN_DIR... --out DIR

Learning curves come from every run's TensorBoard event files; the runs that
hold a ``latents.npz`` (``python -m hrm_agent.evaluate RUN_DIR --save-latents``)
feed the convergence and divergence figures, which are skipped, with a note,
when none does. Writes to --out: ``learning_curves``, ``convergence`` (steps
split by whether the change touched the shortest path, the authors' protocol),
``convergence_any-change`` (split by any change), ``convergence_query`` and
``divergence_query`` (the authors' measure, the query token's squared
distance), ``convergence_read`` and ``divergence_read`` (at the positions the Q
head read, where every recording holds them) and ``divergence``, each as
``.png``, ``.svg`` and ``.csv`` (the plotted numbers).
The single figures: ``analysis/learning_curves.py``, ``convergence.py``,
``divergence.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "figures"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python analysis/make_figures.py", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="training run directories")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    from hrm_agent import analysis
    from hrm_agent.experiments.figures import existing_run_dir, write_learning_curves
    from hrm_agent.latents import DEFAULT_NAME
    from hrm_agent.runs import UsageError

    try:
        runs = [existing_run_dir(run) for run in args.runs]
        with_latents = [run for run in runs if (run / DEFAULT_NAME).is_file()]
        sets = analysis.load_latents(with_latents)
        paths = write_learning_curves(runs, args.out)
        # the authors' split (a change that touched the shortest path) where every recording has it
        split = "path" if all(s.path_changed is not None for s in sets) else "any"
        if sets:
            paths += analysis.write_convergence(sets, args.out, split=split)
            if split == "path":
                paths += analysis.write_convergence(sets, args.out, split="any")
            paths += analysis.write_convergence(sets, args.out, split=split, measure="query")
            paths += analysis.write_divergence(sets, args.out)
            paths += analysis.write_divergence(sets, args.out, measure="query")
            if all(s.read_positions is not None and s.positions == "all" for s in sets):
                paths += analysis.write_convergence(sets, args.out, split=split, measure="read")
                paths += analysis.write_divergence(sets, args.out, measure="read")
    except (UsageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not sets:
        print(f"note: no run holds {DEFAULT_NAME}: convergence and divergence skipped "
              "(record latents with: python -m hrm_agent.evaluate RUN_DIR --save-latents)")
    else:
        print(f"latents from {len(sets)} of {len(runs)} runs: {', '.join(run.name for run in with_latents)}")
        query_only = [run.name for run, s in zip(with_latents, sets) if s.positions == "query"]
        if query_only:
            print(f"note: {', '.join(query_only)} recorded only the query position (--latent-positions query): "
                  "their convergence and divergence (mse) measure that one position, not the mean over all")
        if split == "any":
            print("note: a recording has no path_changed (an older version): convergence split by any change")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
