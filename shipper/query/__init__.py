"""The shipper's query agent: it answers, over NATS, queries about the files the shipper ships.

::

    querier ──► loglab.query.<host> (one subscription per agent, no queue group) ──► QueryAgent
      ▲                                                                               │ scan.py: rg, grep or
      │ accepted, data (whole matching lines), progress, final  ◄── reply subject ◄───┘ Python in a child
      └── an ack per data/progress message (flow control; a 503 on it: the querier is gone)

``protocol`` is the contract both sides share (subjects, the query, the answer), ``scan`` runs a
scanner over one file as a child process with argv lists (never a shell), ``pyscan`` is the Python
scanner's program, ``agent`` is the NATS side and ``registry`` the list of agents (a KV bucket).
The shipping path (``shipper/ship.py``) knows nothing of this; ``shipper/cli.py`` runs both.
"""
