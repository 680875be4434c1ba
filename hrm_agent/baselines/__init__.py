"""stable-baselines3 baselines on the same environments, in the same run layout as the HRM agent.

``python -m hrm_agent.baselines --algo {dqn,ppo,recurrent-ppo} --env ENV`` (see
:mod:`hrm_agent.baselines.cli`); hyperparameters in :mod:`hrm_agent.baselines.config`
and the ``baselines:`` section of ``hrm_agent/hyperparams.yaml``; the token-grid
features extractor and the training callback in :mod:`hrm_agent.baselines.sb3`.
"""

from hrm_agent.baselines.config import ALGOS, BaselineConfig, resolve_baseline_config

__all__ = ["ALGOS", "BaselineConfig", "resolve_baseline_config"]
