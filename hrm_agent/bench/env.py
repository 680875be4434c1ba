"""``python -m hrm_agent.bench env``: random-action stepping speed of the environments.

Times ``env.step`` (with ``env.reset`` at episode ends) of DynamicMaze-v0,
FourRooms-v0 and minigrid's own MiniGrid-FourRooms-v0, each built with
``gymnasium.make`` so all carry the same default wrappers. Actions are drawn
before the clock starts, so only the environment is timed. Prints the median
steps/s over the repeats and each speed as a ratio to minigrid's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import minigrid  # noqa: F401  (registers MiniGrid-* ids)
import numpy as np

import envs  # noqa: F401  (registers our ids)

BASELINE = "MiniGrid-FourRooms-v0"
ENV_IDS = ("DynamicMaze-v0", "FourRooms-v0", BASELINE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per repeat (default 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per env; medians reported (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the envs and the action draws (default 0)")


def steps_per_second(env_id: str, steps: int, seed: int) -> float:
    """Random-action steps per second of one ``gym.make(env_id)`` over ``steps`` steps."""
    env = gym.make(env_id)
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=steps).tolist()
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def run(args: argparse.Namespace) -> int:
    from hrm_agent.runs import UsageError

    if args.steps < 1 or args.repeats < 1:
        raise UsageError(f"--steps and --repeats must be at least 1, got {args.steps} and {args.repeats}")
    medians = {}
    for env_id in ENV_IDS:
        speeds = [steps_per_second(env_id, args.steps, args.seed + r) for r in range(args.repeats)]
        medians[env_id] = statistics.median(speeds)
    print(f"random-action stepping, {args.steps} steps x {args.repeats} repeats (median)")
    print(f"{'env':<24}{'steps/s':>10}  ratio to {BASELINE}")
    for env_id in ENV_IDS:
        print(f"{env_id:<24}{medians[env_id]:>10,.0f}  {medians[env_id] / medians[BASELINE]:.2f}x")
    return 0
