"""The re-planning test: change the grid under the agent between two steps, so that its plan no longer holds.

- :func:`intervene` applies one change to a ``DynamicMaze-v0``/``FourRooms-v0`` env (the unwrapped
  :class:`envs.base.DynamicGridEnv`): ``"goal"`` moves the goal off every shortest path, ``"door"``
  closes a door on one;
- :class:`Intervention`, a Gymnasium wrapper, applies it after the ``K``-th step of every episode
  (``python -m hrm_agent.evaluate --intervention goal|door`` plays its episodes this way);
- :func:`static_kwargs` holds the env's own walls and doors still, so the intervention is the only change.

Example: one episode whose goal moves after its third step::

    import gymnasium as gym
    import envs
    from envs.interventions import Intervention, static_kwargs

    env = Intervention(gym.make("DynamicMaze-v0", **static_kwargs({})), "goal", step=3)
    oracle = envs.BFSOracle()
    obs, info = env.reset(seed=0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(oracle.predict(obs)[0])
    print(info.get("intervened", False), info["changed"], info["shortest_path"])
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.checks import check_choice
from envs.oracle import bfs_distances, shortest_path_cells
from envs.tokens import DOOR_CLOSED, EMPTY, GOAL, PASSABLE

INTERVENTIONS = ("goal", "door")


def static_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """DynamicMaze-v0/FourRooms-v0 keywords ``kwargs`` with the walls and doors held still: the
    probability of the env's changes set to 0 (``toggle_prob`` with the maze's ``dynamics="toggle"``,
    else ``change_prob``)."""
    return {**kwargs, ("toggle_prob" if kwargs.get("dynamics") == "toggle" else "change_prob"): 0.0}


def intervene(env: Any, kind: str) -> bool:
    """Change the grid of ``env`` (an unwrapped ``DynamicGridEnv``) so that the agent's plan no longer holds.

    ``"goal"``: move the goal to a random empty cell the agent can reach that lies on none of its
    shortest paths to the old goal. ``"door"``: close a door on a cell of the agent's shortest path
    whose closing makes the goal farther but still reachable: the nearest such doorway (a cell between
    two walls, like the maze's gaps and the four rooms' doorways), else the nearest such cell. The
    door stays closed: it is not one of the dynamic doors (run the env with :func:`static_kwargs` so
    that nothing else moves). Randomness comes from ``env.np_random``. Returns False, changing nothing,
    where no cell qualifies (e.g. the agent is next to the goal). The next observation is
    ``env.gen_obs()``; ``info`` of later steps describes the new grid.
    """
    check_choice("intervention", kind, INTERVENTIONS)
    return _move_goal(env) if kind == "goal" else _close_path(env)


def path_cells(env: Any) -> np.ndarray:
    """(H, W) bool: the cells on some shortest path from the agent to the goal of ``env``, both included
    (all False when the goal is cut off)."""
    return shortest_path_cells(env.layout, env.agent_pos, env.distances())


def _move_goal(env: Any) -> bool:
    tokens, (x, y) = env.layout, env.agent_pos
    free = (tokens == EMPTY) & (bfs_distances(tokens, env.agent_pos) >= 0) & ~path_cells(env)
    free[y, x] = False
    ys, xs = np.nonzero(free)
    if not len(xs):
        return False
    i = int(env.np_random.integers(len(xs)))
    env.set_cell(env.goal_pos, EMPTY)
    env.goal_pos = (int(xs[i]), int(ys[i]))
    env.set_cell(env.goal_pos, GOAL)
    return True


def _close_path(env: Any) -> bool:
    tokens, (x, y) = env.layout, env.agent_pos
    before = int(env.distances()[y, x])
    if before < 2:  # no cell between the agent and the goal (or no path)
        return False
    on_path = path_cells(env) & (tokens == EMPTY)
    on_path[y, x] = False
    from_agent = bfs_distances(tokens, env.agent_pos)

    def doorway(cx: int, cy: int) -> bool:
        return (not PASSABLE[tokens[cy, cx - 1]] and not PASSABLE[tokens[cy, cx + 1]]) or (
            not PASSABLE[tokens[cy - 1, cx]] and not PASSABLE[tokens[cy + 1, cx]])

    cells = sorted((not doorway(cx, cy), int(from_agent[cy, cx]), cx, cy) for cy, cx in zip(*np.nonzero(on_path)))
    for _, _, cx, cy in cells:
        tokens[cy, cx] = DOOR_CLOSED
        if int(bfs_distances(tokens, env.goal_pos)[y, x]) > before:
            env.set_cell((int(cx), int(cy)), DOOR_CLOSED)
            return True
        tokens[cy, cx] = EMPTY
    return False


class Intervention(gym.Wrapper):
    """Applies :func:`intervene` after step ``step`` of every episode still running then.

    The observation returned by that step shows the changed grid; its ``info`` says ``changed`` and
    ``path_changed`` True, ``intervened`` True and ``shortest_path`` on the new grid. Where the
    intervention does not apply (:func:`intervene` returns False) the step is returned as it was.
    """

    def __init__(self, env: gym.Env, kind: str, step: int = 3) -> None:
        check_choice("intervention", kind, INTERVENTIONS)
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"intervention_step must be at least 1, got {step!r}")
        super().__init__(env)
        self.kind, self.after = kind, int(step)
        self._steps = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._steps = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if self._steps == self.after and not (terminated or truncated):
            base = self.env.unwrapped
            if intervene(base, self.kind):
                x, y = base.agent_pos
                obs = base.gen_obs()
                info = {**info, "changed": True, "path_changed": True, "intervened": True,
                        "shortest_path": int(base.distances()[y, x])}
        return obs, reward, terminated, truncated, info
