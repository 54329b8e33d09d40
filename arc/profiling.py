"""Memory readings for the benchmarks."""

from __future__ import annotations

import resource


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``), in MiB. Unlike ``getrusage``'s ``ru_maxrss``, which a
    spawned process inherits from the parent it was forked from, it starts afresh at ``exec``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
