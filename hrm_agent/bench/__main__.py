"""``python -m hrm_agent.bench SUBCOMMAND``: print speed figures for this machine."""

from __future__ import annotations

import argparse
import importlib
import sys

from hrm_agent.runs import one_line_errors

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "env": ("hrm_agent.bench.env", "random-action stepping speed of our envs vs minigrid's FourRooms"),
    "model": ("hrm_agent.bench.model", "HRM Q-network update time, FLOPs and FLOP utilisation"),
    "learn": ("hrm_agent.bench.learn", "HRM carry/reset z vs SB3 DQN, PPO, RecurrentPPO and the BFS oracle on a budget"),
    "train": ("hrm_agent.bench.train", "training-loop throughput of the HRM learner vs SB3 DQN, and where it goes"),
}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """A subcommand; a mistake in its arguments is one ``error:`` line and exit code 2 (checked before any work)."""
    parser = argparse.ArgumentParser(prog="python -m hrm_agent.bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
