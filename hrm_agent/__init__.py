"""hrm-agent: the Hierarchical Reasoning Model as a DQN agent.

Importing the package registers the dynamic environments (``DynamicMaze-v0``,
``FourRooms-v0``) with Gymnasium.
"""

import envs  # noqa: F401  (registers the environments)

__version__ = "0.1.0"
