"""``python -m hrm_agent.bench train``: training-loop throughput of the HRM learner vs stable-baselines3 DQN.

For the env's tuned training configs (``hrm_agent/hyperparams.yaml``: the HRM
agent with carry z and with reset z, and the SB3 DQN baseline, all without
evaluation or checkpoints), each learner runs in a fresh process: an untimed
warm-up fills the replay buffer until gradient updates begin, then ``--steps``
env steps of ``learn`` are timed. Printed per learner: env steps/s, gradient
updates/s and ms per update, replay bytes per transition (and the buffer at
its full ``buffer_size``), peak resident memory of the process; the ratios
HRM / SB3 DQN and carry / reset; and where the timed loop's time goes.

The breakdown needs no profiler and changes nothing in the training loop: the
HRM loop reports the time of each phase to its callbacks (``Callback.on_phase``,
collected by ``hrm_agent.callbacks.PhaseTimer``); SB3 DQN is timed by a
subclass of it and of its replay buffer, and a wrapper of its vector env:

- act: the batched forward pass that picks actions (SB3: ``predict``);
- env step: the vector env's ``step``;
- replay add / replay sample: the replay buffer's ``add`` and ``sample``;
- update: one gradient update without its sampling (``hrm_agent.loop.dqn_update``; SB3: ``DQN.train``
  less its ``sample``);
- target sync: copying the online network into the target network;
- other: the rest (epsilon-greedy, carry reset, bookkeeping, logging).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from hrm_agent.experiments.cli import add_env_kwarg, add_set

LEARNERS = ("carry", "reset", "dqn")
LABELS = {"carry": "HRM carry z", "reset": "HRM reset z", "dqn": "SB3 DQN"}
PHASES = ("act", "env step", "replay add", "replay sample", "update", "target sync")
NO_EVAL = ["eval_freq=0", "checkpoint_freq=0"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="DynamicMaze-v0", help="env whose tuned configs are run (default DynamicMaze-v0)")
    parser.add_argument("--steps", type=int, default=5_000, help="timed env steps per learner (default 5000)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each learner (default 1, as bench learn's runs use)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    add_set(parser, "hyperparameter for the learners named (hrm, carry, reset, dqn; none: all)",
            metavar="[LEARNER:]KEY=VALUE", default=[])
    add_env_kwarg(parser, default=[])


def peak_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def current_rss_bytes() -> int:
    try:
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def _measure_hrm(variant: str, env_id: str, env_kwargs: dict[str, Any], settings: list[str], steps: int,
                 seed: int) -> dict[str, Any]:
    from hrm_agent.agent import HRMAgent
    from hrm_agent.callbacks import PhaseTimer
    from hrm_agent.hyperparams import resolve_config

    config = resolve_config(env_id, None, settings + NO_EVAL, carry_z=variant == "carry")
    agent = HRMAgent(env_id, config, seed=seed, device="cpu", env_kwargs=env_kwargs)
    warmup = max(config.learning_starts, config.batch_size)
    agent.learn(warmup)  # untimed: fills the replay buffer until updates start
    start_rss = current_rss_bytes()
    timer = PhaseTimer()
    steps0, updates0 = agent.num_timesteps, agent.n_updates
    start = time.perf_counter()
    agent.learn(steps, callback=timer)
    wall = time.perf_counter() - start
    assert agent.replay is not None
    return {
        "env_steps": agent.num_timesteps - steps0, "updates": agent.n_updates - updates0, "wall": wall,
        "warmup": warmup, "seconds": dict(timer.seconds), "calls": dict(timer.calls),
        "replay_bytes": agent.replay.bytes_per_transition, "buffer_size": config.buffer_size,
        "n_envs": config.n_envs, "batch_size": config.batch_size, "start_rss": start_rss,
    }


def timed_dqn_classes(timer: Any) -> tuple[type, type, type]:
    """SB3's DQN, its replay buffer and a vector-env wrapper that report their phases to ``timer.on_phase``."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.buffers import ReplayBuffer
    from stable_baselines3.common.vec_env import VecEnvWrapper

    def timed(phase: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timer.on_phase(phase, time.perf_counter() - start)

    class TimedBuffer(ReplayBuffer):
        def add(self, *args: Any, **kwargs: Any) -> None:
            timed("replay add", super().add, *args, **kwargs)

        def sample(self, *args: Any, **kwargs: Any) -> Any:
            return timed("replay sample", super().sample, *args, **kwargs)

    class TimedDQN(DQN):
        def predict(self, *args: Any, **kwargs: Any) -> Any:
            return timed("act", super().predict, *args, **kwargs)

        def train(self, *args: Any, **kwargs: Any) -> None:  # includes its sampling, subtracted by the bench
            timed("update", super().train, *args, **kwargs)

        def _on_step(self) -> None:
            syncs = (self._n_calls + 1) % max(self.target_update_interval // self.n_envs, 1) == 0
            timed("target sync", super()._on_step) if syncs else super()._on_step()

    class TimedVecEnv(VecEnvWrapper):
        def reset(self) -> Any:
            return self.venv.reset()

        def step_async(self, actions: Any) -> None:
            self.venv.step_async(actions)

        def step_wait(self) -> Any:
            return timed("env step", self.venv.step_wait)

    return TimedDQN, TimedBuffer, TimedVecEnv


def _measure_dqn(env_id: str, env_kwargs: dict[str, Any], settings: list[str], steps: int,
                 seed: int) -> dict[str, Any]:
    from stable_baselines3.common.logger import Logger

    from hrm_agent.baselines.config import resolve_baseline_config
    from hrm_agent.baselines.sb3 import make_model
    from hrm_agent.callbacks import PhaseTimer

    config = resolve_baseline_config("dqn", env_id, None, settings + NO_EVAL)
    timer = PhaseTimer()
    dqn_cls, buffer_cls, env_wrapper = timed_dqn_classes(timer)
    model = make_model("dqn", env_id, config, seed=seed, env_kwargs=env_kwargs, device="cpu", algorithm=dqn_cls,
                       replay_buffer_class=buffer_cls)
    model.set_env(env_wrapper(model.get_env()), force_reset=False)
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default would make an empty temp dir
    warmup = config.learning_starts + config.n_envs  # SB3 updates once num_timesteps > learning_starts
    model.learn(warmup, log_interval=None)
    start_rss = current_rss_bytes()
    timer.seconds.clear()
    timer.calls.clear()
    buffer = model.replay_buffer
    steps0, updates0 = model.num_timesteps, model._n_updates
    start = time.perf_counter()
    model.learn(steps, log_interval=None, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    seconds = dict(timer.seconds)
    seconds["update"] = seconds.get("update", 0.0) - seconds.get("replay sample", 0.0)
    arrays = [getattr(buffer, name) for name in ("observations", "next_observations", "actions", "rewards",
                                                 "dones", "timeouts") if getattr(buffer, name, None) is not None]
    return {
        "env_steps": model.num_timesteps - steps0, "updates": model._n_updates - updates0, "wall": wall,
        "warmup": warmup, "seconds": seconds, "calls": dict(timer.calls),
        "replay_bytes": sum(a.nbytes for a in arrays) // (buffer.buffer_size * buffer.n_envs),
        "buffer_size": config.buffer_size, "n_envs": config.n_envs, "batch_size": config.batch_size,
        "start_rss": start_rss,
    }


def measure(learner: str, env_id: str, env_kwargs: dict[str, Any], settings: list[str], steps: int, seed: int,
            threads: int) -> dict[str, Any]:
    """One learner's figures; meant to run in a fresh process (peak RSS is the process's)."""
    import torch

    import hrm_agent  # noqa: F401  (registers the envs)

    torch.set_num_threads(threads)
    if learner == "dqn":
        result = _measure_dqn(env_id, env_kwargs, settings, steps, seed)
    else:
        result = _measure_hrm(learner, env_id, env_kwargs, settings, steps, seed)
    result["peak_rss"] = peak_rss_bytes()
    return result


def split_overrides(items: list[str]) -> dict[str, list[str]]:
    from hrm_agent.runs import UsageError

    prefixes = {"hrm": ("carry", "reset"), "sb3": ("dqn",), **{n: (n,) for n in LEARNERS}}
    per_learner: dict[str, list[str]] = {n: [] for n in LEARNERS}
    for item in items:
        head, sep, _ = item.partition("=")
        if not sep or not head:
            raise UsageError(f"--set {item!r} must look like [LEARNER:]KEY=VALUE (e.g. hrm:batch_size=32)")
        prefix, colon, _ = head.partition(":")
        if colon and prefix not in prefixes:
            raise UsageError(f"--set {item!r}: unknown learner {prefix!r}; use one of {', '.join(prefixes)}")
        targets, text = (prefixes[prefix], item[len(prefix) + 1:]) if colon else (LEARNERS, item)
        for name in targets:
            per_learner[name].append(text)
    return per_learner


def report(results: dict[str, dict[str, Any]], env_id: str, steps: int, threads: int) -> str:
    mb = 1 / 2**20
    rates = {n: (r["env_steps"] / r["wall"], r["updates"] / r["wall"]) for n, r in results.items()}
    lines = [
        f"bench train: {env_id}, {steps:,} timed env steps per learner after an untimed warm-up "
        f"(replay filled to learning_starts), CPU, {threads} thread(s), one fresh process each",
        f"{'learner':<13}{'env steps/s':>12}{'updates/s':>11}{'ms/update':>11}{'n_envs':>8}{'batch':>7}"
        f"{'replay B/transition':>21}{'replay MB full':>16}{'peak RSS MB':>13}",
    ]
    for name, r in results.items():
        steps_s, updates_s = rates[name]
        ms = 1000 * r["seconds"].get("update", 0.0) / max(r["updates"], 1)
        lines.append(f"{LABELS[name]:<13}{steps_s:>12,.0f}{updates_s:>11,.1f}{ms:>11.2f}{r['n_envs']:>8}"
                     f"{r['batch_size']:>7}{r['replay_bytes']:>21,}{r['replay_bytes'] * r['buffer_size'] * mb:>16,.1f}"
                     f"{r['peak_rss'] * mb:>13,.0f}")
    pairs = [(a, b) for a, b in (("carry", "dqn"), ("reset", "dqn"), ("carry", "reset")) if a in rates and b in rates]
    if pairs:
        lines.append("ratios: " + "; ".join(
            f"{LABELS[a]} / {LABELS[b]}: env steps/s {rates[a][0] / rates[b][0]:.3f}x, "
            f"updates/s {rates[a][1] / max(rates[b][1], 1e-12):.3f}x" for a, b in pairs))
    names = list(results)
    lines.append("where the timed loop's time goes: % of its wall-clock (ms per call)")
    lines.append(f"{'phase':<14}" + "".join(f"{LABELS[n]:>24}" for n in names))
    for phase in (*PHASES, "other"):
        cells = []
        for n in names:
            r = results[n]
            if phase == "other":
                seconds, calls = r["wall"] - sum(r["seconds"].values()), 0
            else:
                seconds, calls = r["seconds"].get(phase, 0.0), r["calls"].get(phase, 0)
            per_call = f" ({1000 * seconds / calls:.3f} ms)" if calls else ""
            cells.append(f"{100 * seconds / r['wall']:.1f}%{per_call}".rjust(24))
        lines.append(f"{phase:<14}" + "".join(cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings, env_kwargs = _check(args)  # a mistake: UsageError, one line and exit code 2 (bench's main)
    results = {}
    context = multiprocessing.get_context("spawn")
    for name in LEARNERS:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            results[name] = pool.submit(measure, name, args.env, env_kwargs, settings[name], args.steps, args.seed,
                                        args.threads).result()
    print(report(results, args.env, args.steps, args.threads))
    return 0


def _check(args: argparse.Namespace) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Validate everything in this process (:func:`hrm_agent.runs.check_config`), so a mistake is one
    line and not a child's traceback."""
    from hrm_agent.baselines.config import resolve_baseline_config
    from hrm_agent.hyperparams import resolve_config
    from hrm_agent.runs import UsageError, check_config, check_env, parse_env_kwargs

    if args.steps < 1:
        raise UsageError(f"--steps must be positive, got {args.steps}")
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    env_kwargs = parse_env_kwargs(args.env_kwargs)
    check_env(args.env, env_kwargs)
    settings = split_overrides(args.overrides)
    for name in LEARNERS:
        try:
            if name == "dqn":
                config = resolve_baseline_config("dqn", args.env, None, settings[name] + NO_EVAL)
            else:
                config = resolve_config(args.env, None, settings[name] + NO_EVAL, carry_z=name == "carry")
            check_config(args.env, env_kwargs, config)
        except UsageError as err:
            raise UsageError(f"{name}: {err}") from None
    return settings, env_kwargs
