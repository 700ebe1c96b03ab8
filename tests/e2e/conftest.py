"""The browser fixture for every test module in tests/e2e (see browser.py)."""

from tests.e2e.browser import browser, page  # noqa: F401  (fixtures, used by name)
