"""``python -m hrm_agent.bench learn`` and ``bench train`` on tiny budgets, and their answers to bad input."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_ENV, TINY_MODEL

BUDGET = 200
ENV_ARGS = [f"--env-kwarg={k}={v}" for k, v in TINY_ENV.items()]
TINY_SETS = [f"--set=hrm:model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "--set=n_envs=2", "--set=batch_size=16", "--set=eval_freq=100", "--set=eval_episodes=5",
    "--set=checkpoint_freq=0", "--set=hrm:learning_starts=64", "--set=hrm:buffer_size=2000",
    "--set=dqn:learning_starts=64", "--set=dqn:buffer_size=2000", "--set=ppo:n_steps=32",
    "--set=recurrent-ppo:n_steps=32", "--set=recurrent-ppo:lstm_hidden_size=16",
    "--set=sb3:policy.features_dim=32", "--set=oracle:eval_episodes=20", "--set=hrm:compile=false",
]
LEARN_ROWS = ("HRM carry z", "HRM reset z", "SB3 DQN", "SB3 PPO", "RecurrentPPO", "BFS oracle")


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_agent.bench", *args], capture_output=True, text=True,
                          timeout=timeout)


def learn_args(tmp: Path, seeds: int = 1, *extra: str) -> list[str]:
    return ["learn", "--env", "DynamicMaze-v0", "--seeds", str(seeds), "--budget", str(BUDGET), "--jobs", "2",
            "--results", str(tmp / "results" / "bench.csv"), "--runs-dir", str(tmp / "runs"),
            *ENV_ARGS, *TINY_SETS, *extra]


def in_process(capsys, *argv: str) -> tuple[int, str, str]:
    from hrm_agent.bench.__main__ import main

    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("bench")
    result = bench(*learn_args(tmp))
    assert result.returncode == 0, result.stderr
    return tmp, result


def table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in LEARN_ROWS:
            rows[cells[0]] = cells
    return rows


def test_bench_learn_trains_every_learner_and_writes_table_and_plot(learned):
    tmp, result = learned
    results = tmp / "results"
    rows = list(csv.DictReader((results / "bench.csv").read_text().splitlines()))
    assert sorted(r["variant"] for r in rows) == sorted(["carry", "reset", "dqn", "ppo", "recurrent-ppo", "oracle"])
    for r in rows:
        assert r["budget"] == str(BUDGET) and r["seed"] == "0" and 0 <= float(r["final_success"]) <= 1
        if r["variant"] != "oracle":
            run_dir = tmp / "runs" / r["run"]
            assert r["total_steps"] == str(BUDGET) and (run_dir / "summary.json").is_file()
            assert r["run"].startswith(f"DynamicMaze-v0__{r['variant']}__0__") and (run_dir / "train.log").is_file()
            assert [p.partition(":")[0] for p in r["curve"].split(";")] == ["100", "200"]

    markdown = (results / "bench_DynamicMaze-v0.md").read_text()
    assert markdown in result.stdout
    cells = table_rows(markdown)
    assert set(cells) == set(LEARN_ROWS)
    oracle = cells["BFS oracle"]
    assert float(oracle[2].split()[0]) >= 0.99  # greedy success of the ceiling
    assert "not reached" in cells["HRM carry z"][4] or "runs; median" in cells["HRM carry z"][4]
    assert (results / "bench_DynamicMaze-v0.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_learn_does_not_rerun_finished_runs(learned, capsys):
    tmp, _ = learned
    before = (tmp / "results" / "bench.csv").read_text()
    runs = sorted(p.name for p in (tmp / "runs").iterdir())
    code, out, err = in_process(capsys, *learn_args(tmp))
    assert code == 0, err
    assert "6 of 6 runs already in" in out and "0 to run" in out
    assert (tmp / "results" / "bench.csv").read_text() == before
    assert sorted(p.name for p in (tmp / "runs").iterdir()) == runs
    # one more seed of the oracle only: just that run is added, the table covers both seeds
    code, out, err = in_process(capsys, *learn_args(tmp, 2, "--learners", "oracle"))
    assert code == 0, err
    assert "1 of 2 runs already in" in out and "[1/1] BFS oracle seed 1" in out
    assert table_rows(out)["BFS oracle"][1] == "0, 1"


def test_bench_learn_report_only_rewrites_the_report_from_the_rows_it_has(learned, capsys):
    tmp, _ = learned
    results = tmp / "results"
    before = (results / "bench.csv").read_text()
    (results / "bench_DynamicMaze-v0.md").unlink()
    runs = sorted(p.name for p in (tmp / "runs").iterdir())
    # seeds 0-2 of the HRM learners: seed 0 is in the file, seeds 1 and 2 are left out, nothing trains
    code, out, err = in_process(capsys, *learn_args(tmp, 3, "--learners", "carry,reset", "--report-only"))
    assert code == 0, err
    assert "2 of 6 runs already in" in out and "report only, 4 left out" in out
    assert (results / "bench.csv").read_text() == before
    assert sorted(p.name for p in (tmp / "runs").iterdir()) == runs
    markdown = (results / "bench_DynamicMaze-v0.md").read_text()
    assert set(table_rows(markdown)) == {"HRM carry z", "HRM reset z"}
    assert table_rows(markdown)["HRM carry z"][1] == "0"
    # a command none of whose runs is in the file: a one-line error, exit 2
    code, out, err = in_process(capsys, *learn_args(tmp, 1, "--learners", "carry", "--set", "hrm:gamma=0.9",
                                                    "--report-only"))
    assert code == 2 and "--report-only: none of this command's runs is in" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--budget", "0"], "--budget must be positive"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--threads", "hrm:0"], "--threads must be at least 1"),
        (["--threads", "td3:2"], "--threads 'td3:2': unknown learner 'td3'"),
        (["--threads", "hrm:two"], "--threads 'hrm:two' must look like [LEARNER:]N"),
        (["--learners", "carry,a2c"], "--learners: unknown a2c"),
        (["--set", "td3:gamma=0.9"], "unknown learner 'td3'"),
        (["--set", "oracle:gamma=0.9"], "the oracle takes only eval_episodes"),
        (["--set", "learning_starts=10"], "ppo: invalid hyperparameters: learning_starts: Extra inputs"),
        (["--set", "hrm:gamma=2"], "carry: invalid hyperparameters: gamma"),
        (["--set", "nonsense"], "must look like [LEARNER:]KEY=VALUE"),
        (["--env-kwarg", "size=8"], "size must be an odd integer"),
        (["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    ],
)
def test_bench_learn_bad_input_gives_one_line_and_exit_code_2(extra, fragment, capsys, tmp_path):
    argv = ["learn", "--env", "DynamicMaze-v0", "--seeds", "1", "--budget", "10",
            "--results", str(tmp_path / "r.csv"), "--runs-dir", str(tmp_path / "runs"), *extra]
    code, _, err = in_process(capsys, *argv)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert fragment in line, line
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "runs").exists()


def test_bench_learn_rejects_a_foreign_results_file(capsys, tmp_path):
    foreign = tmp_path / "r.csv"
    foreign.write_text("a,b\n1,2\n")
    code, _, err = in_process(capsys, "learn", "--env", "DynamicMaze-v0", "--seeds", "1", "--budget", "10",
                              "--results", str(foreign), "--learners", "oracle")
    assert code == 2 and "is not a bench learn results file" in err and foreign.read_text() == "a,b\n1,2\n"


def test_bench_train_prints_rates_ratios_memory_and_breakdown():
    tiny = ["--steps", "64", "--threads", "1", *ENV_ARGS, "--set", "n_envs=2", "--set", "batch_size=16",
            "--set", "learning_starts=32", "--set", "buffer_size=1000", "--set", "sb3:policy.features_dim=32",
            "--set", "hrm:compile=false",
            *[f"--set=hrm:model.{k}={v}" for k, v in TINY_MODEL.items()]]
    result = bench("train", "--env", "DynamicMaze-v0", *tiny)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("HRM carry z", "HRM reset z", "SB3 DQN"):
        match = re.search(rf"^{label}\s+([\d,]+)\s+([\d,.]+)\s+([\d.]+)\s+2\s+16\s+([\d,]+)\s+([\d.,]+)\s+([\d,]+)$",
                          out, re.M)
        assert match, out
        assert float(match.group(1).replace(",", "")) > 0 and float(match.group(2).replace(",", "")) > 0
        assert int(match.group(4).replace(",", "")) > 0  # replay bytes per transition
    assert re.search(r"HRM carry z / SB3 DQN: env steps/s [\d.]+x, updates/s [\d.]+x", out)
    assert re.search(r"HRM carry z / HRM reset z: env steps/s [\d.]+x", out)
    for phase in ("act", "env step", "replay add", "replay sample", "update", "target sync", "other"):
        assert re.search(rf"^{phase}\s+[\d.]+%", out, re.M), phase


def test_bench_train_bad_input(capsys):
    code, _, err = in_process(capsys, "train", "--steps", "0")
    assert code == 2 and err.strip() == "error: --steps must be positive, got 0"
    code, _, err = in_process(capsys, "train", "--set", "dqn:model.hidden_size=8")
    assert code == 2 and "dqn: invalid hyperparameters: model: Extra inputs" in err


def test_rows_recorded_under_other_package_defaults_are_run_again(learned, capsys):
    tmp, _ = learned
    path = tmp / "results" / "bench.csv"
    rows = list(csv.DictReader(path.open()))
    oracle = [r for r in rows if r["variant"] == "oracle" and r["seed"] == "0"]
    assert oracle and all(r["defaults"] for r in rows)
    # the same row as written before the fingerprint existed (or under other defaults)
    for r in rows:
        r["defaults"] = "" if r is oracle[0] else r["defaults"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, out, err = in_process(capsys, *learn_args(tmp, 1, "--learners", "oracle"))
    assert code == 0, err
    assert "0 of 1 runs already in" in out and "[1/1] BFS oracle seed 0" in out


def test_a_run_timed_at_another_thread_count_is_run_again(learned, capsys):
    tmp, _ = learned
    # two threads for the HRM learners only (the --set prefixes): the DQN row at one thread stands
    code, out, err = in_process(capsys, *learn_args(tmp, 1, "--learners", "carry,dqn,oracle", "--jobs", "1",
                                                    "--threads", "1", "--threads", "hrm:2"))
    assert code == 0, err
    # the oracle is timed in-process at one thread: its row stands; the carry z run is trained again
    label = "threads per run: 2 for HRM carry z; 1 for SB3 DQN"
    assert "2 of 3 runs already in" in out and f"(1 at a time, {label})" in out
    assert "[1/1] HRM carry z seed 0" in out
    rows = list(csv.DictReader((tmp / "results" / "bench.csv").open()))
    carry = [r for r in rows if r["variant"] == "carry"]
    assert sorted(r["threads"] for r in carry) == ["1", "2"]
    (new,) = [r for r in carry if r["threads"] == "2"]
    assert "--threads 2" in (tmp / "runs" / new["run"] / "train.log").read_text().splitlines()[0]
    markdown = (tmp / "results" / "bench_DynamicMaze-v0.md").read_text()
    assert f"({label})" in markdown.splitlines()[0]
    assert table_rows(markdown)["HRM carry z"][1] == "0"  # the 2-thread run only
    assert set(table_rows(markdown)) == {"HRM carry z", "SB3 DQN", "BFS oracle"}
    # the same run, spelled without a prefix
    code, out, err = in_process(capsys, *learn_args(tmp, 1, "--learners", "carry", "--jobs", "1", "--threads", "2"))
    assert code == 0 and "1 of 1 runs already in" in out and "(2 threads each)" in out, err
    assert "(2 threads each)" in (tmp / "results" / "bench_DynamicMaze-v0.md").read_text().splitlines()[0]
    # and with its model saved at every evaluation (what a run writes is not a setting of what it learns)
    code, out, err = in_process(capsys, *learn_args(tmp, 1, "--learners", "carry", "--jobs", "1", "--threads", "2",
                                                    "--set", "hrm:save_eval_models=true"))
    assert code == 0 and "1 of 1 runs already in" in out, err


def test_fingerprint_follows_the_resolved_defaults_not_the_spelling():
    from hrm_agent.experiments.store import fingerprint

    config = {"gamma": 0.95}
    base = fingerprint("DynamicMaze-v0", {}, config)
    assert fingerprint("DynamicMaze-v0", {"n_fixed_walls": 10}, config) == base  # the default, spelled out
    assert fingerprint("DynamicMaze-v0", {"n_fixed_walls": 9}, config) != base
    assert fingerprint("DynamicMaze-v0", {}, {"gamma": 0.99}) != base
    assert fingerprint("FourRooms-v0", {}, config) != base
    # a field added later, at the value that does what runs did before it, keeps older rows matching
    assert fingerprint("DynamicMaze-v0", {}, {**config, "her_ratio": 0.0}) == base
    assert fingerprint("DynamicMaze-v0", {}, {**config, "her_ratio": 0.8}) != base
    # what a run writes is not what it learns: saving the model at every evaluation is the same run
    assert fingerprint("DynamicMaze-v0", {}, {**config, "save_eval_models": True}) == base
    model = {**config, "model": {"hidden_size": 32}}
    assert fingerprint("DynamicMaze-v0", {}, {**config, "model": {"hidden_size": 32, "readout": "query"}}) == \
        fingerprint("DynamicMaze-v0", {}, model)
    assert fingerprint("DynamicMaze-v0", {}, {**config, "model": {"hidden_size": 32, "readout": "neighbors"}}) != \
        fingerprint("DynamicMaze-v0", {}, model)
    policy = {**config, "policy": {"features_dim": 64}}
    assert fingerprint("DynamicMaze-v0", {}, {**config, "policy": {"features_dim": 64, "view": "grid"}}) == \
        fingerprint("DynamicMaze-v0", {}, policy)
    assert fingerprint("DynamicMaze-v0", {}, {**config, "policy": {"features_dim": 64, "view": "agent"}}) != \
        fingerprint("DynamicMaze-v0", {}, policy)


def test_the_table_compares_carry_with_reset_over_seeds_with_a_bootstrap_interval():
    from hrm_agent.experiments.stats import bootstrap_difference
    from hrm_agent.experiments.tables import compare_variants, curve_mean, minutes_to_90, table

    def row(variant, seed, final, curve, to_90=""):
        return {"variant": variant, "seed": str(seed), "final_success": str(final), "path_efficiency": "1.0",
                "steps_to_90": to_90, "wall_clock_s": "600", "total_steps": "1000", "budget": "1000",
                "minutes_to_90": str(int(to_90) / 100) if to_90 else "",
                "curve": ";".join(f"{(i + 1) * 500}:{v}" for i, v in enumerate(curve))}

    carry = [row("carry", s, f, c, t) for s, f, c, t in ((0, 0.9, [0.5, 0.9], "1000"), (1, 1.0, [0.9, 1.0], "500"),
                                                        (2, 0.95, [0.7, 0.95], "1000"))]
    reset = [row("reset", s, f, c) for s, f, c in ((0, 0.5, [0.2, 0.5]), (1, 0.6, [0.4, 0.6]), (2, 0.4, [0.3, 0.4]))]
    assert curve_mean(carry[0]) == pytest.approx(0.7) and minutes_to_90(carry[1]) == pytest.approx(5.0)
    assert minutes_to_90(reset[0]) is None
    line = compare_variants(carry, reset)
    d, low, high = bootstrap_difference([0.9, 1.0, 0.95], [0.5, 0.6, 0.4])
    assert d == pytest.approx(0.45) and low <= d <= high and low > 0  # every resample favours carry here
    assert f"final greedy success +0.45 [{low:+.2f}, {high:+.2f}]" in line
    assert "steps to 90 % cannot tell (reached by 3/3 and 0/3 runs)" in line
    markdown = table(carry + reset, "DynamicMaze-v0", "", 1000)
    assert line in markdown and "3/3 runs; median 1,000 (10 min)" in markdown
    carry[0]["minutes_to_90"] = ""  # a run that recorded no wall-clock: no median of the others' minutes
    assert "3/3 runs; median 1,000 (minutes recorded by 2 of them: 5–10)" in table(carry, "DynamicMaze-v0", "", 1000)
    assert "2/2 runs; median 750 (8 min)" in table(carry[1:], "DynamicMaze-v0", "", 1000)  # the middle of 500, 1,000
    assert table_rows(markdown)["HRM carry z"][6] == "0.82 ± 0.07"  # (0.7 + 0.95 + 0.825) / 3
    # the interval is reproducible, and undefined for a single seed
    assert bootstrap_difference([0.9, 1.0, 0.95], [0.5, 0.6, 0.4]) == (d, low, high)
    assert all(x != x for x in bootstrap_difference([1.0], [0.5])[1:])


def test_the_table_names_the_core_of_the_hrm_learners():
    from hrm_agent.experiments.tables import learner_label, table

    assert learner_label("carry", "model.core=trm model.L_layers=1") == "TRM carry z"
    assert learner_label("reset", ["her_ratio=0", "model.core=transformer"]) == "Transformer reset z"
    assert learner_label("carry", "model.core=hrm") == learner_label("carry") == "HRM carry z"
    assert learner_label("dqn", "model.core=trm") == "SB3 DQN"  # a baseline has no core
    row = {"variant": "reset", "seed": "0", "final_success": "0.5", "path_efficiency": "1.0", "steps_to_90": "",
           "wall_clock_s": "60", "settings": "model.core=trm", "curve": "500:0.5"}
    assert "| TRM reset z | 0 |" in table([row], "DynamicMaze-v0", "", 1000)


def test_minutes_to_90_are_the_wall_clock_the_first_evaluation_at_90_recorded():
    from hrm_agent.runs import summary_record

    history = [{"step": 100, "wall_clock_s": 30.0, "success_rate": 0.5},
               {"step": 200, "wall_clock_s": 90.0, "success_rate": 0.95},
               {"step": 300, "wall_clock_s": 200.0, "success_rate": 0.97}]
    summary = summary_record("DynamicMaze-v0", "carry", 0, 300, 240.0, history)
    assert (summary["steps_to_90"], summary["minutes_to_90"]) == (200, 1.5)  # not 240 s x 200 / 300
    assert summary_record("DynamicMaze-v0", "carry", 0, 300, 240.0, history[:1])["minutes_to_90"] is None
    old = [{k: v for k, v in h.items() if k != "wall_clock_s"} for h in history]  # a run from before
    assert summary_record("DynamicMaze-v0", "carry", 0, 300, 240.0, old)["minutes_to_90"] is None


def test_finished_run_directories_are_recorded_without_training(learned, capsys):
    tmp, _ = learned
    first = {r["variant"]: r for r in csv.DictReader((tmp / "results" / "bench.csv").open()) if r["threads"] == "1"}
    runs = sorted(p.name for p in (tmp / "runs").iterdir())
    # another results file: the runs are not in it, but their directories are under --runs-dir
    argv = learn_args(tmp, 1, "--learners", "carry,reset,dqn,ppo,recurrent-ppo")
    argv[argv.index("--results") + 1] = str(tmp / "adopted" / "bench.csv")
    code, out, err = in_process(capsys, *argv)
    assert code == 0, err
    assert "0 of 5 runs already in" in out
    assert out.count("(adopted the finished run ") == 5 and "resuming" not in out, (out, adoption_report(tmp))
    assert sorted(p.name for p in (tmp / "runs").iterdir()) == runs  # nothing trained, no directory made
    for row in csv.DictReader((tmp / "adopted" / "bench.csv").open()):
        same = first[row["variant"]]
        assert row == same, row["variant"]  # the row the training recorded, from the same summary.json


def adoption_report(tmp: Path) -> str:
    """For a failed adoption: each run directory, its summary's threads and why it is not a run of its row."""
    import json

    import yaml

    from hrm_agent.experiments.store import fingerprint

    rows = {r["run"]: r for r in csv.DictReader((tmp / "results" / "bench.csv").open())}
    lines = []
    for run_dir in sorted((tmp / "runs").iterdir()):
        record = yaml.safe_load((run_dir / "config.yaml").read_text())
        agent = {k: v for k, v in record["agent"].items() if k != "algo"}
        row = rows.get(run_dir.name, {})
        threads = json.loads((run_dir / "summary.json").read_text()).get("threads")
        lines.append(f"{run_dir.name}: threads {threads}, kwargs {record.get('env_kwargs')}, "
                     f"fingerprint {fingerprint(record['env'], record.get('env_kwargs') or {}, agent)} "
                     f"row {row.get('defaults')} {row.get('threads')}")
    return "\n".join(lines)


def test_a_run_directory_of_other_settings_or_threads_is_not_taken_for_a_task(learned):
    from hrm_agent.experiments.launch import Task, finished_run
    from hrm_agent.experiments.store import row_key
    from hrm_agent.runs import parse_env_kwargs

    tmp, _ = learned
    env_kwargs = parse_env_kwargs([item.split("=", 1)[1] for item in ENV_ARGS])
    (row,) = [r for r in csv.DictReader((tmp / "results" / "bench.csv").open())
              if r["variant"] == "dqn" and r["threads"] == "1"]
    task = Task("dqn", 0, row["settings"].split(), key=row_key(row), threads=1)
    found = finished_run(tmp / "runs", task, "DynamicMaze-v0", env_kwargs, BUDGET)
    assert found is not None and found[0].name == row["run"]
    assert finished_run(tmp / "runs", task, "DynamicMaze-v0", env_kwargs, BUDGET * 2) is None  # another budget
    assert finished_run(tmp / "runs", task, "DynamicMaze-v0", {**env_kwargs, "toggle_prob": 0.5}, BUDGET) is None
    other = Task("dqn", 0, row["settings"].split(), key=(*row_key(row)[:6], "0123456789ab", "1"), threads=1)
    assert finished_run(tmp / "runs", other, "DynamicMaze-v0", env_kwargs, BUDGET) is None  # another config
    assert finished_run(tmp / "runs", Task("dqn", 0, [], key=row_key(row), threads=2), "DynamicMaze-v0",
                        env_kwargs, BUDGET) is None  # timed at another thread count


def started_until_a_checkpoint(argv: list[str], runs: Path) -> subprocess.Popen:
    """``bench`` with ``argv``, started and left running once a training under ``runs`` has checkpointed."""
    import time

    proc = subprocess.Popen([sys.executable, "-m", "hrm_agent.bench", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(runs.glob("*/checkpoints/last.pt")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.05)
    return proc


def test_a_training_interrupted_alone_stops_the_table_instead_of_starting_the_next_run(tmp_path):
    import signal

    argv = [*learn_args(tmp_path, 2, "--learners", "carry", "--jobs", "1", "--set=hrm:checkpoint_freq=100",
                        "--set=eval_freq=0"), "--budget", "3000"]
    proc = started_until_a_checkpoint(argv, tmp_path / "runs")
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children
    os.kill(int(children[0]), signal.SIGINT)  # Ctrl-C for the training only (e.g. kill -INT PID)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted; finished runs are in" in err and "seed 1" not in out + err
    assert [p.name.split("__")[2] for p in (tmp_path / "runs").iterdir()] == ["0"]  # seed 1 never started


def test_an_interrupted_bench_learn_resumes_its_hrm_run_from_the_checkpoint(tmp_path):
    import json
    import signal

    budget = 1500
    argv = [*learn_args(tmp_path, 1, "--learners", "carry", "--set=hrm:checkpoint_freq=100",
                        "--set=eval_freq=500"), "--budget", str(budget)]
    proc = started_until_a_checkpoint(argv, tmp_path / "runs")
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the training checkpoints and stops
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoints" / "last.pt").is_file()

    result = bench(*argv)
    assert result.returncode == 0, result.stderr
    assert f"resuming {run_dir} from its last checkpoint" in result.stdout
    assert f"[1/1] HRM carry z seed 0 (resumed {run_dir})" in result.stdout
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name]  # no second directory
    log = (run_dir / "train.log").read_text()
    assert log.startswith("$ ") and log.count("\n$ ") == 1  # the interrupted part, then the resumed one
    resumed = log.split("\n$ ")[1]
    assert resumed.startswith(f"{sys.executable} -m hrm_agent.train --resume {run_dir} ")
    (started,) = re.findall(r"seed 0, (\d+)/%d steps" % budget, resumed)
    assert 0 < int(started) < budget  # it went on from the checkpoint, not from step 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] == budget and [h["step"] for h in summary["eval_history"]] == [500, 1000, 1500]
    (row,) = csv.DictReader((tmp_path / "results" / "bench.csv").open())
    assert row["run"] == run_dir.name and row["total_steps"] == str(budget)
