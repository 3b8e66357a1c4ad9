"""Distributor <-> analyzer, over core NATS: one delivery per analyzer per batch, acknowledged by
batch id, in groups.

::

    distributor                                           analyzer <id>
    PUB analyzer.<id>.in  reply=<distributor's ack inbox>
        "<batch id>\\n<host> <json>\\n<host> <json>..."  ─►  analyzes each record, then (after
                                                            --ack-every messages, or ACK_FLUSH_S)
    <ack inbox>  ◄─  {"a": "<id>", "b": [batch ids], "r": {"<batch id>": [indices rejected]}}

* A batch carries the records routed to one analyzer from one fetch of the stream, each as
  ``<host> <payload>`` (host = the stream subject's last token; a payload is one JSON line, which
  never holds a raw newline). Batch ids grow per distributor, so an ack names exactly what it
  covers, in any order, and a late ack (after a failover) is recognised and counted.
* An analyzer acknowledges several batches in one message (``--ack-every N`` messages, as the Go
  design's grouped ACKs with sequence numbers), never later than ``ACK_FLUSH_S`` after the oldest.
* ``r``: records the analyzer refuses (not a JSON log record): the distributor offers them to
  another analyzer, and after ``--max-attempts`` to the dead-letter stream.
"""

from __future__ import annotations

import orjson

DELIVER_PREFIX = "analyzer."
ACK_FLUSH_S = 0.005


def deliver_subject(analyzer_id: str) -> str:
    return f"{DELIVER_PREFIX}{analyzer_id}.in"


def encode_batch(batch_id: int, lines: list[bytes]) -> bytes:
    return b"%d\n" % batch_id + b"\n".join(lines)


def decode_batch(payload: bytes) -> tuple[int, list[bytes]]:
    head, _, body = payload.partition(b"\n")
    return int(head), body.split(b"\n") if body else []


def encode_ack(analyzer_id: str, batch_ids: list[int], rejected: dict[int, list[int]]) -> bytes:
    return orjson.dumps({"a": analyzer_id, "b": batch_ids, "r": {str(k): v for k, v in rejected.items()}})


def decode_ack(payload: bytes) -> tuple[str, list[int], dict[int, list[int]]]:
    d = orjson.loads(payload)
    return d["a"], d["b"], {int(k): v for k, v in d.get("r", {}).items()}
