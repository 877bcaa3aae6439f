"""`python -m settings api|relay|consume|migrate|dlq`."""

import sys

from misp_platform.cli import main
from settings.bootstrap import spec

if __name__ == "__main__":
    sys.exit(main(spec))
