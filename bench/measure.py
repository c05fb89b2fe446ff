"""Run one benchmark task in a fresh process and report its wall time and peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Measurement:
    seconds: float
    peak_mb: float
    info: dict[str, Any]


def run_task(task: str, timeout: float = 1800.0, **kwargs: Any) -> Measurement | None:
    """Run bench.tasks.<task>(**kwargs) in a subprocess; None when it fails (the reason is printed)."""
    code = (
        "import json, resource, sys, time\n"
        "from bench import tasks\n"
        f"kwargs = json.loads({json.dumps(json.dumps(kwargs))})\n"
        f"prepare = getattr(tasks, 'prepare_{task}', None)\n"
        "state = prepare(**kwargs) if prepare else None\n"
        "start = time.perf_counter()\n"
        f"info = tasks.{task}(state, **kwargs) if prepare else tasks.{task}(**kwargs)\n"
        "seconds = time.perf_counter() - start\n"
        "peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))\n"
        "peak = peak / 1024\n"
        "print(json.dumps({'seconds': seconds, 'peak_mb': peak, 'info': info or {}}))\n"
    )
    try:
        command = [sys.executable, "-c", code]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"  {task}: timed out after {timeout:.0f} s")
        return None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {task}: failed: {last}")
        return None
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(out["seconds"], out["peak_mb"], out["info"])
