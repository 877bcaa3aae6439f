"""`make bench`: runs every benchmark in bench/, each printing its table and writing JSON."""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = ["pipeline.py", "audit.py", "auth.py", "mailer.py", "jobs.py"]

if __name__ == "__main__":
    here = Path(__file__).parent
    failed = [b for b in BENCHMARKS
              if subprocess.run([sys.executable, str(here / b), *sys.argv[1:]]).returncode != 0]
    sys.exit(1 if failed else 0)
