"""What ``bench learn``, ``sweep`` and the result tables in ``analysis/`` share.

- :mod:`~hrm_agent.experiments.stats`: mean ± standard error, t and normal intervals, the bootstrap.
- :mod:`~hrm_agent.experiments.store`: results files (CSV rows, the lock that lets several commands
  append to one, the fingerprint that identifies a run's resolved config).
- :mod:`~hrm_agent.experiments.launch`: training processes, and the run directories they leave
  (adopted when finished, resumed from their checkpoint when not).
- :mod:`~hrm_agent.experiments.tables` and :mod:`~hrm_agent.experiments.figures`: the markdown tables
  and the figures made from result rows and run directories.
- :mod:`~hrm_agent.experiments.cli`: the command-line arguments the commands have in common.
- :mod:`~hrm_agent.experiments.trials` and :mod:`~hrm_agent.experiments.tune`: a sweep's trials and
  their run on Ray Tune (``python -m hrm_agent.sweep``).
"""
