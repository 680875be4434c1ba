"""The README's shell commands, end to end, at tiny budgets.

Every command of every ```bash block of README.md, docs/ and the results
report (continuation lines joined, ``&&`` chains split, comments dropped) runs
in a fresh directory holding a copy of ``analysis/`` (so the repository's
committed results are never touched): the README's in order first, then the
other documents in two lanes side by side (``LANES``), each lane in its own
copy of that directory and in document order: ``python`` is this interpreter, the package is the
installed one. The commands are taken from the README, not copied here, so a
command that drifts from the code fails this test. Only budgets are cut
(``shrink``: ``--total-steps``, ``--episodes``, ``--seeds``, ``--budget``,
``--steps``, a sweep's second ``--grid`` to one value, a tiny ``--config``/``--set``), and placeholders are filled in
(``PLACEHOLDERS``: ``runs/<run>`` is the newest run directory, ``<time>`` the
newest match). Not run: ``pip install`` (this environment is installed
already) and the test commands themselves (``test_readme_test_commands_are_what_ci_runs``
checks them against ``.ci/run``); ``tensorboard --logdir DIR`` runs with
``--inspect`` instead of serving.

The end-to-end test is slow (some 30 processes, two Ray Tune sweeps, three
bench learn tables); CI runs it once,
with the README's second test command. The fast tests here check that every README command has a
budget cut and a known placeholder, and that the README's test commands are
``.ci/run``'s.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The README and the manual, in the order their commands run (a placeholder means the newest run so far)
DOCUMENTS = [README, *(ROOT / "docs" / f"{name}.md" for name in (
    "analysis", "sweeps", "configuration", "environments", "benchmarks")),
    ROOT / "analysis" / "results" / "README.md", ROOT / "docs" / "baselines.md"]
CI = ROOT / ".ci" / "run"

BUDGET = 200  # env steps of every training run
PRESET_BUDGET = 64  # a --preset run (no evaluation; a few updates)
TINY_AGENT = {  # --config of hrm_agent.train and hrm_agent.sweep (the README's own --set flags win over it)
    "model": TINY_MODEL, "n_envs": 2, "buffer_size": 2_000, "learning_starts": 64, "batch_size": 16,
    "train_freq": 4, "target_update_interval": 100, "eval_freq": 100, "eval_episodes": 3, "checkpoint_freq": 100,
    "compile": False,
}
TINY_BASELINE = {
    "dqn": ["learning_starts=64", "batch_size=16", "buffer_size=2000", "target_update_interval=100"],
    "ppo": ["n_steps=32", "batch_size=32", "n_epochs=2"],
    "recurrent-ppo": ["n_steps=32", "batch_size=32", "n_epochs=2", "lstm_hidden_size=16"],
}
TINY_BASELINE_COMMON = ["n_envs=2", "eval_freq=100", "eval_episodes=3", "checkpoint_freq=100",
                        "policy.channels=[8]", "policy.features_dim=32", "policy.net_arch=[32]"]
TINY_BENCH = [f"hrm:model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "n_envs=2", "batch_size=16", "hrm:learning_starts=64", "hrm:buffer_size=2000", "dqn:learning_starts=64",
    "dqn:buffer_size=2000", "sb3:policy.features_dim=32", "hrm:compile=false",
]
TINY_BENCH_LEARN = TINY_BENCH + ["eval_freq=100", "eval_episodes=3", "checkpoint_freq=0", "ppo:n_steps=32",
                                 "recurrent-ppo:n_steps=32", "recurrent-ppo:lstm_hidden_size=16",
                                 "oracle:eval_episodes=10"]
TIMEOUT = 900  # seconds per command (generous: a sweep on a busy 2-core machine)


# ------------------------------------------------------------------ reading the README


def shell_blocks(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, lines)`` of every ```bash block."""
    return [
        (text.count("\n", 0, m.start(1)) + 1, m.group(1).splitlines())
        for m in re.finditer(r"^```bash[ \t]*\n(.*?)^```", text, re.M | re.S)
    ]


def commands(lines: list[str], first_line: int) -> list[tuple[int, list[str]]]:
    """``(README line, argv)`` of each command of a block: continuations joined, ``&&`` split, comments dropped."""
    found, i = [], 0
    while i < len(lines):
        line_no, line = first_line + i, lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        argv: list[str] = []
        for token in shlex.split(line, comments=True) + ["&&"]:
            if token == "&&":
                if argv:
                    found.append((line_no, argv))
                argv = []
            elif token in ("|", "||", ";", ">", ">>", "<", "&"):
                raise AssertionError(f"README.md:{line_no}: shell syntax this test does not run: {line}")
            else:
                argv.append(token)
    return found


def ci_python_commands() -> list[list[str]]:
    """argv of every ``python ...`` line of ``.ci/run``, cut at a redirection or a trailing ``&``/``||``."""
    found = []
    for line in CI.read_text().splitlines():
        if line.startswith("python "):
            argv = shlex.split(line, comments=True)
            end = next((i for i, t in enumerate(argv) if t in ("&", "||") or t.startswith((">", "2>"))), len(argv))
            found.append(argv[:end])
    return found


def readme_commands() -> list[tuple[int, list[str]]]:
    return [c for doc in DOCUMENTS for start, lines in shell_blocks(doc.read_text()) for c in commands(lines, start)]


# ------------------------------------------------------------------ cutting the budgets


def with_option(argv: list[str], flag: str, value: object) -> list[str]:
    """``argv`` with ``flag``'s value replaced (``--flag V`` or ``--flag=V``), or ``flag value`` appended."""
    argv = list(argv)
    for i, token in enumerate(argv):
        if token == flag:
            argv[i + 1] = str(value)
            return argv
        if token.startswith(flag + "="):
            argv[i] = f"{flag}={value}"
            return argv
    return argv + [flag, str(value)]


def first_grid_only(argv: list[str]) -> list[str]:
    """A sweep's ``--grid`` items after the first cut to their first value (a grid of 2 x 2 runs 2 trials)."""
    argv, seen = list(argv), 0
    for i, token in enumerate(argv[:-1]):
        if token == "--grid":
            seen += 1
            if seen > 1:
                key, _, values = argv[i + 1].partition("=")
                argv[i + 1] = f"{key}={values.split(',')[0]}"
    return argv


def sets(items: list[str]) -> list[str]:
    return [f"--set={item}" for item in items]


def shrink(argv: list[str], tiny_config: Path) -> list[str] | None:
    """The command to run for a README command (None: not run here); raises for a command it does not know."""
    program = argv[0]
    if program == "pip" or argv[:3] == ["python", "-m", "pytest"]:
        return None
    if program == "tensorboard":
        return argv + ["--inspect"]  # a digest of the event files instead of a server
    if program != "python":
        raise AssertionError(f"no tiny budget known for {shlex.join(argv)}")
    if argv[1] == "analysis/test_set.py":
        return with_option(argv, "--episodes", 16)  # the first 16 test episodes
    if argv[1:3] == ["analysis/zoo.py", "match"]:
        return with_option(argv, "--target", 0)  # a tiny run reaches no real agent's success
    if argv[1] == "analysis/paper_questions.py":
        return with_option(argv, "--episodes", 8)  # every committed agent, 8 test episodes each
    if argv[1].startswith("analysis/"):
        return argv  # reads the runs; its work is as small as they are
    module, rest = (argv[2], argv[3:]) if argv[1] == "-m" else (None, argv[1:])
    head = argv[:3]
    if module == "hrm_agent.train":
        if "--resume" in rest:
            if any(t.startswith("--total-steps") for t in rest):
                rest = with_option(rest, "--total-steps", 2 * BUDGET)
            return head + rest + ["--no-progress"]
        rest = with_option(rest, "--total-steps", BUDGET) + ["--config", str(tiny_config), "--no-progress"]
        if "--preset" in rest:  # the paper preset's 8 bfloat16 segments take ~0.5 s per CPU forward pass
            rest = with_option(rest, "--total-steps", PRESET_BUDGET) + sets(["learning_starts=32", "eval_freq=0"])
        return head + rest
    if module == "hrm_agent.evaluate":
        return head + with_option(rest, "--episodes", 4)
    if module == "hrm_agent.sweep":
        if "--resume" in rest or "--summary" in rest:
            return argv
        rest = with_option(with_option(rest, "--seeds", 1), "--total-steps", BUDGET)
        return head + first_grid_only(rest) + ["--config", str(tiny_config)]
    if module == "hrm_agent.baselines":
        algo = rest[rest.index("--algo") + 1]
        return head + with_option(rest, "--total-steps", BUDGET) + sets(TINY_BASELINE_COMMON + TINY_BASELINE[algo]) + [
            "--no-progress"]
    if module == "hrm_agent.bench":
        command, options = rest[0], rest[1:]
        if command == "env":
            return head + [command] + with_option(with_option(options, "--steps", 200), "--repeats", 1)
        if command == "model":
            for flag, value in (("--repeats", 1), ("--warmup", 1), ("--peak-size", 256)):
                options = with_option(options, flag, value)
            return head + [command] + options
        if command == "learn":
            options = with_option(with_option(options, "--seeds", 1), "--budget", BUDGET)
            return head + [command] + options + sets(TINY_BENCH_LEARN)
        if command == "train":
            return head + [command] + with_option(options, "--steps", 64) + sets(TINY_BENCH)
    raise AssertionError(f"no tiny budget known for {shlex.join(argv)}")


# ------------------------------------------------------------------ placeholders


def newest_runs(cwd: Path) -> list[str]:
    """Training run directories directly under ``runs/`` (not sweeps), newest (last config.yaml written) first."""
    configs = [p for p in (cwd / "runs").glob("*/config.yaml") if not (p.parent / "sweep.json").exists()]
    configs.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    return [str(p.parent.relative_to(cwd)) for p in configs]


PLACEHOLDERS = {  # README token -> the paths it stands for, given the runs made so far
    "runs/<run>": lambda cwd: newest_runs(cwd)[:1],
    "runs/<run1>": lambda cwd: newest_runs(cwd)[:1],
    "runs/<run2>": lambda cwd: newest_runs(cwd)[1:2],
    "RUN_DIR": lambda cwd: newest_runs(cwd)[:1],
    "RUN": lambda cwd: newest_runs(cwd)[:1],
}


def is_placeholder(token: str) -> bool:
    return token == "..." or token.rstrip(".") in PLACEHOLDERS or "<time>" in token


def fill_in(argv: list[str], cwd: Path) -> list[str]:
    """Placeholders replaced by paths in ``cwd``, globs expanded as the shell would, ``python`` made this
    interpreter."""
    out: list[str] = []
    for token in argv:
        if token == "...":  # "and more"
            continue
        base = token[:-3] if token.endswith("...") else token
        if base in PLACEHOLDERS:
            paths = PLACEHOLDERS[base](cwd)
            assert paths, f"no run directory yet for {token}"
            out += paths
            continue
        if "<time>" in token:  # e.g. runs/sweep__<time>: the newest such directory
            head, _, tail = token.partition("<time>")
            matches = sorted(glob.glob(glob.escape(head) + "*", root_dir=cwd))
            assert matches, f"nothing matches {token}"
            token = matches[-1] + tail
        if not token.startswith("-") and any(c in token for c in "*?["):  # a shell glob (not in an option)
            matches = sorted(glob.glob(token, root_dir=cwd))
            assert matches, f"nothing matches {token}"
            out += matches
            continue
        out.append(token)
    if out[0] == "python":
        out[0] = sys.executable
    elif out[0] == "tensorboard":
        out[0] = str(Path(sys.executable).with_name("tensorboard"))
    return out


# ------------------------------------------------------------------ fast checks


def test_every_readme_command_has_a_tiny_budget_and_known_placeholders(tmp_path):
    found = readme_commands()
    assert len(found) >= 20, found
    for line, argv in found:
        shrink(argv, tmp_path / "tiny.yaml")  # raises for a command it does not know
        unknown = [t for i, t in enumerate(argv) if re.search(r"<[^>]*>|\b[A-Z][A-Z_]{2,}\b", t)
                   and not is_placeholder(t) and argv[i - 1] != "--label"]  # a label is a name, "HRM ..."
        assert not unknown, f"README.md:{line}: unknown placeholder {unknown} in: {shlex.join(argv)}"


def test_readme_test_commands_are_what_ci_runs():
    def installs_and_tests(cmds: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
        pip = [[t for t in argv[argv.index("install") + 1 :] if not t.startswith("--")]
               for argv in cmds if "pip" in argv[:3] and "install" in argv]
        tests = [argv for argv in cmds if argv[:3] == ["python", "-m", "pytest"]]
        return pip, sorted(tests)  # CI starts the slow test first, to run beside the default suite

    readme_blocks = [commands(lines, start) for start, lines in shell_blocks(README.read_text())]
    (test_block,) = [[argv for _, argv in cmds] for cmds in readme_blocks
                     if any(argv[:3] == ["python", "-m", "pytest"] for _, argv in cmds)]
    ci = ci_python_commands()
    assert installs_and_tests(test_block) == installs_and_tests(ci)
    _, tests = installs_and_tests(ci)
    assert ["python", "-m", "pytest", "-m", "slow", "tests/test_readme_commands.py"] in tests  # this file's test
    assert "set -euo pipefail" in CI.read_text()


# ------------------------------------------------------------------ the commands, run


# After the README's own commands (the runs the others read), the documents run in two lanes side by
# side, each in its own copy of the working directory so that "the newest run" means the same as in a
# sequential run: the latents and results reports (which read the README's runs), and the rest.
LANES = [
    [ROOT / "docs" / "analysis.md", ROOT / "analysis" / "results" / "README.md"],
    [ROOT / "docs" / f"{name}.md" for name in ("sweeps", "configuration", "environments", "benchmarks", "baselines")],
]


def shrunk_commands(documents: list[Path], tiny_config: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``(where, argv, the argv to run)`` of every command of ``documents`` that runs here, in order."""
    for doc in documents:
        for start_line, lines in shell_blocks(doc.read_text()):
            for line, argv in commands(lines, start_line):
                small = shrink(argv, tiny_config)
                if small is not None:
                    yield f"{doc.relative_to(ROOT)}:{line}", argv, small


def run_documents(documents: list[Path], cwd: Path, tiny_config: Path, done: set[tuple[str, ...]]) -> list[str]:
    """Run every command of ``documents`` in ``cwd``, in order; returns the timing lines. Raises on a failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    timings = []
    for where, argv, small in shrunk_commands(documents, tiny_config):
        if tuple(small) in done:  # run already (bench learn is shown twice)
            continue
        done.add(tuple(small))
        run = fill_in(small, cwd)
        start = time.perf_counter()
        result = subprocess.run(run, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        timings.append(f"{time.perf_counter() - start:6.1f}s  {where}  {shlex.join(small)}")
        assert result.returncode == 0, (
            f"{where}: {shlex.join(argv)}\nran: {shlex.join(run)}\nexit code {result.returncode}\n"
            f"--- stdout (end)\n{result.stdout[-3000:]}\n--- stderr (end)\n{result.stderr[-3000:]}"
        )
    return timings


@pytest.mark.slow
def test_readme_shell_commands_run_end_to_end(tmp_path):
    assert sorted(map(str, [README, *LANES[0], *LANES[1]])) == sorted(map(str, DOCUMENTS))  # every document runs
    cwd = tmp_path / "work"
    shutil.copytree(ROOT / "analysis", cwd / "analysis", ignore=shutil.ignore_patterns("__pycache__", ".ipynb*"))
    tiny_config = tmp_path / "tiny.yaml"
    tiny_config.write_text(yaml.safe_dump(TINY_AGENT))

    done: set[tuple[str, ...]] = set()
    start = time.perf_counter()
    print(*run_documents([README], cwd, tiny_config, done), sep="\n")
    lanes = [tmp_path / f"lane{i}" for i in range(len(LANES))]
    for lane in lanes:
        shutil.copytree(cwd, lane, symlinks=True)
    # a command shown in both lanes runs in the first only
    first_lane = {tuple(small) for *_, small in shrunk_commands(LANES[0], tiny_config)}
    lane_done = [set(done), done | first_lane]
    with ThreadPoolExecutor(len(LANES)) as pool:
        results = list(pool.map(run_documents, LANES, lanes, [tiny_config] * len(LANES), lane_done))
    for timings in results:
        print(*timings, sep="\n")
    print(f"{time.perf_counter() - start:6.1f}s  in all")

    # a few of the files the documents say these commands write
    readme_runs = [cwd / r for r in newest_runs(cwd)]
    assert all((r / "summary.json").is_file() for r in readme_runs)
    assert list(cwd.glob("*.gif"))  # evaluate --gif
    analysis_runs = [lanes[0] / r for r in newest_runs(lanes[0])]
    assert any((r / "latents.npz").is_file() for r in analysis_runs)  # evaluate --save-latents
    assert list((lanes[0] / "figures").glob("*.png"))  # make_figures --out
    assert list((lanes[1] / "runs").glob("sweep__*/summary.md"))
