"""``python -m hrm_agent.baselines``: SB3 DQN, PPO and RecurrentPPO in the HRM runs' layout, and bad input."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from conftest import TINY_ENV

ROOT = Path(__file__).resolve().parents[1]
STEPS = 300
TINY_POLICY = ["--set=policy.channels=[8]", "--set=policy.features_dim=32", "--set=policy.net_arch=[32]"]
TINY_ALGO = {
    "dqn": ["--set=learning_starts=64", "--set=batch_size=16", "--set=buffer_size=2000",
            "--set=target_update_interval=100"],
    "ppo": ["--set=n_steps=32", "--set=batch_size=32", "--set=n_epochs=2"],
    "recurrent-ppo": ["--set=n_steps=32", "--set=batch_size=32", "--set=n_epochs=2", "--set=lstm_hidden_size=16"],
}
TINY_ARGS = TINY_POLICY + [f"--env-kwarg={k}={v}" for k, v in TINY_ENV.items()] + [
    "--set=n_envs=2", "--set=eval_freq=100", "--set=eval_episodes=5", "--set=checkpoint_freq=100",
    "--no-progress", "--threads=1"]


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module", params=["dqn", "ppo", "recurrent-ppo"])
def trained(request, tmp_path_factory) -> tuple[str, Path, subprocess.CompletedProcess]:
    """A tiny run of each algorithm, in the default run directory under a fresh working directory."""
    algo = request.param
    cwd = tmp_path_factory.mktemp(algo)
    result = run("-m", "hrm_agent.baselines", "--algo", algo, "--env", "DynamicMaze-v0", "--seed", "3",
                 "--total-steps", str(STEPS), *TINY_ARGS, *TINY_ALGO[algo], cwd=cwd)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "runs").iterdir()
    return algo, run_dir, result


def test_a_run_writes_the_layout_of_an_hrm_run(trained):
    algo, run_dir, result = trained
    env, variant, seed, stamp = run_dir.name.split("__")
    assert (env, variant, seed) == ("DynamicMaze-v0", algo, "3") and len(stamp) == 15
    assert "final greedy eval" in result.stdout and "Traceback" not in result.stderr
    assert (run_dir / "final_model.zip").is_file() and (run_dir / "checkpoints" / "last.zip").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (config["env"], config["seed"], config["variant"]) == ("DynamicMaze-v0", 3, algo)
    assert config["env_kwargs"] == TINY_ENV and config["agent"]["algo"] == algo
    assert config["agent"]["policy"]["features_dim"] == 32 and config["model"]["parameters"] > 0
    assert {"torch", "gymnasium", "stable_baselines3", "sb3_contrib"} <= set(config["versions"])

    from hrm_agent.runs import summary_record

    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == set(summary_record("e", "v", 0, 1, 0.0, []))  # the HRM runs' schema
    assert (summary["variant"], summary["seed"], summary["total_steps"]) == (algo, 3, STEPS)
    assert [h["step"] for h in summary["eval_history"]] == [100, 200, 300]
    assert summary["final_eval"]["episodes"] == 5 and 0 <= summary["final_eval"]["success_rate"] <= 1

    rows = list(csv.DictReader((run_dir / "progress.csv").read_text().splitlines()))
    keys = set(rows[0])
    assert {"eval/success_rate", "eval/mean_ep_length", "eval/path_efficiency", "rollout/ep_rew_mean",
            "rollout/success_rate", "time/fps", "time/total_timesteps", "train/loss"} <= keys
    assert [int(r["time/total_timesteps"]) for r in rows if r["eval/success_rate"]] == [100, 200, 300]


def test_the_final_model_loads_and_acts(trained):
    algo, run_dir, _ = trained
    from hrm_agent.baselines.sb3 import algorithm_class

    cls, _ = algorithm_class(algo)
    model = cls.load(run_dir / "final_model.zip", device="cpu")
    obs, _ = gym.make("DynamicMaze-v0", **TINY_ENV).reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert int(action) in range(4)


def test_learning_table_reads_baseline_runs(trained, tmp_path):
    algo, run_dir, _ = trained
    spec = importlib.util.spec_from_file_location("learning_table", ROOT / "analysis" / "learning_table.py")
    learning_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning_table)
    row, curve = learning_table.read_run(run_dir)
    assert (row["variant"], row["seed"], row["total_steps"]) == (algo, 3, STEPS)
    assert [c["step"] for c in curve] == [100, 200, 300]


def test_tuned_defaults_validate_for_every_algo_and_env():
    from hrm_agent.baselines.config import ALGOS, resolve_baseline_config
    from hrm_agent.hyperparams import default_hyperparams

    for env_id in ("DynamicMaze-v0", "FourRooms-v0"):
        assert "baselines" not in default_hyperparams(env_id)  # the HRM entries are untouched
        for algo in ALGOS:
            config = resolve_baseline_config(algo, env_id)
            assert config.total_steps > 0 and config.eval_freq > 0
    dqn = resolve_baseline_config("dqn", "DynamicMaze-v0", None, ["policy.features_dim=32", "gamma=0.9"])
    assert dqn.policy.features_dim == 32 and dqn.policy.channels == [16, 16] and dqn.gamma == 0.9


@pytest.mark.parametrize("shape", [(11, 11), (13, 13)])
@pytest.mark.parametrize("extractor", ["conv", "mlp"])
def test_token_grid_extractor_one_hot_features(shape, extractor):
    from hrm_agent.baselines.sb3 import TokenGridExtractor

    space = gym.spaces.Box(0, 5, shape, np.uint8)
    net = TokenGridExtractor(space, extractor=extractor, channels=[4, 4], features_dim=8)
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(3)])).float()
    assert net(obs).shape == (3, 8)
    border = obs.clone()
    border[:, 0, :] = 5  # the cropped border does not reach the features
    assert torch.equal(net(obs), net(border))


def test_agent_view_centres_the_grid_on_the_agent():
    from envs.tokens import AGENT, EMPTY, GOAL, WALL
    from hrm_agent.baselines.sb3 import TokenGridExtractor

    space = gym.spaces.Box(0, 5, (7, 9), np.uint8)  # cropped: 5 x 7 cells -> a 9 x 13 window
    net = TokenGridExtractor(space, channels=[4], features_dim=8, view="agent")
    rng = np.random.default_rng(0)
    grids = rng.choice([EMPTY, WALL], size=(4, 7, 9)).astype(np.uint8)
    cells = [(1, 1), (5, 7), (3, 4), (2, 6)]  # corners of the cropped grid, its middle, elsewhere
    for grid, (row, col) in zip(grids, cells):
        grid[row, col] = AGENT
        grid[5 if row < 3 else 1, 1 if col > 4 else 7] = GOAL
    tokens = torch.as_tensor(grids).long()[:, 1:-1, 1:-1]
    window = net.centred_on_agent(tokens)
    assert window.shape == (4, 9, 13)
    for b, (row, col) in enumerate(cells):
        r0, c0 = row - 1, col - 1  # the agent's cell in the cropped grid
        for r in range(9):
            for c in range(13):
                y, x = r - 4 + r0, c - 6 + c0
                expected = tokens[b, y, x] if 0 <= y < 5 and 0 <= x < 7 else WALL
                assert window[b, r, c] == expected, (b, r, c)
        assert window[b, 4, 6] == AGENT
    # the agent's surroundings land at the same window cells wherever it stands
    shifted = np.full((1, 7, 9), EMPTY, np.uint8)
    shifted[0, 2, 2], shifted[0, 2, 4] = AGENT, GOAL
    other = np.full((1, 7, 9), EMPTY, np.uint8)
    other[0, 4, 5], other[0, 4, 7] = AGENT, GOAL
    a, b = (net.centred_on_agent(torch.as_tensor(g).long()[:, 1:-1, 1:-1]) for g in (shifted, other))
    assert a[0, 4, 8] == b[0, 4, 8] == GOAL
    assert net(torch.as_tensor(grids).float()).shape == (4, 8)
    with pytest.raises(ValueError, match="view must be"):
        TokenGridExtractor(space, view="goal")


def test_agent_view_trains_and_reloads(tmp_path):
    from hrm_agent.baselines.cli import main

    run_dir = tmp_path / "run"
    code = main(["--algo", "dqn", "--env", "DynamicMaze-v0", "--total-steps", "64", "--run-dir", str(run_dir),
                 "--no-progress", "--set", "policy.view=agent", "--set", "learning_starts=16",
                 "--set", "eval_episodes=2", "--set", "eval_freq=0", "--set", "n_envs=2"])
    assert code == 0
    assert "view: agent" in (run_dir / "config.yaml").read_text()
    from stable_baselines3 import DQN

    model = DQN.load(run_dir / "final_model.zip", device="cpu")
    assert model.q_net.features_extractor.view == "agent"


def main_error(capsys, *argv: str) -> str:
    """Run the CLI in-process; return its one-line error after checking exit code 2."""
    from hrm_agent.baselines.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--algo", "a2c"], ["argument --algo: invalid choice: 'a2c'"]),
        (["--algo", "dqn", "--env", "NoSuchEnv-v0"], ["unknown env id 'NoSuchEnv-v0'", "DynamicMaze-v0"]),
        (["--algo", "dqn", "--set", "learning_rate=-1"], ["learning_rate", "greater than 0"]),
        (["--algo", "dqn", "--set", "learning_startz=5"], ["learning_startz", "Extra inputs"]),
        (["--algo", "dqn", "--set", "batch_size=500", "--set", "buffer_size=100"],
         ["batch_size (500) must not exceed buffer_size (100)"]),
        (["--algo", "ppo", "--set", "n_steps=8", "--set", "n_envs=2", "--set", "batch_size=64"],
         ["batch_size (64) must not exceed n_steps * n_envs (16)"]),
        (["--algo", "ppo", "--set", "lstm_hidden_size=8"], ["lstm_hidden_size", "Extra inputs"]),
        (["--algo", "recurrent-ppo", "--set", "shared_lstm=true"], ["shared_lstm and enable_critic_lstm"]),
        (["--algo", "ppo", "--set", "policy.extractor=resnet"], ["policy.extractor", "'conv' or 'mlp'"]),
        (["--algo", "ppo", "--set", "oops"], ["must look like key=value"]),
        (["--algo", "ppo", "--config", "/no/such/file.yaml"], ["config file not found"]),
        (["--algo", "ppo", "--env-kwarg", "size=8"], ["size must be an odd integer"]),
        (["--algo", "ppo", "--total-steps", "0"], ["--total-steps must be positive"]),
        (["--algo", "ppo", "--threads", "0"], ["--threads must be at least 1"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, fragments, capsys, tmp_path):
    if "--env" not in args:
        args = [*args, "--env", "DynamicMaze-v0"]
    message = main_error(capsys, *args, "--run-dir", str(tmp_path / "r"))
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "r").exists()


def test_an_existing_run_dir_is_not_overwritten(capsys, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("x")
    message = main_error(capsys, "--algo", "dqn", "--env", "DynamicMaze-v0", "--run-dir", str(tmp_path / "r"))
    assert "already exists" in message and (tmp_path / "r" / "keep.txt").read_text() == "x"


def test_the_module_entry_point_exits_with_code_2():
    result = run("-m", "hrm_agent.baselines", "--algo", "dqn", "--env", "DynamicMaze-v0", "--set", "gamma=2",
                 timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: invalid hyperparameters: gamma: Input should be less "
                                                  "than or equal to 1"]
