"""Process names for tracers: ``comm == "logagg"`` / ``"logprod"`` in bpftrace and bcc filters."""

from __future__ import annotations


def set_process_name(name: str) -> bool:
    """Rename this process's main thread (what /proc/PID/comm and tracers show). Max 15 bytes."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
        return True
    except OSError:
        return False
