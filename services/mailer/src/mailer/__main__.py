"""`python -m mailer api|relay|consume|migrate|dlq|deliver|worker`."""

import sys

from mailer.bootstrap import spec
from misp_platform.cli import main

if __name__ == "__main__":
    sys.exit(main(spec))
