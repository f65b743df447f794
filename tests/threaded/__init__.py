"""Unit tests of the threaded gear-compatible API (no network)."""
