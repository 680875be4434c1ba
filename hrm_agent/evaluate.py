"""Greedy evaluation of a trained agent: ``python -m hrm_agent.evaluate RUN_DIR --episodes 100``.

:func:`evaluate` plays episodes with any policy that has stable-baselines3's ``predict(observation,
state=None, episode_start=None, deterministic=True) -> (actions, state)`` (:class:`Policy`), as SB3's
``evaluate_policy`` does: the HRM agent, the SB3 baselines (``hrm_agent.baselines.sb3.EvalPolicy``),
the BFS oracle. All episodes run side by side (one batched ``predict`` per step), each on its own
environment seeded ``seed + i``, so the same seed evaluates the same episodes. Path efficiency of a
successful episode is the BFS shortest-path length at its start divided by the steps it took (1.0 =
optimal; in a changing world the start's shortest path may become impossible, so it is a guide, not a
bound). Where the envs report them, the result also says where the agent fails: success by the start's
shortest-path length (1-9, 10-19, 20+ moves, and episodes that start with no path), and how many failed
episodes are stuck (on at most 2 cells over their last 20 steps: walking into a wall or closed door, or
stepping back and forth).

With ``record_latents`` (``--save-latents [PATH]``, default ``RUN_DIR/latents.npz``) the same
evaluation also records, for every step, ``z_H`` and ``z_L`` after each of the ``N*T`` recurrent
iterations together with the observation, action, reward, ``changed`` and ``path_changed`` flags and
agent position (format: :mod:`hrm_agent.latents`). Only a policy that offers ``record_latents``
(:class:`LatentRecording`; ``HRMAgent`` does) can be recorded.

With ``intervention="goal"|"door"`` (``--intervention``) the evaluation is a re-planning test: after
``intervention_step`` steps (default 3) of every episode still running, the goal is moved off the
agent's shortest path, or a door is closed on it (:mod:`envs.interventions`); the episodes run with
``change_prob=0``, so the intervention is the only change. The command line (:mod:`hrm_agent.evaluate_cli`)
reports the success rate of the episodes it was applied to (beside the same episodes run again without
it), their steps after it over the new shortest path, and how many recurrent iterations the latent takes
to settle at the step that first sees the new grid, beside the other steps
(:func:`hrm_agent.analysis.settling_iterations`).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np

from envs.interventions import Intervention, static_kwargs

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
    from hrm_agent.latents import Latents


class Policy(Protocol):
    """What :func:`evaluate` plays: stable-baselines3's ``predict``, on a batch of observations.

    ``env_id`` (and optionally ``env_kwargs``) name the env to play, unless :func:`evaluate` is given
    ``env_id``. ``state`` is whatever the policy carries between steps (None at first); rows with
    ``episode_start`` True start a new episode.
    """

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]: ...


class LatentRecording(Protocol):
    """What ``policy.record_latents(n_episodes, positions)`` returns: a context manager that records the
    policy's forward passes while it is entered (``hrm_agent.recording.ForwardRecorder`` for the HRM agent).

    :func:`evaluate` calls ``predict`` once per step, then ``add`` with the step's active rows, what
    they observed and did, and ``finish`` once the episodes ended.
    """

    def __enter__(self) -> "LatentRecording": ...

    def __exit__(self, *exc: Any) -> Any: ...

    def add(self, rows: np.ndarray, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, changed: np.ndarray,
            agent_pos: np.ndarray, step: np.ndarray, path_changed: np.ndarray | None = None) -> None: ...

    def finish(self, episode_success: np.ndarray, metadata: dict[str, Any]) -> "Latents": ...


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
    policy: Policy,
    n_episodes: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    gif_path: str | Path | None = None,
    record_latents: bool = False,
    latent_positions: str = "all",
    intervention: str | None = None,
    intervention_step: int = 3,
    deterministic: bool = True,
    env_id: str | None = None,
) -> EvalResult:
    """Run ``n_episodes`` episodes of ``policy`` (:class:`Policy`) side by side, episode ``i`` seeded ``seed + i``.

    The env is ``env_id``, else ``policy.env_id``; its kwargs ``policy.env_kwargs`` (where the policy has
    them), updated with ``env_kwargs``. With ``gif_path``, the first episode's ``rgb_array`` frames are
    written there as a GIF. With ``record_latents``, ``EvalResult.latents`` holds every step's recurrent
    states and context, recorded through ``policy.record_latents`` (:class:`LatentRecording`, see
    :mod:`hrm_agent.latents`); the episodes played are the same as without it. ``latent_positions``:
    record every position (``"all"``) or the query position only (``"query"``). ``deterministic`` goes to
    ``predict`` (the HRM agent's ``False`` acts at random with probability ``exploration_final_eps``).
    With ``intervention`` (``"goal"``/``"door"``), each episode still running after ``intervention_step``
    steps gets it before its next observation, which is flagged ``changed`` and ``path_changed``
    (:class:`envs.interventions.Intervention`); the envs run without their own changes
    (:func:`envs.interventions.static_kwargs`) unless ``env_kwargs`` says otherwise.
    """
    if intervention is not None and intervention_step < 1:
        raise ValueError(f"intervention_step must be at least 1, got {intervention_step}")
    env_id = env_id or getattr(policy, "env_id", None)
    if env_id is None:
        raise ValueError("evaluate needs the env to play: give env_id, or a policy with an env_id attribute")
    base_kwargs = dict(getattr(policy, "env_kwargs", None) or {})
    kwargs = {**(static_kwargs(base_kwargs) if intervention else base_kwargs), **(env_kwargs or {})}
    recorder = None
    if record_latents:
        if not callable(getattr(policy, "record_latents", None)):
            raise ValueError(f"{type(policy).__name__} records no latents: it has no record_latents method")
        recorder = policy.record_latents(n_episodes, latent_positions)
    envs = []
    for i in range(n_episodes):
        env = gym.make(env_id, **kwargs, **({"render_mode": "rgb_array"} if gif_path and i == 0 else {}))
        envs.append(Intervention(env, intervention, intervention_step) if intervention else env)
    first = [env.reset(seed=seed + i) for i, env in enumerate(envs)]
    obs = np.stack([o for o, _ in first])
    shortest = np.array([info.get("shortest_path", -1) for _, info in first])
    success = np.zeros(n_episodes, dtype=bool)
    length = np.zeros(n_episodes, dtype=np.int64)
    returns = np.zeros(n_episodes)
    active = np.ones(n_episodes, dtype=bool)
    frames = [envs[0].render()] if gif_path else []
    state, episode_start = None, np.ones(n_episodes, dtype=bool)
    action_counts = np.zeros(envs[0].action_space.n, dtype=np.int64)
    # what came with each current observation, for the recording
    changed = np.array([bool(info.get("changed", False)) for _, info in first])
    path_changed = np.array([bool(info.get("path_changed", False)) for _, info in first])
    agent_pos = np.array([info.get("agent_pos", (-1, -1)) for _, info in first], dtype=np.int64).reshape(-1, 2)
    visited: list[list[tuple[int, int]]] = [[tuple(p)] for p in agent_pos.tolist()]  # the cell after each step
    intervened = np.full(n_episodes, -1, dtype=np.int64)
    shortest_after = np.full(n_episodes, -1, dtype=np.int64)
    with recorder if recorder is not None else contextlib.nullcontext():
        while active.any():
            # finished episodes stay in the batch (keeping shapes fixed); their actions are ignored
            actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
            episode_start = np.zeros(n_episodes, dtype=bool)
            rows = np.flatnonzero(active)
            np.add.at(action_counts, np.asarray(actions)[rows].astype(np.int64), 1)
            # fancy indexing copies: the step loop below overwrites these arrays
            before = (obs[rows], changed[rows], path_changed[rows], agent_pos[rows], length[rows])
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
                elif info.get("intervened", False):
                    intervened[i], shortest_after[i] = length[i], info["shortest_path"]
            if recorder is not None:
                step_obs, step_changed, step_path_changed, step_pos, step_index = before
                recorder.add(rows, step_obs, actions[rows], rewards[rows], step_changed, step_pos, step_index,
                             path_changed=step_path_changed)
    for env in envs:
        env.close()
    if gif_path:
        write_gif(gif_path, frames)
    latents = None
    if recorder is not None:
        latents = recorder.finish(success, {"env_id": env_id, "env_kwargs": kwargs, "eval_seed": seed,
                                            **({"intervention": intervention} if intervention else {})})
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


if __name__ == "__main__":  # the command line lives apart: nothing in this module loads an agent
    from hrm_agent.evaluate_cli import main

    sys.exit(main())
