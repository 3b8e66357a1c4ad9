"""The environment recorded with every results file, and which of its keys must match to compare.

``collect_environment()`` returns a plain dict::

    {"hostname", "kernel" (uname release), "kernel_version", "machine", "os", "cpu_model",
     "cpu_count", "cpu_affinity", "cpu_governor", "mem_total_bytes", "python", "python_implementation",
     "packages": {"loglab", "msgspec", "orjson", "psutil", "matplotlib", "typer"}, "syslog_ng": str | None,
     "peers": {peer name: version},
     "git": {"commit", "dirty"}, "sysctls": {name: value (str) | None},
     "hot_path": "native" | "python (why)"}

``COMPARED_KEYS`` are the keys ``compare`` requires to be equal (like pyperf refusing runs from
different machines): kernel, machine, cpu model and count, Python, msgspec and orjson (on the aggregator's hot
path) and every sysctl. loglab's own version and git commit are what one compares, so they are
reported but never block; so is ``hot_path``, the aggregator's implementation of its hot path
(``aggregator/hotpath.py``: the C extension, or the Python fallback and why), which a comparison
of the two is about. Git is only read (``--no-optional-locks``: not even the index is touched).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

SYSCTLS = (
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.somaxconn",
    "net.unix.max_dgram_qlen",
    "net.ipv4.udp_mem",
    "net.ipv4.udp_rmem_min",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "fs.pipe-max-size",
)
PACKAGES = ("loglab", "msgspec", "orjson", "psutil", "matplotlib", "typer")
COMPARED_KEYS = ("kernel", "machine", "cpu_model", "cpu_count", "python", "packages.msgspec", "packages.orjson", "sysctls.*")


def read_sysctl(name: str) -> str | None:
    try:
        return " ".join(Path("/proc/sys", *name.split(".")).read_text().split())
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _first_line(path: str) -> str | None:
    try:
        return Path(path).read_text().split("\n", 1)[0].strip()
    except OSError:
        return None


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _os_name() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def git_state(repo_dir: str | os.PathLike | None = None) -> dict:
    """{"commit": sha | None, "dirty": bool | None}; read-only git commands."""
    cwd = str(repo_dir or Path(__file__).resolve().parent.parent)

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip() if commit else None, "dirty": None if status is None else bool(status.strip())}


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect_environment(*, syslog_ng_version: str | None = None, peer_versions: dict | None = None, repo_dir=None,
                        sysctls=SYSCTLS) -> dict:  # fmt: skip
    """The environment of this machine and checkout, as plain data (see the module docstring)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    uname = os.uname()
    return {
        "hostname": uname.nodename,
        "kernel": uname.release,
        "kernel_version": uname.version,
        "machine": uname.machine,
        "os": _os_name(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_governor": _first_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "mem_total_bytes": _mem_total(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "syslog_ng": syslog_ng_version or (peer_versions or {}).get("syslog-ng") or None,
        "peers": dict(peer_versions or {}),  # peer name -> version, every peer that ran
        "git": git_state(repo_dir),
        "sysctls": {name: read_sysctl(name) for name in sysctls},
        "hot_path": _hot_path(),
    }


def _hot_path() -> str:
    """What the aggregator started from this environment runs (the same environment variables)."""
    from aggregator import hotpath  # only here: reading results must not need the aggregator

    return hotpath.describe()


def _get(env: dict, dotted: str):
    value = env
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def environment_differences(a: dict, b: dict, keys=COMPARED_KEYS) -> list[tuple[str, object, object]]:
    """[(key, value in a, value in b)] for every compared key that differs (``x.*``: every subkey)."""
    diffs = []
    for key in keys:
        if key.endswith(".*"):
            base = key[:-2]
            da, db = a.get(base) or {}, b.get(base) or {}
            for sub in sorted(set(da) | set(db)):
                if da.get(sub) != db.get(sub):
                    diffs.append((f"{base}.{sub}", da.get(sub), db.get(sub)))
        elif _get(a, key) != _get(b, key):
            diffs.append((key, _get(a, key), _get(b, key)))
    return diffs
