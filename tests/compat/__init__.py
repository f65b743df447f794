"""Runs PyPI gear 0.16.0's own unit tests against our ``gear`` package."""
