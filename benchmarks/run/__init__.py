"""Planning and measuring: the scenarios (``suite``), the plan of runs and its execution
(``bench``), one measured run (``measure``), and the systems under test (``systems``: loglab's
aggregator and the peers, by name)."""
