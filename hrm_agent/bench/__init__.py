"""Benchmark commands: ``python -m hrm_agent.bench {env,model,...}``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; ``__main__`` only dispatches.
"""
