"""The command lines: help, clear errors with non-zero exits, address safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path

import pytest

from aggregator.transports import TRANSPORT_NAMES, transport_names
from benchmarks.processes import AGGREGATOR, PRODUCER, run_cli

PATH_TRANSPORTS = transport_names(address_kind="path")
INET_TRANSPORTS = transport_names(address_kind="inet")
TRANSPORTS = TRANSPORT_NAMES

pytestmark = pytest.mark.timeout(60)


def assert_clear_error(result, *fragments: str) -> None:
    """Non-zero exit, a message naming the problem, and no traceback."""
    assert result.returncode != 0, result
    err = result.stderr
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment.lower() in err.lower(), f"{fragment!r} not in stderr:\n{err}"


def send_and_check_one_line(lab, agg) -> None:
    client = lab.client(agg.transport, agg.address)
    client.send(b'{"alive":true}\n')
    agg.wait_lines(1)
    client.close()
    assert agg.records()[0]["alive"] is True


# -- help --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [AGGREGATOR, PRODUCER], ids=["aggregator", "producer"])
def test_help_exits_0_and_names_every_transport(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    for transport in TRANSPORTS:
        assert transport in result.stdout
    assert "--address" in result.stdout


def test_aggregator_help_names_its_main_options():
    out = run_cli(AGGREGATOR, "--help").stdout
    for option in ("--output", "--stats-file", "--max-line-bytes", "--drain-timeout", "--ready-file", "--duration"):
        assert option in out


def test_producer_help_names_its_main_options():
    out = run_cli(PRODUCER, "--help").stdout
    for option in ("--id", "--count", "--size", "--rate", "--batch", "--summary-json", "--start-on-stdin"):
        assert option in out


# -- bad transport / address ------------------------------------------------------------------------


def test_aggregator_refuses_an_unknown_transport(tmp_path):
    result = run_cli(AGGREGATOR, "carrier-pigeon", "--output", tmp_path / "out.jsonl")
    assert_clear_error(result, "carrier-pigeon")
    assert "unixsock" in result.stderr  # the valid choices are shown
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--stats-interval", "0.01", "0.1"), ("--max-line-bytes", "12", "64"), ("--workers", "-1", "0"),
    ("--socket-mode", "0999", "octal"), ("--flush-interval", "nan", "within"), ("--fsync", "sometimes", "interval"),
    ("--max-conn", "5", "unrecognized"),  # no abbreviations: a script's typo is an error, not a guess
])  # fmt: skip
def test_aggregator_refuses_an_option_value_out_of_range(tmp_path, option, value, says):
    result = run_cli(AGGREGATOR, "unixsock", option, value, "--output", tmp_path / "out.jsonl")
    assert result.returncode == 2
    assert_clear_error(result, option, says)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_serving_aggregator_holds_no_cli_framework(lab):
    """A receiving process imports what serving needs: not typer (whose parsing imports
    pydantic), nor msgspec (only the Python hot path and syslog bodies need it): their
    extension modules would be mapped (README "Memory")."""
    agg = lab.aggregator("unixsock")
    send_and_check_one_line(lab, agg)
    maps = Path(f"/proc/{agg.pid}/maps").read_text()
    native = agg.stats()["hot_path"].startswith("native")  # the Python path validates with msgspec
    for library in ("pydantic_core", "rich", "click", *(("msgspec",) if native else ())):
        assert library not in maps, library


def test_producer_refuses_an_unknown_transport():
    result = run_cli(PRODUCER, "carrier-pigeon", "--id", "p", "--count", "1")
    assert_clear_error(result, "carrier-pigeon")


@pytest.mark.parametrize("transport", INET_TRANSPORTS)
@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "127.0.0.1:port", ":5140"])
def test_aggregator_refuses_a_bad_inet_address(tmp_path, transport, address):
    result = run_cli(AGGREGATOR, transport, "--address", address, "--output", tmp_path / "out.jsonl")
    assert_clear_error(result, address)


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_aggregator_refuses_a_path_in_a_missing_directory(tmp_path, transport):
    address = tmp_path / "no-such-dir" / "agg.sock"
    result = run_cli(AGGREGATOR, transport, "--address", address, "--output", tmp_path / "out.jsonl")
    assert_clear_error(result, "does not exist")
    assert not address.parent.exists()


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_aggregator_refuses_to_replace_a_regular_file(tmp_path, transport):
    victim = tmp_path / "agg.sock"
    victim.write_text("precious\n")
    result = run_cli(AGGREGATOR, transport, "--address", victim, "--output", tmp_path / "out.jsonl")
    assert_clear_error(result, str(victim))
    assert victim.read_text() == "precious\n"


# -- address in use ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", INET_TRANSPORTS)
def test_second_aggregator_on_the_same_port_is_refused(lab, tmp_path, transport):
    first = lab.aggregator(transport)
    result = run_cli(AGGREGATOR, transport, "--address", first.address, "--output", tmp_path / "second.jsonl")
    assert_clear_error(result, "in use", first.address)
    assert first.running()
    send_and_check_one_line(lab, first)  # the first one is unharmed


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_second_aggregator_on_the_same_path_is_refused(lab, tmp_path, transport):
    first = lab.aggregator(transport)
    inode = os.lstat(first.address).st_ino
    result = run_cli(AGGREGATOR, transport, "--address", first.address, "--output", tmp_path / "second.jsonl")
    assert_clear_error(result, "already", first.address)
    assert os.lstat(first.address).st_ino == inode  # not replaced, not removed
    assert first.running()
    send_and_check_one_line(lab, first)


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_stale_socket_left_by_a_killed_aggregator_is_replaced(lab, transport):
    dead = lab.aggregator(transport)
    dead.send(signal.SIGKILL)
    dead.wait()
    assert os.path.lexists(dead.address), "SIGKILL leaves the socket/FIFO file behind"
    fresh = lab.aggregator(transport, address=dead.address)
    assert fresh.address == dead.address
    send_and_check_one_line(lab, fresh)
    assert fresh.stop() == 0
    assert not os.path.lexists(fresh.address)


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_symlink_at_the_socket_path_is_refused(lab, tmp_path, transport):
    target = tmp_path / "target"
    target.write_text("precious\n")
    link = lab.sockdir / "planted.sock"
    link.symlink_to(target)
    result = run_cli(AGGREGATOR, transport, "--address", link, "--output", tmp_path / "out.jsonl")
    assert_clear_error(result, "symlink")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "precious\n"


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_dangling_symlink_at_the_socket_path_is_refused(lab, tmp_path, transport):
    link = lab.sockdir / "planted.sock"
    link.symlink_to(tmp_path / "would-be-created")
    result = run_cli(AGGREGATOR, transport, "--address", link, "--output", tmp_path / "out.jsonl")
    assert_clear_error(result, "symlink")
    assert not (tmp_path / "would-be-created").exists()


# -- default address: a private directory -------------------------------------------------------


@pytest.fixture
def runtime_dir():
    # short: AF_UNIX paths are limited to 107 bytes
    directory = Path(tempfile.mkdtemp(prefix="ll-xdg-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_default_socket_directory_is_private_and_the_socket_0600(lab, runtime_dir, transport):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    agg = lab.aggregator(transport, address=None, env=env)
    private = runtime_dir / f"loglab-{os.getuid()}"
    assert Path(agg.address).parent == private
    assert stat.S_IMODE(os.lstat(private).st_mode) == 0o700
    assert stat.S_ISDIR(os.lstat(private).st_mode)
    st = os.lstat(agg.address)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_ISFIFO(st.st_mode) if transport == "fifo" else stat.S_ISSOCK(st.st_mode)
    send_and_check_one_line(lab, agg)
    assert agg.stop() == 0
    assert not os.path.lexists(agg.address)


def test_default_directory_open_to_others_is_refused(runtime_dir, tmp_path):
    private = runtime_dir / f"loglab-{os.getuid()}"
    private.mkdir()
    private.chmod(0o755)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    result = run_cli(AGGREGATOR, "unixsock", "--output", tmp_path / "out.jsonl", env=env)
    assert_clear_error(result, "not private")
    assert os.listdir(private) == []


def test_default_directory_that_is_a_symlink_is_refused(runtime_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (runtime_dir / f"loglab-{os.getuid()}").symlink_to(elsewhere)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    result = run_cli(AGGREGATOR, "unixsock", "--output", tmp_path / "out.jsonl", env=env)
    assert_clear_error(result, "symlink")
    assert os.listdir(elsewhere) == []


@pytest.mark.parametrize("transport", PATH_TRANSPORTS)
def test_socket_mode_option_sets_the_file_mode(lab, transport):
    agg = lab.aggregator(transport, "--socket-mode", "0660")
    assert stat.S_IMODE(os.lstat(agg.address).st_mode) == 0o660


def test_bad_socket_mode_is_refused(tmp_path, lab):
    result = run_cli(
        AGGREGATOR, "unixsock", "--address", lab.address_for("unixsock"), "--output", tmp_path / "o.jsonl",
        "--socket-mode", "rw-rw-rw-",
    )  # fmt: skip
    assert_clear_error(result, "octal")


# -- ready file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ready_file_names_the_address_that_was_printed(lab, transport):
    agg = lab.aggregator(transport)
    info = json.loads(agg.ready_file.read_text())
    assert info["transport"] == transport
    assert info["address"] == agg.address
    assert info["pid"] == agg.pid
    if transport in INET_TRANSPORTS:
        host, _, port = agg.address.rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0  # port 0 became a real port


# -- producer ------------------------------------------------------------------------------------


def test_producer_refuses_a_size_too_small_for_its_messages():
    result = run_cli(PRODUCER, "tcp", "--address", "127.0.0.1:9", "--id", "p", "--count", "10", "--size", "20")
    assert_clear_error(result, "--size 20", "too small")


def test_fifo_producer_refuses_a_size_above_pipe_buf(lab):
    result = run_cli(PRODUCER, "fifo", "--address", lab.sockdir / "x.fifo", "--id", "p", "--count", "1", "--size", "4097")
    assert_clear_error(result, "4096")


def test_fifo_producer_accepts_a_size_of_exactly_pipe_buf(lab):
    agg = lab.aggregator("fifo")
    (p,) = lab.run_producers("fifo", agg.address, 1, 20, "--size", "4096", "--batch", "8")
    assert p.returncode() == 0, p.stderr_text()
    assert agg.stop() == 0
    assert sorted(r["seq"] for r in agg.records()) == list(range(20))
    assert agg.stats()["bytes_received"] == 20 * 4096


@pytest.mark.parametrize("transport", transport_names(reliable=True))  # udp cannot tell
def test_producer_without_an_aggregator_fails_clearly(lab, transport, tmp_path):
    address = "127.0.0.1:1" if transport in INET_TRANSPORTS else lab.address_for(transport)
    summary = tmp_path / "summary.json"
    result = run_cli(PRODUCER, transport, "--address", address, "--id", "p", "--count", "5", "--connect-timeout", "0", "--summary-json", summary)
    assert_clear_error(result, "cannot connect")
    # the summary is written all the same: nothing sent, and why
    written = json.loads(summary.read_text())
    assert written["sent"] == 0 and written["requested"] == 5 and written["connections"] == 0
    assert list(written["errors"]) == [f"connect:{'ECONNREFUSED' if transport in INET_TRANSPORTS else 'ENOENT'}"], written
