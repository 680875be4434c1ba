"""``python -m hrm_agent.bench model`` runs and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys

import torch

from hrm_agent.bench.model import count_flops


def test_bench_model_prints_time_flops_mfu_parameters_and_latency():
    # One thread: on a busy 2-core machine, two spinning OpenMP threads slow this 5x.
    tiny = ["--repeats", "2", "--warmup", "1", "--batch-size", "2", "--seq-len", "8", "--peak-size", "128", "--threads", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "hrm_agent.bench", "model", *tiny],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^HRM Q-network bench \(DynamicMaze-v0 training defaults\): CPU, .*threads 1; "
                     r"batch 2, 9 tokens \(8 \+ query\).*segments 1, (compiled|eager)$", out, re.M)
    assert re.search(r"^parameters: [\d,]+$", out, re.M)
    assert re.search(r"matmul peak \(128\^2\): float32 [\d.]+ GFLOP/s, bfloat16 [\d.]+ GFLOP/s", out)
    for dtype in ("float32", "bfloat16"):
        assert re.search(rf"\[{dtype}\] DQN update .*: [\d.]+ ms \(median of 2\), [\d.]+ GFLOP, [\d.]+ GFLOP/s", out)
        assert re.search(rf"\[{dtype}\] MFU: [\d.]+% of {dtype} peak", out)
        assert re.search(rf"\[{dtype}\] acting latency .*batch 1: [\d.]+ ms/sample, batch 8: [\d.]+ ms/sample", out)
    assert re.search(r"target >= 50%: (met|NOT met)", out)


def test_flop_count_includes_cpu_attention():
    q = torch.randn(2, 4, 10, 8, requires_grad=True)

    def attention() -> None:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()

    forward = 2 * (2 * 2 * 4 * 10 * 10 * 8)  # q @ k^T and p @ v
    assert count_flops(attention) >= forward  # torch's counter alone counts 0 for the CPU kernel


def test_bench_model_defaults_come_from_the_training_config():
    from hrm_agent.bench.model import default_setup
    from hrm_agent.hyperparams import resolve_config

    model, setup = default_setup("FourRooms-v0")
    config = resolve_config("FourRooms-v0", None, [], None)
    assert setup.batch_size == config.batch_size and setup.compile == config.compile
    assert model.seq_len == 11 * 11  # 13 x 13 grid without its border
    assert all(getattr(model, k) == v for k, v in config.model.items())


def test_bench_model_eager_times_the_networks_uncompiled():
    tiny = ["--repeats", "1", "--warmup", "0", "--batch-size", "2", "--seq-len", "8", "--peak-size", "64",
            "--threads", "1", "--dtype", "float32", "--eager"]
    result = subprocess.run([sys.executable, "-m", "hrm_agent.bench", "model", *tiny],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert re.search(r"segments 1, eager$", result.stdout, re.M)
    assert "[bfloat16]" not in result.stdout


def test_bench_model_set_overrides_the_config_timed():
    tiny = ["--repeats", "1", "--warmup", "0", "--batch-size", "2", "--seq-len", "8", "--peak-size", "64",
            "--threads", "1", "--dtype", "float32", "--eager"]
    runs = {}
    shown = {"hrm": r"layers H\d+\+L1, cycles H\d+xL\d+", "trm": r"layers 2 \(one network\), cycles H\d+xL\d+",
             "transformer": r"layers 2, no recursion"}
    for core, layers in (("hrm", 1), ("trm", 2), ("transformer", 2)):
        result = subprocess.run([sys.executable, "-m", "hrm_agent.bench", "model", *tiny,
                                 "--set", f"model.core={core}", "--set", f"model.L_layers={layers}"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert f"training defaults with model.core={core} model.L_layers={layers})" in result.stdout
        assert re.search(rf"core {core}, hidden \d+, heads \d+, {shown[core]}, segments 1, eager$", result.stdout, re.M)
        runs[core] = result.stdout
    parameters = {c: int(re.search(r"^parameters: ([\d,]+)$", out, re.M).group(1).replace(",", ""))
                  for c, out in runs.items()}
    assert parameters["trm"] == parameters["transformer"] == parameters["hrm"]  # 2 blocks each (docs/configuration.md)
