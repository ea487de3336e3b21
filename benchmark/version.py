"""Versions written into every result record."""

__version__ = "0.1.0"
# Bump when docs/protocol.md changes what a number means; records carry it.
PROTOCOL_VERSION = "1.1"
# The protocol of how reference models are trained (docs/protocol.md s.1-2), hashed into their
# cache keys. Bumped only when that changes: 1.1 changed metrics and the attack, not the
# references, so caches of 1.0 references stay valid.
REFERENCE_PROTOCOL = "1.0"
