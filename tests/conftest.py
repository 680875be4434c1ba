"""Shared fixtures: tiny configurations that keep the suite fast on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch

import hrm_agent  # noqa: F401  (registers the environments)

TINY_MODEL = {
    "hidden_size": 16,
    "num_heads": 2,
    "expansion": 2.0,
    "H_layers": 1,
    "L_layers": 1,
    "H_cycles": 2,
    "L_cycles": 2,
}
# The previous 7 x 7 DynamicMaze-v0 (toggling walls, 4 x size steps, no bump penalty).
TINY_ENV = {"size": 7, "n_fixed_walls": 2, "n_dynamic_walls": 2, "dynamics": "toggle", "toggle_prob": 0.2,
            "max_steps": 28, "bump_penalty": 0.0}


def every_dynamics(prob):
    """``(env id, kwargs)`` of each kind of change the envs make, each at probability ``prob``."""
    return [
        ("DynamicMaze-v0", {"change_prob": prob}),
        ("DynamicMaze-v0", {"dynamics": "toggle", "toggle_prob": prob}),
        ("FourRooms-v0", {"change_prob": prob}),
        ("FourRooms-v0", {"doorways": "random", "change_prob": prob}),
    ]


def tiny_config(**overrides):
    config = {
        "model": dict(TINY_MODEL),
        "n_envs": 2,
        "buffer_size": 2_000,
        "learning_starts": 64,
        "batch_size": 16,
        "train_freq": 2,
        "target_update_interval": 100,
        "eval_freq": 0,
        "eval_episodes": 5,
        "checkpoint_freq": 0,
        "compile": False,  # the defaults compile; tiny runs finish before compiling would pay
    }
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def _single_thread():
    # tests run small tensors: one thread avoids oversubscribing a 2-core machine
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
