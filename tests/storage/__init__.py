"""Tests of gear.server.storage: the shared contract suite and backend-specific failures."""
