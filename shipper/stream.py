"""The ``LOGS`` stream: one definition for the shipper (which creates it when missing), the lab
(``loglab nats up`` creates it with the deployment's replicas) and the read-back.

Defaults, chosen so that nothing is dropped silently:

* subjects ``logs.>``; each host publishes to ``logs.<host>``;
* retention ``limits`` with **no age limit** and ``max_bytes`` = 1 GiB (``DEFAULT_MAX_BYTES``),
  ``max_msg_size`` 1 MiB (the aggregator's longest line is 64 KiB by default);
* discard **new**: when the stream is full, publishers are refused (the shipper waits and retries,
  the file is its buffer); old data is never dropped to make room;
* file storage; replicas 1 on one node, 3 on a three-node cluster;
* duplicate window 2 minutes (the server's default, ``DUPLICATE_WINDOW_S``): a message whose
  ``Nats-Msg-Id`` was stored within the window is acknowledged as a duplicate and not stored again.

Space is freed by an operator (``nats stream purge``, a larger ``max_bytes``), never by the stream.
"""

from __future__ import annotations

STREAM = "LOGS"
SUBJECT_PREFIX = "logs."
SUBJECTS = ["logs.>"]
DEFAULT_MAX_BYTES = 1 << 30
MAX_MSG_SIZE = 1 << 20
DUPLICATE_WINDOW_S = 120.0


def server_urls(servers: str) -> list[str]:
    """``--servers URL[,URL]`` as every NATS stage's command line takes it: the URLs, blanks dropped
    (each command says itself what an empty list means for it)."""
    return [u.strip() for u in servers.split(",") if u.strip()]


def subject_for(host: str) -> str:
    return SUBJECT_PREFIX + host


def valid_host(host: str) -> bool:
    """A host name is one subject token: no dot, space, wildcard, and not empty."""
    return bool(host) and not any(c in host for c in ". *>\t\r\n") and host.isprintable()


def stream_config(replicas: int = 1, max_bytes: int = DEFAULT_MAX_BYTES, duplicate_window: float = DUPLICATE_WINDOW_S):
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    return StreamConfig(
        name=STREAM,
        subjects=list(SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        max_bytes=max_bytes,
        max_msgs=-1,
        max_age=0,
        max_msg_size=MAX_MSG_SIZE,
        discard=DiscardPolicy.NEW,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
    )


async def ensure_stream(js, replicas: int = 1, max_bytes: int = DEFAULT_MAX_BYTES) -> bool:
    """Create ``LOGS`` with the defaults above unless it exists (an existing stream is left as its
    operator set it). True if this call created it."""
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(STREAM)
        return False
    except NotFoundError:
        pass
    await js.add_stream(stream_config(replicas, max_bytes))
    return True
