"""Greedy evaluation of a trained agent: ``python -m hrm_agent.evaluate RUN_DIR --episodes 100``.

The command line of :mod:`hrm_agent.evaluate`: loads the run's HRM agent (its final model, else its
last checkpoint, or a model file), plays the episodes asked for (``--test``: the test set, SPEC §5b;
``--validation``: the run's own evaluation episodes; else ``--episodes``/``--seed``) with
:func:`hrm_agent.evaluate.evaluate` and prints, and with ``--json`` writes, what it found. With
``--save-latents`` it writes the latents file, with ``--intervention`` it runs the re-planning test
beside a control run of the same episodes without it. Every output is checked before any episode is
played; a user mistake ends with one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hrm_agent.evaluate import (
    ACTION_NAMES, EVAL_SEED_OFFSET, STUCK_CELLS, STUCK_WINDOW, TEST_EPISODES, TEST_SEED, evaluate,
)
from hrm_agent.runs import UsageError, one_line_errors


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hrm_agent.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory (its final model, else last checkpoint) or a model file")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to run (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="episode i is seeded seed + i (default 0)")
    parser.add_argument("--test", action="store_true",
                        help=f"play the test set, the episodes final figures are reported on: {TEST_EPISODES} "
                             f"episodes seeded {TEST_SEED:,} + i, the same for every agent (with --episodes N, "
                             "its first N; excludes --seed)")
    parser.add_argument("--validation", action="store_true",
                        help="play the run's own validation episodes, those its evaluations during training "
                             "played (eval_episodes episodes seeded 1,000,000 + its seed + i; excludes --episodes "
                             "and --seed)")
    parser.add_argument("--gif", metavar="PATH", help="write the first episode's frames as an animated GIF")
    parser.add_argument("--save-latents", nargs="?", const="", default=None, metavar="PATH",
                        help="record every step's z_H/z_L iterations (format: hrm_agent.latents) to PATH "
                             "(default RUN_DIR/latents.npz)")
    parser.add_argument("--latent-positions", choices=["all", "query"], default="all",
                        help="with --save-latents: every position's state (default) or only the query "
                             "position's, the HRM's read-out token (1/S of the size)")
    parser.add_argument("--intervention", choices=["goal", "door"],
                        help="re-planning test: move the goal off the agent's shortest path, or close a door on it, "
                             "after --intervention-step steps (episodes run with change_prob=0)")
    parser.add_argument("--intervention-step", type=int, default=3, metavar="K",
                        help="with --intervention: the step after which it happens (default 3)")
    parser.add_argument("--stochastic", action="store_true",
                        help="act at random with probability exploration_final_eps, as during training, instead "
                             "of greedily")
    parser.add_argument("--json", metavar="PATH", help="also write the printed figures to PATH as JSON")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.test and args.validation:
        parser.error("--test and --validation are two sets of episodes; pick one")
    if args.validation and (args.episodes is not None or args.seed is not None):
        parser.error("--validation plays the run's own evaluation episodes; drop --episodes/--seed")
    if args.test:
        if args.seed is not None:
            parser.error("--test plays the fixed test set; drop --seed")
        if args.episodes is not None and not 1 <= args.episodes <= TEST_EPISODES:
            parser.error(f"--test has {TEST_EPISODES} episodes; --episodes must be between 1 and {TEST_EPISODES}")
        args.episodes = TEST_EPISODES if args.episodes is None else args.episodes
        args.seed = TEST_SEED
    if not args.validation:
        args.episodes = 100 if args.episodes is None else args.episodes
        args.seed = 0 if args.seed is None else args.seed
    if args.episodes is not None and args.episodes < 1:
        parser.error("--episodes must be at least 1")
    if args.intervention_step < 1:
        parser.error("--intervention-step must be at least 1")
    if args.latent_positions != "all" and args.save_latents is None and args.intervention is None:
        parser.error("--latent-positions applies to the latents --save-latents records; add --save-latents")
    # the outputs, checked before any episode is played
    from hrm_agent import latents
    from hrm_agent.runs import check_writable

    source = Path(args.run)
    run_dir = source if source.is_dir() else source.parent
    if run_dir.name == "checkpoints":  # a run's checkpoint file: the run directory
        run_dir = run_dir.parent
    latents_path = Path(args.save_latents) if args.save_latents else run_dir / latents.DEFAULT_NAME
    for option, path in (("--gif", args.gif), ("--json", args.json),
                         ("--save-latents", latents_path if args.save_latents is not None else None)):
        if path is not None:
            check_writable(path, option)

    from envs.interventions import static_kwargs
    from hrm_agent.agent import HRMAgent
    from hrm_agent.analysis import settling_table
    from hrm_agent.experiments.stats import format_mean_se, mean_se  # "m ± se", "m" alone, "–" for none

    try:
        agent = HRMAgent.load(args.run, device=args.device)
    except ValueError as err:  # CheckpointError included: a missing, foreign or damaged file
        raise UsageError(str(err)) from None
    if args.validation:  # the episodes of the run's evaluations during training
        args.episodes, args.seed = agent.config.eval_episodes, agent.seed + EVAL_SEED_OFFSET
    # an intervention's settling is read from the latents, so it records them (kept only with --save-latents)
    result = evaluate(agent, args.episodes, seed=args.seed, gif_path=args.gif,
                      record_latents=args.save_latents is not None or args.intervention is not None,
                      latent_positions=args.latent_positions, intervention=args.intervention,
                      intervention_step=args.intervention_step, deterministic=not args.stochastic)

    report: dict[str, Any] = {**result.summary(), "run": str(args.run), "env": agent.env_id,
                              "variant": agent.variant, "episodes": args.episodes, "seed": args.seed,
                              "episode_set": "validation" if args.validation else (
                                  ("test" if args.episodes == TEST_EPISODES else f"test, first {args.episodes}")
                                  if args.test else "custom"),
                              "policy": "stochastic" if args.stochastic else "greedy"}
    print(f"env: {agent.env_id}  variant: {agent.variant} z  episodes: {args.episodes}"
          + (("  (the test set)" if args.episodes == TEST_EPISODES else "  (the test set's first episodes)")
             if args.test else "  (its validation episodes)" if args.validation else "")
          + (f"  policy: random action with probability {agent.config.exploration_final_eps}"
             if args.stochastic else ""))
    print(f"success rate:    {format_mean_se(result.success.astype(float), 3)}")
    print(f"mean length:     {format_mean_se(result.length.astype(float), 2)}")
    print(f"path efficiency: {format_mean_se(result.path_efficiency, 3)}"
          f"  (successful episodes: {int(result.success.sum())}"
          + ("; against the shortest path at the start, before the intervention)" if args.intervention else ")"))
    shares = result.action_shares()
    names = ACTION_NAMES if len(shares) == len(ACTION_NAMES) else [str(a) for a in range(len(shares))]
    print(("actions:         " if args.stochastic else "greedy actions:  ") + "  ".join(f"{a} {share:.0%}" for a, share in zip(names, shares)) +
          ("  (one action on over 90 % of steps: a collapsed policy)" if shares.max() > 0.9 else ""))
    # where it fails: how far the goal was at the start, and whether the failures are stuck in place
    by_distance = result.success_by_distance()
    if by_distance:
        report["success_by_start_distance"] = {label: {"success_rate": rate, "episodes": n}
                                               for label, rate, n in by_distance}
        print("by start distance: " + "  ".join(f"{label}: {rate:.2f} ({n})" for label, rate, n in by_distance)
              + "  (BFS moves at the start, none: no path then; success rate (episodes))")
    if result.late_cells is not None and (result.late_cells >= 0).all():
        failed, stuck = int((~result.success).sum()), int(result.stuck.sum())
        in_place = int((result.stuck & (result.late_cells == 1)).sum())
        back_and_forth = stuck - in_place
        report.update(failed=failed, stuck=stuck, stuck_in_place=in_place, stuck_back_and_forth=back_and_forth)
        print(f"failed episodes: {failed}, stuck: {stuck} ({in_place} in place, walking into a wall or "
              f"door; {back_and_forth} back and forth)  (stuck: on at most {STUCK_CELLS} cells "
              f"over its last {STUCK_WINDOW} steps)")
    if args.intervention:
        # the control: the same episodes, also without dynamics, and no intervention
        control = evaluate(agent, args.episodes, seed=args.seed, env_kwargs=static_kwargs(agent.env_kwargs),
                           deterministic=not args.stochastic)
        applied = result.intervened
        report.update(intervention=args.intervention, intervention_step=args.intervention_step,
                      **result.intervention_summary())
        report["success_without"], report["success_without_se"] = mean_se(control.success[applied].astype(float))
        print(f"intervention:    {args.intervention} after step {args.intervention_step}, applied in "
              f"{int(applied.sum())} of {args.episodes} episodes (the others had ended or had no cell for it)")
        print(f"success after:   {format_mean_se(result.success[applied].astype(float), 3)}  (the same episodes "
              f"without it: {format_mean_se(control.success[applied].astype(float), 3)})")
        print(f"extra steps:     {format_mean_se(result.extra_steps.astype(float), 2)}  (after it, over the new "
              f"shortest path; episodes that reached the goal: {len(result.extra_steps)})")
        rows = {(r["level"], r["steps"]): r for r in settling_table([result.latents])}
        for level in ("z_H", "z_L"):
            first, other = rows[(level, "intervention")], rows[(level, "other")]
            report[f"settle_{level}"], report[f"settle_{level}_other"] = first["mean"], other["mean"]
            print(f"settle {level}:      {first['mean']:.2f} iterations at the step that first sees it, "
                  f"{other['mean']:.2f} at the other steps (n = {first['n']}, {other['n']})")
        print("                 (iterations until the latent stays within 10 % of the way from the initial "
              "state to its final value)")
    if args.gif:
        print(f"wrote {args.gif}")
    if args.json:
        from hrm_agent.checkpoint import atomic_write

        text = json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in report.items()},
                          indent=2)
        atomic_write(Path(args.json), lambda f: f.write((text + "\n").encode()))  # one_line_errors reports a failure
        print(f"wrote {args.json}")
    if result.latents is not None and args.save_latents is not None:
        path = latents_path
        result.latents.metadata.update(source=str(source), run=run_dir.resolve().name)
        latents.save(path, result.latents)
        print(f"wrote {path}: {result.latents.n_steps} steps x {result.latents.iterations} iterations "
              f"({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
