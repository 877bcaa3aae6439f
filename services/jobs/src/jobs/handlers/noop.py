"""The no-op job type (tests and benchmarks): reports progress, then completes.

`data.fail_times: n` fails the first n attempts; `data.steps`/`data.step_s` make it long (only
the first `data.long_attempts` attempts, if given)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncConnection

from misp_platform.worker import JobContext


async def run_noop(_conn: AsyncConnection, ctx: JobContext) -> str:
    data = ctx.job.data
    if ctx.job.attempt <= int(data.get("fail_times", 0)):
        raise RuntimeError(f"failing on purpose (attempt {ctx.job.attempt})")
    steps = int(data.get("steps", 0))
    if ctx.job.attempt > int(data.get("long_attempts", 1_000_000)):
        steps = 0
    for i in range(steps):
        await asyncio.sleep(float(data.get("step_s", 0.1)))
        await ctx.progress(int(100 * (i + 1) / (steps + 1)), f"step {i + 1} of {steps}")
    return "Nothing done, as asked."
