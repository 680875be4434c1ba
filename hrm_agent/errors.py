"""The user-error type: a mistake in what was asked (a flag, a config value, a file to load).

Every command reports a :class:`UsageError` as one ``error: ...`` line and exit code 2
(``hrm_agent.runs.one_line_errors``). The more specific kinds subclass it:
``hrm_agent.hyperparams.ConfigError`` (a config file, key or value) and
``hrm_agent.checkpoint.CheckpointError`` (a model or checkpoint file that is missing, corrupt,
foreign or of another version).
"""


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""
