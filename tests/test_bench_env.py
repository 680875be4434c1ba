"""``python -m hrm_agent.bench env``."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from hrm_agent.bench import env as bench_env

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("DynamicMaze-v0", "FourRooms-v0", "MiniGrid-FourRooms-v0")


def check_table(text: str) -> None:
    for name in NAMES:
        line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), None)
        assert line is not None, f"no row for {name} in:\n{text}"
        match = re.search(r"([\d,]+)\s+(\d+\.\d+)x$", line)
        assert match, line
        assert float(match.group(1).replace(",", "")) > 0
    assert re.search(r"MiniGrid-FourRooms-v0\s+[\d,]+\s+1\.00x", text)


def test_bench_env_command_prints_three_speeds_and_ratios():
    result = subprocess.run(
        [sys.executable, "-m", "hrm_agent.bench", "env", "--steps", "500", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    check_table(result.stdout)


def test_bench_env_run_reports_medians_over_repeats(capsys):
    parser = argparse.ArgumentParser()
    bench_env.add_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.steps, defaults.repeats) == (20_000, 5)
    assert bench_env.run(parser.parse_args(["--steps", "200", "--repeats", "2"])) == 0
    out = capsys.readouterr().out
    assert "200 steps x 2 repeats" in out
    check_table(out)
