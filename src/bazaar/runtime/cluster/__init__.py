"""The local cluster of `bazaar up`: the topology, the servers it starts (PostgreSQL, Redis,
RabbitMQ, PgBouncer, a mail sink), HAProxy, supervisord, and the commands that run them."""
