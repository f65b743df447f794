"""Observers of the job server: what it reports about itself, never what it decides.

* :mod:`gear.server.observe.statsd`: statsd metrics with gear 0.16's names.

Must not be imported by the broker, admin or the transport (the engine wires observers in);
modules here import no sockets of their own beyond their client library's.
"""
