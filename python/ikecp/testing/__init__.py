"""Pytest-only helpers (the skip-or-fail policy for tests that need root, namespaces or a peer).
Lab tooling that runs without pytest is in ``ikecp.lab``."""
