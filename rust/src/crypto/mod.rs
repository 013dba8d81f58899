//! prf/prf+, key schedule, SK payload protection and NAT-D (RFC 7296, RFC 5282, RFC 7634).
