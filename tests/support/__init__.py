"""Test helpers shared by every test package (real peers, free ports, waiting on conditions)."""
