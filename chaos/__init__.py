"""`bazaar chaos`: the shop's promises checked under every kind of fault a production shop
meets, against a fresh `bazaar up`, with a report beside the capacity report.

- kit.py: the faults (kill or freeze a process by role, restart RabbitMQ, crash the primary,
  freeze a replica, cut, slow or blackhole a server's connections);
- shop.py: the steady stream of customers checking out, cancelling and browsing, timed;
- invariants.py: the promises, checked against the databases and the mail sink;
- scenarios.py: one fault each, under the stream, then recovery;
- runner.py and report.py: a run, its table and its timeline plots.
"""
