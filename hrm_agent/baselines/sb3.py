"""stable-baselines3 models on the token grids, and the training callback that makes their runs look like HRM runs.

- :class:`TokenGridExtractor`: one-hot tokens -> small conv (or linear) -> features;
  SB3's ``NatureCNN`` expects images of at least 36 x 36 pixels and cannot take
  an 11 x 11 grid of token ids.
- :func:`make_model`: DQN, PPO or RecurrentPPO from a resolved config.
- :class:`EvalPolicy`: what :func:`hrm_agent.evaluate.evaluate` needs of an agent
  (``env_id``, ``env_kwargs``, ``predict``), around any SB3-style predictor.
- :class:`RunCallback`: every vector step, as the HRM agent's callbacks do and with
  the same pieces (``hrm_agent.callbacks``): periodic greedy evaluation
  (``eval/success_rate``, ``eval/mean_ep_length``, ``eval/path_efficiency``), a
  log row every 1,000 env steps and at each evaluation, checkpoints, a progress
  bar, Ctrl-C (``ctrl_c``), and an exact step budget.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from envs.tokens import AGENT, WALL
from hrm_agent.baselines.config import BaselineConfig, RecurrentPPOConfig
from hrm_agent.callbacks import CtrlC, LogCadence, ProgressBar, due, evaluate_now
from hrm_agent.logger import log_hparams
from hrm_agent.checkpoint import atomic_write
from hrm_agent.rollout import Tokenizer

FINAL_MODEL = "final_model.zip"
LAST_CHECKPOINT = Path("checkpoints") / "last.zip"


class TokenGridExtractor(BaseFeaturesExtractor):
    """Features of a ``(H, W)`` token-id grid: one-hot channels, then 3x3 convolutions or a linear layer.

    Args:
        observation_space: a 2-D integer ``Box`` (checked as the HRM tokenizer checks it).
        extractor: ``"conv"`` (convolutions of ``channels``, padding 1, ReLU, then linear) or ``"mlp"``
            (flattened one-hot grid -> linear).
        channels: output channels of each convolution.
        features_dim: size of the output features (after a ReLU).
        crop_border: drop the grid's outer ring (constant walls in our envs).
        view: ``"grid"`` (the grid as observed) or ``"agent"`` (re-centred on the agent: a
            ``(2H-1, 2W-1)`` window, after cropping, with the agent's cell in the middle and walls
            outside the grid; an observation without the agent is centred on its middle cell).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        extractor: str = "conv",
        channels: tuple[int, ...] | list[int] = (16, 16),
        features_dim: int = 64,
        crop_border: bool = True,
        view: str = "grid",
    ) -> None:
        super().__init__(observation_space, features_dim)
        if view not in ("grid", "agent"):
            raise ValueError(f"view must be 'grid' or 'agent', got {view!r}")
        tokenizer = Tokenizer(observation_space, crop_border)
        self.crop_border = crop_border
        self.view = view
        self.vocab_size = tokenizer.vocab_size
        height, width = tokenizer.token_grid
        if view == "agent":
            height, width = 2 * height - 1, 2 * width - 1
            # the window's row and column offsets, made once
            self.register_buffer("window_rows", torch.arange(height), persistent=False)
            self.register_buffer("window_cols", torch.arange(width), persistent=False)
        layers: list[nn.Module] = []
        in_channels = self.vocab_size
        if extractor == "conv":
            for out_channels in channels:
                layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = out_channels
        elif extractor != "mlp":
            raise ValueError(f"extractor must be 'conv' or 'mlp', got {extractor!r}")
        layers += [nn.Flatten(), nn.Linear(in_channels * height * width, features_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        # SB3 hands a non-image Box over as float: token ids, not pixel intensities
        tokens = observations.long().clamp_(0, self.vocab_size - 1)
        if self.crop_border:
            tokens = tokens[:, 1:-1, 1:-1]
        if self.view == "agent":
            tokens = self.centred_on_agent(tokens)
        one_hot = nn.functional.one_hot(tokens, self.vocab_size).permute(0, 3, 1, 2).float()
        return self.net(one_hot)

    def centred_on_agent(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` token ids -> ``(B, 2H-1, 2W-1)``: window ``[r, c]`` holds cell
        ``(r - H + 1 + agent_row, c - W + 1 + agent_col)``, a wall where that lies off the grid."""
        batch, height, width = tokens.shape
        is_agent = (tokens == AGENT).flatten(1)
        # the first agent cell (argmax of the mask); no agent: the middle cell
        cell = torch.where(is_agent.any(1), is_agent.float().argmax(1), (height // 2) * width + width // 2)
        # in the grid padded with H-1 rows and W-1 columns of walls on each side, the window
        # centred on cell (r, c) starts at (r, c)
        padded = nn.functional.pad(tokens, (width - 1, width - 1, height - 1, height - 1), value=WALL)
        rows = (cell // width)[:, None] + self.window_rows  # (B, 2H-1)
        cols = (cell % width)[:, None] + self.window_cols  # (B, 2W-1)
        return padded[torch.arange(batch, device=tokens.device)[:, None, None], rows[:, :, None], cols[:, None, :]]


def policy_kwargs(algo: str, config: BaselineConfig) -> dict[str, Any]:
    p = config.policy
    kwargs: dict[str, Any] = {
        "features_extractor_class": TokenGridExtractor,
        "features_extractor_kwargs": {"extractor": p.extractor, "channels": list(p.channels),
                                      "features_dim": p.features_dim, "crop_border": p.crop_border,
                                      "view": p.view},
        "net_arch": list(p.net_arch) if algo == "dqn" else {"pi": list(p.net_arch), "vf": list(p.net_arch)},
    }
    if isinstance(config, RecurrentPPOConfig):
        kwargs.update({k: getattr(config, k) for k in sorted(config.policy_fields())})
    return kwargs


def algorithm_class(algo: str) -> tuple[type, str]:
    """(SB3 class, policy name) of ``algo``."""
    if algo == "dqn":
        from stable_baselines3 import DQN

        return DQN, "MlpPolicy"
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO, "MlpPolicy"
    if algo == "recurrent-ppo":
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO, "MlpLstmPolicy"
    raise ValueError(f"unknown algorithm {algo!r}")


def make_model(
    algo: str,
    env_id: str,
    config: BaselineConfig,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "auto",
    algorithm: type | None = None,
    **kwargs: Any,
) -> Any:
    """An untrained SB3 model on ``config.n_envs`` monitored copies of ``env_id`` (a ``DummyVecEnv``).

    ``algorithm``: a subclass of the algorithm's class to build instead (the bench's timed DQN);
    ``kwargs`` go to its constructor beside the config's.
    """
    from stable_baselines3.common.env_util import make_vec_env

    from hrm_agent.build import resolve_device

    cls, policy = algorithm_class(algo)
    envs = make_vec_env(env_id, n_envs=config.n_envs, seed=seed, env_kwargs=dict(env_kwargs or {}))
    return (algorithm or cls)(policy, envs, policy_kwargs=policy_kwargs(algo, config), seed=seed, verbose=0,
                              device=resolve_device(device), **config.algo_kwargs(), **kwargs)


def count_parameters(model: Any) -> int:
    """Trainable parameters of the network that acts (DQN: the online Q-network, not its target copy)."""
    network = model.q_net if hasattr(model, "q_net") else model.policy
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def dump_logs(model: Any) -> None:
    """Write one log row: SB3's rollout/time keys plus whatever was recorded (older SB3 calls it ``_dump_logs``)."""
    (model.dump_logs if hasattr(model, "dump_logs") else model._dump_logs)()


class EvalPolicy:
    """An agent as :func:`hrm_agent.evaluate.evaluate` sees it: env id and kwargs, and SB3's ``predict``.

    ``predictor`` is any object with SB3's ``predict(observation, state, episode_start, deterministic)``:
    an SB3 model (recurrent ones carry their LSTM state through ``state``) or ``envs.oracle.BFSOracle``.
    """

    def __init__(self, predictor: Any, env_id: str, env_kwargs: dict[str, Any] | None, variant: str) -> None:
        self.predictor = predictor
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.variant = variant

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        return self.predictor.predict(observation, state=state, episode_start=episode_start,
                                      deterministic=deterministic)


def save_model(model: Any, path: Path) -> None:
    """``model.save`` to ``path`` atomically (a crash never leaves a half-written zip)."""
    atomic_write(path, lambda f: model.save(f))


class RunCallback(BaseCallback):
    """The HRM agent's per-step bookkeeping for an SB3 model; see the module docstring.

    Args:
        config: the resolved baseline config (eval and checkpoint frequencies, eval episodes).
        env_id, env_kwargs, seed, variant: what the evaluation plays; episodes are seeded
            ``seed + EVAL_SEED_OFFSET + i``, as the HRM agent's are.
        total_steps: the budget; on-policy algorithms stop collecting there (the partial
            rollout is not trained on), so every algorithm takes this many env steps (rounded up to
            a multiple of ``n_envs``).
        run_dir: where checkpoints go (None: none written).
        hparams: logged once to TensorBoard's HPARAMS tab.
        progress_bar: show a tqdm bar.
    """

    def __init__(
        self,
        config: BaselineConfig,
        env_id: str,
        env_kwargs: dict[str, Any],
        seed: int,
        variant: str,
        total_steps: int,
        run_dir: Path | None = None,
        hparams: dict[str, Any] | None = None,
        progress_bar: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.env_id, self.env_kwargs, self.seed, self.variant = env_id, env_kwargs, seed, variant
        self.total_steps = total_steps
        self.run_dir = run_dir
        self.hparams = hparams
        self.progress_bar = progress_bar
        self.eval_history: list[dict[str, float]] = []
        self.ctrl_c = CtrlC()  # installed by the caller around learn: ``with callback.ctrl_c:``
        self._cadence = LogCadence()
        self._bar: ProgressBar | None = None

    @property
    def stop_requested(self) -> bool:
        """Whether Ctrl-C asked the run to stop."""
        return self.ctrl_c.requested

    def _on_training_start(self) -> None:
        self._start_time = time.perf_counter()
        self._cadence = LogCadence(self.num_timesteps)
        if self.hparams is not None:
            log_hparams(self.logger, self.hparams)
        if self.progress_bar:
            self._bar = ProgressBar(self.total_steps, self.num_timesteps)

    def _on_step(self) -> bool:
        c, n = self.config, self.num_timesteps
        n_envs = self.training_env.num_envs
        evaluated = due(n, c.eval_freq, n_envs)
        if evaluated:
            self.evaluate()
        if self._cadence.due(n, evaluated):
            dump_logs(self.model)
        if due(n, c.checkpoint_freq, n_envs):
            self.save_checkpoint()
        if self._bar is not None:
            self._bar.update(n_envs)
        if self.stop_requested:
            return False
        # on-policy: stop inside an unfinished rollout at the budget (a finished one is trained on,
        # then ``learn`` ends by itself); off-policy algorithms end at the budget by themselves
        locals_ = self.locals
        if n >= self.total_steps and "n_rollout_steps" in locals_:
            return locals_["n_steps"] + 1 >= locals_["n_rollout_steps"]
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def evaluate(self) -> dict[str, float]:
        """Greedy evaluation on fixed episode seeds; logged under ``eval/`` and kept in ``eval_history``."""
        policy = EvalPolicy(self.model, self.env_id, self.env_kwargs, self.variant)
        row = evaluate_now(policy, self.config.eval_episodes, self.seed, self.model.num_timesteps,
                           time.perf_counter() - self._start_time, self.logger)
        self.eval_history.append(row)
        return {k: v for k, v in row.items() if k not in ("step", "wall_clock_s")}

    def finish(self) -> None:
        """After ``learn``: evaluate at the last step if that did not happen yet, and write the last log row."""
        step = self.model.num_timesteps
        if self.config.eval_freq and (not self.eval_history or self.eval_history[-1]["step"] != step):
            self.evaluate()
            dump_logs(self.model)

    def save_checkpoint(self) -> None:
        if self.run_dir is not None:
            save_model(self.model, self.run_dir / LAST_CHECKPOINT)


def timed_learn(model: Any, total_steps: int, callback: RunCallback) -> float:
    """``model.learn`` with the callback's logging cadence (not SB3's); returns the wall-clock seconds."""
    start = time.perf_counter()
    model.learn(total_steps, callback=callback, log_interval=None)
    return time.perf_counter() - start
