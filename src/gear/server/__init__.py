"""The Gearman job server: broker (sans-I/O scheduling), admin commands, storage, network, CLI."""

# Transitional: importing admin makes its run_command the line handler of Brokers constructed
# without ``admin=`` (the network layer's, until the engine passes admin= itself). The broker
# never imports admin; remove this once every caller injects it.
import gear.server.admin  # noqa: F401
