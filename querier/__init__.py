"""``querier``: one query to every host's query agent at once (``shipper/query/``), each host's
answer printed as one block. ``gather`` is the scatter-gather over NATS, ``output`` the blocks
that never interleave, ``cli`` the command."""
