"""Recording latents: the HRM state after every recurrent iteration of the forward passes an agent makes.

- :func:`record_traces`: while active, every forward pass of an ``HRMQNetwork`` also hands over its
  ``HRMTrace`` (no second computation);
- :class:`LatentRecorder`: collects batched steps of such traces with their context into a
  :class:`hrm_agent.latents.Latents`;
- :class:`ForwardRecorder`: both together, what ``HRMAgent.record_latents`` returns and
  ``hrm_agent.evaluate.evaluate(..., record_latents=True)`` records through.

The file format and its loader are in :mod:`hrm_agent.latents`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hrm_agent.latents import LEVELS, Latents
from hrm_agent.model import HRMTrace, QOutput

# what a step adds besides the episode ids (LatentRecorder.add)
_COLUMNS = ("z_H", "z_L", "obs", "action", "reward", "changed", "agent_pos", "step", "episode")


@contextlib.contextmanager
def record_traces(model: nn.Module) -> Iterator[list[HRMTrace]]:
    """While active, every forward pass of ``model`` (an ``HRMQNetwork``) runs with ``trace=True`` and
    appends its ``HRMTrace`` to the yielded list; callers still get the output they asked for.

    This records the forward passes that ``HRMAgent.predict`` makes without a second computation.
    """
    traces: list[HRMTrace] = []
    requested: list[bool] = []

    def before(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        requested.append(bool(kwargs.get("trace", False)))
        return args, {**kwargs, "trace": True}

    def after(module: nn.Module, args: tuple, kwargs: dict, output: QOutput) -> QOutput:
        traces.append(output.trace)
        return output if requested.pop() else output._replace(trace=None)

    handles = [
        model.register_forward_pre_hook(before, with_kwargs=True),
        model.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield traces
    finally:
        for handle in handles:
            handle.remove()


class LatentRecorder:
    """Collects the steps of a batch of episodes run side by side, then builds a :class:`Latents`.

    Example: one greedy episode, from the traces themselves (:class:`ForwardRecorder` does this for
    ``hrm_agent.evaluate.evaluate``, which runs many side by side and fills in the metadata that
    :func:`hrm_agent.latents.save` needs)::

        import gymnasium as gym
        from hrm_agent import HRMAgent
        from hrm_agent.recording import LatentRecorder, record_traces

        agent = HRMAgent("DynamicMaze-v0")
        env = gym.make("DynamicMaze-v0")
        obs, info = env.reset(seed=0)
        recorder, state, step, done = LatentRecorder(n_episodes=1), None, 0, False
        with record_traces(agent.online) as traces:
            while not done:
                actions, state = agent.predict(obs[None], state, episode_start=[step == 0])
                next_obs, reward, terminated, truncated, next_info = env.step(int(actions[0]))
                recorder.add(traces.pop(), [0], obs[None], actions, [reward], [info["changed"]],
                             [info["agent_pos"]], [step])
                obs, info, step, done = next_obs, next_info, step + 1, terminated or truncated
        H_init, L_init = (x.float().numpy() for x in (agent.online.H_init, agent.online.L_init))
        latents = recorder.finish([terminated], H_init, L_init, {"variant": agent.variant})
        print(latents.z_H.shape)  # (steps, M*N*T, S, D)
    """

    def __init__(self, n_episodes: int, positions: str = "all") -> None:
        if positions not in ("all", "query"):
            raise ValueError(f"positions must be 'all' or 'query', got {positions!r}")
        self.n_episodes = n_episodes
        self.positions = positions
        self._columns: dict[str, list[np.ndarray]] = {name: [] for name in _COLUMNS}
        self._path_changed: list[np.ndarray | None] = []
        self._read_positions: list[np.ndarray | None] = []

    def add(
        self,
        trace: HRMTrace,
        rows: np.ndarray,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        changed: np.ndarray,
        agent_pos: np.ndarray,
        step: np.ndarray,
        path_changed: np.ndarray | None = None,
        read_positions: np.ndarray | None = None,
    ) -> None:
        """One batched step. ``trace``: (M*N*T, B, S, D) each; ``rows``: (k,) the episodes (batch rows) that
        were active; the other arguments: (k, ...) per active episode, as in the file format
        (``path_changed`` and ``read_positions`` are kept only when every step gives them)."""
        rows = np.asarray(rows, dtype=np.int64)
        for level in LEVELS:
            z = getattr(trace, level)
            z = z[:, torch.as_tensor(rows, device=z.device)]  # (M*N*T, k, S, D)
            if self.positions == "query":
                z = z[:, :, :1]  # (M*N*T, k, 1, D)
            self._columns[level].append(z.detach().float().cpu().numpy().astype(np.float16).swapaxes(0, 1))
        for name, value in (("obs", obs), ("action", action), ("reward", reward), ("changed", changed),
                            ("agent_pos", agent_pos), ("step", step), ("episode", rows)):
            self._columns[name].append(np.asarray(value))
        self._path_changed.append(None if path_changed is None else np.asarray(path_changed, dtype=bool))
        self._read_positions.append(None if read_positions is None else np.asarray(read_positions, dtype=np.int64))

    def finish(
        self, episode_success: np.ndarray, H_init: np.ndarray, L_init: np.ndarray, metadata: dict[str, Any]
    ) -> Latents:
        """Rows sorted by episode, then step; ``metadata`` gets ``hrm_agent_version`` and ``created``."""
        from hrm_agent.version import __version__

        if not self._columns["z_H"]:
            raise ValueError("no steps were recorded")
        data = {name: np.concatenate(parts) for name, parts in self._columns.items()}
        if all(part is not None for part in self._path_changed):
            data["path_changed"] = np.concatenate(self._path_changed)
        if all(part is not None for part in self._read_positions):
            data["read_positions"] = np.concatenate(self._read_positions)
        order = np.lexsort((data["step"], data["episode"]))
        data = {name: value[order] for name, value in data.items()}
        return Latents(
            z_H=data["z_H"],
            z_L=data["z_L"],
            H_init=np.asarray(H_init, dtype=np.float32),
            L_init=np.asarray(L_init, dtype=np.float32),
            obs=data["obs"].astype(np.uint8),
            action=data["action"].astype(np.int64),
            reward=data["reward"].astype(np.float32),
            changed=data["changed"].astype(bool),
            agent_pos=data["agent_pos"].astype(np.int64).reshape(-1, 2),
            step=data["step"].astype(np.int64),
            episode=data["episode"].astype(np.int64),
            episode_success=np.asarray(episode_success, dtype=bool),
            episode_length=np.bincount(data["episode"], minlength=self.n_episodes).astype(np.int64),
            path_changed=data.get("path_changed"),
            read_positions=data.get("read_positions"),
            metadata={
                **metadata,
                "positions": self.positions,
                "hrm_agent_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )


class ForwardRecorder:
    """Records the forward passes of ``network`` (an ``HRMQNetwork``) while entered: the
    ``LatentRecording`` of :func:`hrm_agent.evaluate.evaluate`.

    ``tokenizer`` turns a batch of observations into the network's tokens (to record the positions its
    Q head read), ``metadata`` describes the agent (``variant``, ``seed``, ``carry``); the network's
    config adds its shape (``H_cycles``, ``L_cycles``, ``segments``, ``core``, ``hidden_size``,
    ``total_seq_len``, ``forward_dtype``). Each step must make exactly one forward pass.

    Example: one greedy episode of an agent (``HRMAgent.record_latents`` builds this recorder)::

        import gymnasium as gym
        from hrm_agent import HRMAgent

        agent = HRMAgent("DynamicMaze-v0")
        env = gym.make("DynamicMaze-v0")
        obs, info = env.reset(seed=0)
        state, step, done = None, 0, False
        with agent.record_latents(n_episodes=1) as recording:
            while not done:
                actions, state = agent.predict(obs[None], state, episode_start=[step == 0])
                next_obs, reward, terminated, truncated, next_info = env.step(int(actions[0]))
                recording.add([0], obs[None], actions, [reward], [info["changed"]], [info["agent_pos"]], [step])
                obs, info, step, done = next_obs, next_info, step + 1, terminated or truncated
        latents = recording.finish([terminated], {"env_id": "DynamicMaze-v0"})
        print(latents.z_H.shape)  # (steps, M*N*T, S, D)
    """

    def __init__(self, network: nn.Module, tokenizer: Callable[[np.ndarray], np.ndarray], n_episodes: int,
                 positions: str = "all", metadata: dict[str, Any] | None = None) -> None:
        self.network, self.tokenizer = network, tokenizer
        self.recorder = LatentRecorder(n_episodes, positions)
        self.metadata = dict(metadata or {})
        self._recording: contextlib.ExitStack | None = None
        self._traces: list[HRMTrace] = []

    def __enter__(self) -> "ForwardRecorder":
        with contextlib.ExitStack() as stack:
            self._traces = stack.enter_context(record_traces(self.network))
            self._recording = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._recording is not None:
            self._recording.close()
            self._recording = None

    def add(self, rows: np.ndarray, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, changed: np.ndarray,
            agent_pos: np.ndarray, step: np.ndarray, path_changed: np.ndarray | None = None) -> None:
        """One batched step, after the forward pass that chose ``action``; the arguments as in
        :meth:`LatentRecorder.add` (``obs``: what the active ``rows`` observed)."""
        (trace,) = self._traces  # exactly one forward pass per step
        self._traces.clear()
        device = self.network.H_init.device
        tokens = torch.from_numpy(self.tokenizer(np.asarray(obs))).flatten(1).to(device)
        read = self.network.readout_index(tokens)  # the positions the Q head read
        self.recorder.add(trace, rows, obs, action, reward, changed, agent_pos, step, path_changed=path_changed,
                          read_positions=read.cpu().numpy())

    def finish(self, episode_success: np.ndarray, metadata: dict[str, Any] | None = None) -> Latents:
        """The :class:`Latents` of the steps added; ``metadata`` (e.g. ``env_id``, ``env_kwargs``,
        ``eval_seed``) joins the agent's and the network's."""
        cfg, net = self.network.config, self.network
        shape = {key: getattr(cfg, key) for key in ("H_cycles", "L_cycles", "segments", "core", "hidden_size",
                                                     "total_seq_len", "forward_dtype")}
        return self.recorder.finish(episode_success, net.H_init.float().cpu().numpy(),
                                    net.L_init.float().cpu().numpy(), {**self.metadata, **shape, **(metadata or {})})
