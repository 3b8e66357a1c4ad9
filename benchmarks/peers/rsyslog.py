"""rsyslog as a benchmark peer, beside syslog-ng: Debian's ``rsyslogd``, in the foreground (``-n``)
with a generated config, the same producers on the other end.

Found installed (``/usr/sbin/rsyslogd``) or, where the machine runs syslog-ng (the two Debian
packages conflict), unpacked by ``scripts/setup-peer.sh`` under ``/opt/loglab/peers/rsyslog``; its
modules' directory is then given on the command line (``-M``). Nothing it touches is a system
path: config, pid file, work directory, sockets and output are in the run's directory.

Inputs, per loglab transport (the rest: ``UNSUPPORTED``, skipped by the bench with the reason)::

    unixgram -> imuxsock  (Socket=PATH: an extra log socket, the system socket off)
    unixsock -> imptcp    (path=PATH: imptcp's Unix stream listener)
    tcp      -> imtcp
    udp      -> imudp

``fmt`` is the producer's ``--format``. rsyslog always parses a syslog header (it has no
"no-parse"; a JSON line is read as a header-less message), so the output's message is
``%rawmsg%`` for ``json`` (the line as received) and ``%msg%`` for ``rfc3164``/``rfc5424``
(the JSON object after the header). imtcp and imptcp read RFC 6587 octet-counted frames as well
as newline-framed ones (``SupportOctetCountedFraming``, on by default): ``framing`` ``octet`` is
served on tcp and unixsock; ``lenprefix`` nowhere.

Output: ``omfile`` writes ``%timegenerated:::date-rfc3339%\\t<message>\\n``: the receipt time
(rsyslog stamps it with microseconds) and the message. Flow control: imtcp, imptcp and imuxsock
are delayed ("light delay") when the main queue fills, so their senders feel backpressure; imudp
is not, and loses in the kernel's buffer, where the aggregator's udp loss happens too.

Stop: wait until the output has stopped growing, SIGTERM (rsyslog drains its queues on the way
out, given ``queue.timeoutShutdown``), SIGKILL if it hangs (``daemon.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

from aggregator.syslog import rfc3339_ns

from .daemon import LogDaemonPeer, find_binary, multiarch_dir, version_output

__all__ = ["RsyslogPeer", "INPUT_MODULES"]

# loglab transport -> rsyslog input module.
INPUT_MODULES = {"unixsock": "imptcp", "unixgram": "imuxsock", "tcp": "imtcp", "udp": "imudp"}


def _params(params: list[tuple[str, str]]) -> str:
    """Parameters of an rsyslog object, one per line, each after a comment saying why (a comment
    runs to the end of its line: it can never share one with a parameter or the closing paren)."""
    return "".join(f"\n    # {why}\n    {p}" if why else f"\n    {p}" for p, why in params) + ("\n" if params else "")


class RsyslogPeer(LogDaemonPeer):
    """One rsyslogd listening on one loglab transport; see the module docstring."""

    name = "rsyslog"
    comm = "rsyslogd"
    # rsyslog names its threads: the main queue's workers and each input's; traced as rsyslogd.
    trace_comms = ("rs:main Q:Reg", *(f"in:{m}" for m in INPUT_MODULES.values()))
    INPUTS = INPUT_MODULES
    OCTET_COUNTED = frozenset({"tcp", "unixsock"})  # imtcp and imptcp read octet-counted frames
    UNSUPPORTED = {
        "fifo": "rsyslog has no input for a named pipe (imfile reads regular files)",
        "seqpacket": "rsyslog has no SOCK_SEQPACKET input",
    }
    config_name = "rsyslog.conf"
    output_name = "rsyslog.out"

    # ---------------------------------------------------------------- availability
    @staticmethod
    def binary_path() -> str | None:
        return find_binary("rsyslogd", "rsyslog")[0]

    @classmethod
    def available(cls) -> tuple[bool, str]:
        binary = cls.binary_path()
        if binary is None:
            return False, ("rsyslog is not installed (run scripts/setup-peer.sh as root: it installs rsyslog, or unpacks "
                           "it beside syslog-ng, with which its package conflicts)")  # fmt: skip
        if not version_output(binary, "-v"):
            return False, f"{binary} -v failed"
        return True, ""

    @classmethod
    def version(cls) -> str:
        binary = cls.binary_path()
        m = re.search(r"rsyslogd\s+(\d\S*)", version_output(binary, "-v")) if binary else None
        return m.group(1) if m else ""

    # ---------------------------------------------------------------- configuration
    def _address_spec(self, port: int | None, path: str | None) -> str:
        if port is not None:
            return f'address="127.0.0.1" port="{port}"'
        return {"imuxsock": f'Socket="{path}"', "imptcp": f'path="{path}"'}[self._input]

    def _render_config(self, address_spec: str) -> str:
        module = self._input
        message = "%rawmsg%" if self.format == "json" else "%msg%"
        # Each parameter with why (the comments go into the generated config, which explains itself).
        module_params = {
            "imuxsock": [('SysSock.Use="off"', "not /dev/log: only the socket below")],
            "imptcp": [],
            "imtcp": [(f'MaxSessions="{self.max_connections}"', "as many producers as the aggregator accepts")],
            "imudp": [],
        }[module]
        input_params = [(address_spec, "a path in the run's directory, or 127.0.0.1 and a port picked free"),
                        ('ruleset="loglab"', "")]  # fmt: skip
        input_params += {
            "imuxsock": [('CreatePath="off"', ""), ('RateLimit.Interval="0"', "no rate limiting: every message counts"),
                         ('UseSysTimeStamp="on"', ""),
                         ('UseSpecialParser="off"', "the producer's header read as rsyslog reads a remote one (rfc3164/5424)"),
                         ('ParseHostname="on"', "")],
            "imptcp": [('fileCreateMode="0600"', "as the aggregator's default --socket-mode"), ('unlink="on"', "")],
            "imtcp": [],
            "imudp": [(f'rcvbufSize="{int(self.rcvbuf)}"', "as the aggregator's --rcvbuf (then SO_RCVBUFFORCE, daemon.py)")]
            if self.rcvbuf else [],
        }[module]  # fmt: skip
        return f"""# Generated by loglab benchmarks/peers/rsyslog.py for transport {self.transport}, {self.format} {self.framing}.
# A high-throughput receiver that must not lose messages, tuned as an operator would for this
# benchmark. Nothing here touches system paths: input, output, pid file and work directory are
# all in the run's directory.
global(
    workDirectory="{self.workdir}"
    # lines up to {self.max_line_bytes} bytes arrive whole
    maxMessageSize="{self.max_line_bytes + 1024}"
    # no reverse lookups of peers
    net.enableDNS="off"
    # the message goes out byte for byte
    parser.escapeControlCharactersOnReceive="off"
)
# The main queue: messages are taken in batches; when it fills, imuxsock, imtcp and imptcp are
# delayed (their senders feel backpressure), imudp cannot be (the kernel's buffer overflows).
# At SIGTERM what is queued is written out (timeoutShutdown).
main_queue(queue.type="FixedArray" queue.size="100000" queue.dequeueBatchSize="1024" queue.timeoutShutdown="10000")
module(load="{module}"{_params(module_params)})
template(name="loglab" type="string" string="%timegenerated:::date-rfc3339%\\t{message}\\n")
input(type="{module}"{_params(input_params)})
ruleset(name="loglab") {{
    action(type="omfile" file="{self.output_path}" template="loglab"
           ioBufferSize="256k" flushOnTXEnd="on" asyncWriting="off")
}}
"""

    def _argv(self) -> list[str]:
        return self.command(self.config_path, self.pid_path)

    @staticmethod
    def command(config: Path, pid_file: Path) -> list[str]:
        """A foreground rsyslogd on ``config`` (the peer's, and any other rsyslog the lab runs:
        a forwarding client); where it was unpacked, with its own modules' directory."""
        binary, root = find_binary("rsyslogd", "rsyslog")
        argv = [binary or "rsyslogd", "-n", "-f", str(config), "-i", str(pid_file)]
        module_dir = multiarch_dir(root, "rsyslog") if root is not None else None
        if module_dir is not None:
            argv += ["-M", str(module_dir)]  # unpacked beside syslog-ng: its own modules
        return argv

    def _receipt_ns(self, stamp: bytes) -> int:
        ns = rfc3339_ns(stamp)
        if ns is None:
            raise ValueError(f"not an RFC 3339 stamp: {stamp!r}")
        return ns
