"""`python -m jobs` as real processes without paying its imports each time (about 3 s of CPU a
start, most of the ops tests' time): this script imports the command line once, then forks a
child per request, each a process of its own that runs `main(spec, argv)` as `python -m jobs`
does, with stdin on /dev/null (not a terminal), stdout and stderr captured, and the request's
environment (read when the command loads its settings, after the fork).

Requests and answers are JSON lines on stdin and stdout:
`{"argv": [...], "env": {...}}` -> `{"returncode": int, "stdout": str, "stderr": str}`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback

from jobs.bootstrap import spec
from misp_platform.cli import main


def run_child(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: a `python -m jobs ARGV` of its own
            code = 70
            try:
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.environ.update(env)
                code = main(spec, argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {"returncode": os.waitstatus_to_exitcode(status),
                "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        answer = run_child(request["argv"], request["env"])
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
