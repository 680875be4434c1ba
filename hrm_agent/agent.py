"""``HRMAgent``: the HRM Q-network trained by DQN, with a stable-baselines3-shaped API.

``learn`` is one straight loop over vector steps (as in CleanRL's ``dqn.py``):
act with one batched forward pass, step the environments, store the
transition with its latent, update the network every ``train_freq`` steps,
sync the target network, log, evaluate, checkpoint.

Carry z vs reset z: with ``carry_z`` the latent each environment's forward
pass leaves behind starts its next forward pass (also on random-action and
warm-up steps, so it never goes stale) and is reset when an episode starts;
without it every forward pass starts from the fixed initial state. What is
carried is ``config.carry``: the whole state (``full``) or the query
position's vectors broadcast to every position (``token``), see
``HRMQNetwork.carry_state``; replay stores exactly what is carried.
"""

from __future__ import annotations

import copy
import pickle
import signal
import time
import warnings
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from hrm_agent import checkpoint
from hrm_agent.checkpoint import FINAL_MODEL, LAST_CHECKPOINT
from hrm_agent.dqn import dqn_update, linear_schedule, update_target, warmup_lr
from hrm_agent.hyperparams import AgentConfig, resolve_config
from hrm_agent.model import HRMCarry, HRMQNetwork
from hrm_agent.replay import ReplayBuffer
from hrm_agent.runs import LOG_INTERVAL, hrm_model_config

EVAL_MODELS = "models"  # with save_eval_models: the model at every evaluation, models/step_{N}.pt


class TrainingDiverged(RuntimeError):
    """The TD loss became non-finite; the last good checkpoint is kept."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    return device


def make_vec_env(env_id: str, env_kwargs: dict[str, Any], n_envs: int) -> gym.vector.SyncVectorEnv:
    """``n_envs`` copies of ``env_id``; on an episode's end the final observation is in ``info["final_obs"]``
    and the returned observation already starts the next episode (same-step autoreset)."""
    return gym.vector.SyncVectorEnv(
        [partial(gym.make, env_id, **env_kwargs) for _ in range(n_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def make_logger(run_dir: Path, resume_step: int | None = None) -> Any:
    """stable-baselines3 logger writing ``progress.csv`` and TensorBoard events in ``run_dir``.

    A resumed run (``resume_step``: the step of its checkpoint) first drops what was logged past that
    step (:func:`hrm_agent.runs.truncate_logs`), then appends to its ``progress.csv`` (SB3's own CSV
    writer would truncate it) and writes a new events file that tells a TensorBoard already showing
    the run to purge its steps past ``resume_step``. A write the file system refuses raises
    ``OutputError`` naming the file.
    """
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
    from torch.utils.tensorboard import SummaryWriter

    from hrm_agent.runs import PROGRESS_CSV, truncate_logs

    class AppendingCSVOutputFormat(CSVOutputFormat):
        def __init__(self, filename: str) -> None:
            self.path = Path(filename)
            try:
                if not self.path.is_file() or self.path.stat().st_size == 0:
                    super().__init__(filename)
                    return
                self.file = self.path.open("r+")
            except OSError as err:
                raise checkpoint.OutputError(self.path, err) from err
            self.keys = self.file.readline().rstrip("\n").split(",")
            self.file.seek(0, 2)  # append after the rows already logged
            self.separator, self.quotechar = ",", '"'

        def write(self, *args: Any, **kwargs: Any) -> None:
            try:
                super().write(*args, **kwargs)
            except OSError as err:
                raise checkpoint.OutputError(self.path, err) from err

    class PurgingTensorBoardOutputFormat(TensorBoardOutputFormat):
        def __init__(self, folder: str, purge_step: int | None) -> None:
            try:
                self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
            except OSError as err:
                raise checkpoint.OutputError(folder, err) from err
            self._is_closed = False
            event_writer = getattr(self.writer.file_writer, "event_writer", None)
            self.path = getattr(event_writer, "_file_name", folder)  # the events file, where tensorboard says

        def write(self, *args: Any, **kwargs: Any) -> None:
            try:
                super().write(*args, **kwargs)
            except OSError as err:
                raise checkpoint.OutputError(self.path, err) from err

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise checkpoint.OutputError(run_dir, err) from err
    if resume_step is not None:
        truncate_logs(run_dir, resume_step)
    formats = [AppendingCSVOutputFormat(str(run_dir / PROGRESS_CSV)),
               PurgingTensorBoardOutputFormat(str(run_dir), None if resume_step is None else resume_step + 1)]
    return Logger(str(run_dir), formats)


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build kernels here: on CPU it needs a C++ compiler. Without one,
    warn once and run eager (the same values, slower)."""
    if device.type != "cpu":
        return True
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without this helper: let torch.compile find out
        return True
    try:
        get_cpp_compiler()
    except Exception:  # torch raises its InvalidCxxCompiler when none of its candidates runs
        warnings.warn("compile: no C++ compiler found for torch.compile on CPU; running eager (slower). "
                      "Install g++ or clang, or set compile=false to silence this.", stacklevel=3)
        return False
    return True


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

    def __init__(
        self,
        env: str | gym.Env,
        config: AgentConfig | dict[str, Any] | None = None,
        *,
        seed: int = 0,
        device: str | torch.device = "auto",
        env_kwargs: dict[str, Any] | None = None,
        preset: str | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        if isinstance(env, str):
            self.env_id, self.env_kwargs = env, dict(env_kwargs or {})
        else:
            if env.spec is None:
                raise ValueError("pass an env made with gym.make (it needs a spec to be re-created), or its id")
            self.env_id, self.env_kwargs = env.spec.id, {**env.spec.kwargs, **(env_kwargs or {})}
        # a mapping (or None) is applied over the env's tuned defaults, as the CLI does
        if isinstance(config, AgentConfig):
            if preset is not None:
                raise ValueError("preset applies to a dict config; an AgentConfig is used as is")
            self.config = config
        else:
            self.config = resolve_config(self.env_id, params=config or {}, preset=preset)
        self.seed = seed
        self.device = resolve_device(device)
        self.run_dir = None if run_dir is None else Path(run_dir)

        probe = gym.make(self.env_id, **self.env_kwargs)
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()
        # the same check the commands make before any work (hrm_agent.runs.check_config)
        self.tokenizer, self.model_config = hrm_model_config(self.observation_space, self.action_space, self.config)

        torch.manual_seed(seed)
        self.online = HRMQNetwork(self.model_config).to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        if self.config.compile and can_compile(self.device):
            # in place: parameter names and checkpoints stay those of the eager model
            for net in (self.online, self.target):
                for module in net.core.compiled_modules():
                    module.compile()
        optimizer_cls = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_cls(
            self.online.parameters(),
            lr=self.config.learning_rate,
            betas=self.config.adam_betas,
            weight_decay=self.config.weight_decay,
        )
        self.rng = np.random.default_rng(seed)

        # counters (env steps = transitions summed over environments)
        self.num_timesteps = 0
        self.total_timesteps = 0
        self.n_updates = 0
        self.n_episodes = 0
        self.last_target_sync = 0
        self.learning_starts_at = self.config.learning_starts  # moved on by a resume without replay
        self.wall_time = 0.0  # seconds spent in learn, across resumes
        self.eval_history: list[dict[str, float]] = []

        # acting state, created on the first ``learn``
        self.envs: gym.vector.SyncVectorEnv | None = None
        self.replay: ReplayBuffer | None = None
        self._obs: np.ndarray | None = None
        self._carry: HRMCarry | None = None
        self._episode_start: np.ndarray | None = None
        self._episode_return: np.ndarray | None = None
        self._episode_length: np.ndarray | None = None
        self._ep_info: deque[tuple[float, int, bool]] = deque(maxlen=100)
        self._logger: Any = None
        self._resumed_at: int | None = None  # the checkpoint's step when loaded from one: logs end there
        self._stop_requested = False

    # ------------------------------------------------------------------ acting
    @property
    def variant(self) -> str:
        return "carry" if self.config.carry_z else "reset"

    def _tokens(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.tokenizer(obs)).to(self.device)

    @torch.no_grad()
    def _act(self, obs: np.ndarray, carry: HRMCarry) -> tuple[HRMCarry, np.ndarray]:
        """One batched forward pass: ``obs (B, H, W)`` -> (latent left behind, greedy actions ``(B,)``)."""
        new_carry, q = self.online(carry, self._tokens(obs))
        return new_carry, q.argmax(dim=1).cpu().numpy()

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
        if state is None or not self.config.carry_z:
            carry = self.online.initial_carry(batch, device=self.device)
        else:
            if state.z_H.shape[0] != batch:
                raise ValueError(f"state holds {state.z_H.shape[0]} latents for a batch of {batch} observations")
            carry = HRMCarry(state.z_H.to(self.device), state.z_L.to(self.device))
            if episode_start is not None:
                mask = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(batch), device=self.device)
                carry = self.online.reset_carry(mask, carry)
        new_carry, actions = self._act(observation, carry)
        if self.config.carry_z:  # what the next step starts from (token: the broadcast query vectors)
            new_carry = self.online.carry_from_state(self.online.carry_state(new_carry, self.config.carry))
        if not deterministic:
            explore = self.rng.random(batch) < self.config.exploration_final_eps
            actions = np.where(explore, self.rng.integers(0, self.action_space.n, size=batch), actions)
        return (actions[0] if single else actions), new_carry

    def record_latents(self, n_episodes: int, positions: str = "all") -> Any:
        """A recorder of the forward passes :meth:`predict` makes while it is entered, the hook of
        ``evaluate(..., record_latents=True)`` (:class:`hrm_agent.recording.ForwardRecorder`)."""
        from hrm_agent.recording import ForwardRecorder

        carry = self.config.carry if self.config.carry_z else None
        return ForwardRecorder(self.online, self.tokenizer, n_episodes, positions,
                               {"variant": self.variant, "seed": self.seed, "carry": carry})

    # ---------------------------------------------------------------- training
    def exploration_rate(self) -> float:
        c = self.config
        duration = c.exploration_steps or c.exploration_fraction * self.total_timesteps
        return linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, duration, self.num_timesteps)

    def _setup_learn(self) -> None:
        c = self.config
        if self.envs is None:
            self.envs = make_vec_env(self.env_id, self.env_kwargs, c.n_envs)
            self._obs, _ = self.envs.reset(seed=self.seed)
            self._carry = self.online.initial_carry(c.n_envs, device=self.device)
            self._episode_start = np.ones(c.n_envs, dtype=bool)
            self._episode_return = np.zeros(c.n_envs)
            self._episode_length = np.zeros(c.n_envs, dtype=np.int64)
        if self.replay is None:
            D = self.model_config.hidden_size
            latent_shape = None if not c.carry_z else (D,) if c.carry == "token" else (self.model_config.total_seq_len, D)
            latent_dtype = torch.bfloat16 if self.model_config.forward_dtype == "bfloat16" else torch.float16
            self.replay = ReplayBuffer(c.buffer_size, c.n_envs, self.tokenizer.seq_len, latent_shape, latent_dtype,
                                       goal_tokens=self.tokenizer.goal_tokens)
        if self.run_dir is not None and self._logger is None:
            self._logger = make_logger(self.run_dir, resume_step=self._resumed_at)
            self._log_hparams()

    def learn(
        self,
        total_timesteps: int,
        callback: Callable[["HRMAgent"], bool | None] | None = None,
        progress_bar: bool = False,
    ) -> "HRMAgent":
        """Train for ``total_timesteps`` more environment steps (counting continues across calls).

        ``callback(agent)`` runs after every vector step; returning False stops training.
        Evaluates greedily every ``eval_freq`` steps and at the end (``eval_history``). With a
        ``run_dir`` it also logs to TensorBoard/CSV there and checkpoints every ``checkpoint_freq``
        steps; without one nothing is written. Ctrl-C finishes the current step and returns the
        trained agent early (after a checkpoint, with a ``run_dir``); call ``learn`` again to go on.
        Raises ``TrainingDiverged`` on a non-finite loss (no checkpoint is written after it).
        """
        c = self.config
        self._setup_learn()
        self._stop_requested = False
        assert self.envs is not None and self.replay is not None and self._obs is not None
        end = self.num_timesteps + total_timesteps
        self.total_timesteps = max(self.total_timesteps, end)  # the exploration schedule's horizon
        initial = self.online.initial_carry(c.n_envs, device=self.device)
        start_time, start_steps = time.perf_counter(), self.num_timesteps
        last_time = start_time
        next_log = (self.num_timesteps // LOG_INTERVAL + 1) * LOG_INTERVAL
        bar = None
        if progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.num_timesteps, unit="step", dynamic_ncols=True)
        previous_handler = self._install_sigint_handler()
        try:
            while self.num_timesteps < end and not self._stop_requested:
                # act: one forward pass for all envs, also on random-action steps so z stays fresh
                carry = self._carry if c.carry_z else initial
                new_carry, actions = self._act(self._obs, carry)
                explore = self.rng.random(c.n_envs) < self.exploration_rate()
                actions = np.where(explore, self.rng.integers(0, self.action_space.n, size=c.n_envs), actions)

                next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
                z_out = self.online.carry_state(new_carry, c.carry) if c.carry_z else None
                done = terminated | truncated
                real_next_obs = next_obs.copy()
                for i in np.flatnonzero(done):  # same-step autoreset: next_obs already starts a new episode
                    real_next_obs[i] = infos["final_obs"][i]
                self.replay.add(
                    self.tokenizer(self._obs),
                    self.tokenizer(real_next_obs),
                    actions,
                    rewards,
                    terminated,
                    self._episode_start,
                    z_out,
                )
                self._track_episodes(rewards, done, infos)

                self._obs = next_obs
                self._episode_start = done
                if c.carry_z:
                    carried = self.online.carry_from_state(z_out)
                    self._carry = self.online.reset_carry(torch.as_tensor(done, device=self.device), carried)
                self.num_timesteps += c.n_envs

                # learn
                if self.num_timesteps >= self.learning_starts_at and len(self.replay) >= c.batch_size:
                    vector_steps = self.num_timesteps // c.n_envs
                    if vector_steps % c.train_freq == 0:
                        self._train(c.gradient_steps)
                if c.target_update == "periodic" and self.num_timesteps - self.last_target_sync >= c.target_update_interval:
                    update_target(self.online, self.target, c.tau)
                    self.last_target_sync = self.num_timesteps

                # log, evaluate, checkpoint
                now = time.perf_counter()
                self.wall_time += now - last_time
                last_time = now
                fps = (self.num_timesteps - start_steps) / max(now - start_time, 1e-9)
                evaluated = bool(c.eval_freq) and self.num_timesteps % c.eval_freq < c.n_envs
                if evaluated:
                    self._evaluate()
                if self.num_timesteps >= next_log or evaluated:
                    self._log_rollout(fps)
                    next_log = (self.num_timesteps // LOG_INTERVAL + 1) * LOG_INTERVAL
                if self.run_dir is not None and c.checkpoint_freq and self.num_timesteps % c.checkpoint_freq < c.n_envs:
                    self.save_checkpoint()
                if bar is not None:
                    bar.update(c.n_envs)
                    bar.set_postfix(success=f"{self.success_rate():.2f}", fps=f"{fps:.0f}", refresh=False)
                if callback is not None and callback(self) is False:
                    break
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if bar is not None:
                bar.close()
        if self._stop_requested and self.run_dir is not None:
            self.save_checkpoint()
        elif self.num_timesteps >= end:
            if c.eval_freq and (not self.eval_history or self.eval_history[-1]["step"] != self.num_timesteps):
                self._evaluate()
                self._log_rollout(0.0 if self.num_timesteps == start_steps else fps)
            if self.run_dir is not None:
                self.save_checkpoint()
                self.save(self.run_dir / FINAL_MODEL)
        return self

    def _train(self, gradient_steps: int) -> None:
        assert self.replay is not None
        c = self.config
        for _ in range(gradient_steps):
            batch = self.replay.sample(c.batch_size, self.rng, self.device, n_step=c.n_step, gamma=c.gamma,
                                       her_ratio=c.her_ratio)
            for group in self.optimizer.param_groups:
                group["lr"] = warmup_lr(c.learning_rate, c.lr_warmup_steps, self.n_updates)
            stats = dqn_update(
                self.online,
                self.target,
                self.optimizer,
                batch,
                gamma=c.gamma,
                loss=c.loss,
                double_q=c.double_q,
                max_grad_norm=c.max_grad_norm,
                deep_supervision=c.deep_supervision,
                target_tau=c.tau if c.target_update == "every_update" else None,
            )
            if not np.isfinite(stats["loss"]):
                raise TrainingDiverged(
                    f"non-finite TD loss at step {self.num_timesteps}; try a lower learning_rate "
                    f"(now {c.learning_rate}) or max_grad_norm; the last good checkpoint is kept"
                )
            self.n_updates += stats["optimizer_steps"]
        if self._logger is not None:  # averaged over the updates since the last dump
            self._logger.record_mean("train/loss", stats["loss"])
            self._logger.record_mean("train/q_mean", stats["q_mean"])
            self._logger.record_mean("train/grad_norm", stats["grad_norm"])
            self._logger.record("train/n_updates", self.n_updates, exclude="tensorboard")

    # ----------------------------------------------------------------- logging
    def _track_episodes(self, rewards: np.ndarray, done: np.ndarray, infos: dict[str, Any]) -> None:
        assert self._episode_return is not None and self._episode_length is not None
        self._episode_return += rewards
        self._episode_length += 1
        for i in np.flatnonzero(done):
            success = bool(infos["final_info"].get("is_success", np.zeros(len(done), bool))[i])
            self._ep_info.append((float(self._episode_return[i]), int(self._episode_length[i]), success))
            self._episode_return[i] = 0.0
            self._episode_length[i] = 0
            self.n_episodes += 1

    def success_rate(self) -> float:
        """Success rate over the last 100 training episodes (0 before the first ends)."""
        return float(np.mean([s for _, _, s in self._ep_info])) if self._ep_info else 0.0

    def _log_rollout(self, fps: float) -> None:
        if self._logger is None:
            return
        log = self._logger.record
        if self._ep_info:
            log("rollout/ep_rew_mean", float(np.mean([r for r, _, _ in self._ep_info])))
            log("rollout/ep_len_mean", float(np.mean([n for _, n, _ in self._ep_info])))
            log("rollout/success_rate", self.success_rate())
        log("rollout/exploration_rate", self.exploration_rate())
        log("time/fps", fps)
        log("time/episodes", self.n_episodes, exclude="tensorboard")
        log("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self._logger.dump(self.num_timesteps)

    def _log_hparams(self) -> None:
        from stable_baselines3.common.logger import HParam

        hparams: dict[str, Any] = {"env": self.env_id, "seed": self.seed}
        for key, value in {**self.config.model_dump(exclude={"model"}), **self.model_config.model_dump()}.items():
            hparams[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
        metrics = {"eval/success_rate": 0.0, "rollout/success_rate": 0.0}
        self._logger.record("hparams", HParam(hparams, metrics), exclude=("stdout", "log", "json", "csv"))

    def _evaluate(self) -> None:
        """Greedy evaluation on fixed episode seeds (the same episodes at every evaluation)."""
        from hrm_agent.evaluate import EVAL_SEED_OFFSET, evaluate

        summary = evaluate(self, self.config.eval_episodes, seed=self.seed + EVAL_SEED_OFFSET).summary()
        # the training wall-clock when it was reached: minutes to a success rate are read from here
        self.eval_history.append({"step": self.num_timesteps, "wall_clock_s": round(self.wall_time, 1), **summary})
        if self._logger is not None:
            for key in ("success_rate", "mean_ep_length", "path_efficiency"):
                self._logger.record(f"eval/{key}", summary[key])
        if self.run_dir is not None and self.config.save_eval_models:
            self.save(self.run_dir / EVAL_MODELS / f"step_{self.num_timesteps:08d}.pt")

    def _install_sigint_handler(self) -> Any:
        """Ctrl-C finishes the current step and returns from ``learn`` (checkpointing first with a run dir)."""
        def request_stop(signum: int, frame: Any) -> None:
            self._stop_requested = True

        try:
            return signal.signal(signal.SIGINT, request_stop)
        except ValueError:  # not in the main thread
            return None

    # ------------------------------------------------------------- save / load
    def _header(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "seed": self.seed,
            "config": self.config.model_dump(),
            "model_config": self.model_config.model_dump(),
        }

    def save(self, path: str | Path) -> None:
        """Write config + online weights (atomically) to ``path``."""
        checkpoint.save_file(path, "model", {**self._header(), "model": self.online.state_dict()})

    @classmethod
    def _from_header(cls, data: dict[str, Any], device: str | torch.device, run_dir: Path | None) -> "HRMAgent":
        agent = cls(
            data["env_id"],
            AgentConfig(**data["config"]),
            seed=data["seed"],
            device=device,
            env_kwargs=data["env_kwargs"],
            run_dir=run_dir,
        )
        # fields a file lacks were added later; their defaults rebuild the model it was saved from
        current = agent.model_config.model_dump()
        if any(current.get(key) != value for key, value in data["model_config"].items()):
            raise checkpoint.CheckpointError(
                f"the saved model config does not match the environment {data['env_id']} as it is made now"
            )
        agent.online.load_state_dict(data["model"])
        agent.target.load_state_dict(data.get("target", data["model"]))
        return agent

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "HRMAgent":
        """Load a saved model; ``path`` may be a run directory (its final model, else its last checkpoint)."""
        path = Path(path)
        if path.is_dir():
            baseline_files = [name for name in ("final_model.zip", "checkpoints/last.zip") if (path / name).is_file()]
            if baseline_files and not (path / FINAL_MODEL).is_file() and not (path / LAST_CHECKPOINT).is_file():
                raise checkpoint.CheckpointError(
                    f"{path} is a run of python -m hrm_agent.baselines (a stable-baselines3 model, "
                    f"{baseline_files[0]}), not of the HRM agent: load it with the algorithm's load (e.g. "
                    "stable_baselines3.DQN.load); bench learn and analysis/learning_table.py read its summary.json")
            path = path / FINAL_MODEL if (path / FINAL_MODEL).is_file() else path / LAST_CHECKPOINT
        elif path.suffix == ".zip" and path.is_file():
            raise checkpoint.CheckpointError(
                f"{path} is a stable-baselines3 model (python -m hrm_agent.baselines writes these), not an HRM "
                "agent's: load it with the algorithm's load (e.g. stable_baselines3.DQN.load)")
        return cls._from_header(checkpoint.load_file(path), device, None)

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Everything needed to resume ``learn`` exactly (replay only with ``checkpoint_replay``)."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("save_checkpoint needs a path when the agent has no run_dir")
            path = self.run_dir / LAST_CHECKPOINT
        state = {
            **self._header(),
            "model": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": {
                "num_timesteps": self.num_timesteps,
                "total_timesteps": self.total_timesteps,
                "n_updates": self.n_updates,
                "n_episodes": self.n_episodes,
                "last_target_sync": self.last_target_sync,
                "learning_starts_at": self.learning_starts_at,
                "wall_time": self.wall_time,
            },
            "eval_history": self.eval_history,
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()},
            "acting": None
            if self.envs is None
            else {
                "envs": pickle.dumps([env for env in self.envs.envs]),
                "obs": self._obs,
                "carry": self._carry,
                "episode_start": self._episode_start,
                "episode_return": self._episode_return,
                "episode_length": self._episode_length,
                "ep_info": list(self._ep_info),
            },
            "replay": self.replay.state_dict() if (self.config.checkpoint_replay and self.replay) else None,
        }
        checkpoint.save_file(path, "checkpoint", state)
        return Path(path)

    @classmethod
    def load_checkpoint(
        cls, path: str | Path, device: str | torch.device = "auto", run_dir: str | Path | None = None
    ) -> "HRMAgent":
        """Restore an agent from ``save_checkpoint`` so that ``learn`` continues where it stopped.

        Without a checkpointed replay buffer the buffer starts empty and is refilled for
        ``learning_starts`` steps before updates resume.
        """
        path = Path(path)
        if path.is_dir():
            run_dir = run_dir or path
            path = path / LAST_CHECKPOINT
        data = checkpoint.load_file(path, kind="checkpoint")
        agent = cls._from_header(data, device, None if run_dir is None else Path(run_dir))
        agent.optimizer.load_state_dict(data["optimizer"])
        counters = data["counters"]
        agent.num_timesteps = counters["num_timesteps"]
        agent.total_timesteps = counters["total_timesteps"]
        agent.n_updates = counters["n_updates"]
        agent.n_episodes = counters["n_episodes"]
        agent.last_target_sync = counters["last_target_sync"]
        agent.learning_starts_at = counters["learning_starts_at"]
        agent.wall_time = counters["wall_time"]
        agent._resumed_at = agent.num_timesteps
        agent.eval_history = list(data["eval_history"])
        agent.rng.bit_generator.state = data["rng"]["numpy"]
        torch.set_rng_state(data["rng"]["torch"])
        acting = data["acting"]
        if acting is not None:
            envs = pickle.loads(acting["envs"])
            agent.envs = gym.vector.SyncVectorEnv(
                [partial(lambda e: e, env) for env in envs], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
            )
            agent._obs = acting["obs"]
            agent._carry = HRMCarry(*(z.to(agent.device) for z in acting["carry"]))
            agent._episode_start = acting["episode_start"]
            agent._episode_return = acting["episode_return"]
            agent._episode_length = acting["episode_length"]
            agent._ep_info.extend(acting["ep_info"])
        if data["replay"] is not None:
            agent._setup_learn()
            assert agent.replay is not None
            agent.replay.load_state_dict(data["replay"])
        elif agent.num_timesteps > 0:  # refill the empty buffer before learning again
            agent.learning_starts_at = max(agent.learning_starts_at, agent.num_timesteps + agent.config.learning_starts)
        return agent
