"""Lab tooling shipped with the product: a throwaway CA, network namespaces with kernel NAPT,
strongSwan as a peer, packet capture, hostile senders, a PostgreSQL instance and test responders.

Used by the demo, the load generator and the tests; never needed by the SeGW or FAP at run time,
and free of pytest (pytest-only helpers live in ``ikecp.testing``)."""
