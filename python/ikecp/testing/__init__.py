"""Test fixtures that stand up real networks and real peers (namespaces, NAPT, strongSwan)."""
