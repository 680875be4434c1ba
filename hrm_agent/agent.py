"""``HRMAgent``: the HRM Q-network trained by DQN, with a stable-baselines3-shaped API.

The agent holds the networks, the optimiser, the counters and the acting state;
``learn`` hands them to the training loop (``loop.py``) with the run's callbacks
(``callbacks.py``: evaluation, logs, checkpoints, progress bar, Ctrl-C). What
carry z starts each forward pass from is ``carry.py``; files are ``checkpoint.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from hrm_agent import callbacks as cb
from hrm_agent import carry, checkpoint, loop
from hrm_agent.build import build_networks, resolve_device
from hrm_agent.callbacks import Callback
from hrm_agent.hyperparams import AgentConfig, resolve_config
from hrm_agent.loop import TrainingDiverged, act, setup, train  # noqa: F401  (TrainingDiverged: importable here)
from hrm_agent.model import HRMCarry
from hrm_agent.rollout import Rollout
from hrm_agent.replay import ReplayBuffer
from hrm_agent.runs import hrm_model_config


class HRMAgent:
    """HRM-Agent: an HRM Q-network trained with DQN on a token-grid environment.

    Args:
        env: an env id (``"DynamicMaze-v0"``) or an env made with ``gym.make`` (its id and kwargs are used
            to make the ``n_envs`` training environments).
        config: an ``AgentConfig`` (used as is), or a dict of its fields applied over the env's tuned
            defaults in ``hyperparams.yaml`` exactly as the CLI's ``--config`` file is (``model`` merged
            field by field); invalid values raise ``ConfigError``.
        seed: seeds the network init, exploration, replay sampling and the environments.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        env_kwargs: extra ``gym.make`` kwargs (when ``env`` is an id).
        preset: a named preset of ``hyperparams.yaml`` applied over the env's defaults before
            ``config`` (e.g. ``"paper"``: the HRM-Agent authors' settings); only with a dict config.
        run_dir: where ``learn`` writes TensorBoard/CSV logs and checkpoints (None: nothing is written).

    Example::

        import gymnasium as gym
        from hrm_agent import HRMAgent

        agent = HRMAgent("DynamicMaze-v0", {"carry_z": True}, seed=1)
        agent.learn(50_000)  # no run_dir: nothing written; greedy evaluations in agent.eval_history

        env = gym.make("DynamicMaze-v0")
        obs, info = env.reset(seed=0)
        state, episode_start, done = None, True, False
        while not done:
            action, state = agent.predict(obs, state=state, episode_start=episode_start)
            obs, reward, terminated, truncated, info = env.step(action)
            episode_start, done = False, terminated or truncated
    """

    def __init__(self, env: str | gym.Env, config: AgentConfig | dict[str, Any] | None = None, *, seed: int = 0,
                 device: str | torch.device = "auto", env_kwargs: dict[str, Any] | None = None,
                 preset: str | None = None, run_dir: str | Path | None = None) -> None:
        if isinstance(env, str):
            self.env_id, self.env_kwargs = env, dict(env_kwargs or {})
        else:
            if env.spec is None:
                raise ValueError("pass an env made with gym.make (it needs a spec to be re-created), or its id")
            self.env_id, self.env_kwargs = env.spec.id, {**env.spec.kwargs, **(env_kwargs or {})}
        if isinstance(config, AgentConfig):
            if preset is not None:
                raise ValueError("preset applies to a dict config; an AgentConfig is used as is")
            self.config = config
        else:  # a mapping (or None) is applied over the env's tuned defaults, as the CLI does
            self.config = resolve_config(self.env_id, params=config or {}, preset=preset)
        self.seed, self.device = seed, resolve_device(device)
        self.run_dir = None if run_dir is None else Path(run_dir)

        probe = gym.make(self.env_id, **self.env_kwargs)
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()
        # the same check the commands make before any work (hrm_agent.runs.check_config)
        self.tokenizer, self.model_config = hrm_model_config(self.observation_space, self.action_space, self.config)
        self.online, self.target, self.optimizer = build_networks(self.model_config, self.config, self.device, seed)
        self.rng = np.random.default_rng(seed)

        # counters (env steps = transitions summed over environments)
        self.num_timesteps = self.total_timesteps = self.n_updates = self.n_episodes = self.last_target_sync = 0
        self.learning_starts_at = self.config.learning_starts  # moved on by a resume without replay
        self.wall_time = 0.0  # seconds spent in learn, across resumes
        self.eval_history: list[dict[str, float]] = []
        self.interrupted = False  # whether Ctrl-C stopped the last learn

        # made by the first learn (or a resume)
        self.rollout: Rollout | None = None
        self.replay: ReplayBuffer | None = None
        self.logger: Any = None  # stable-baselines3 logger (with a run_dir)
        self.resumed_at: int | None = None  # the checkpoint's step when loaded from one: logs end there

    @property
    def variant(self) -> str:
        return "carry" if self.config.carry_z else "reset"

    def predict(
        self,
        observation: np.ndarray,
        state: HRMCarry | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, HRMCarry]:
        """Actions for ``observation`` (``(H, W)`` or ``(B, H, W)``), as stable-baselines3's ``predict``.

        ``state`` is the carried latent returned by the previous call (None: the initial state);
        rows with ``episode_start`` True restart from the initial state. With reset z the state is
        ignored and every call starts fresh. Non-deterministic prediction acts at random with
        probability ``exploration_final_eps``. Returns ``(actions, new_state)``.
        """
        observation = np.asarray(observation)
        single = observation.ndim == 2
        batch = 1 if single else observation.shape[0]
        z = reset = None
        if state is not None and self.config.carry_z:
            if state.z_H.shape[0] != batch:
                raise ValueError(f"state holds {state.z_H.shape[0]} latents for a batch of {batch} observations")
            z = torch.stack((state.z_H.to(self.device), state.z_L.to(self.device)))
            if episode_start is not None:
                reset = np.asarray(episode_start, dtype=bool).reshape(batch)
        end, actions = act(self.online, carry.start(self.online, z, reset, batch), self.tokenizer(observation))
        if self.config.carry_z:  # what the next step starts from (token: the broadcast query vectors)
            end = carry.start(self.online, carry.keep(self.online, end, True, self.config.carry), None, batch)
        if not deterministic:
            explore = self.rng.random(batch) < self.config.exploration_final_eps
            actions = np.where(explore, self.rng.integers(0, self.action_space.n, size=batch), actions)
        return (actions[0] if single else actions), end

    def record_latents(self, n_episodes: int, positions: str = "all") -> Any:
        """A recorder of the forward passes :meth:`predict` makes while it is entered, the hook of
        ``evaluate(..., record_latents=True)`` (:class:`hrm_agent.recording.ForwardRecorder`)."""
        from hrm_agent.recording import ForwardRecorder

        carry = self.config.carry if self.config.carry_z else None
        return ForwardRecorder(self.online, self.tokenizer, n_episodes, positions,
                               {"variant": self.variant, "seed": self.seed, "carry": carry})

    def exploration_rate(self) -> float:
        """ε at the current step of the training schedule."""
        return loop.exploration_rate(self)

    def success_rate(self) -> float:
        """Success rate over the last 100 training episodes (0 before the first ends)."""
        episodes = self.rollout.ep_info if self.rollout is not None else ()
        return float(np.mean([s for _, _, s in episodes])) if episodes else 0.0

    def learn(
        self,
        total_timesteps: int,
        callback: Callable[["HRMAgent"], bool | None] | Callback | list[Callback] | None = None,
        progress_bar: bool = False,
    ) -> "HRMAgent":
        """Train for ``total_timesteps`` more environment steps (counting continues across calls).

        ``callback``: a :class:`~hrm_agent.callbacks.Callback` (or a list), or ``fn(agent)`` run after
        every vector step; returning False stops training. Evaluates greedily every ``eval_freq`` steps
        and at the end (``eval_history``). With a ``run_dir`` it also logs to TensorBoard/CSV there and
        checkpoints every ``checkpoint_freq`` steps; without one nothing is written. Ctrl-C finishes the
        current step and returns the trained agent early with ``interrupted`` set (after a checkpoint,
        with a ``run_dir``); call ``learn`` again to go on. Raises ``TrainingDiverged`` on a non-finite
        loss (no checkpoint is written after it).
        """
        setup(self)
        user = [] if callback is None else callback if isinstance(callback, list) else [callback]
        callbacks = [cb.EvalCallback(), cb.LogCallback(), cb.CheckpointCallback()]
        callbacks += [cb.ProgressBarCallback()] if progress_bar else []
        callbacks += [c if isinstance(c, Callback) else cb.FunctionCallback(c) for c in user]
        self.interrupted = False
        outcome = train(self, total_timesteps, cb.CallbackList([*callbacks, cb.StopOnCtrlC()]))
        self.interrupted = outcome == "interrupted"
        return self

    # ------------------------------------------------------------- save / load
    def save(self, path: str | Path) -> None:
        """Write config + online weights (atomically) to ``path``."""
        checkpoint.save_file(path, "model", {**checkpoint.header(self), "model": self.online.state_dict()})

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "HRMAgent":
        """Load a saved model; ``path`` may be a run directory (its final model, else its last checkpoint)."""
        return checkpoint.agent_from(cls, checkpoint.load_model_file(path), device, None)

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Everything needed to resume ``learn`` exactly (replay only with ``checkpoint_replay``)."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("save_checkpoint needs a path when the agent has no run_dir")
            path = self.run_dir / checkpoint.LAST_CHECKPOINT
        checkpoint.save_file(path, "checkpoint", checkpoint.training_state(self))
        return Path(path)

    @classmethod
    def load_checkpoint(
        cls, path: str | Path, device: str | torch.device = "auto", run_dir: str | Path | None = None
    ) -> "HRMAgent":
        """Restore an agent from ``save_checkpoint`` (a file, or a run directory's last checkpoint) so that
        ``learn`` continues where it stopped. Without a checkpointed replay buffer the buffer starts empty and
        is refilled for ``learning_starts`` steps before updates resume."""
        return checkpoint.resume(cls, path, device, run_dir)
