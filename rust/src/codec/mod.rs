//! IKEv2 message and payload codec (RFC 7296, RFC 7383).
