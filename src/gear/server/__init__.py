"""The Gearman job server: broker (sans-I/O scheduling), admin commands, storage, network, CLI."""
