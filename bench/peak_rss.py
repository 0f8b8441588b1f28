"""The peak memory of a benchmark's child process, measured the one way the benchmarks share."""

from __future__ import annotations


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM of /proc/self/status). Not getrusage's
    ru_maxrss: on Linux it keeps the peak of the process image before exec, so a child started by
    a big benchmark process reported at least its parent's size (measured: 1.5 GB for a child
    whose own peak was 14 MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")
