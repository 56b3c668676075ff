"""Fixtures shared by the framework tests (test_frameworks.py, test_frameworks_node.py): one
real ``modelladder serve`` per module with its OTLP receiver (tests/support/framework_server.py).
Registered here so the test modules request them by name instead of importing them."""

from tests.support.framework_server import otlp, serve_home, server  # noqa: F401 (fixtures)
