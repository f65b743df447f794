"""Tests of gear-admin (gear.admin_tool): the gearadmin-compatible flags and ``top``."""
