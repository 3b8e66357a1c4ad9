"""Security: Unix sockets and the FIFO closed to other users by default, tcp/udp on loopback by
default, no symlink followed at the socket or output paths, and peer credentials recorded.

"Another user" is ``nobody``: the tests run a small stdlib script as uid/gid nobody (root needed).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aggregator.transports import transport_names
from benchmarks.faults.machine import nobody_ids
from benchmarks.processes import AGGREGATOR, AggregatorProc, Client, wait_until

PATH_TRANSPORTS = transport_names(address_kind="path")  # a socket or FIFO in the filesystem
NOBODY = nobody_ids()
needs_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or NOBODY is None, reason="needs root and a 'nobody' user to act as another user"
)

# Runs as nobody with the system interpreter (stdlib only). Prints "ok" or the errno name.
AS_OTHER_USER = r"""
import errno, os, socket, sys
transport, address, payload = sys.argv[1], sys.argv[2], sys.argv[3].encode()
try:
    if transport == "fifo":
        fd = os.open(address, os.O_WRONLY | os.O_NONBLOCK); os.write(fd, payload); os.close(fd)
    else:
        kind = socket.SOCK_DGRAM if transport == "unixgram" else socket.SOCK_STREAM
        s = socket.socket(socket.AF_UNIX, kind); s.connect(address); s.sendall(payload); s.close()
    print("ok")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc)))
"""


def as_nobody(transport: str, address: str, payload: str = "{\"from\":\"nobody\"}\n") -> str:
    uid, gid = NOBODY
    r = subprocess.run(
        ["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable, "-c", AS_OTHER_USER,
         transport, address, payload],
        user=uid, group=gid, extra_groups=[], capture_output=True, text=True, timeout=30, cwd="/",
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def open_dir():
    """A world-traversable directory, so a refusal comes from the socket's own mode."""
    d = Path(tempfile.mkdtemp(prefix="loglab-s-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@needs_nobody
@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_default_socket_is_in_a_private_dir_and_refuses_another_user(tmp_path, open_dir, transport):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(open_dir)}
    with AggregatorProc(transport, tmp_path / "agg", address="default", env=env) as agg:
        path = Path(agg.address)
        assert path.parent == open_dir / f"loglab-{os.getuid()}"
        assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert as_nobody(transport, agg.address) == "EACCES"
        assert agg.stop() == 0
        assert agg.records() == []


@needs_nobody
@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_socket_mode_alone_refuses_another_user_in_an_open_directory(tmp_path, open_dir, transport):
    with AggregatorProc(transport, tmp_path / "agg", address=str(open_dir / "s")) as agg:
        assert stat.S_IMODE(os.lstat(agg.address).st_mode) == 0o600
        assert as_nobody(transport, agg.address) == "EACCES"
        assert agg.stop() == 0
        assert agg.records() == [] and agg.stats()["messages_received"] == 0


@needs_nobody
@pytest.mark.timeout(60)
def test_peer_credentials_are_recorded_for_unix_stream_connections(tmp_path, open_dir):
    uid, gid = NOBODY
    with AggregatorProc("unixsock", tmp_path / "agg", "--socket-mode", "0666", "--peer-credentials",
                    address=str(open_dir / "s")) as agg:
        assert as_nobody("unixsock", agg.address, '{"from":"nobody"}\n{"bad json\n') == "ok"
        with Client("unixsock", agg.address) as c:
            c.send(b'{"from":"root"}\n')
        agg.wait_lines(2)
        agg.wait_rejects(1)
        assert agg.stop() == 0
        by_from = {r["from"]: r for r in agg.records()}
        (reject,) = agg.reject_records()
    assert (by_from["nobody"]["peer_uid"], by_from["nobody"]["peer_gid"]) == (uid, gid)
    assert by_from["root"]["peer_pid"] == os.getpid() and by_from["root"]["peer_uid"] == 0
    pid = by_from["nobody"]["peer_pid"]
    assert pid != os.getpid() and pid > 0
    assert reject["source"] == f"pid={pid},uid={uid},gid={gid}"
    assert reject["reason"] == "invalid_json"


@pytest.mark.timeout(60)
def test_peer_credentials_are_off_by_default_but_rejects_name_the_peer(tmp_path):
    with AggregatorProc("unixsock", tmp_path / "agg") as agg:
        with Client("unixsock", agg.address) as c:
            c.send(b'{"ok":1}\n[1]\n')
        agg.wait_lines(1)
        agg.wait_rejects(1)
        assert agg.stop() == 0
        (record,) = agg.records()
        (reject,) = agg.reject_records()
    assert "peer_pid" not in record
    assert reject["source"] == f"pid={os.getpid()},uid={os.getuid()},gid={os.getgid()}"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1) for a private network namespace")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", transport_names(address_kind="inet"))
def test_inet_transports_listen_on_loopback_by_default(tmp_path, transport):
    # A fresh network namespace: the default port 5140 is free whatever else runs on the machine.
    agg = AggregatorProc(transport, tmp_path / "agg", address="default")
    agg.argv = ["unshare", "--net", *agg.argv]
    with agg:
        assert agg.address == "127.0.0.1:5140"
        rows = Path(f"/proc/{agg.pid}/net/{transport}").read_text().splitlines()[1:]
        local = {row.split()[1] for row in rows}
        assert local == {"0100007F:1414"}, local  # 127.0.0.1:5140, and nothing on 0.0.0.0
        assert agg.stop() == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["output", "rejects"])
def test_symlink_planted_at_the_output_path_is_never_followed(tmp_path, which):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    out = tmp_path / "out.jsonl"
    (out if which == "output" else tmp_path / "out.rejects.jsonl").symlink_to(victim)
    r = subprocess.run([AGGREGATOR, "tcp", "--address", "127.0.0.1:0", "--output", str(out)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "never followed" in r.stderr
    assert victim.read_bytes() == b"precious\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_symlink_planted_at_the_socket_path_is_refused_and_its_target_untouched(tmp_path, open_dir, transport):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (open_dir / "s").symlink_to(victim)
    r = subprocess.run([AGGREGATOR, transport, "--address", str(open_dir / "s"), "--output", str(tmp_path / "o.jsonl")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "is a symlink; refusing" in r.stderr
    assert victim.read_bytes() == b"precious\n" and os.path.islink(open_dir / "s")


@pytest.mark.timeout(60)
def test_symlink_planted_at_the_output_path_before_a_reopen_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    with AggregatorProc("unixsock", tmp_path / "agg") as agg:
        with Client("unixsock", agg.address) as c:
            c.send(b'{"n":1}\n')
            agg.wait_lines(1)
            agg.output.rename(tmp_path / "rotated.jsonl")
            agg.output.symlink_to(victim)
            agg.send(signal.SIGUSR1)
            wait_until(lambda: "cannot reopen" in agg.stderr_text(), "the reopen refusal on stderr")
            c.send(b'{"n":2}\n')  # still served, into the file it had open
            wait_until(lambda: (tmp_path / "rotated.jsonl").read_bytes().count(b"\n") == 2, "line 2")
        assert agg.running()
        assert agg.stop() == 0
    assert victim.read_bytes() == b"precious\n"
