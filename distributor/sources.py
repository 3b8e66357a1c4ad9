"""What the distributor reads and where it puts what nobody takes: the durable consumer on ``LOGS``
and the dead-letter stream.

* Consumer (default name ``distributor``): durable, **pull**, deliver all, filter ``logs.>``,
  explicit acknowledgement, ``ack_wait`` (30 s) after which the stream redelivers a message that was
  neither acknowledged nor marked in progress (+WPI), ``max_deliver`` unlimited (a limit would have
  the server stop delivering a message silently: the distributor's own ``--max-attempts`` and the
  dead-letter stream decide instead), ``max_ack_pending`` room for several replicas' messages in
  hand. Every replica binds to the same consumer: each message goes to one of them.
* Stream ``DEADLETTER``: subjects ``deadletter.>``, a message that no analyzer took is stored under
  ``deadletter.<its subject>`` with headers saying why (``Loglab-Reason``, ``Loglab-Attempts``,
  ``Loglab-Refused-By``); limits retention, no age limit, 256 MiB, discard new (a full dead-letter
  stream refuses, the distributor keeps the message and retries).

All of this is in nats-server 2.9.10: pull consumers with batch/expires requests (status 408 when
a request expires), AckProgress (+WPI), NAK, ``max_ack_pending``.
"""

from __future__ import annotations

from shipper.stream import STREAM, SUBJECTS

DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_PREFIX = "deadletter."
DEADLETTER_MAX_BYTES = 256 << 20
MAX_ACK_PENDING = 200_000


def pull_subject(consumer: str) -> str:
    return f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}"


async def ensure_consumer(js, name: str, ack_wait: float, max_pending: int) -> None:
    """Create the durable consumer unless it exists (an existing one is used as its operator set it)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    try:
        await js.consumer_info(STREAM, name)
        return
    except NotFoundError:
        pass
    config = ConsumerConfig(
        durable_name=name, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait,
        max_deliver=-1, max_ack_pending=max(MAX_ACK_PENDING, 4 * max_pending), filter_subject=SUBJECTS[0],
    )  # fmt: skip
    await js.add_consumer(STREAM, config)


async def ensure_deadletter_stream(js, replicas: int = 1) -> None:
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(DEADLETTER_STREAM)
        return
    except NotFoundError:
        pass
    await js.add_stream(StreamConfig(
        name=DEADLETTER_STREAM, subjects=[DEADLETTER_PREFIX + ">"], retention=RetentionPolicy.LIMITS, max_bytes=DEADLETTER_MAX_BYTES,
        max_age=0, discard=DiscardPolicy.NEW, storage=StorageType.FILE, num_replicas=replicas,
    ))  # fmt: skip
