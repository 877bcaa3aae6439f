"""`make bench`: runs every benchmark in bench/, each printing its table and writing JSON.

`--stage infra` runs those that bring their own processes (measured on a quiet machine: only
PostgreSQL, Kafka and the gateway running); `--stage services` those that drive the running
services through the gateway; no stage runs all of them.
"""

import argparse
import subprocess
import sys
from pathlib import Path

# (script, needs the services running)
BENCHMARKS = [
    ("pipeline.py", False),
    ("audit.py", False),
    ("mailer.py", False),
    ("jobs.py", False),
    ("auth.py", True),
    ("consistency.py", True),
    ("console.py", True),
    # Last: it switches the stack to the small profile and back.
    ("footprint.py", True),
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", choices=["infra", "services"])
    parser.add_argument("--only", type=lambda v: {p.strip() for p in v.split(",") if p.strip()},
                        default=set(), help="comma-separated benchmark names (file stems)")
    args = parser.parse_args()
    here = Path(__file__).parent
    unknown = args.only - {Path(name).stem for name, _ in BENCHMARKS}
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
    chosen = [name for name, needs_services in BENCHMARKS
              if (args.stage is None or needs_services == (args.stage == "services"))
              and (not args.only or Path(name).stem in args.only)]
    failed = [name for name in chosen
              if subprocess.run([sys.executable, str(here / name)]).returncode != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1 if failed else 0)
