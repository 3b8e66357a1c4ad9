"""Real clients, not imitations: what real programs already send over loglab's sockets is accepted,
read and kept, every field of every record checked.

Python's ``logging.handlers.SysLogHandler`` (unixgram, udp, tcp; a JSON and a plain formatter),
Python's ``syslog`` module (glibc ``syslog(3)``) against ``/dev/log`` in a private mount namespace,
util-linux ``logger`` in its forms (``--socket`` datagram and stream, ``--udp``, ``--tcp``,
``--octet-count``, ``--rfc3164``, ``--rfc5424`` with structured data and a msgid), and syslog-ng
and rsyslog forwarding to loglab with their network destinations' default templates. Each sends
known messages; the aggregator runs with its defaults (``--format auto``, ``--framing auto``).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest

from benchmarks.peers import RsyslogPeer, SyslogNgPeer
from benchmarks.processes import AGGREGATOR, Proc, run_cli

HOST = socket.gethostname()
LOGGER = shutil.which("logger")
needs_logger = pytest.mark.skipif(LOGGER is None, reason="util-linux logger is not installed (scripts/setup-peer.sh installs bsdutils as root)")


def records_of(agg, n: int) -> list[dict]:
    """The aggregator's ``n`` records once it has stopped cleanly, with nothing rejected."""
    agg.wait_lines(n)
    assert agg.stop() == 0, agg.stderr_text()
    assert agg.reject_records() == []
    records = agg.records()
    assert len(records) == n
    return records


def receipt_checked(record: dict, transport: str) -> dict:
    """``record`` without the fields every record has, after checking them; its stamp, if any,
    must be the send time (a 3164 stamp has whole seconds; a sane bound, not a timing)."""
    record = dict(record)
    assert record.pop("transport") == transport
    received = record.pop("received_ns")
    assert type(received) is int and received > 0
    if "timestamp_ns" in record:
        assert abs(record["timestamp_ns"] - received) < 60 * 10**9, record
    return record


def json_logger(name: str, handler: logging.Handler, formatter: logging.Formatter) -> logging.Logger:
    handler.setFormatter(formatter)
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.handlers[:] = [handler]
    return log


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"event": record.getMessage(), "logger": record.name, "level": record.levelname})


# -- Python's logging.handlers.SysLogHandler -------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unixgram", "udp", "tcp"])
def test_python_sysloghandler_with_a_json_and_a_plain_formatter(lab, transport):
    agg = lab.aggregator(transport)
    if transport == "unixgram":
        address, socktype = agg.address, socket.SOCK_DGRAM
    else:
        host, port = agg.address.rsplit(":", 1)
        address, socktype = (host, int(port)), socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    # Over tcp the handler ends each message with a NUL and no newline: the NUL frames it.
    handler = logging.handlers.SysLogHandler(address, facility=logging.handlers.SysLogHandler.LOG_LOCAL2, socktype=socktype)
    try:
        log = json_logger(f"app.{transport}", handler, JsonFormatter())
        log.warning("disk %s", "full")
        log.error('quote " and \\ and ünïcode')
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        log.info("plain %d", 1)
        log.critical("plain two")
    finally:
        handler.close()
    records = [receipt_checked(r, transport) for r in records_of(agg, 4)]
    name = f"app.{transport}"
    assert records == [  # the bare <PRI>msg form: facility and severity, then the message
        {"facility": "local2", "severity": "warning", "event": "disk full", "logger": name, "level": "WARNING"},
        {"facility": "local2", "severity": "err", "event": 'quote " and \\ and ünïcode', "logger": name, "level": "ERROR"},
        {"facility": "local2", "severity": "info", "message": f"{name} INFO: plain 1"},
        {"facility": "local2", "severity": "crit", "message": f"{name} CRITICAL: plain two"},
    ]


# -- Python's syslog module: glibc syslog(3) against /dev/log ---------------------------------------------------------


def _private_mounts_unavailable() -> str | None:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare/nsenter (util-linux) are not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"a private mount namespace is not permitted here: {probe.stderr.strip()}"
    return None


GLIBC_CLIENT = r"""
import json, syslog
syslog.openlog("myapp", syslog.LOG_PID, syslog.LOG_LOCAL3)
syslog.syslog(syslog.LOG_WARNING, json.dumps({"event": "from glibc", "n": 3}))
syslog.syslog(syslog.LOG_INFO, "plain from glibc")
syslog.closelog()
"""


def test_glibc_syslog_reaches_an_aggregator_on_dev_log_in_a_private_mount_namespace(lab):
    why = _private_mounts_unavailable()
    if why:
        pytest.skip(why)
    # The aggregator's /dev is a private directory bind-mounted in a mount namespace of its own, so
    # its /dev/log is this test's, whatever the machine runs (the machine's /dev is never touched).
    dev = lab.sockdir / "dev"
    dev.mkdir()
    agg = lab.aggregator("unixgram", "--socket-mode", "0666", address="/dev/log", start=False)
    agg.argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /dev && exec "$@"',
                str(dev), *agg.argv]  # fmt: skip
    agg.start()  # exec all the way down: the pid is the aggregator's (its ready file says so)
    assert agg.address == "/dev/log"
    assert stat.S_ISSOCK((dev / "log").stat().st_mode) and stat.S_IMODE((dev / "log").stat().st_mode) == 0o666
    in_its_namespace = ["nsenter", f"--target={agg.pid}", "--mount"]
    client = run_cli(*in_its_namespace, sys.executable, "-c", GLIBC_CLIENT)
    assert client.returncode == 0, client.stderr
    # A second aggregator on a live /dev/log is refused, as on any live socket.
    second = run_cli(*in_its_namespace, AGGREGATOR, "unixgram", "--address", "/dev/log", "--output", lab.workdir / "second.jsonl")
    assert second.returncode == 1 and "already listening on /dev/log" in second.stderr, second.stderr
    records = [receipt_checked(r, "unixgram") for r in records_of(agg, 2)]
    client_pid = records[0]["procid"]
    assert client_pid.isdigit() and records[1]["procid"] == client_pid
    for r in records:
        assert r.pop("timestamp")[:3] in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
        r.pop("timestamp_ns")  # checked against the receipt by receipt_checked
    header = {"facility": "local3", "app_name": "myapp", "procid": client_pid}  # the local 3164 form: no hostname
    assert records == [{**header, "severity": "warning", "event": "from glibc", "n": 3},
                       {**header, "severity": "info", "message": "plain from glibc"}]  # fmt: skip
    assert not (dev / "log").exists()  # removed at the stop, as every socket the aggregator made


# -- util-linux logger --------------------------------------------------------------------------------------------


def _inet(address: str) -> list[str]:
    host, port = address.rsplit(":", 1)
    return ["-n", host, "-P", port]


TIME_QUALITY = "timeQuality"  # logger's own structured data in RFC 5424: tzKnown, isSynced[, syncAccuracy]
LOGGER_CASES = {
    # name: (transport, logger's options for the address, options, the header expected)
    "socket-datagram": ("unixgram", lambda a: ["--socket", a], ["-p", "local1.notice", "--id=4242"],
                        {"facility": "local1", "severity": "notice", "app_name": "mytag", "procid": "4242"}),
    "socket-stream": ("unixsock", lambda a: ["--socket", a], ["-p", "local1.warning"],
                      {"facility": "local1", "severity": "warning", "app_name": "mytag"}),
    "udp": ("udp", lambda a: ["--udp", *_inet(a)], ["--id=7"],
            {"facility": "user", "severity": "notice", "hostname": HOST, "app_name": "mytag", "procid": "7"}),
    "tcp": ("tcp", lambda a: ["--tcp", *_inet(a)], ["-p", "daemon.err"],
            {"facility": "daemon", "severity": "err", "hostname": HOST, "app_name": "mytag"}),
    "tcp-octet-count": ("tcp", lambda a: ["--tcp", "--octet-count", *_inet(a)], ["-p", "daemon.info"],
                        {"facility": "daemon", "severity": "info", "hostname": HOST, "app_name": "mytag"}),
    "udp-rfc3164": ("udp", lambda a: ["--udp", "--rfc3164", *_inet(a)], ["--id=9"],
                    {"facility": "user", "severity": "notice", "hostname": HOST, "app_name": "mytag", "procid": "9"}),
    "tcp-rfc5424-sd-msgid": ("tcp", lambda a: ["--tcp", "--rfc5424", *_inet(a)],
                             ["--sd-id", "order@32473", "--sd-param", 'id="17"', "--sd-param", 'state="sh\\"ipped"', "--msgid", "M1"],
                             {"facility": "user", "severity": "notice", "hostname": HOST, "app_name": "mytag", "msgid": "M1",
                              "structured_data": {"order@32473": {"id": "17", "state": 'sh"ipped'}}}),
}  # fmt: skip


@needs_logger
@pytest.mark.parametrize("case", list(LOGGER_CASES))
def test_util_linux_logger(lab, case):
    transport, where, options, header = LOGGER_CASES[case]
    agg = lab.aggregator(transport)
    for message in ('{"event":"logged","n":1}', "plain text: with a colon"):
        sent = run_cli(LOGGER, *where(agg.address), "-t", "mytag", *options, message)
        assert sent.returncode == 0, sent.stderr
    records = [receipt_checked(r, transport) for r in records_of(agg, 2)]
    rfc5424 = transport in ("udp", "tcp") and case != "udp-rfc3164"  # logger's default for remote servers
    for r in records:
        stamp = r.pop("timestamp")
        assert r.pop("timestamp_ns") > 0
        assert ("T" in stamp) == rfc5424
        if rfc5424:
            quality = r["structured_data"].pop(TIME_QUALITY)
            assert quality["tzKnown"] == "1" and quality["isSynced"] in ("0", "1") and set(quality) <= {"tzKnown", "isSynced", "syncAccuracy"}
            if not r["structured_data"]:
                del r["structured_data"]
    assert records == [{**header, "event": "logged", "n": 1}, {**header, "message": "plain text: with a colon"}]


# -- syslog-ng and rsyslog forwarding to loglab -------------------------------------------------------------------

FORWARDERS = {
    # name: (daemon, transport, destination in its config, the form it sends)
    "syslog-ng-network-tcp": ("syslog-ng", "tcp", 'network("{host}" port({port}) transport("tcp"))', "3164"),
    "syslog-ng-network-udp": ("syslog-ng", "udp", 'network("{host}" port({port}) transport("udp"))', "3164"),
    "syslog-ng-syslog-tcp": ("syslog-ng", "tcp", 'syslog("{host}" port({port}) transport("tcp"))', "5424"),
    "rsyslog-omfwd-tcp": ("rsyslog", "tcp", 'target="{host}" port="{port}" protocol="tcp"', "3164"),
    "rsyslog-omfwd-udp": ("rsyslog", "udp", 'target="{host}" port="{port}" protocol="udp"', "3164"),
    "rsyslog-omfwd-octet-5424": ("rsyslog", "tcp", 'target="{host}" port="{port}" protocol="tcp" '
                                 'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"', "5424"),
}  # fmt: skip


def _forwarder(lab, daemon: str, destination: str, source: str) -> Proc:
    """A syslog-ng or rsyslog reading a Unix datagram socket of its own (``source``) and forwarding
    what it reads with its destination's default template."""
    workdir = lab.workdir / f"{daemon}-forwarder"
    workdir.mkdir()
    config = workdir / "forward.conf"
    if daemon == "syslog-ng":
        config.write_text(f"""@version: 3.35
options {{ use-dns(no); keep-hostname(no); stats-freq(0); mark-freq(0); }};
source s_in {{ unix-dgram("{source}"); }};
destination d_loglab {{ {destination}; }};
log {{ source(s_in); destination(d_loglab); }};
""")
        argv = SyslogNgPeer.command(config, workdir)
    else:
        config.write_text(f"""global(workDirectory="{workdir}" net.enableDNS="off")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{source}" CreatePath="off" RateLimit.Interval="0")
action(type="omfwd" {destination})
""")
        argv = RsyslogPeer.command(config, workdir / "rsyslogd.pid")
    proc = lab.start(Proc(f"{daemon}-forwarder", argv, workdir, cwd=workdir), wait=False)
    proc.wait_for(lambda: os.path.exists(source), f"its source socket {source}")
    return proc


@needs_logger
@pytest.mark.parametrize("name", list(FORWARDERS))
def test_syslog_daemons_forward_to_loglab_with_their_default_templates(lab, name):
    daemon, transport, destination, form = FORWARDERS[name]
    peer = {"syslog-ng": SyslogNgPeer, "rsyslog": RsyslogPeer}[daemon]
    ok, why = peer.available()
    if not ok:
        pytest.skip(f"{daemon} unavailable: {why}")
    agg = lab.aggregator(transport)
    host, port = agg.address.rsplit(":", 1)
    source = str(lab.sockdir / f"{daemon}.in")
    _forwarder(lab, daemon, destination.format(host=host, port=port), source)
    for message in ('{"event":"forwarded","n":2}', "plain forwarded"):
        sent = run_cli(LOGGER, "--socket", source, "-t", "fwdapp", "--id=77", "-p", "local4.err", message)
        assert sent.returncode == 0, sent.stderr
    records = [receipt_checked(r, transport) for r in records_of(agg, 2)]
    for r in records:
        stamp = r.pop("timestamp")
        assert ("T" in stamp) == (form == "5424") and r.pop("timestamp_ns") > 0
    header = {"facility": "local4", "severity": "err", "hostname": HOST, "app_name": "fwdapp", "procid": "77"}
    first, second = dict(header), dict(header)
    if daemon == "syslog-ng" and form == "5424":  # syslog() numbers what it sends in its own structured data
        first["structured_data"], second["structured_data"] = ({"meta": {"sequenceId": str(n)}} for n in (1, 2))
    # In RFC 5424 the message is everything after the one space that follows the structured data;
    # rsyslog's %msg% keeps the space that followed the 3164 tag, so its message starts with one,
    # kept as sent (syslog-ng's does not).
    plain = " plain forwarded" if (daemon, form) == ("rsyslog", "5424") else "plain forwarded"
    assert records == [{**first, "event": "forwarded", "n": 2}, {**second, "message": plain}]
