"""Gateway fixtures live in tests/conftest.py; ``wire`` is re-exported for the tests that import it here."""

from tests.conftest import wire

__all__ = ["wire"]
