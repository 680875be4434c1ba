"""The package's version (``hrm_agent.__version__``), importable without importing the agent."""

__version__ = "0.1.0"
