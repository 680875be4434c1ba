"""hrm-agent: the Hierarchical Reasoning Model as a DQN agent.

Importing the package registers the dynamic environments (``DynamicMaze-v0``,
``FourRooms-v0``) with Gymnasium.
"""

import envs  # noqa: F401  (registers the environments)
from hrm_agent.agent import HRMAgent
from hrm_agent.config import HRMConfig
from hrm_agent.hyperparams import AgentConfig
from hrm_agent.model import HRMCarry, HRMQNetwork
from hrm_agent.version import __version__

__all__ = ["AgentConfig", "HRMAgent", "HRMCarry", "HRMConfig", "HRMQNetwork", "__version__"]
