"""The package version, on its own so that the server and the command line need not import the
package face (``gear/__init__.py``) to read it."""

__version__ = "0.1.0"
