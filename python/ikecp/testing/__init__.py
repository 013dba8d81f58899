"""Helpers for tests and the load generator (never needed at run time by the SeGW or FAP)."""
