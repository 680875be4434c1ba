"""What a training run does around its loop: evaluation, logging, checkpoints, progress bar, Ctrl-C.

The HRM agent's loop (``loop.py``) calls a :class:`Callback`'s hooks, as
stable-baselines3's ``learn`` calls its ``BaseCallback``; the SB3 baselines'
``RunCallback`` (``baselines/sb3.py``) uses the same pieces, so both kinds of
run evaluate, log, stop on Ctrl-C and print their result alike:

- :func:`due`: the cadence test (an event every ``freq`` env steps, stepped ``n_envs`` at a time);
- :func:`evaluate_now`: a greedy evaluation on the run's fixed validation episodes;
- :class:`LogCadence`: a log row every ``LOG_INTERVAL`` env steps and at every evaluation;
- :class:`CtrlC`: Ctrl-C asks the run to stop after the current step;
- :class:`ProgressBar`, :func:`print_result`.

Hooks run in list order; ``learn`` lists evaluation, logging, checkpoints,
progress bar, the user's callbacks, then Ctrl-C.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from hrm_agent.checkpoint import FINAL_MODEL
from hrm_agent.runs import LOG_INTERVAL

if TYPE_CHECKING:
    from hrm_agent.agent import HRMAgent

EVAL_MODELS = "models"  # with save_eval_models: the model at every evaluation, models/step_{N}.pt
EVAL_KEYS = ("success_rate", "mean_ep_length", "path_efficiency")


def due(step: int, freq: int, n_envs: int) -> bool:
    """Whether an event every ``freq`` env steps (0: never) falls in the vector step that reached ``step``."""
    return bool(freq) and step % freq < n_envs


def evaluate_now(policy: Any, episodes: int, seed: int, step: int, wall_clock_s: float,
                 logger: Any = None) -> dict[str, Any]:
    """Greedy evaluation on the episodes seeded ``seed + EVAL_SEED_OFFSET + i`` (the same at every
    evaluation); returns its eval-history row and records its ``eval/`` keys on ``logger``."""
    from hrm_agent.evaluate import EVAL_SEED_OFFSET, evaluate

    summary = evaluate(policy, episodes, seed=seed + EVAL_SEED_OFFSET).summary()
    if logger is not None:
        for key in EVAL_KEYS:
            logger.record(f"eval/{key}", summary[key])
    # the training wall-clock when it was reached: minutes to a success rate are read from here
    return {"step": step, "wall_clock_s": round(wall_clock_s, 1), **summary}


class LogCadence:
    """A log row every ``LOG_INTERVAL`` env steps and at every evaluation."""

    def __init__(self, step: int = 0) -> None:
        self.next = (step // LOG_INTERVAL + 1) * LOG_INTERVAL

    def due(self, step: int, evaluated: bool) -> bool:
        if step >= self.next or evaluated:
            self.next = (step // LOG_INTERVAL + 1) * LOG_INTERVAL
            return True
        return False


class CtrlC:
    """While installed, Ctrl-C sets ``requested`` instead of raising ``KeyboardInterrupt``.

    A context manager (``with CtrlC() as ctrl_c:``); outside the main thread it installs nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __enter__(self) -> "CtrlC":
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGINT, self._request)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class ProgressBar:
    """A tqdm bar over env steps."""

    def __init__(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, steps: int, **postfix: str) -> None:
        self.bar.update(steps)
        if postfix:
            self.bar.set_postfix(refresh=False, **postfix)

    def close(self) -> None:
        self.bar.close()


def print_result(summary: dict[str, Any], model_path: Path, extra: str = "") -> None:
    """The lines a finished run prints: final greedy evaluation, steps to 90 %, wall-clock, model file."""
    final = summary["final_eval"]
    if final is not None:
        print(f"final greedy eval: success {final['success_rate']:.3f} ± {final['success_rate_se']:.3f}, "
              f"path efficiency {final['path_efficiency']:.3f}, mean length {final['mean_ep_length']:.1f}")
    print(f"steps to 90% success: {summary['steps_to_90']}  wall-clock: {summary['wall_clock_s']:.0f}s{extra}")
    print(f"model: {model_path}")


# ---------------------------------------------------------------- the HRM loop's callbacks
class Callback:
    """Hooks of the HRM agent's training loop (``loop.train``); every one does nothing by default.

    ``outcome`` of ``on_training_end``: ``"finished"`` (the budget was reached), ``"interrupted"``
    (Ctrl-C), ``"stopped"`` (a callback returned False) or ``"failed"`` (an exception is on its way).
    """

    interrupted = False  # True once this callback asks the loop to stop for Ctrl-C

    def on_training_start(self, agent: "HRMAgent", end: int) -> None:
        """Before the first step; ``end`` is the env step ``learn`` stops at."""

    def on_phase(self, phase: str, seconds: float) -> None:
        """After each timed phase of a step: act, env step, replay add, replay sample, update, target sync."""

    def on_update(self, agent: "HRMAgent", stats: dict[str, float]) -> None:
        """After the gradient steps of a vector step; ``stats`` are ``dqn_update``'s of the last one."""

    def on_step(self, agent: "HRMAgent") -> bool | None:
        """After every vector step; False stops training."""
        return None

    def on_training_end(self, agent: "HRMAgent", outcome: str) -> None:
        """After the last step, or on the way out of an exception (``outcome`` ``"failed"``)."""


class CallbackList(Callback):
    """Several callbacks, called in order."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = list(callbacks)

    @property
    def interrupted(self) -> bool:  # type: ignore[override]
        return any(cb.interrupted for cb in self.callbacks)

    def on_training_start(self, agent: "HRMAgent", end: int) -> None:
        for cb in self.callbacks:
            cb.on_training_start(agent, end)

    def on_phase(self, phase: str, seconds: float) -> None:
        for cb in self.callbacks:
            cb.on_phase(phase, seconds)

    def on_update(self, agent: "HRMAgent", stats: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_update(agent, stats)

    def on_step(self, agent: "HRMAgent") -> bool:
        go_on = True
        for cb in self.callbacks:  # every callback sees every step, even after one says stop
            go_on = cb.on_step(agent) is not False and go_on
        return go_on

    def on_training_end(self, agent: "HRMAgent", outcome: str) -> None:
        error: BaseException | None = None
        for cb in self.callbacks:  # all of them, so a failed checkpoint still restores Ctrl-C and the bar
            try:
                cb.on_training_end(agent, outcome)
            except BaseException as err:
                error = error or err
        if error is not None:
            raise error


class FunctionCallback(Callback):
    """``fn(agent)`` after every vector step; returning False stops training."""

    def __init__(self, fn: Callable[["HRMAgent"], bool | None]) -> None:
        self.fn = fn

    def on_step(self, agent: "HRMAgent") -> bool | None:
        return self.fn(agent)


class EvalCallback(Callback):
    """Greedy evaluation every ``eval_freq`` env steps and at the end of a finished ``learn`` (into
    ``agent.eval_history``, logged under ``eval/``; with ``save_eval_models`` the model is saved too)."""

    def on_step(self, agent: "HRMAgent") -> None:
        if due(agent.num_timesteps, agent.config.eval_freq, agent.config.n_envs):
            self.evaluate(agent)

    def on_training_end(self, agent: "HRMAgent", outcome: str) -> None:
        history = agent.eval_history
        if outcome == "finished" and agent.config.eval_freq and (not history or history[-1]["step"] != agent.num_timesteps):
            self.evaluate(agent)

    @staticmethod
    def evaluate(agent: "HRMAgent") -> None:
        agent.eval_history.append(evaluate_now(agent, agent.config.eval_episodes, agent.seed, agent.num_timesteps,
                                               agent.wall_time, agent.logger))
        if agent.run_dir is not None and agent.config.save_eval_models:
            agent.save(agent.run_dir / EVAL_MODELS / f"step_{agent.num_timesteps:08d}.pt")


class LogCallback(Callback):
    """progress.csv and TensorBoard (``agent.logger``): ``train/`` means over the updates since the last
    row, and a row of ``rollout/``/``time/`` keys every ``LOG_INTERVAL`` env steps and at each evaluation."""

    def on_training_start(self, agent: "HRMAgent", end: int) -> None:
        self.cadence = LogCadence(agent.num_timesteps)
        self.start_time, self.start_steps = time.perf_counter(), agent.num_timesteps
        self.fps, self.evaluations = 0.0, len(agent.eval_history)

    def on_update(self, agent: "HRMAgent", stats: dict[str, float]) -> None:
        if agent.logger is not None:
            for key in ("loss", "q_mean", "grad_norm"):
                agent.logger.record_mean(f"train/{key}", stats[key])
            agent.logger.record("train/n_updates", agent.n_updates, exclude="tensorboard")

    def on_step(self, agent: "HRMAgent") -> None:
        self.fps = (agent.num_timesteps - self.start_steps) / max(time.perf_counter() - self.start_time, 1e-9)
        if self.cadence.due(agent.num_timesteps, self._evaluated(agent)):
            self.write_row(agent)

    def on_training_end(self, agent: "HRMAgent", outcome: str) -> None:
        if outcome == "finished" and self._evaluated(agent):  # the final evaluation
            if agent.num_timesteps == self.start_steps:
                self.fps = 0.0
            self.write_row(agent)

    def _evaluated(self, agent: "HRMAgent") -> bool:
        """Whether an evaluation was made since the last call (its row is written with this step's)."""
        evaluated, self.evaluations = len(agent.eval_history) > self.evaluations, len(agent.eval_history)
        return evaluated

    def write_row(self, agent: "HRMAgent") -> None:
        if agent.logger is None:
            return
        log, episodes = agent.logger.record, agent.rollout.ep_info if agent.rollout is not None else ()
        if episodes:
            log("rollout/ep_rew_mean", float(np.mean([r for r, _, _ in episodes])))
            log("rollout/ep_len_mean", float(np.mean([n for _, n, _ in episodes])))
            log("rollout/success_rate", agent.success_rate())
        log("rollout/exploration_rate", agent.exploration_rate())
        log("time/fps", self.fps)
        log("time/episodes", agent.n_episodes, exclude="tensorboard")
        log("time/total_timesteps", agent.num_timesteps, exclude="tensorboard")
        agent.logger.dump(agent.num_timesteps)


class CheckpointCallback(Callback):
    """With a run directory: ``checkpoints/last.pt`` every ``checkpoint_freq`` env steps and when Ctrl-C
    stops ``learn``; at the end of a finished ``learn`` also ``final_model.pt``."""

    def on_step(self, agent: "HRMAgent") -> None:
        if agent.run_dir is not None and due(agent.num_timesteps, agent.config.checkpoint_freq, agent.config.n_envs):
            agent.save_checkpoint()

    def on_training_end(self, agent: "HRMAgent", outcome: str) -> None:
        if agent.run_dir is None or outcome not in ("finished", "interrupted"):
            return
        agent.save_checkpoint()
        if outcome == "finished":
            agent.save(agent.run_dir / FINAL_MODEL)


class ProgressBarCallback(Callback):
    """A tqdm bar with the training success rate and env steps per second."""

    def on_training_start(self, agent: "HRMAgent", end: int) -> None:
        self.bar = ProgressBar(end, agent.num_timesteps)
        self.start_time, self.start_steps = time.perf_counter(), agent.num_timesteps

    def on_step(self, agent: "HRMAgent") -> None:
        fps = (agent.num_timesteps - self.start_steps) / max(time.perf_counter() - self.start_time, 1e-9)
        self.bar.update(agent.config.n_envs, success=f"{agent.success_rate():.2f}", fps=f"{fps:.0f}")

    def on_training_end(self, agent: "HRMAgent", outcome: str) -> None:
        self.bar.close()


class StopOnCtrlC(Callback):
    """Ctrl-C finishes the current step and stops ``learn`` (the checkpoint callback then saves)."""

    def __init__(self) -> None:
        self.ctrl_c = CtrlC()

    @property
    def interrupted(self) -> bool:  # type: ignore[override]
        return self.ctrl_c.requested

    def on_training_start(self, agent: "HRMAgent", end: int) -> None:
        self.ctrl_c.__enter__()

    def on_training_end(self, agent: "HRMAgent", outcome: str) -> None:
        self.ctrl_c.__exit__()


class PhaseTimer(Callback):
    """Seconds and calls per phase of the loop (``on_phase``), e.g. for ``python -m hrm_agent.bench train``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def on_phase(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.calls[phase] = self.calls.get(phase, 0) + 1
