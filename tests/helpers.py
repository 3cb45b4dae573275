"""Re-exports for the tests that still import from here; the helpers live in tests/support/."""

from tests.support.logs import captured_logs
from tests.support.waiting import wait_for_async

__all__ = ["captured_logs", "wait_for_async"]
