"""The registry of query agents: a JetStream key-value bucket (``LOGLAB_AGENTS``), key = host.

Agents put their ``Registration`` when they start answering (and mark it stopped at a clean exit);
the querier lists it to know which hosts to ask, so a host whose agent died is named as "no
responders" instead of silently missing from the answer. History 1: only the latest entry per
host is kept. Replicas: the deployment's (3 on a three-node cluster), like ``LOGS``.
"""

from __future__ import annotations

import re

import msgspec

from .protocol import REGISTRY_BUCKET, Registration

_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


async def _bucket(js, replicas: int, create: bool):
    from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError

    try:
        return await js.key_value(REGISTRY_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        if not create:
            return None
    try:
        return await js.create_key_value(bucket=REGISTRY_BUCKET, history=1, replicas=replicas,
                                         description="loglab query agents, key = host")  # fmt: skip
    except BadRequestError:  # another agent created it meanwhile
        return await js.key_value(REGISTRY_BUCKET)


async def register(nc, reg: Registration, replicas: int = 1) -> None:
    """Put (or update) ``reg`` under its host's key."""
    if not _KV_KEY.match(reg.host):
        raise ValueError(f"host {reg.host!r} cannot be a registry key (letters, digits, - _ = / . only)")
    kv = await _bucket(nc.jetstream(timeout=5), replicas, create=True)
    await kv.put(reg.host, msgspec.json.encode(reg))


async def registered(nc) -> list[Registration]:
    """Every host in the registry (an empty list when there is no registry yet)."""
    from nats.js.errors import NoKeysError

    kv = await _bucket(nc.jetstream(timeout=5), 1, create=False)
    if kv is None:
        return []
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    out = []
    for key in keys:
        entry = await kv.get(key)
        if entry.value:
            try:
                out.append(msgspec.json.decode(entry.value, type=Registration))
            except msgspec.DecodeError:
                continue  # not ours
    return out
