"""`python -m orgs api|relay|consume|migrate|dlq`."""

import sys

from misp_platform.cli import main
from orgs.bootstrap import spec

if __name__ == "__main__":
    sys.exit(main(spec))
