"""What `loglab bench` runs: named scenarios, each a workload per transport, and sweeps.

The default suite holds the views the lab reports (all with 200-byte messages); runs at a fixed
rate last one second:

* ``capacity``   producers able to outrun the aggregator: 4 producers sending as fast as they
                 can, ``--batch 64`` on the stream transports (150k messages each), one message
                 per datagram on unixgram/udp (50k each). Shows messages/s the aggregator can
                 take, and loss where the transport may lose.
* ``efficiency`` a fixed offered rate both systems sustain without loss, 4 x 10,000 msg/s, one
                 message per write: shows CPU per message when nobody is saturated.
* ``latency``    5 producers x 2,000 msg/s, one message per write: end-to-end latency from the
                 producer's intended send time to receipt.
* ``churn``      4 producers x 2,000 msg/s, a new connection (socket, or the FIFO reopened) every
                 10 messages: what many short-lived programs cost the receiver.
* ``loss``       datagram transports only: offered rate swept upward (4 producers at 5k, 20k,
                 50k msg/s each) for the loss-versus-offered-rate chart.
* ``formats``    what each input format and framing costs, syscalls included: efficiency's fixed
                 rate on tcp (every format and framing) and unixgram (every format, one per
                 datagram): JSON, RFC 3164 and RFC 5424 lines, and JSON and RFC 5424
                 octet-counted, and JSON in lenprefix frames.

Any workload parameter given on the command line replaces the suite with one ``custom``
scenario; a parameter given several values (``--producers 1,2,4``) makes a sweep (the
cartesian product of all lists).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from aggregator.framing import framing_unsupported
from aggregator.transports import TRANSPORT_NAMES, get_transport, transport_names

from ..results import Workload

DATAGRAM = transport_names(kind="datagram")
STREAM = transport_names(kind="stream")
ALL_TRANSPORTS = TRANSPORT_NAMES


def for_transport(workload: Workload, transport: str) -> Workload | None:
    """``workload`` as ``transport`` carries it: only byte streams write several messages at
    once; every other transport sends one message per send, whatever ``batch`` says. None when
    the transport cannot carry it at all (a counted framing on a message transport)."""
    t = get_transport(transport)
    if workload.framing != "newline" and framing_unsupported(workload.framing, t):
        return None
    return workload if t.kind == "stream" else replace(workload, batch=1)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    workloads: tuple[Workload, ...]  # one, or the points of a sweep
    transports: tuple[str, ...] = ALL_TRANSPORTS
    traced: bool = True  # one extra traced run per cell (with --trace): syscalls per message


def default_suite(scale: float = 1.0) -> list[Scenario]:
    """The suite behind `make bench`. ``scale`` multiplies message counts (tests use a tiny one)."""

    def n(count: int) -> int:
        return max(10, int(count * scale))

    return [
        # Capacity: as many messages per stream producer as it takes for a window of a few
        # tenths of a second at ~1.5M msg/s; datagrams go ~20x slower (one per send), so fewer.
        Scenario(
            "capacity",
            "4 producers as fast as they can, batch 64: messages/s the aggregator takes",
            (Workload(4, n(150_000), 200, 0.0, 64),),
            transports=STREAM,
        ),
        Scenario(
            "capacity",
            "4 producers as fast as they can, one message per datagram: messages/s taken, and loss",
            (Workload(4, n(50_000), 200, 0.0, 1),),
            transports=DATAGRAM,
        ),
        Scenario(
            "efficiency",
            "4 producers x 10,000 msg/s, one message per write: CPU per message at a rate both sustain",
            (Workload(4, n(10_000), 200, 10_000.0, 1),),
        ),
        Scenario(
            "latency",
            "5 producers x 2,000 msg/s, one message per write: end-to-end latency",
            (Workload(5, n(2_000), 200, 2_000.0, 1),),
            traced=False,  # the syscalls of one message per write are those of efficiency
        ),
        Scenario(
            "churn",
            "4 producers x 2,000 msg/s, a new connection every 10 messages: many short-lived producers",
            (Workload(4, n(2_000), 200, 2_000.0, 1, per_connection=10),),
            traced=False,  # the report's churn figure is CPU per message, from the measured repeats
        ),
        Scenario(
            "loss",
            "datagram transports, offered rate swept upward: loss versus offered rate",
            tuple(Workload(4, n(int(rate)), 200, rate, 1) for rate in (5_000.0, 20_000.0, 50_000.0)),
            transports=DATAGRAM,
            traced=False,  # datagram syscalls are traced in capacity and efficiency
        ),
        Scenario(
            "formats",
            "4 producers x 10,000 msg/s, one message per write, in each input format and framing: what each costs",
            tuple(Workload(4, n(10_000), 200, 10_000.0, 1, format=fmt, framing=framing) for fmt, framing in FORMAT_POINTS),
            transports=("tcp", "unixgram"),
        ),
    ]


# The formats scenario's points: every producer format newline-framed, the counted framings of
# tcp (octet counting for JSON and RFC 5424, what logger --octet-count sends; lenprefix frames).
FORMAT_POINTS = (("json", "newline"), ("rfc3164", "newline"), ("rfc5424", "newline"), ("json", "octet"),
                 ("rfc5424", "octet"), ("json", "lenprefix"))  # fmt: skip


def parse_list(text: str | None, kind: type) -> list | None:
    """``"1,2,4"`` -> ``[1, 2, 4]``; None stays None."""
    if text is None:
        return None
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of numbers, got {text!r}") from None
    if not values:
        raise ValueError("empty list")
    return values


def custom_scenario(
    *,
    producers: list[int] | None,
    count: list[int] | None,
    size: list[int] | None,
    rate: list[float] | None,
    batch: list[int] | None,
    transports: tuple[str, ...],
    per_connection: list[int] | None = None,
    format: list[str] | None = None,
    framing: list[str] | None = None,
) -> Scenario:
    base = Workload()
    lists = [producers or [base.producers], count or [base.count], size or [base.size], rate or [base.rate], batch or [base.batch],
             per_connection or [base.per_connection], format or [base.format], framing or [base.framing]]  # fmt: skip
    points = tuple(Workload(*values) for values in itertools.product(*lists))
    swept = [name for name, values in zip(("producers", "count", "size", "rate", "batch", "per_connection", "format", "framing"), lists)
             if len(values) > 1]  # fmt: skip
    description = "custom workload" + (f", sweeping {', '.join(swept)}" if swept else "")
    return Scenario("custom", description, points, transports)


def restrict(scenarios: list[Scenario], transports: tuple[str, ...]) -> list[Scenario]:
    """Keep only the chosen transports; drop scenarios left with none."""
    kept = []
    for s in scenarios:
        chosen = tuple(t for t in s.transports if t in transports)
        if chosen:
            kept.append(replace(s, transports=chosen))
    return kept
