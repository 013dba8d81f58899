"""Test support: a throwaway CA, network namespaces with kernel NAPT, and strongSwan as a peer.

Used by the tests, the demo and the load generator; never needed by the SeGW or FAP at run time.
"""
