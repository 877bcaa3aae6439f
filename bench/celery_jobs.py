"""The Celery app of bench/jobs.py's baseline: Celery on Redis, what a Python shop would run for
background jobs, with a no-op task and a task reporting 10 progress updates (`update_state`).

Broker and result backend: the private Redis of the benchmark (`CELERY_BENCH_REDIS`). Celery's
defaults otherwise (prefork pool, prefetch multiplier 4, acks on receipt); bench/jobs.py starts
the worker with `--concurrency` as many processes as its own workers."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

REDIS = os.environ.get("CELERY_BENCH_REDIS", "redis://127.0.0.1:6379/0")

app = Celery("celery_jobs", broker=REDIS, backend=REDIS)


@app.task(name="bench.noop")
def noop() -> float:
    """Nothing; returns when it started (the pickup latency's end)."""
    return time.time()


@app.task(bind=True, name="bench.progress")
def progress(self: Any, steps: int = 10) -> float:
    """Reports `steps` progress updates, as a job of ours reports its steps."""
    began = time.time()
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"current": step + 1, "total": steps})
    return began
