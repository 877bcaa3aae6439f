"""`python -m audit api|relay|consume|migrate|dlq|verify|rebuild|prune|checkpoint|worker|detect`."""

import sys

from audit.bootstrap import spec
from misp_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(spec))
