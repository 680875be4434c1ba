"""What a trained agent's Q-values know: greedy choice and value against the BFS distance to the goal.

    python analysis/q_values.py runs/<run> [--states 400] [--seed 5000000] [--csv PATH]

Draws held-out states (episode ``i`` seeded ``seed + i``, then 0-19 random moves),
runs the agent's network once on each from the initial latent (the state an
episode starts from), and prints per BFS distance ``d`` from the agent to the
goal (in bins 1, 2, 3-4, 5-8, 9-16, 17+): the mean of ``max_a Q``, the value of the shortest path (``γ^(d-1)`` for
the 0/1 goal reward; bump penalties left out), the spread ``max_a Q - min_a Q``
and how often the greedy action is a shortest-path move. A network that has
learned the task has ``max_a Q`` falling with ``d`` like the shortest-path
value and greedy moves near 1; one that has not learned the layouts has a flat
``max_a Q`` and greedy moves at chance (the share of shortest-path moves among
the four actions). Diagnostic only: the BFS distances never reach the agent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DISTANCE_BINS = [("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9-16", 9, 16), ("17+", 17, np.inf)]
FIELDS = ["distance", "states", "max_q", "shortest_path_value", "spread", "greedy_optimal", "chance"]


def sample_states(env_id: str, env_kwargs: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` observations with the goal reachable and not reached; their BFS distances and shortest-path moves."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the environments)
    from envs.oracle import MOVES, bfs_distances, find_token
    from envs.tokens import AGENT, GOAL

    env = gym.make(env_id, **env_kwargs)
    rng = np.random.default_rng(seed)
    observations, distances, optimal = [], [], []
    episode = 0
    while len(observations) < n:
        obs, info = env.reset(seed=seed + episode)
        episode += 1
        done = False
        for _ in range(int(rng.integers(0, 20))):
            obs, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            done = terminated or truncated
            if done:
                break
        if done or info["shortest_path"] <= 0:
            continue
        (x, y), goal = find_token(obs, AGENT), find_token(obs, GOAL)
        dist = bfs_distances(obs, goal)
        observations.append(obs)
        distances.append(dist[y, x])
        optimal.append([dist[y + MOVES[a][1], x + MOVES[a][0]] == dist[y, x] - 1 for a in range(4)])
    env.close()
    return np.stack(observations), np.array(distances), np.array(optimal)


def q_table(agent, n_states: int = 400, seed: int = 5_000_000) -> list[dict[str, float]]:
    """Rows of :data:`FIELDS`, one per bin of BFS distances (:data:`DISTANCE_BINS`), plus ``"all"``."""
    import torch

    obs, dist, optimal = sample_states(agent.env_id, agent.env_kwargs, n_states, seed)
    with torch.no_grad():
        carry = agent.online.initial_carry(len(obs))
        q = agent.online(carry, torch.from_numpy(agent.tokenizer(obs))).q_values
    q = q.float().cpu().numpy()
    greedy_optimal = optimal[np.arange(len(q)), q.argmax(1)]
    gamma = agent.config.gamma
    rows = []
    for label, low, high in [*DISTANCE_BINS, ("all", 1, np.inf)]:
        keep = (dist >= low) & (dist <= high)
        if not keep.any():
            continue
        rows.append({
            "distance": label,
            "states": int(keep.sum()),
            "max_q": float(q[keep].max(1).mean()),
            "shortest_path_value": float(np.mean(gamma ** (dist[keep] - 1))),
            "spread": float((q[keep].max(1) - q[keep].min(1)).mean()),
            "greedy_optimal": float(greedy_optimal[keep].mean()),
            "chance": float(optimal[keep].mean()),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python analysis/q_values.py", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory (its final model, else last checkpoint) or a model file")
    parser.add_argument("--states", type=int, default=400, help="held-out states (default 400)")
    parser.add_argument("--seed", type=int, default=5_000_000, help="episode i is seeded seed + i (default 5000000)")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.states < 1:
        parser.error("--states must be at least 1")

    from hrm_agent.agent import HRMAgent
    from hrm_agent.experiments.store import write_csv
    from hrm_agent.checkpoint import CheckpointError

    try:
        agent = HRMAgent.load(args.run, device="cpu")
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = q_table(agent, args.states, args.seed)
    print(f"{agent.env_id} {agent.variant} z, {args.states} held-out states, initial latent, gamma {agent.config.gamma}")
    print(f"{'d':>5} {'states':>6} {'max Q':>7} {'γ^(d-1)':>8} {'spread':>7} {'greedy optimal':>15} {'chance':>7}")
    for r in rows:
        print(f"{r['distance']:>5} {r['states']:>6} {r['max_q']:>7.3f} {r['shortest_path_value']:>8.3f} "
              f"{r['spread']:>7.3f} {r['greedy_optimal']:>15.2f} {r['chance']:>7.2f}")
    if args.csv:
        write_csv(args.csv, FIELDS, rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
