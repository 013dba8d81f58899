"""Sockets, timers and the userspace NAPT relay around the sans-IO engine."""
