"""What a container's cgroup allows this process: CPUs and memory (v2, else v1).

``root`` is injected so tests pass a directory of fake control files; 0 means unlimited or
unknown for both.  Read at start, before gunicorn forks, by ``WORKERS``' default.
"""

from __future__ import annotations

import os

ROOT = "/sys/fs/cgroup"
#: v1's "no limit" is the largest page-aligned 64-bit count (9223372036854771712); no machine
#: has 2^60 bytes, so anything above is unlimited too
UNLIMITED = 1 << 60


def _read(root: str, *parts: str) -> str:
    with open(os.path.join(root, *parts)) as f:
        return f.read().strip()


def cpu_quota(root: str = ROOT) -> int:
    """The CPU quota in whole CPUs (rounded up), 0 when unlimited or unknown."""
    try:  # cgroup v2: "quota period" or "max period"
        quota, period = _read(root, "cpu.max").split()[:2]
    except (OSError, ValueError):
        try:  # cgroup v1
            quota = _read(root, "cpu", "cpu.cfs_quota_us")
            period = _read(root, "cpu", "cpu.cfs_period_us")
        except OSError:
            return 0
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max": unlimited
        return 0
    return max(1, -(-q // p)) if q > 0 and p > 0 else 0


def memory_limit(root: str = ROOT) -> int:
    """The memory limit in bytes (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), 0 when
    unlimited or unknown.  Past it the kernel's OOM killer ends a process of the group."""
    for parts in (("memory.max",), ("memory", "memory.limit_in_bytes")):
        try:
            text = _read(root, *parts)
        except OSError:
            continue
        try:
            n = int(text)
        except ValueError:  # "max": unlimited
            return 0
        return n if 0 < n < UNLIMITED else 0
    return 0


__all__ = ["ROOT", "UNLIMITED", "cpu_quota", "memory_limit"]
