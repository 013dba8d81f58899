"""The two roles and what they keep: the SeGW (``Gateway``: dispatcher, binding registry, metrics)
and the femtocell (``Femto``). They run the sans-IO engine on the I/O in ``ikecp.net``."""
