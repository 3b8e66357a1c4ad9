"""The ceilings the pipeline benchmark compares the shipper with: nats-py publishing the same
lines from memory, with no file, no checkpoint and no follower.

``python -m natslab.ceiling --servers URLS --lines FILE --mode jetstream|core`` publishes every line
of FILE (the aggregator's output of the run before, so the same 200-byte messages):

* ``jetstream``: ``js.publish_async`` with a ``Nats-Msg-Id`` header per message, in batches of the
  shipper's size, awaiting each batch's acknowledgements with at most 8 batches in flight (nats-py's
  own bounded pending acks): what the client library itself reaches into JetStream;
* ``core``: ``nc.publish`` to a subject no stream captures, then one ``flush`` (a PING/PONG round
  trip, so the server has read everything): core NATS without JetStream, the server's ingest limit
  for one Python publisher.

Prints one JSON object: messages, seconds (first publish to last acknowledgement / flush) and the
process's CPU seconds over the same span.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def publish(servers: list[str], lines: list[bytes], mode: str, batch: int, inflight: int) -> dict:
    import nats

    nc = await nats.connect(servers, skip_subject_validation=True, pending_size=32 << 20)
    try:
        js = nc.jetstream(publish_async_max_pending=batch * inflight)
        t0, c0 = time.monotonic(), _cpu()
        if mode == "core":
            for line in lines:
                await nc.publish("ceiling.core", line)
            await nc.flush(timeout=60)
        else:
            pending: list = []
            for start in range(0, len(lines), batch):
                futures = [await js.publish_async("logs.ceiling", line, headers={"Nats-Msg-Id": f"ceiling.{start + i}"})
                           for i, line in enumerate(lines[start:start + batch])]  # fmt: skip
                pending.append(futures)
                if len(pending) >= inflight:
                    await asyncio.gather(*pending.pop(0))
            for futures in pending:
                await asyncio.gather(*futures)
        seconds, cpu = time.monotonic() - t0, _cpu() - c0
    finally:
        await nc.close()
    return {"mode": mode, "messages": len(lines), "seconds": seconds, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", required=True)
    ap.add_argument("--lines", required=True, help="A file whose lines are published (without their newline).")
    ap.add_argument("--mode", choices=("jetstream", "core"), default="jetstream")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--inflight", type=int, default=8)
    a = ap.parse_args()
    with open(a.lines, "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    print(json.dumps(asyncio.run(publish(a.servers.split(","), lines, a.mode, a.batch, a.inflight))), flush=True)


if __name__ == "__main__":
    main()
