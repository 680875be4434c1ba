"""``python -m hrm_agent.bench learn``: how well and how fast each learner learns one env on a fixed budget.

Trains, for seeds ``0 .. K-1``, the HRM agent with carry z and with reset z
(``python -m hrm_agent.train``) and stable-baselines3 DQN, PPO and sb3-contrib
RecurrentPPO (``python -m hrm_agent.baselines``), each as its own process with
``--threads`` torch threads (default 1), up to ``--jobs`` at a time (``--jobs 1 --threads 2``: one run
alone on a 2-core machine; ``--threads hrm:2`` gives the named learners their own count, with the
prefixes of ``--set``), and evaluates the BFS oracle (the
ceiling: it replans on the true grid every step) with the same greedy protocol
(:func:`hrm_agent.evaluate.evaluate`, episodes seeded ``seed + 1,000,000 + i``).

Every finished run is appended to the results file (default
``analysis/results/bench_learn.csv``, meant to be committed) and is not run
again: the same command continues an interrupted benchmark, and a larger
``--seeds`` only adds seeds. Run directories under ``--runs-dir`` that an
interrupted command left are picked up (:mod:`hrm_agent.experiments.launch`): a
finished one is recorded without training, an unfinished HRM one continues from
its checkpoint. A run is identified by env, env kwargs, learner,
seed, budget, the ``--set`` items that apply to it, a fingerprint of the
package defaults it resolved to (``defaults``: the env's parameters and the
learner's full config) and its threads, so rows recorded under other defaults,
or timed at another thread count, are never reused.

Writes beside the results file, for the runs this command asked for:
``{results stem}_{env}.md`` (per learner, mean ± standard error over seeds of
the final greedy success rate and path efficiency; env steps to first reach
90 % greedy success; training wall-clock) and ``.png``/``.svg`` of the same with
the greedy learning curves.

``--set [LEARNER:]KEY=VALUE`` passes ``--set KEY=VALUE`` to the learners it
names: ``hrm`` (carry and reset), ``sb3`` (dqn, ppo, recurrent-ppo), one
learner, or without a prefix every learner (keys both kinds have: ``n_envs``,
``eval_freq``, ``eval_episodes``, ``checkpoint_freq``, ``learning_rate``,
``gamma``, ...). The oracle takes ``eval_episodes`` only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hrm_agent.experiments.cli import add_env_kwarg, add_seeds, add_set
from hrm_agent.experiments.launch import Launcher, Task, finished_run
from hrm_agent.experiments.stats import number
from hrm_agent.experiments.store import (
    ResultsFile,
    fingerprint,
    kwargs_label,
    learning_settings,
    row_key,
    run_key,
)
from hrm_agent.experiments.tables import HRM_VARIANTS, LABELS, LEARNERS, SB3_ALGOS, learner_label, table, threads_label
from hrm_agent.runs import EXIT_INTERRUPTED, UsageError

DEFAULT_RESULTS = Path("analysis") / "results" / "bench_learn.csv"
# ``--set`` prefix -> the learners it reaches
PREFIXES = {"hrm": HRM_VARIANTS, "sb3": SB3_ALGOS, **{name: (name,) for name in LEARNERS}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="registered env id, e.g. DynamicMaze-v0")
    add_seeds(parser, "every learner", required=True)
    parser.add_argument("--budget", type=int, required=True, help="env steps of every training run")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time (default 2)")
    parser.add_argument("--threads", action="append", default=[], metavar="[LEARNER:]N",
                        help="torch CPU threads of each training run (default 1; with --jobs 1 --threads 2, "
                             "each run has a 2-core machine to itself); with a prefix as for --set "
                             "(hrm, sb3, one learner), for those learners only; later items win")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help=f"results file: finished runs, never re-run (default {DEFAULT_RESULTS})")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs)")
    parser.add_argument("--learners", default=",".join(LEARNERS),
                        help=f"comma-separated subset of {','.join(LEARNERS)} (default all)")
    add_set(parser, "hyperparameter for the learners named (hrm, sb3, or one learner; none: all)",
            metavar="[LEARNER:]KEY=VALUE", default=[])
    add_env_kwarg(parser, "every learner", default=[])
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite the table and figures from the rows already in --results "
                             "that this command covers (e.g. while some of its runs are still to do)")


# ------------------------------------------------------------------ planning


def split_overrides(items: list[str]) -> dict[str, list[str]]:
    """``--set`` items -> the ``KEY=VALUE`` items of each learner, in the order given.

    The oracle only takes ``eval_episodes`` (an unprefixed one reaches it; other unprefixed keys do not).
    """
    per_learner: dict[str, list[str]] = {name: [] for name in LEARNERS}
    for item in items:
        head, sep, _ = item.partition("=")
        if not sep or not head:
            raise UsageError(f"--set {item!r} must look like [LEARNER:]KEY=VALUE (e.g. sb3:learning_rate=3e-4)")
        prefix, colon, key = head.partition(":")
        if colon:
            if prefix not in PREFIXES:
                raise UsageError(f"--set {item!r}: unknown learner {prefix!r}; use one of {', '.join(PREFIXES)}")
            if prefix == "oracle" and key.strip() != "eval_episodes":
                raise UsageError(f"--set {item!r}: the oracle takes only eval_episodes")
            targets, text = PREFIXES[prefix], item[len(prefix) + 1:]
        else:
            key, text = head, item
            targets = LEARNERS if key.strip() == "eval_episodes" else tuple(n for n in LEARNERS if n != "oracle")
        for name in targets:
            per_learner[name].append(text)
    return per_learner


def split_threads(items: list[str]) -> dict[str, int]:
    """``--threads`` items -> each trained learner's torch threads (default 1; later items win).

    The oracle is evaluated in this process and always counts as one thread.
    """
    threads = {name: 1 for name in LEARNERS}
    for item in items:
        prefix, colon, text = item.rpartition(":")
        if colon and prefix not in PREFIXES:
            raise UsageError(f"--threads {item!r}: unknown learner {prefix!r}; use one of {', '.join(PREFIXES)}")
        try:
            count = int(text)
        except ValueError:
            raise UsageError(f"--threads {item!r} must look like [LEARNER:]N (e.g. 2 or hrm:2)") from None
        if count < 1:
            raise UsageError(f"--threads must be at least 1, got {item!r}")
        for name in PREFIXES[prefix] if colon else LEARNERS:
            threads[name] = count
    threads["oracle"] = 1
    return threads


def check_settings(env_id: str, learners: list[str], per_learner: dict[str, list[str]],
                   env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolve and check every learner's config once (:func:`hrm_agent.runs.check_config`: the model
    with the env's token grid too), so a bad ``--set`` fails before anything runs; returns them."""
    from hrm_agent.baselines.config import resolve_baseline_config
    from hrm_agent.hyperparams import resolve_config
    from hrm_agent.runs import check_config, check_env
    from hrm_agent.rollout import Tokenizer

    resolved: dict[str, Any] = {}
    for name in learners:
        if name == "oracle":
            resolved[name] = {"eval_episodes": oracle_episodes(env_id, per_learner[name])}
            try:  # the oracle plans on the token grid
                Tokenizer(check_env(env_id, env_kwargs or {})[0], crop_border=False)
            except ValueError as err:
                raise UsageError(f"oracle: {str(err).replace('the HRM agent needs', 'the oracle needs')}") from None
            continue
        try:
            if name in HRM_VARIANTS:
                config = resolve_config(env_id, None, per_learner[name], carry_z=name == "carry")
            else:
                config = resolve_baseline_config(name, env_id, None, per_learner[name])
            check_config(env_id, env_kwargs or {}, config)
        except UsageError as err:
            hint = (" (an unprefixed --set reaches every learner; prefix it, e.g. --set hrm:KEY=VALUE)"
                    if "Extra inputs" in str(err) else "")
            raise UsageError(f"{name}: {err}{hint}") from None
        resolved[name] = config.model_dump()
    return resolved


def oracle_episodes(env_id: str, settings: list[str]) -> int:
    """Evaluation episodes of the oracle: the HRM agent's for this env, or ``--set [oracle:]eval_episodes=N``."""
    from hrm_agent.hyperparams import parse_override, resolve_config

    episodes = resolve_config(env_id).eval_episodes
    for text in settings:
        path, value = parse_override(text)
        if path == ["eval_episodes"]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"oracle: eval_episodes must be a positive integer, got {value!r}")
            episodes = value
    return episodes


def row_from_summary(task: Task, env_id: str, env_kwargs: str, budget: int, summary: dict[str, Any],
                     run: str) -> dict[str, Any]:
    final = summary.get("final_eval") or {}
    curve = ";".join(f"{h['step']}:{h['success_rate']:.4g}" for h in summary.get("eval_history", []))
    return {
        "env": env_id, "env_kwargs": env_kwargs, "variant": task.variant, "seed": task.seed, "budget": budget,
        "settings": " ".join(learning_settings(task.settings)), "defaults": task.defaults,
        "total_steps": summary.get("total_steps"),
        "final_success": final.get("success_rate"), "final_success_se": final.get("success_rate_se"),
        "path_efficiency": final.get("path_efficiency"), "path_efficiency_se": final.get("path_efficiency_se"),
        "mean_ep_length": final.get("mean_ep_length"), "steps_to_90": summary.get("steps_to_90"),
        "minutes_to_90": summary.get("minutes_to_90"),
        "wall_clock_s": summary.get("wall_clock_s"), "threads": summary.get("threads"), "run": run, "curve": curve,
    }


def evaluate_oracle(env_id: str, env_kwargs: dict[str, Any], seed: int, episodes: int) -> dict[str, Any]:
    """The oracle's ``summary.json``-shaped record: one greedy evaluation on the training runs' episodes."""
    from envs.oracle import BFSOracle
    from hrm_agent.evaluate import EVAL_SEED_OFFSET
    from hrm_agent.baselines.sb3 import EvalPolicy
    from hrm_agent.evaluate import evaluate

    start = time.perf_counter()
    result = evaluate(EvalPolicy(BFSOracle(seed), env_id, env_kwargs, "oracle"), episodes,
                      seed=seed + EVAL_SEED_OFFSET).summary()
    history = [{"step": 0, **result}]
    return {"total_steps": 0, "final_eval": result, "eval_history": history,
            "steps_to_90": 0 if result["success_rate"] >= 0.9 else None,
            "wall_clock_s": round(time.perf_counter() - start, 1), "threads": 1}


# ------------------------------------------------------------------ command


def run(args: argparse.Namespace) -> int:
    """``bench learn``: a mistake is a UsageError, one line and exit code 2 (bench's main)."""
    from hrm_agent.runs import check_env, check_writable, error_line, parse_env_kwargs

    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.budget < 1:
        raise UsageError(f"--budget must be positive, got {args.budget}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    learners = [n.strip() for n in args.learners.split(",") if n.strip()]
    unknown = [n for n in learners if n not in LEARNERS]
    if unknown or not learners:
        raise UsageError(f"--learners: unknown {', '.join(unknown) or '(none given)'}; choose from {','.join(LEARNERS)}")
    learners = [n for n in LEARNERS if n in learners]
    env_kwargs = parse_env_kwargs(args.env_kwargs)
    check_env(args.env, env_kwargs)
    per_learner = split_overrides(args.overrides)
    threads = split_threads(args.threads)
    resolved = check_settings(args.env, learners, per_learner, env_kwargs)
    kwargs_text = kwargs_label(env_kwargs)
    check_writable(args.results, "--results")
    if not args.report_only and [n for n in learners if n != "oracle"]:
        check_writable(args.runs_dir, "--runs-dir", directory=True)

    results = ResultsFile(args.results)
    done = {row_key(r) for r in results.rows}
    tasks = []
    for seed in range(args.seeds):
        for name in learners:
            task = Task(name, seed, per_learner[name], threads=threads[name])
            task.key = run_key(args.env, kwargs_text, name, seed, args.budget, learning_settings(task.settings),
                               fingerprint(args.env, env_kwargs, resolved[name])) + (str(task.threads),)
            tasks.append(task)
    todo = [t for t in tasks if t.key not in done]
    trained = {name: threads[name] for name in learners if name != "oracle"}
    plan = (f"report only, {len(todo)} left out" if args.report_only
            else f"{len(todo)} to run ({args.jobs} at a time, {threads_label(trained)})")
    print(f"bench learn: {args.env}{f' ({kwargs_text})' if kwargs_text else ''}, budget {args.budget:,}, "
          f"seeds 0-{args.seeds - 1}, {len(learners)} learners: {len(tasks) - len(todo)} of {len(tasks)} runs "
          f"already in {args.results}, {plan}")
    if args.report_only:
        if len(todo) == len(tasks):
            raise UsageError(f"--report-only: none of this command's runs is in {args.results}")
        todo = []

    try:
        return _execute(args, tasks, todo, results, trained, env_kwargs, kwargs_text)
    except OSError as err:  # a results or run file the file system refused, mid-benchmark
        from hrm_agent.runs import RunFault

        raise RunFault(f"{error_line(err)}; the runs recorded so far are in {args.results}: run the same "
                       "command again to continue") from None


def _execute(args: argparse.Namespace, tasks: list[Task], todo: list[Task], results: ResultsFile,
             trained: dict[str, int], env_kwargs: dict[str, Any], kwargs_text: str) -> int:
    """Run ``todo``, record each finished run in the results file, then write the table and figures.

    A finished run of a task under ``--runs-dir`` is recorded without training; the others train, an
    unfinished HRM run continuing from its checkpoint (:class:`~hrm_agent.experiments.launch.Launcher`).
    """
    failures: list[str] = []
    finished = 0

    def record(task: Task, summary: dict[str, Any], run: str, how: str = "") -> None:
        nonlocal finished
        row = row_from_summary(task, args.env, kwargs_text, args.budget, summary, run=run)
        results.append(row)
        finished += 1
        success = number(row["final_success"])
        name = learner_label(task.variant, learning_settings(task.settings))
        print(f"[{finished}/{len(todo)}] {name} seed {task.seed}{how}: greedy success "
              f"{'–' if success is None else f'{success:.2f}'}, steps to 90 %: {row['steps_to_90'] or '–'}, "
              f"{float(row['wall_clock_s'] or 0):.0f} s", flush=True)

    for task in (t for t in todo if t.variant == "oracle"):
        episodes = oracle_episodes(args.env, task.settings)
        record(task, evaluate_oracle(args.env, env_kwargs, task.seed, episodes), run="")

    training = []
    for task in (t for t in todo if t.variant != "oracle"):
        found = finished_run(args.runs_dir, task, args.env, env_kwargs, args.budget)
        if found is None:
            training.append(task)
        else:
            record(task, found[1], run=found[0].name, how=f" (adopted the finished run {found[0]})")
    launcher = Launcher(args.runs_dir, args.env, env_kwargs, args.env_kwargs, args.budget)
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = {pool.submit(launcher, t): t for t in training}
        for future in as_completed(futures):
            task = futures[future]
            code, last_line = future.result()
            if code == EXIT_INTERRUPTED:  # a training stopped by Ctrl-C (sent to it alone): stop the table too
                raise KeyboardInterrupt
            assert task.run_dir is not None
            summary_path = task.run_dir / "summary.json"
            if code != 0 or not summary_path.is_file():
                failures.append(f"{task.variant} seed {task.seed} (exit {code}: {last_line}; "
                                f"log: {task.run_dir / 'train.log'})")
                print(f"failed: {failures[-1]}", file=sys.stderr, flush=True)
                continue
            record(task, json.loads(summary_path.read_text()), run=task.run_dir.name,
                   how=f" (resumed {task.run_dir})" if task.resumed else "")
    except KeyboardInterrupt:
        launcher.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        print(f"\ninterrupted; finished runs are in {args.results}, unfinished HRM runs checkpointed in "
              f"{args.runs_dir}: run the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError:  # the results file refused: stop the running trainings (each checkpoints) first
        launcher.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()

    keys = {t.key for t in tasks}
    selected = [r for r in results.rows if row_key(r) in keys]
    write_report(args, selected, trained, kwargs_text)
    if failures:
        print(f"error: {len(failures)} run(s) failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


def write_report(args: argparse.Namespace, rows: list[dict[str, str]], trained: dict[str, int],
                 kwargs_text: str) -> None:
    """``{results stem}_{env}.md`` and its figure beside the results file, from this command's rows."""
    from hrm_agent.checkpoint import atomic_write
    from hrm_agent.experiments.figures import plot_learn

    results_path: Path = args.results
    env_name = args.env.split(":")[-1].replace("/", "-")
    stem = f"{results_path.stem}_{env_name}"
    markdown = table(rows, args.env, kwargs_text, args.budget, trained)
    table_path = results_path.with_name(stem + ".md")
    atomic_write(table_path, lambda f: f.write(markdown.encode()))
    figures = plot_learn(rows, markdown.splitlines()[0], results_path.parent, stem, trained) if rows else []
    print()
    print(markdown, end="")
    written = [table_path, *figures] if args.report_only else [results_path, table_path, *figures]
    print("wrote " + ", ".join(str(p) for p in written))
