"""Dynamic grid worlds for the HRM agent, built on minigrid.

Importing this package registers with Gymnasium:

- ``DynamicMaze-v0`` (:class:`envs.dynamic_maze.DynamicMazeEnv`): the
  authors' 13 x 11 lattice maze with fixed walls and 5 closed doors that are
  re-drawn together at random (``dynamics="toggle"``: the previous version,
  walls that toggle one by one);
- ``FourRooms-v0`` (:class:`envs.four_rooms.FourRoomsEnv`): Sutton's four
  rooms, one of its 4 doorways closed and moved at random
  (``doorways="random"``: the previous version, doorways placed at random).

``gymnasium.make("DynamicMaze-v0", **kwargs)`` after ``import envs``, or
``gymnasium.make("envs:FourRooms-v0")`` without it. Both envs truncate
themselves at ``max_steps`` (a kwarg), so no ``max_episode_steps`` is
registered (as in minigrid); the limit is ``env.unwrapped.max_steps``.

Shared behaviour (actions, observation, ``info``) is documented in
:mod:`envs.base`, token ids in :mod:`envs.tokens`, the BFS and the oracle
policy in :mod:`envs.oracle`. This package never imports ``hrm_agent``.

Example: one episode of the BFS oracle::

    import gymnasium as gym
    from envs import BFSOracle

    env = gym.make("envs:FourRooms-v0")
    obs, info = env.reset(seed=0)        # obs: (H, W) uint8 tokens, see envs.tokens
    oracle, done = BFSOracle(), False
    while not done:
        action, _ = oracle.predict(obs)  # 0 up, 1 right, 2 down, 3 left
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    print(info["is_success"], info["changed"], info["shortest_path"], info["agent_pos"])
"""

from __future__ import annotations

import gymnasium

from envs import tokens
from envs.dynamic_maze import DynamicMazeEnv
from envs.four_rooms import FourRoomsEnv
from envs.oracle import BFSOracle, bfs_distances, shortest_path_length

ENTRY_POINTS = {
    "DynamicMaze-v0": "envs.dynamic_maze:DynamicMazeEnv",
    "FourRooms-v0": "envs.four_rooms:FourRoomsEnv",
}


def register_envs() -> None:
    """Register both ids with Gymnasium; safe to call more than once."""
    for env_id, entry_point in ENTRY_POINTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


register_envs()

__all__ = [
    "BFSOracle",
    "DynamicMazeEnv",
    "ENTRY_POINTS",
    "FourRoomsEnv",
    "bfs_distances",
    "register_envs",
    "shortest_path_length",
    "tokens",
]
