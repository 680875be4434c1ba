"""Argument checks of the envs' keywords: a bad value raises a one-line ``ValueError`` naming the
parameter and its range; an unknown keyword one naming it and listing the accepted ones."""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Any

import numpy as np

# The MiniGridEnv keywords that make sense here (grid size, max_steps,
# render_mode and the mission are set by the envs themselves).
MINIGRID_KWARGS = ("tile_size", "agent_view_size", "see_through_walls", "highlight", "screen_size", "agent_pov")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_size(size: Any, minimum: int = 5, name: str = "size") -> int:
    """An odd integer >= ``minimum``."""
    if not _is_int(size) or size < minimum or size % 2 == 0:
        raise ValueError(f"{name} must be an odd integer >= {minimum}, got {size!r}")
    return int(size)


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer in ``[low, high]``."""
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def check_prob(name: str, value: Any) -> float:
    """A probability in ``[0, 1]`` (NaN fails the comparison)."""
    if not _is_real(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_max_steps(max_steps: Any, width: int, height: int) -> int:
    """A positive integer; None means ``4 * max(width, height)`` (the previous default)."""
    if max_steps is None:
        return 4 * max(width, height)
    if not _is_int(max_steps) or max_steps < 1:
        raise ValueError(
            f"max_steps must be a positive integer (>= 1) or None (= 4 * max(width, height)), got {max_steps!r}"
        )
    return int(max_steps)


def check_penalty(name: str, value: Any) -> float:
    """A finite number >= 0."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    """One of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """True or False (numpy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_view_size(value: Any) -> int:
    """minigrid's ``agent_view_size``: an odd integer >= 3 (minigrid only asserts it)."""
    if not _is_int(value) or value < 3 or value % 2 == 0:
        raise ValueError(f"agent_view_size must be an odd integer >= 3, got {value!r}")
    return int(value)


def accepted_keywords(env_cls: type) -> list[str]:
    """The keywords ``env_cls(...)`` accepts: its own parameters, then :data:`MINIGRID_KWARGS`."""
    params = inspect.signature(env_cls.__init__).parameters.values()
    own = [p.name for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    return own + [k for k in MINIGRID_KWARGS if k not in own]


def check_minigrid_kwargs(
    env_cls: type, kwargs: dict[str, Any], renamed: dict[str, str] | None = None, aliases: dict[str, str] | None = None
) -> None:
    """Reject the first keyword that is neither ``env_cls``'s nor in :data:`MINIGRID_KWARGS`.

    A one-line ``ValueError`` (not ``TypeError``, which ``gymnasium.make`` would extend with its own
    text) that names the keyword, suggests the one meant (``renamed``: old keyword names of this env ->
    new ones; ``aliases``: likely slips -> the keyword meant; else the closest accepted name) and lists
    the accepted keywords.
    """
    unknown = [k for k in kwargs if k not in MINIGRID_KWARGS]
    if not unknown:
        return
    accepted, name = accepted_keywords(env_cls), unknown[0]
    if renamed and name in renamed:
        hint = f" (renamed {renamed[name]})"
    elif aliases and name in aliases:
        hint = f" (did you mean {aliases[name]}?)"
    else:
        close = difflib.get_close_matches(str(name), accepted, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"{env_cls.__name__} got an unknown keyword {name!r}{hint}; accepted: {', '.join(accepted)}")
