"""An agent's parts from its config: the device, the online and target networks, the optimiser."""

from __future__ import annotations

import copy
import warnings

import torch

from hrm_agent.config import HRMConfig
from hrm_agent.hyperparams import AgentConfig
from hrm_agent.model import HRMQNetwork


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    return device


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build kernels here: on CPU it needs a C++ compiler. Without one,
    warn once and run eager (the same values, slower)."""
    if device.type != "cpu":
        return True
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without this helper: let torch.compile find out
        return True
    try:
        get_cpp_compiler()
    except Exception:  # torch raises its InvalidCxxCompiler when none of its candidates runs
        warnings.warn("compile: no C++ compiler found for torch.compile on CPU; running eager (slower). "
                      "Install g++ or clang, or set compile=false to silence this.", stacklevel=4)
        return False
    return True


def build_networks(
    model_config: HRMConfig, config: AgentConfig, device: torch.device, seed: int
) -> tuple[HRMQNetwork, HRMQNetwork, torch.optim.Optimizer]:
    """The online network (initialised from ``seed``), its target copy and the online network's Adam."""
    torch.manual_seed(seed)
    online = HRMQNetwork(model_config).to(device)
    target = copy.deepcopy(online).requires_grad_(False)
    if config.compile and can_compile(device):
        # in place: parameter names and checkpoints stay those of the eager model
        for net in (online, target):
            for module in net.core.compiled_modules():
                module.compile()
    optimizer = torch.optim.Adam(online.parameters(), lr=config.learning_rate, betas=config.adam_betas,
                                 weight_decay=config.weight_decay)
    return online, target, optimizer
