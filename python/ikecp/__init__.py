"""ikecp: IKEv2 for Python with a Rust hot path.

``ikecp.backend`` is the active codec + crypto backend (native by default,
``IKECP_BACKEND=python`` for the pure-Python twin).
"""

from ._backend import NAME as BACKEND_NAME
from ._backend import backend

__version__ = "0.1.0"

__all__ = ["BACKEND_NAME", "__version__", "backend"]
