"""Greedy evaluation of a trained agent: ``python -m hrm_agent.evaluate RUN_DIR --episodes 100``.

All episodes run side by side (one batched forward pass per step), each on
its own environment seeded ``seed + i``, so the same seed evaluates the same
episodes. Path efficiency of a successful episode is the BFS shortest-path
length at its start divided by the steps it took (1.0 = optimal; in a changing
world the start's shortest path may become impossible, so it is a guide, not a
bound).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from hrm_agent.agent import HRMAgent


@dataclass
class EvalResult:
    """Per-episode outcomes of an evaluation, arrays of shape ``(episodes,)``."""

    success: np.ndarray  # bool
    length: np.ndarray  # int, steps taken
    episode_return: np.ndarray  # float
    start_shortest_path: np.ndarray  # int, BFS length at reset (-1 if the env does not report it)

    @property
    def path_efficiency(self) -> np.ndarray:
        """``shortest / taken`` for successful episodes with a known shortest path."""
        ok = self.success & (self.start_shortest_path > 0)
        return self.start_shortest_path[ok] / self.length[ok]

    def summary(self) -> dict[str, float]:
        """Means and standard errors (``nan`` where undefined)."""

        def mean_se(x: np.ndarray) -> tuple[float, float]:
            if len(x) == 0:
                return float("nan"), float("nan")
            se = float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
            return float(np.mean(x)), se

        out: dict[str, float] = {"episodes": float(len(self.success))}
        for name, values in (
            ("success_rate", self.success.astype(float)),
            ("mean_ep_length", self.length.astype(float)),
            ("mean_return", self.episode_return),
            ("path_efficiency", self.path_efficiency),
        ):
            out[name], out[f"{name}_se"] = mean_se(values)
        return out


def evaluate(
    agent: "HRMAgent",
    n_episodes: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    gif_path: str | Path | None = None,
) -> EvalResult:
    """Run ``n_episodes`` greedy episodes of the agent's env (``env_kwargs`` override its kwargs).

    With ``gif_path``, the first episode's ``rgb_array`` frames are written there as a GIF.
    """
    kwargs = {**agent.env_kwargs, **(env_kwargs or {})}
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
    while active.any():
        # finished episodes stay in the batch (keeping shapes fixed); their actions are ignored
        actions, state = agent.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        episode_start = np.zeros(n_episodes, dtype=bool)
        for i in np.flatnonzero(active):
            obs[i], reward, terminated, truncated, info = envs[i].step(int(actions[i]))
            returns[i] += reward
            length[i] += 1
            if gif_path and i == 0:
                frames.append(envs[0].render())
            if terminated or truncated:
                active[i] = False
                success[i] = bool(info.get("is_success", terminated and reward > 0))
    for env in envs:
        env.close()
    if gif_path:
        write_gif(gif_path, frames)
    return EvalResult(success, length, returns, shortest)


def write_gif(path: str | Path, frames: list[np.ndarray], fps: int = 4) -> None:
    """Write RGB frames ``(H, W, 3) uint8`` as an animated GIF, atomically."""
    from PIL import Image

    from hrm_agent.checkpoint import atomic_write

    images = [Image.fromarray(f) for f in frames]
    atomic_write(
        path,
        lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hrm_agent.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory (its final model, else last checkpoint) or a model file")
    parser.add_argument("--episodes", type=int, default=100, help="episodes to run (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="episode i is seeded seed + i (default 0)")
    parser.add_argument("--gif", metavar="PATH", help="write the first episode's frames as an animated GIF")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")

    from hrm_agent.agent import HRMAgent
    from hrm_agent.checkpoint import CheckpointError

    try:
        agent = HRMAgent.load(args.run, device=args.device)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    s = evaluate(agent, args.episodes, seed=args.seed, gif_path=args.gif).summary()
    print(f"env: {agent.env_id}  variant: {agent.variant} z  episodes: {args.episodes}")
    print(f"success rate:    {s['success_rate']:.3f} ± {s['success_rate_se']:.3f}")
    print(f"mean length:     {s['mean_ep_length']:.2f} ± {s['mean_ep_length_se']:.2f}")
    print(f"path efficiency: {s['path_efficiency']:.3f} ± {s['path_efficiency_se']:.3f}  (successful episodes)")
    if args.gif:
        print(f"wrote {args.gif}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
