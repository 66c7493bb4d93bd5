"""What more than one benchmark measures. (A leading underscore: `make bench` does not run it.)"""

from __future__ import annotations

import psutil


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its children, living and reaped."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total
