"""eBPF tracing for loglab benchmarks: syscalls per message, top syscalls, syscall latency.

The BCC tracer (``SyscallTracer``) counts in kernel maps, per process name (``logprod``,
``logagg``) and syscall, only inside a window the caller opens and closes; ``summarize`` turns a
window into syscalls per message and latency percentiles. ``available()`` says whether it can run
here and, if not, why. The bpftrace scripts for interactive use are in ``bpftrace/``.

Modules: ``client`` (venv side), ``agent`` (runs under the system Python with Debian's bcc),
``syscall_table`` (x86_64 numbers -> names), ``workload`` (a known producer/aggregator burst),
``overhead`` (the same run with and without tracing).
"""

__all__ = ["PERCENTILE_METHOD", "SyscallTracer", "TracingUnavailable", "available", "summarize", "window_result"]


def __getattr__(name: str):
    # Lazy, so "python -m benchmarks.tracing.syscall_table" does not import its own module twice.
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
