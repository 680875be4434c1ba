"""Agent hyperparameters: one pydantic model, tuned defaults per environment.

The defaults for each environment live in ``hyperparams.yaml`` beside this
file (as rl-baselines3-zoo keeps them); a user's ``--config FILE.yaml`` and
``--set key=value`` overrides are applied on top, in that order.

Units: every ``*_interval``/``*_freq``/``*_starts``/``buffer_size`` counts
*environment steps* (transitions, summed over the ``n_envs`` environments),
except ``train_freq``, which counts vector steps as in stable-baselines3: a
gradient update is made every ``train_freq`` calls to ``envs.step``, i.e. every
``train_freq * n_envs`` transitions.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hrm_agent.config import without_retired as drop_retired
from hrm_agent.errors import UsageError


class AgentConfig(BaseModel):
    """Everything that defines an HRM-Agent training run besides env id and seed."""

    model_config = ConfigDict(extra="forbid")

    carry_z: bool = True
    """Carry the latent ``z`` across environment steps (True) or start every step fresh (False)."""

    carry: Literal["full", "token"] = "full"
    """With carry z, what is carried: every position's state (``full``, ``(S, D)`` per level) or the
    query position's vectors, broadcast to every position of the next step (``token``, ``(D,)`` per
    level, as the HRM-Agent authors do; the paper preset's). ``full`` is the default: with the
    neighbours read-out it is the state the Q head read that the next step starts from
    (``analysis/results/carry_mode``), and configs saved before the field existed carried it too."""

    model: dict[str, Any] = Field(default_factory=dict)
    """``HRMConfig`` fields (hidden_size, H_cycles, ...); seq_len, vocab_size and num_actions come from the env."""

    crop_border: bool = True
    """Drop the outer ring of the token grid (our grids' constant border walls) before tokenising."""

    total_steps: int = Field(100_000, ge=1)
    """Default training budget in env steps (``--total-steps`` overrides)."""

    compile: bool = False
    """``torch.compile`` the H and L modules of both networks (fuses RoPE, norms and the MLP's
    elementwise work). The first calls of each shape compile (tens of seconds). On CPU it needs a C++
    compiler: without one the agent warns and runs eager. The tuned defaults turn it on."""

    # Vectorised acting
    n_envs: int = Field(4, ge=1)

    # Optimisation
    learning_rate: float = Field(5e-4, gt=0)
    lr_warmup_steps: int = Field(0, ge=0)
    """Optimiser steps of linear learning-rate warm-up from 0 (then constant)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(10.0, gt=0)
    """Clip the gradient's global norm to this (None: no clipping)."""
    deep_supervision: bool = False
    """One optimiser step per segment of the model (``model.segments``) on each minibatch, all
    against the same TD target, the carry detached between them."""

    # DQN
    buffer_size: int = Field(50_000, ge=1)
    learning_starts: int = Field(1_000, ge=0)
    batch_size: int = Field(64, ge=1)
    gamma: float = Field(0.95, gt=0, le=1)
    n_step: int = Field(1, ge=1)
    """n-step returns: bootstrap from the state ``n`` steps on, or the episode's end if sooner."""
    her_ratio: float = Field(0.0, ge=0, lt=1)
    """Hindsight experience replay: this fraction of each minibatch gets a goal the agent reached
    later in the same episode ("future" goals; 0.8 is stable-baselines3's ``n_sampled_goal=4``).
    See ``replay.py``. Needs ``n_step`` 1."""
    train_freq: int = Field(4, ge=1)
    gradient_steps: int = Field(1, ge=1)
    target_update: Literal["periodic", "every_update"] = "periodic"
    """``periodic``: ``θ⁻ ← τθ + (1−τ)θ⁻`` every ``target_update_interval`` env steps (stable-baselines3);
    ``every_update``: the same after every optimiser step (``target_update_interval`` unused)."""
    target_update_interval: int = Field(1_000, ge=1)
    tau: float = Field(1.0, gt=0, le=1)

    # epsilon-greedy, linear from initial to final over exploration_fraction of the run
    # (or over exploration_steps env steps when set)
    exploration_fraction: float = Field(0.3, gt=0, le=1)
    exploration_steps: int | None = Field(None, ge=1)
    exploration_initial_eps: float = Field(1.0, ge=0, le=1)
    exploration_final_eps: float = Field(0.05, ge=0, le=1)

    # Evaluation, checkpoints
    eval_freq: int = Field(10_000, ge=0)
    """Greedy evaluation every this many env steps (0: never)."""
    eval_episodes: int = Field(50, ge=1)
    checkpoint_freq: int = Field(10_000, ge=0)
    """Checkpoint every this many env steps (0: only on exit)."""
    checkpoint_replay: bool = False
    """Also checkpoint the replay buffer (large with carry z); then a resumed run is exact."""
    save_eval_models: bool = False
    """At every evaluation, also save the model as it is then (``models/step_{N}.pt`` in the run
    directory, the file ``HRMAgent.save`` writes, tens of KB): the agent at each point of its learning
    curve, e.g. to compare two variants at equal success. Changes nothing in training."""

    @model_validator(mode="after")
    def _check_consistency(self) -> "AgentConfig":
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        if self.buffer_size < 2 * self.n_envs:
            raise ValueError(f"buffer_size ({self.buffer_size}) must be at least 2 * n_envs ({2 * self.n_envs})")
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ValueError("exploration_final_eps must not exceed exploration_initial_eps")
        if self.her_ratio > 0 and self.n_step != 1:
            raise ValueError(f"her_ratio > 0 needs n_step 1 (got n_step {self.n_step})")
        if self.target_update == "every_update" and self.tau >= 1.0:
            raise ValueError("target_update 'every_update' needs tau < 1 (tau 1 would copy the online net every step)")
        return self


class ConfigError(UsageError, ValueError):
    """A user-facing configuration problem (bad file, bad key, bad value)."""


# Options that were retired (analysis/results/HISTORY.md says why): the value they had in every run,
# which configs and checkpoints written before may still name.
RETIRED = {"optimizer": "adam", "loss": "mse", "double_q": False}


def without_retired(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` less the retired options that hold their one remaining value; another value raises ConfigError."""
    try:
        return drop_retired(params, RETIRED)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config file {path}: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of hyperparameters, got {type(data).__name__}")
    return data


def hyperparams_table() -> dict[str, Any]:
    """The package's ``hyperparams.yaml``, parsed."""
    return yaml.safe_load(resources.files("hrm_agent").joinpath("hyperparams.yaml").read_text()) or {}


def env_defaults(section: dict[str, Any], env_id: str, nested: tuple[str, ...] = ("model",)) -> dict[str, Any]:
    """A section's ``default`` entry overridden by its ``env_id`` entry (keys in ``nested`` merged field by field)."""
    params = dict(section.get("default") or {})
    specific = section.get(env_id.split(":")[-1]) or {}
    params.update({k: v for k, v in specific.items() if k not in nested})
    for key in nested:
        params[key] = {**params.get(key, {}), **specific.get(key, {})}
    return params


def default_hyperparams(env_id: str, preset: str | None = None) -> dict[str, Any]:
    """Tuned defaults for ``env_id`` from the package's ``hyperparams.yaml`` (``default`` entry otherwise),
    with the named preset of its ``presets`` section applied over them."""
    table = hyperparams_table()
    params = env_defaults(table, env_id)
    if preset is not None:
        presets = table.get("presets") or {}
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r}; available: {', '.join(sorted(presets))}")
        params = merge_layers(params, [presets[preset]])
    return params


def preset_names() -> list[str]:
    """Names of the presets in the package's ``hyperparams.yaml``."""
    return sorted(hyperparams_table().get("presets") or {})


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.hidden_size=128"`` -> ``(["model", "hidden_size"], 128)`` (value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. learning_rate=3e-4)")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def override_layers(config_file: str | Path | None, overrides: list[str] | None) -> list[dict[str, Any]]:
    """The config file's mapping, then one mapping per ``key=value`` override (dotted keys nest)."""
    layers = [_read_yaml(Path(config_file))] if config_file is not None else []
    for text in overrides or []:
        path, value = parse_override(text)
        layer: dict[str, Any] = {}
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        layers.append(layer)
    return layers


def merge_layers(
    merged: dict[str, Any], layers: list[dict[str, Any]], nested: tuple[str, ...] = ("model",)
) -> dict[str, Any]:
    """Apply ``layers`` over ``merged`` in order; a mapping given for a key in ``nested`` is merged field by field."""
    for layer in layers:
        for key, value in layer.items():
            if key in nested and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def resolve_config(
    env_id: str,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    carry_z: bool | None = None,
    base: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    preset: str | None = None,
) -> AgentConfig:
    """Defaults for ``env_id`` (+ ``preset``, or ``base``) <- config file <- ``key=value`` overrides <- ``params``
    <- ``carry_z``.

    ``params`` is a mapping of hyperparameters as in a config file (``model`` a mapping
    merged field by field), e.g. what a Python user passes to ``HRMAgent``.

    Raises ``ConfigError`` with a one-line message on any problem.
    """
    layers = override_layers(config_file, overrides)
    if params is not None:
        layers.append(params)
    merged = default_hyperparams(env_id, preset) if base is None else {**base, "model": dict(base.get("model", {}))}
    merged = merge_layers(merged, layers)
    if carry_z is not None:
        merged["carry_z"] = carry_z
    try:
        return AgentConfig(**without_retired(merged))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line naming each offending field: ``learning_rate: Input should be greater than 0``."""
    parts = []
    for e in err.errors():
        loc = ".".join([prefix] * bool(prefix) + [str(p) for p in e["loc"]]) or prefix or "config"
        parts.append(f"{loc}: {e['msg']}")
    return "invalid hyperparameters: " + "; ".join(parts)
