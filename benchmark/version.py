"""Versions written into every result record."""

__version__ = "0.1.0"
# Bump when docs/protocol.md changes what a number means; records carry it.
PROTOCOL_VERSION = "1.1"
