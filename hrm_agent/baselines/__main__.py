"""``python -m hrm_agent.baselines``: see :mod:`hrm_agent.baselines.cli`."""

import sys

from hrm_agent.baselines.cli import main

if __name__ == "__main__":
    sys.exit(main())
