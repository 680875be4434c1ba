"""Greedy evaluation of a trained agent: ``python -m hrm_agent.evaluate RUN_DIR --episodes 100``.

All episodes run side by side (one batched forward pass per step), each on
its own environment seeded ``seed + i``, so the same seed evaluates the same
episodes. Path efficiency of a successful episode is the BFS shortest-path
length at its start divided by the steps it took (1.0 = optimal; in a changing
world the start's shortest path may become impossible, so it is a guide, not a
bound). Where the envs report them, the printout also says where the agent
fails: success by the start's shortest-path length (1-9, 10-19, 20+ moves,
and episodes that start with no path), and how many failed episodes are
stuck (on at most 2 cells over their last 20 steps: walking into a wall or
closed door, or stepping back and forth).

With ``--save-latents [PATH]`` (default ``RUN_DIR/latents.npz``) the same
evaluation also records, for every step, ``z_H`` and ``z_L`` after each of the
``N*T`` recurrent iterations together with the observation, action, reward,
``changed`` and ``path_changed`` flags and agent position (format: :mod:`hrm_agent.latents`).

With ``--intervention goal|door`` the evaluation is a re-planning test: after
``--intervention-step K`` steps (default 3) of every episode still running, the
goal is moved off the agent's shortest path, or a door is closed on it (see
``DynamicGridEnv.intervene``); the episodes run with ``change_prob=0``, so the
intervention is the only change. It reports the success rate of the episodes
it was applied to (beside the same episodes run again without it), their steps
after it over the new shortest path, and how
many recurrent iterations the latent takes to settle at the step that first
sees the new grid, beside the other steps (:func:`hrm_agent.analysis.settling_iterations`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from hrm_agent.runs import one_line_errors

ACTION_NAMES = ("up", "right", "down", "left")  # actions 0..3 of our envs (envs/base.py)
# Start distances (BFS moves) the evaluation report groups episodes by: 1-9, 10-19, 20 and more.
DISTANCE_BINS = (1, 10, 20)
# A failed episode is "stuck" when its last STUCK_WINDOW steps stay on at most STUCK_CELLS cells:
# walking into a wall or closed door, or stepping back and forth.
STUCK_WINDOW, STUCK_CELLS = 20, 2
# The test set (SPEC §5b): the episodes every final figure is reported on, never used to choose anything,
# the same episodes for every learner and seed (paired comparisons). Episode i is seeded TEST_SEED + i, a
# range nothing else uses (training envs are seeded from the run's seed, the validation evaluations during
# training 1,000,000 + seed + i, the re-planning runs of the results 3,000,000 + i).
TEST_SEED = 10_000_000
EVAL_SEED_OFFSET = 1_000_000  # validation episodes during training: seed + EVAL_SEED_OFFSET + i
TEST_EPISODES = 1024

if TYPE_CHECKING:
    from hrm_agent.agent import HRMAgent
    from hrm_agent.latents import Latents


@dataclass
class EvalResult:
    """Per-episode outcomes of an evaluation, arrays of shape ``(episodes,)``."""

    success: np.ndarray  # bool
    length: np.ndarray  # int, steps taken
    episode_return: np.ndarray  # float
    start_shortest_path: np.ndarray  # int, BFS length at reset (-1: no path then, or not reported)
    latents: "Latents | None" = None  # with ``record_latents``: every step's z_H/z_L iterations and context
    action_counts: np.ndarray | None = None  # (n_actions,) greedy actions taken, over all steps of all episodes
    intervention_step: np.ndarray | None = None  # with ``intervention``: the step it followed, -1 where not applied
    shortest_after: np.ndarray | None = None  # with ``intervention``: BFS moves to the goal just after it, else -1
    cells_visited: np.ndarray | None = None  # int, distinct cells the agent stood on (-1: no ``agent_pos``)
    late_cells: np.ndarray | None = None  # int, distinct cells over the last ``STUCK_WINDOW`` steps (-1: none)

    def action_shares(self) -> np.ndarray:
        """Fraction of steps on which each action was chosen (a collapsed policy puts ~1 on one action)."""
        assert self.action_counts is not None
        return self.action_counts / max(int(self.action_counts.sum()), 1)

    @property
    def path_efficiency(self) -> np.ndarray:
        """``shortest / taken`` for successful episodes with a known shortest path."""
        ok = self.success & (self.start_shortest_path > 0)
        return self.start_shortest_path[ok] / self.length[ok]

    def summary(self) -> dict[str, float]:
        """Means and standard errors (``nan`` where undefined)."""
        from hrm_agent.experiments.stats import mean_se

        out: dict[str, float] = {"episodes": float(len(self.success))}
        for name, values in (
            ("success_rate", self.success.astype(float)),
            ("mean_ep_length", self.length.astype(float)),
            ("mean_return", self.episode_return),
            ("path_efficiency", self.path_efficiency),
        ):
            out[name], out[f"{name}_se"] = mean_se(values)
        return out

    def success_by_distance(self, bins: tuple[int, ...] = DISTANCE_BINS) -> list[tuple[str, float, int]]:
        """``(label, success rate, episodes)`` per range of the start's shortest path (``bins``: lower
        edges; the last range is open), then ``"none"`` for episodes that started with no path to the
        goal (shortest path -1: closed doors cut it off; the dynamic doors may open one later). Empty
        ranges are left out, and everything when no episode reports a shortest path."""
        d = self.start_shortest_path
        if (d < 0).all():
            return []
        groups = [(f"{lo}-{hi - 1}", (d >= lo) & (d < hi)) for lo, hi in zip(bins, bins[1:])]
        groups += [(f"{bins[-1]}+", d >= bins[-1]), ("none", d < 0)]
        return [(label, float(self.success[m].mean()), int(m.sum())) for label, m in groups if m.any()]

    @property
    def stuck(self) -> np.ndarray:
        """(episodes,) bool: failed, and on at most ``STUCK_CELLS`` cells over its last ``STUCK_WINDOW``
        steps (False where the env reports no ``agent_pos``)."""
        if self.late_cells is None:
            return np.zeros(len(self.success), dtype=bool)
        return ~self.success & (self.late_cells >= 1) & (self.late_cells <= STUCK_CELLS)

    @property
    def intervened(self) -> np.ndarray:
        """(episodes,) bool: the intervention was applied to the episode."""
        if self.intervention_step is None or self.shortest_after is None:
            raise ValueError("this evaluation ran without an intervention")
        return self.intervention_step >= 0

    @property
    def extra_steps(self) -> np.ndarray:
        """Steps taken after the intervention minus the shortest path then, for each episode it was
        applied to that reached the goal."""
        reached = self.intervened & self.success
        return (self.length - self.intervention_step - self.shortest_after)[reached]

    def intervention_summary(self) -> dict[str, float]:
        """Over the episodes the intervention was applied to: ``applied`` (their number),
        ``success_after`` and ``extra_steps`` (over those that reached the goal), means and standard errors."""
        from hrm_agent.experiments.stats import mean_se

        out = {"applied": float(self.intervened.sum())}
        out["success_after"], out["success_after_se"] = mean_se(self.success[self.intervened].astype(float))
        out["extra_steps"], out["extra_steps_se"] = mean_se(self.extra_steps.astype(float))
        return out


def evaluate(
    agent: "HRMAgent",
    n_episodes: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    gif_path: str | Path | None = None,
    record_latents: bool = False,
    latent_positions: str = "all",
    intervention: str | None = None,
    intervention_step: int = 3,
    deterministic: bool = True,
) -> EvalResult:
    """Run ``n_episodes`` greedy episodes of the agent's env (``env_kwargs`` override its kwargs).

    With ``gif_path``, the first episode's ``rgb_array`` frames are written there as a GIF.
    With ``record_latents``, ``EvalResult.latents`` holds every step's recurrent states (taken
    from the trace of the forward pass that chose the action) and context, see
    :mod:`hrm_agent.latents`; the episodes played are the same as without it.
    ``latent_positions``: record every position (``"all"``) or the query position only (``"query"``).
    ``deterministic=False`` acts at random with probability ``exploration_final_eps`` (``HRMAgent.predict``).
    With ``intervention`` (``"goal"``/``"door"``), each episode still running after ``intervention_step``
    steps gets it (``DynamicGridEnv.intervene``) before its next observation, which is flagged ``changed``
    and ``path_changed``; the envs run without their own changes (``envs.base.static_kwargs``) unless
    ``env_kwargs`` says otherwise.
    """
    import torch

    from envs.base import static_kwargs
    from hrm_agent.latents import LatentRecorder, record_traces

    if intervention is not None and intervention_step < 1:
        raise ValueError(f"intervention_step must be at least 1, got {intervention_step}")
    kwargs = {**(static_kwargs(agent.env_kwargs) if intervention else agent.env_kwargs), **(env_kwargs or {})}
    envs = [
        gym.make(agent.env_id, **kwargs, **({"render_mode": "rgb_array"} if gif_path and i == 0 else {}))
        for i in range(n_episodes)
    ]
    first = [env.reset(seed=seed + i) for i, env in enumerate(envs)]
    obs = np.stack([o for o, _ in first])
    shortest = np.array([info.get("shortest_path", -1) for _, info in first])
    success = np.zeros(n_episodes, dtype=bool)
    length = np.zeros(n_episodes, dtype=np.int64)
    returns = np.zeros(n_episodes)
    active = np.ones(n_episodes, dtype=bool)
    frames = [envs[0].render()] if gif_path else []
    state, episode_start = None, np.ones(n_episodes, dtype=bool)
    recorder = LatentRecorder(n_episodes, latent_positions) if record_latents else None
    action_counts = np.zeros(envs[0].action_space.n, dtype=np.int64)
    # what came with each current observation, for the recording
    changed = np.array([bool(info.get("changed", False)) for _, info in first])
    path_changed = np.array([bool(info.get("path_changed", False)) for _, info in first])
    agent_pos = np.array([info.get("agent_pos", (-1, -1)) for _, info in first], dtype=np.int64).reshape(-1, 2)
    visited: list[list[tuple[int, int]]] = [[tuple(p)] for p in agent_pos.tolist()]  # the cell after each step
    intervened = np.full(n_episodes, -1, dtype=np.int64)
    shortest_after = np.full(n_episodes, -1, dtype=np.int64)
    with record_traces(agent.online) if recorder is not None else contextlib.nullcontext([]) as traces:
        while active.any():
            # finished episodes stay in the batch (keeping shapes fixed); their actions are ignored
            actions, state = agent.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
            episode_start = np.zeros(n_episodes, dtype=bool)
            rows = np.flatnonzero(active)
            np.add.at(action_counts, np.asarray(actions)[rows].astype(np.int64), 1)
            # fancy indexing copies: the step loop below overwrites these arrays
            before = (
                (obs[rows], changed[rows], path_changed[rows], agent_pos[rows], length[rows])
                if recorder is not None else None
            )
            rewards = np.zeros(n_episodes)
            for i in rows:
                obs[i], rewards[i], terminated, truncated, info = envs[i].step(int(actions[i]))
                returns[i] += rewards[i]
                length[i] += 1
                changed[i] = bool(info.get("changed", False))
                path_changed[i] = bool(info.get("path_changed", False))
                agent_pos[i] = info.get("agent_pos", (-1, -1))
                visited[i].append(tuple(agent_pos[i].tolist()))
                if gif_path and i == 0:
                    frames.append(envs[0].render())
                if terminated or truncated:
                    active[i] = False
                    success[i] = bool(info.get("is_success", terminated and rewards[i] > 0))
                elif intervention is not None and length[i] == intervention_step:
                    env = envs[i].unwrapped
                    if env.intervene(intervention):
                        obs[i] = env.gen_obs()
                        changed[i] = path_changed[i] = True
                        intervened[i] = length[i]
                        shortest_after[i] = env.distances()[agent_pos[i, 1], agent_pos[i, 0]]
                        if gif_path and i == 0:
                            frames[-1] = envs[0].render()
            if recorder is not None:
                (trace,) = traces  # exactly one forward pass per step
                traces.clear()
                step_obs, step_changed, step_path_changed, step_pos, step_index = before
                tokens = torch.from_numpy(agent.tokenizer(step_obs)).flatten(1).to(agent.device)
                read = agent.online.readout_index(tokens)  # the positions the Q head read
                recorder.add(trace, rows, step_obs, actions[rows], rewards[rows], step_changed, step_pos, step_index,
                             path_changed=step_path_changed, read_positions=read.cpu().numpy())
    for env in envs:
        env.close()
    if gif_path:
        write_gif(gif_path, frames)
    latents = None
    if recorder is not None:
        cfg = agent.model_config
        latents = recorder.finish(
            success,
            agent.online.H_init.float().cpu().numpy(),
            agent.online.L_init.float().cpu().numpy(),
            {
                "variant": agent.variant,
                "env_id": agent.env_id,
                "env_kwargs": kwargs,
                "seed": agent.seed,
                "eval_seed": seed,
                "H_cycles": cfg.H_cycles,
                "L_cycles": cfg.L_cycles,
                "segments": cfg.segments,
                "core": cfg.core,
                "carry": agent.config.carry if agent.config.carry_z else None,
                "hidden_size": cfg.hidden_size,
                "total_seq_len": cfg.total_seq_len,
                "forward_dtype": cfg.forward_dtype,
                **({"intervention": intervention} if intervention else {}),
            },
        )
        if intervention:
            latents.intervention_step = intervened
    reported = agent_pos[:, 0] >= 0
    cells = np.where(reported, [len(set(v)) for v in visited], -1)
    late = np.where(reported, [len(set(v[-STUCK_WINDOW:])) for v in visited], -1)
    return EvalResult(success, length, returns, shortest, latents, action_counts,
                      intervened if intervention else None, shortest_after if intervention else None,
                      cells_visited=cells, late_cells=late)


def write_gif(path: str | Path, frames: list[np.ndarray], fps: int = 4) -> None:
    """Write RGB frames ``(H, W, 3) uint8`` as an animated GIF, atomically."""
    from PIL import Image

    from hrm_agent.checkpoint import atomic_write

    images = [Image.fromarray(f) for f in frames]
    atomic_write(
        path,
        lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0),
    )


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

    from envs.base import static_kwargs
    from hrm_agent.agent import HRMAgent
    from hrm_agent.analysis import settling_table
    from hrm_agent.experiments.stats import format_mean_se, mean_se  # "m ± se", "m" alone, "–" for none
    from hrm_agent.checkpoint import CheckpointError

    try:
        agent = HRMAgent.load(args.run, device=args.device)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.validation:  # the episodes of the run's evaluations during training (HRMAgent._evaluate)
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
        try:
            atomic_write(Path(args.json), lambda f: f.write((text + "\n").encode()))
        except OSError as err:
            print(f"error: cannot write {args.json}: {err.strerror or err}", file=sys.stderr)
            return 2
        print(f"wrote {args.json}")
    if result.latents is not None and args.save_latents is not None:
        path = latents_path
        result.latents.metadata.update(source=str(source), run=run_dir.resolve().name)
        try:
            latents.save(path, result.latents)
        except OSError as err:
            print(f"error: cannot write {path}: {err.strerror or err}", file=sys.stderr)
            return 2
        print(f"wrote {path}: {result.latents.n_steps} steps x {result.latents.iterations} iterations "
              f"({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
