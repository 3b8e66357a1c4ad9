"""Faults and endurance: the torture scenarios (``loglab torture``), the soak, and what the tests
share with them.

* ``scenarios``: the aggregator's scenarios, plain functions ``scenario(workdir, scale) -> [Row]``
  with exact expected figures; the tests call them at a small scale.
* ``torture``: the registry of every scenario (the aggregator's, and shipping's from
  ``natslab.torture``) and the runner that prints and stores the rows.
* ``soak``: every transport at a steady rate, sampled over time.
* ``machine``: what a scenario does to the machine (a tmpfs to fill, another user).
* ``checks``: assertions on an aggregator's output that tests and scenarios share.
"""
