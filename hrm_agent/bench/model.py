"""``python -m hrm_agent.bench model``: speed and FLOP utilisation of the HRM Q-network.

For the default training config of an environment (``--env``, default
DynamicMaze-v0; ``--preset NAME`` applies a preset such as ``paper``: the model
and replay batch size of ``hrm_agent/hyperparams.yaml``, the env's token count
after border cropping; ``--set KEY=VALUE`` overrides as ``hrm_agent.train``'s, e.g.
``--set model.core=trm``) it times the model work of one DQN update on a batch
(one minibatch): the online forward pass from a carry with the 1-step backward
(loss on the Q of the taken actions) plus the target network's forward pass
under ``no_grad``; with deep supervision, one online forward + backward per
segment against one target pass. The optimiser step is not included. The
networks are built as training builds them (``hrm_agent.build.build_networks``:
compiled where the config says ``compile: true``, the default; ``--eager`` times
them uncompiled); FLOPs are counted on the eager networks, whose operations the
counter sees. It
also extrapolates the time of 100,000 optimiser steps (one per minibatch, or
one per segment with deep supervision; the HRM-Agent authors' "approx. 100K"
counts these). FLOPs are counted by ``torch.utils.flop_counter``; dividing by
the median time gives the achieved FLOP/s, and dividing that by the machine's
matmul peak, measured in the same run, the model FLOP utilisation (MFU).
Also prints the parameter count and the per-sample latency of acting
(``no_grad`` forward) at batch 1 and 8.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import TYPE_CHECKING, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from hrm_agent.build import build_networks, can_compile
from hrm_agent.config import HRMConfig
from hrm_agent.cores import CORES
from hrm_agent.model import HRMQNetwork

if TYPE_CHECKING:
    from hrm_agent.hyperparams import AgentConfig

MFU_TARGET = 0.5  # of the float32 matmul peak, for the float32 model

aten = torch.ops.aten
# The flop counter knows the GPU attention kernels but not the CPU one SDPA
# dispatches to here; without these it would count attention as free.
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: (
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)
    ),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        lambda grad_out, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad_out, q, k, v)
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="DynamicMaze-v0",
                        help="env whose tuned training defaults are benchmarked (default DynamicMaze-v0)")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="time the model of a hyperparameter preset (e.g. paper) instead of the env's defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one hyperparameter of the config timed, as for hrm_agent.train "
                             "(e.g. --set model.core=trm)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="replay batch of the DQN update (default: the env's training default)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="observation tokens, as a one-row grid (default: the env's, e.g. 99 for the 9x11 interior of the maze)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "both"), default="both",
                        help="forward dtype of the model (default both)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats, the median is reported (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--eager", action="store_true",
                        help="time the networks uncompiled even where the config compiles them (compile: true)")
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="side of the square matmul timed for the peak (default 2048)")


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, n: int, repeats: int) -> float:
    """Achieved FLOP/s of an ``n x n`` by ``n x n`` matmul: the machine's practical peak."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    seconds = median_seconds(lambda: a @ b, repeats=max(repeats, 3), warmup=2)
    return 2 * n**3 / seconds


def make_update(
    online: HRMQNetwork, target: HRMQNetwork, batch_size: int, deep_supervision: bool = False
) -> Callable[[], None]:
    """The model work of one DQN update on a random batch (one minibatch), as a closure."""
    cfg = online.config
    generator = torch.Generator().manual_seed(0)
    obs = torch.randint(0, cfg.vocab_size, (batch_size, cfg.seq_len), dtype=torch.uint8, generator=generator)
    next_obs = torch.randint(0, cfg.vocab_size, (batch_size, cfg.seq_len), dtype=torch.uint8, generator=generator)
    actions = torch.randint(0, cfg.num_actions, (batch_size, 1), generator=generator)
    with torch.no_grad():  # a realistic, non-initial stored latent
        carry = online(online.initial_carry(batch_size), obs).carry
        next_carry = online(carry, next_obs).carry

    steps = cfg.segments if deep_supervision else 1

    def update() -> None:  # the forward passes of hrm_agent.loop.dqn_update
        with torch.no_grad():
            next_q = target.q_values(next_carry, next_obs)
        y = next_q.max(dim=1).values
        start = carry
        for _ in range(steps):
            online.zero_grad(set_to_none=True)
            if deep_supervision:
                start, q, _ = online(start, obs, segments=1)
            else:
                q = online.q_values(start, obs)
            loss = (q.gather(1, actions).squeeze(1) - y).square().mean()
            loss.backward()

    return update


def count_flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def acting_latency(model: HRMQNetwork, batch_size: int, repeats: int) -> float:
    """Seconds per sample of a ``no_grad`` forward pass at ``batch_size``."""
    cfg = model.config
    tokens = torch.randint(0, cfg.vocab_size, (batch_size, cfg.seq_len), dtype=torch.uint8)
    carry = model.initial_carry(batch_size)

    @torch.no_grad()
    def act() -> None:
        model(carry, tokens)

    return median_seconds(act, repeats, warmup=2) / batch_size


def default_setup(
    env_id: str, preset: str | None = None, overrides: list[str] | None = None
) -> tuple[HRMConfig, "AgentConfig"]:
    """The model config and agent config (replay batch size, deep supervision, compile) an ``HRMAgent``
    would train ``env_id`` with by default (or with ``preset``, then the ``key=value`` ``overrides``);
    raises UsageError/ConfigError (:func:`hrm_agent.runs.check_config`)."""
    from hrm_agent.hyperparams import resolve_config
    from hrm_agent.runs import check_config, check_env_id

    check_env_id(env_id)
    config = resolve_config(env_id, None, overrides or [], None, preset=preset)
    model = check_config(env_id, {}, config)
    return model, config


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from hrm_agent.hyperparams import ConfigError, format_validation_error
    from hrm_agent.runs import UsageError, set_torch_threads

    set_torch_threads(args.threads)
    if any(n is not None and n < 1 for n in (args.batch_size, args.seq_len, args.repeats, args.peak_size)) \
            or args.warmup < 0:
        raise UsageError("--batch-size, --seq-len, --repeats and --peak-size must be at least 1, --warmup at least 0")
    base, config = default_setup(args.env, args.preset, args.overrides)
    deep_supervision = config.deep_supervision
    args.batch_size = config.batch_size if args.batch_size is None else args.batch_size
    # compile as training would (build_networks), asked once: without a C++ compiler, eager
    compiled = not args.eager and config.compile and can_compile(torch.device("cpu"))
    config = config.model_copy(update={"compile": compiled})
    if args.seq_len is not None:  # the grid-based encodings then see a one-row grid of that length
        grid = None if base.grid_shape is None else (1, args.seq_len)
        try:
            base = HRMConfig(**{**base.model_dump(), "seq_len": args.seq_len, "grid_shape": grid})
        except ValidationError as err:
            raise ConfigError(f"--seq-len {args.seq_len}: {format_validation_error(err, prefix='model')}") from None
    dtypes = ("float32", "bfloat16") if args.dtype == "both" else (args.dtype,)
    torch.manual_seed(0)

    peak = {name: matmul_peak(getattr(torch, name), args.peak_size, args.repeats) for name in ("float32", "bfloat16")}
    setting = f"preset {args.preset}" if args.preset else "training defaults"
    if args.overrides:
        setting += " with " + " ".join(args.overrides)
    print(
        f"HRM Q-network bench ({args.env} {setting}): CPU, torch {torch.__version__}, threads {torch.get_num_threads()}; "
        f"batch {args.batch_size}, {base.total_seq_len} tokens ({base.seq_len} + query), "
        f"core {base.core}, hidden {base.hidden_size}, heads {base.num_heads}, {CORES[base.core].describe(base)}, segments {base.segments}, "
        f"{'compiled' if compiled else 'eager'}"
        + (" (deep supervision: one backward per segment)" if deep_supervision else "")
    )
    print(f"parameters: {sum(p.numel() for p in HRMQNetwork(base).parameters()):,}")
    print(
        f"matmul peak ({args.peak_size}^2): float32 {peak['float32'] / 1e9:.1f} GFLOP/s, "
        f"bfloat16 {peak['bfloat16'] / 1e9:.1f} GFLOP/s"
    )

    for name in dtypes:
        model_config = base.model_copy(update={"forward_dtype": name})
        eager = HRMQNetwork(model_config)
        flops = count_flops(make_update(eager, copy.deepcopy(eager), args.batch_size, deep_supervision))
        online, target, _ = build_networks(model_config, config, torch.device("cpu"), seed=0)
        update = make_update(online, target, args.batch_size, deep_supervision)
        optimiser_steps = base.segments if deep_supervision else 1
        seconds = median_seconds(update, args.repeats, args.warmup)
        achieved = flops / seconds
        mfu = {p: achieved / peak[p] for p in peak}
        verdict = ""
        if name == "float32":
            verdict = f" (target >= {MFU_TARGET:.0%}: {'met' if mfu['float32'] >= MFU_TARGET else 'NOT met'})"
        print(
            f"[{name}] DQN update (online fwd + 1-step bwd + target fwd): {seconds * 1e3:.1f} ms "
            f"(median of {args.repeats}), {flops / 1e9:.2f} GFLOP, {achieved / 1e9:.1f} GFLOP/s; "
            f"100,000 optimiser steps: {seconds / optimiser_steps * 1e5 / 3600:.1f} h"
        )
        print(
            f"[{name}] MFU: {mfu[name]:.1%} of {name} peak"
            + (f", {mfu['float32']:.1%} of float32 peak" if name != "float32" else "")
            + verdict
        )
        latency = {b: acting_latency(online, b, args.repeats) for b in (1, 8)}
        print(
            f"[{name}] acting latency (no_grad forward): "
            + ", ".join(f"batch {b}: {s * 1e3:.2f} ms/sample" for b, s in latency.items())
        )
    return 0
