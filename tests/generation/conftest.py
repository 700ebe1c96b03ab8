"""The answer queue's tests use the Arena's home: the echo backend and two prompt variants."""

from tests.arena.conftest import echo_services  # noqa: F401  (a fixture)
