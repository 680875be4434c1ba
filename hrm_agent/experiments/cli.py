"""Command-line arguments the experiment commands share, and the ``main`` of a one-figure command.

``--seeds``, ``--set`` and ``--env-kwarg`` mean the same everywhere (seeds ``0 .. K-1``; a ``KEY=VALUE``
hyperparameter and a ``gym.make`` keyword, values parsed as YAML, repeatable); only whom they reach
differs, which each command says in its help.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from hrm_agent.runs import UsageError


def add_seeds(parser: argparse.ArgumentParser, of: str, required: bool = False, default_text: str = "") -> None:
    """``--seeds K``: seeds ``0 .. K-1`` of ``of`` (e.g. ``every learner``); ``default_text`` names the
    default the command applies when it is not given."""
    parser.add_argument("--seeds", type=int, required=required,
                        help=f"seeds 0 .. K-1 of {of}" + (f" (default {default_text})" if default_text else ""))


def add_set(parser: argparse.ArgumentParser, help: str, metavar: str = "KEY=VALUE", default: list | None = None) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=default, metavar=metavar, help=help)


def add_env_kwarg(parser: argparse.ArgumentParser, reaches: str = "", default: list | None = None) -> None:
    """``--env-kwarg KEY=VALUE`` (repeatable) into ``args.env_kwargs``; ``reaches`` says for whom (e.g.
    ``every learner``)."""
    parser.add_argument("--env-kwarg", dest="env_kwargs", action="append", default=default, metavar="KEY=VALUE",
                        help=f"gym.make keyword{f' for {reaches}' if reaches else ''}, e.g. --env-kwarg size=9")


def figure_command(
    prog: str, doc: str, sources_help: str, out: Path, write: Callable[[argparse.Namespace], list[Path]],
    argv: list[str] | None = None, extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """``main`` of a one-figure command in ``analysis/``: parse ``SOURCES... --out DIR`` (``out`` the
    default), call ``write(args)``, print what it wrote; bad input is one line on stderr, exit code 2."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("sources", nargs="+", metavar="RUN", help=sources_help)
    parser.add_argument("--out", type=Path, default=out, help=f"output folder (default {out})")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    try:
        paths = write(args)
    except (UsageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(map(str, paths)))
    return 0
