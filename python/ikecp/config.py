"""TOML configuration of the two roles, checked key by key.

``load_segw(path)`` and ``load_fap(path)`` read a file with ``tomllib`` into frozen
dataclasses; an unknown key, a value of the wrong type or a value out of range raises
``ConfigError`` naming the key (``"fap.toml: keepalive: must be a number > 0"``). The same
checks run when a config is built in Python (``SegwConfig(...)``, ``dataclasses.replace``):
types, ranges (durations must be finite and within ``DURATIONS``), identities, credentials
(PEM files are loaded, the key must match the certificate) and the files the role will write.
Every key has a default that works on loopback except the credentials, which must be given:
a PSK or a certificate, key and CA. ``settings()`` turns a config into the engine's
``Settings``.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI
    import tomli as tomllib

from .const import ConfigAttr
from .cp import (
    AddressPool,
    AttributeHandler,
    AttributeProvider,
    CpRegistry,
    Mode,
    NatInfoHandler,
    NatInfoProvider,
    PoolProvider,
    PushMode,
)
from .cp.standard import RequestHandler, StaticProvider
from .engine import (
    Authenticator,
    ChildLifetime,
    ChildProposal,
    FragmentPolicy,
    Identity,
    IkeLifetime,
    IkeProposal,
    PskAuthenticator,
    Settings,
)
from .net.reuseport import MAX_WORKERS
from .roles.dispatch import (
    COOKIE_THRESHOLD,
    COOKIE_THRESHOLD_IP,
    INVALID_SPI_RATE,
    MAX_HALF_OPEN,
    MAX_HALF_OPEN_IP,
    MAX_INIT_SIZE,
    MAX_PAYLOADS,
)

#: Where ``ikecp segw`` keeps its bindings when the config names no store (in code, a
#: ``Gateway`` keeps them in memory instead).
DEFAULT_BINDINGS = "ikecp-bindings.sqlite"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; ``key`` names it."""

    def __init__(self, key: str, problem: str, source: str = "") -> None:
        self.key = key
        self.problem = problem
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{key}: {problem}")


def identity(text: str) -> Identity:
    """``1.2.3.4`` is an IPv4 identity, ``a@b`` an RFC 822 one, anything else an FQDN.
    Non-ASCII text raises ``ValueError`` (FQDN and RFC 822 identities are ASCII, §3.5)."""
    try:
        return Identity.ipv4(text)
    except ValueError:
        pass
    if not text.isascii():
        raise ValueError(f"not ASCII: {text!r} (write an internationalized name as its "
                         "xn-- A-label)")
    return Identity.rfc822(text) if "@" in text else Identity.fqdn(text)


#: Seconds: (smallest, largest, whether 0 turns the feature off). Sub-second minimums keep
#: fast test setups possible without letting a timer spin (``binding_expiry`` sets the
#: expiry sweep's period); the maximums catch unit mistakes (milliseconds for seconds).
DURATIONS: dict[str, tuple[float, float, bool]] = {
    "dpd": (0.01, 86400.0, True),
    "binding_expiry": (0.1, 30 * 86400.0, False),
    "keepalive": (0.01, 3600.0, True),
    "reconnect": (0.01, 3600.0, False),
    "retransmit_timeout": (0.01, 60.0, False),
}


def check_duration(key: str, value: float, source: str = "") -> None:
    """``ConfigError`` unless ``value`` is finite and within ``DURATIONS[key]``."""
    low, high, zero_off = DURATIONS[key]
    if zero_off and value == 0:
        return
    if not math.isfinite(value) or not low <= value <= high:
        off = " (or 0 to turn it off)" if zero_off else ""
        raise ConfigError(key, f"must be {low:g}-{high:.0f} seconds{off}, not {value!r}",
                          source)


def _check_identity(key: str, text: str, source: str) -> None:
    try:
        identity(text)
    except ValueError as exc:
        raise ConfigError(key, f"bad identity: {exc}", source) from None


def _check_output_file(key: str, path: str, source: str) -> None:
    """A file the role creates or appends to: its directory exists, it is not a directory."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(key, f"is a directory: {path}", source)
    if not p.parent.is_dir():
        raise ConfigError(key, f"no such directory: {p.parent}", source)


def _check_database(key: str, path: str, source: str) -> None:
    """The binding store's SQLite file: creatable, or an existing SQLite database (a
    PostgreSQL URL is checked when the store connects)."""
    from .roles.bindings import is_postgres

    if path == ":memory:" or is_postgres(path):
        return
    _check_output_file(key, path, source)
    p = Path(path)
    if p.is_file() and p.stat().st_size:
        with open(p, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ConfigError(key, f"not an SQLite database: {path}", source)


#: Field metadata of the keys that only code can set (objects, not TOML values).
_CODE_ONLY = {"code_only": True}


@dataclass(frozen=True)
class _Common:
    """Keys both roles share."""

    #: Our IKE identity (IDi / IDr).
    identity: str = ""
    #: Pre-shared key (text); or use cert + key + ca.
    psk: str | None = None
    #: PEM certificate, its private key, and CA certificates that anchor the peer's chain.
    cert: str | None = None
    key: str | None = None
    ca: tuple[str, ...] = ()
    #: In code only, not a TOML key: an ``Authenticator`` of the application's own (for
    #: example one that asks an AAA server), instead of psk or cert + key + ca.
    auth: Authenticator | None = field(default=None, metadata=_CODE_ONLY)
    #: IKE and NAT-T UDP ports (both sides of an SA must use the same NAT-T port).
    port: int = 500
    natt_port: int = 4500
    #: IKE proposals and ESP proposals, strongSwan-style ("aes256gcm16-prfsha256-x25519").
    proposals: tuple[str, ...] = ("aes256gcm16-prfsha256-x25519-ecp256-modp2048",
                                  "aes256-sha256-x25519-ecp256-modp2048")
    esp_proposals: tuple[str, ...] = ("aes256gcm16", "aes256-sha256")
    #: Seconds between liveness checks (empty INFORMATIONAL); 0 disables them. A FAP sends
    #: one every interval, which is also what shows the SeGW a NAT rebinding.
    dpd: float = 30.0
    #: Renewal, in seconds, as strongSwan's swanctl.conf: IKE rekey / reauthentication time
    #: (0: never), hard end after a renewal that did not succeed and random part subtracted
    #: (unset: 10 % of the larger time, resp. over_time); CHILD SA rekey time (0: never),
    #: hard lifetime (unset: 110 %) and random part (unset: the difference).
    rekey_time: float = 4 * 3600.0
    reauth_time: float = 0.0
    over_time: float | None = None
    rand_time: float | None = None
    child_rekey_time: float = 3600.0
    child_life_time: float | None = None
    child_rand_time: float | None = None
    #: Append IKE SA keys for Wireshark here (off by default: these are secrets).
    keylog: str | None = None
    #: Code point of EXTERNAL_SOURCE_IP4_NAT_INFO: 23 (IANA), 16384-32767, or 16 with legacy.
    nat_info_type: int = ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO
    legacy_nat_info: bool = False
    #: IKE fragmentation (RFC 7383), as strongSwan's: yes, accept, force or no.
    fragmentation: str = "yes"
    #: Largest IP datagram of a sent fragment, headers included; 0: 576 IPv4 / 1280 IPv6.
    fragment_size: int = 1280
    #: Prometheus endpoint, "ADDRESS:PORT" or a port on 127.0.0.1 (unset: no endpoint).
    metrics: str | None = None
    #: "tun": carry traffic (userspace ESP in UDP on a TUN device; root and /dev/net/tun);
    #: "none": negotiate CHILD SAs without carrying them. ``tun_name``: "" picks one.
    dataplane: str = "none"
    tun_name: str = ""

    def authenticator(self) -> Authenticator:
        if self.auth is not None:
            return self.auth
        if self.psk is not None:
            return PskAuthenticator(self.psk.encode())
        from . import pki
        from .engine.cert_auth import CertAuthenticator

        assert self.cert is not None and self.key is not None
        credential = pki.Credential.from_files(self.key, self.cert)
        trust = pki.TrustStore.from_files(*self.ca)
        return CertAuthenticator(credential, trust)

    def _has_psk(self) -> bool:
        return self.psk is not None

    def _check_pki(self, source: str) -> None:
        """Load the PEM files now, so a bad one is named before anything starts."""
        from . import pki

        assert self.cert is not None and self.key is not None
        try:
            certs = pki.load_certificates(Path(self.cert).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError("cert", f"{self.cert}: {exc}", source) from None
        if not certs:
            raise ConfigError("cert", f"{self.cert}: no certificate in it", source)
        try:
            pki.Credential.from_files(self.key, self.cert)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError("key", f"{self.key}: {exc}", source) from None
        for path in self.ca:
            try:
                if not pki.load_certificates(Path(path).read_bytes()):
                    raise ValueError("no certificate in it")
            except (OSError, ValueError) as exc:
                raise ConfigError("ca", f"{path}: {exc}", source) from None

    def _base_settings(self) -> dict[str, Any]:
        return {
            "local_id": identity(self.identity), "auth": self.authenticator(),
            "ike_proposals": tuple(IkeProposal.parse(p) for p in self.proposals),
            "child_proposals": tuple(ChildProposal.parse(p) for p in self.esp_proposals),
            "natt_port": self.natt_port, "dpd_interval": self.dpd or None,
            "ike_lifetime": IkeLifetime(self.rekey_time or None, self.reauth_time or None,
                                        self.over_time, self.rand_time),
            "child_lifetime": ChildLifetime(self.child_rekey_time or None,
                                            self.child_life_time, self.child_rand_time),
            "fragmentation": FragmentPolicy(self.fragmentation, self.fragment_size),
            "keep_keys": self.keylog is not None,
        }

    def __post_init__(self) -> None:
        _coerce_fields(self, "")
        self._check("")

    def _check(self, source: str) -> None:
        if not self.identity:
            raise ConfigError("identity", "must not be empty", source)
        _check_identity("identity", self.identity, source)
        if self.psk is not None and not self.psk:
            raise ConfigError("psk", "must not be empty", source)
        has_cert = self.cert is not None or self.key is not None
        if self.auth is not None:
            if not all(hasattr(self.auth, a) for a in ("method", "sign", "verify")):
                raise ConfigError("auth", "must be an Authenticator (method, sign, verify)",
                                  source)
            if self._has_psk() or has_cert:
                raise ConfigError("auth", "give either auth or psk / cert + key, not both",
                                  source)
        elif not self._has_psk() and not has_cert:
            raise ConfigError("psk", "give a psk, or cert + key + ca", source)
        if self._has_psk() and has_cert:
            raise ConfigError("psk", "give either psk or cert + key, not both", source)
        if has_cert:
            for name in ("cert", "key"):
                if getattr(self, name) is None:
                    raise ConfigError(name, "is needed for certificate authentication", source)
            if not self.ca:
                raise ConfigError("ca", "is needed for certificate authentication", source)
            for path in (self.cert, self.key, *self.ca):
                if not Path(str(path)).is_file():
                    raise ConfigError("cert" if path == self.cert else
                                      "key" if path == self.key else "ca",
                                      f"no such file: {path}", source)
            self._check_pki(source)
        for name in ("port", "natt_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(name, "must be a UDP port (0-65535)", source)
        if self.dataplane not in ("tun", "none"):
            raise ConfigError("dataplane", 'must be "tun" or "none"', source)
        if self.dataplane == "tun" and (self.natt_port in (0, self.port)):
            raise ConfigError("natt_port", 'needs its own fixed port with dataplane "tun"',
                              source)
        if len(self.tun_name) > 15:
            raise ConfigError("tun_name", "must be at most 15 characters", source)
        check_duration("dpd", self.dpd, source)
        if self.keylog is not None:
            _check_output_file("keylog", self.keylog, source)
        if self.fragmentation not in ("yes", "accept", "force", "no"):
            raise ConfigError("fragmentation", "must be yes, accept, force or no", source)
        if self.fragment_size != 0 and not 256 <= self.fragment_size <= 65535:
            raise ConfigError("fragment_size", "must be 0 or within 256-65535", source)
        for name in ("rekey_time", "reauth_time", "over_time", "rand_time",
                     "child_rekey_time", "child_life_time", "child_rand_time"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(name, "must be >= 0", source)
        if self.metrics is not None:
            from .roles.metrics import parse_address

            try:
                parse_address(self.metrics)
            except ValueError as exc:
                raise ConfigError("metrics", str(exc), source) from exc
        for name, parse, values in (("proposals", IkeProposal.parse, self.proposals),
                                    ("esp_proposals", ChildProposal.parse,
                                     self.esp_proposals)):
            if not values:
                raise ConfigError(name, "must list at least one proposal", source)
            for v in values:
                try:
                    parse(v)
                except (ValueError, KeyError) as exc:
                    raise ConfigError(name, f"bad proposal {v!r}: {exc}", source) from exc
        try:
            from .cp.nat_info import check_code_point

            check_code_point(self.nat_info_type, legacy=self.legacy_nat_info)
        except ValueError as exc:
            raise ConfigError("nat_info_type", str(exc), source) from exc


@dataclass(frozen=True)
class SegwConfig(_Common):
    """The security gateway (responder)."""

    identity: str = "segw.ikecp.test"
    #: Addresses to listen on (IPv4 and/or IPv6 literals; one string or a list).
    listen: tuple[str, ...] = ("127.0.0.1",)
    #: Per-peer PSKs: {identity = "secret"}; peers not listed use ``psk``.
    peers: dict[str, str] = field(default_factory=dict)
    #: Inner addresses handed out with INTERNAL_IP4_ADDRESS.
    pool: str = "10.99.0.0/16"
    #: DNS servers sent when the peer asks for INTERNAL_IP4_DNS.
    dns: tuple[str, ...] = ()
    #: Answer EXTERNAL_SOURCE_IP4_NAT_INFO.
    nat_info: bool = True
    #: After a NAT rebinding, push the new NAT info in CFG_SET (INFORMATIONAL) to: requested
    #: (peers that asked for it in IKE_AUTH), always (every IPv4 peer), never.
    nat_info_push: str = "requested"
    #: The binding store: an SQLite file, or a ``postgresql://`` URL shared by several SeGWs
    #: (unset: in memory, nothing written; ``ikecp segw`` uses ``DEFAULT_BINDINGS``).
    bindings: str | None = None
    #: The name this SeGW's rows carry in the store (unset: the host name).
    instance: str | None = None
    #: Also write binding changes as JSON lines to this file.
    events: str | None = None
    #: Drop a binding whose peer sent nothing authenticated for this many seconds.
    binding_expiry: float = 3600.0
    #: Half-open SAs (IKE_SA_INIT answered, IKE_AUTH not yet): at most ``max_half_open`` in
    #: all and ``max_half_open_ip`` from one IP (every FAP behind one carrier-grade NAT
    #: shares its address: keep it generous). A COOKIE (RFC 7296 §2.6) is demanded from
    #: ``cookie_threshold`` half-open SAs on, or ``cookie_threshold_ip`` from one IP, and
    #: beyond either cap (0: always; a threshold at or above its cap only at the cap).
    max_half_open: int = MAX_HALF_OPEN
    max_half_open_ip: int = MAX_HALF_OPEN_IP
    cookie_threshold: int = COOKIE_THRESHOLD
    cookie_threshold_ip: int = COOKIE_THRESHOLD_IP
    #: Largest IKE_SA_INIT request accepted (octets) and most payloads in it: larger or
    #: longer ones are dropped before they are decoded.
    max_init_size: int = MAX_INIT_SIZE
    max_payloads: int = MAX_PAYLOADS
    #: Unprotected INVALID_IKE_SPI answers per second to requests for unknown SPIs (0: none).
    invalid_spi_rate: float = INVALID_SPI_RATE
    #: Worker processes sharing the ports (unset: one per core this process may use; 1: one
    #: process, as with ``dataplane = "tun"``, which always runs in one). With several, the
    #: caps and thresholds above and the pool are split evenly between the workers.
    workers: int | None = None

    def _check(self, source: str) -> None:
        super()._check(source)
        try:
            net = ipaddress.ip_network(self.pool, strict=False)
        except ValueError as exc:
            raise ConfigError("pool", str(exc), source) from exc
        if net.version != 4 or net.num_addresses < 4:
            raise ConfigError("pool", "must be an IPv4 network with room for hosts", source)
        if not self.listen:
            raise ConfigError("listen", "needs at least one address", source)
        for name, values in (("listen", self.listen), ("dns", self.dns)):
            for v in values:
                try:
                    ipaddress.ip_address(v)
                except ValueError as exc:
                    raise ConfigError(name, f"not an IP address: {v!r}", source) from exc
        if self.nat_info_push not in {m.value for m in PushMode}:
            raise ConfigError("nat_info_push", "must be requested, always or never", source)
        if self.instance is not None and not self.instance.strip():
            raise ConfigError("instance", "must not be empty", source)
        check_duration("binding_expiry", self.binding_expiry, source)
        if self.bindings is not None:
            _check_database("bindings", self.bindings, source)
        if self.events is not None:
            _check_output_file("events", self.events, source)
        for peer, secret in self.peers.items():
            _check_identity("peers", peer, source)
            if not secret:
                raise ConfigError("peers", f"the PSK of {peer} must not be empty", source)
        for name in ("max_half_open", "max_half_open_ip"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1", source)
        for name in ("cookie_threshold", "cookie_threshold_ip"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0", source)
        if not 512 <= self.max_init_size <= 65535:
            raise ConfigError("max_init_size", "must be within 512-65535 octets", source)
        if not 4 <= self.max_payloads <= 1024:
            raise ConfigError("max_payloads", "must be within 4-1024", source)
        if not 0 <= self.invalid_spi_rate <= 1e6:
            raise ConfigError("invalid_spi_rate", "must be within 0-1000000", source)
        if self.workers is not None:
            if not 1 <= self.workers <= MAX_WORKERS:
                raise ConfigError("workers", f"must be within 1-{MAX_WORKERS}", source)
            if self.workers > 1 and self.dataplane == "tun":
                raise ConfigError("workers", 'the "tun" data plane runs in one process: '
                                  "set workers = 1", source)

    def worker_count(self) -> int:
        """How many worker processes serve: ``workers``, else one per usable core (one with
        the TUN data plane)."""
        if self.workers is not None:
            return self.workers
        if self.dataplane == "tun":
            return 1
        try:
            return min(MAX_WORKERS, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return min(MAX_WORKERS, os.cpu_count() or 1)

    def limits(self) -> dict[str, Any]:
        """The Dispatcher's keyword arguments for the DoS limits."""
        return {"max_half_open": self.max_half_open, "max_half_open_ip": self.max_half_open_ip,
                "cookie_threshold": self.cookie_threshold,
                "cookie_threshold_ip": self.cookie_threshold_ip,
                "max_init_size": self.max_init_size, "max_payloads": self.max_payloads,
                "invalid_spi_rate": self.invalid_spi_rate}

    def _has_psk(self) -> bool:
        return self.psk is not None or bool(self.peers)

    def authenticator(self) -> Authenticator:
        if self.peers:
            return PskAuthenticator(self.psk.encode() if self.psk else None,
                                    {identity(k): v.encode() for k, v in self.peers.items()})
        return super().authenticator()

    def settings(self, natt_port: int | None = None,
                 providers: Iterable[AttributeProvider] = (), *,
                 worker: tuple[int, int] | None = None) -> Settings:
        """Engine settings (a new address pool each call); ``natt_port`` overrides the
        configured one when the socket was bound to port 0. ``providers`` (the
        application's own CP providers) answer after the configured ones, and one for a type
        the configuration serves (INTERNAL_IP4_ADDRESS, ...) replaces that one. ``worker``
        (index, count): the settings of one worker process, with its slice of the pool and
        its index in every SPI it allocates."""
        share = worker or (0, 1)
        standard: list[AttributeProvider] = [PoolProvider(AddressPool(self.pool, share=share))]
        if self.nat_info:
            standard.append(NatInfoProvider(self.nat_info_type, legacy=self.legacy_nat_info,
                                            push=PushMode(self.nat_info_push)))
        if self.dns:
            standard.append(StaticProvider.addresses(ConfigAttr.INTERNAL_IP4_DNS, self.dns))
        cp = _registry("providers", standard, list(providers), CpRegistry.add_provider)
        kw = self._base_settings()
        kw.update(cp=cp, natt_port=natt_port or self.natt_port,
                  spi_tag=None if worker is None else worker[0])
        return Settings(**kw)


@dataclass(frozen=True)
class FapConfig(_Common):
    """The femtocell (initiator)."""

    identity: str = "fap.ikecp.test"
    #: The SeGW's address and its expected identity (unset: accept what authenticates).
    segw: str = "127.0.0.1"
    segw_id: str | None = None
    #: The SeGW's IKE and NAT-T ports (unset: the same numbers as ``port`` / ``natt_port``).
    segw_port: int | None = None
    segw_natt_port: int | None = None
    #: Local address to bind ("" picks the one the route to the SeGW uses).
    local: str = ""
    #: When to ask for EXTERNAL_SOURCE_IP4_NAT_INFO: auto (behind NAT), always, never.
    nat_info_mode: str = "auto"
    #: Seconds between NAT keepalives while behind a NAT (RFC 3948 §2.3); 0 disables them.
    keepalive: float = 20.0
    #: Seconds to wait before re-establishing a lost SA (doubles up to 60 s on failures).
    reconnect: float = 2.0
    #: Resend an unanswered request this many times, first after ``retransmit_timeout``
    #: seconds and then doubling, before giving up on the SA.
    retries: int = 5
    retransmit_timeout: float = 1.0

    def _check(self, source: str) -> None:
        super()._check(source)
        for name, v in (("segw", self.segw), *([("local", self.local)] if self.local else [])):
            try:
                ipaddress.ip_address(v)
            except ValueError as exc:
                raise ConfigError(name, f"not an IP address: {v!r}", source) from exc
        if self.nat_info_mode not in {m.value for m in Mode}:
            raise ConfigError("nat_info_mode", "must be auto, always or never", source)
        for name in ("keepalive", "reconnect", "retransmit_timeout"):
            check_duration(name, getattr(self, name), source)
        if self.segw_id is not None:
            _check_identity("segw_id", self.segw_id, source)
        for name, local in (("segw_port", self.port), ("segw_natt_port", self.natt_port)):
            value = getattr(self, name)
            if value is None and local == 0:
                raise ConfigError(name, "is needed when the local port is 0 (any)", source)
            if value is not None and not 1 <= value <= 65535:
                raise ConfigError(name, "must be a UDP port (1-65535)", source)
        if not 0 <= self.retries <= 20:
            raise ConfigError("retries", "must be within 0-20", source)

    @property
    def remote_ports(self) -> tuple[int, int]:
        """The SeGW's (IKE, NAT-T) ports."""
        return (self.segw_port or self.port, self.segw_natt_port or self.natt_port)

    def settings(self, handlers: Iterable[AttributeHandler] = ()) -> Settings:
        """Engine settings; ``natt_port`` is the SeGW's (the FAP's own NAT-T socket is
        given to the SA as its float port). ``handlers`` (the application's own CP
        handlers) ask after the configured ones; one for a type the configuration asks for
        replaces that one."""
        from .engine import RetransmitPolicy

        standard: list[AttributeHandler] = [
            RequestHandler(ConfigAttr.INTERNAL_IP4_ADDRESS),
            NatInfoHandler(Mode(self.nat_info_mode), self.nat_info_type,
                           legacy=self.legacy_nat_info)]
        cp = _registry("handlers", standard, list(handlers), CpRegistry.add_handler)
        kw = self._base_settings()
        kw.update(cp=cp, natt_port=self.remote_ports[1], keepalive_interval=self.keepalive or None,
                  remote_id=identity(self.segw_id) if self.segw_id else None,
                  retransmit=RetransmitPolicy(self.retransmit_timeout, tries=self.retries))
        return Settings(**kw)


def plugins(key: str, given: Iterable[Any]) -> tuple[Any, ...]:
    """The application's handlers or providers (``key``) as a tuple; ``ConfigError`` for
    one object where a list of them belongs."""
    if hasattr(given, "attr_type") or not isinstance(given, Iterable):
        raise ConfigError(key, f"must be a list of {key}, not {type(given).__name__}")
    return tuple(given)


def _registry(key: str, standard: list[Any], own: list[Any],
              add: Callable[[CpRegistry, Any], CpRegistry]) -> CpRegistry:
    """The configured handlers or providers, then the application's (``key``): one of
    those for a configured type takes its place; two for one type are a ``ConfigError``."""
    cp = CpRegistry()
    types: set[int] = set()
    for item in own:
        if not isinstance(getattr(item, "attr_type", None), int):
            raise ConfigError(key, f"{item!r} has no integer attr_type")
        if item.attr_type in types:
            raise ConfigError(key, f"two for attribute type {item.attr_type}")
        types.add(item.attr_type)
    for kept in [*(s for s in standard if s.attr_type not in types), *own]:
        add(cp, kept)
    return cp


def _coerce(source: str, key: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against the dataclass field's type hint; lists become tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(source, key, inner[0], value)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "must be a string or a list of strings", source)
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in value.items()):
            raise ConfigError(key, "must be a table of strings", source)
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, "must be true or false", source)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, "must be an integer", source)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, "must be a number", source)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string", source)
        return value
    raise ConfigError(key, f"unsupported type {hint}", source)


def _coerce_fields(config: _Common, source: str) -> None:
    """Type-check every field of a config built in Python as ``from_dict`` does for TOML
    (lists become tuples)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if f.metadata.get("code_only"):
            continue  # checked by the role's own _check
        value = getattr(config, f.name)
        checked = _coerce(source, f.name, hints[f.name], value)
        if checked is not value:
            object.__setattr__(config, f.name, checked)


_C = typing.TypeVar("_C", SegwConfig, FapConfig)


def from_dict(cls: type[_C], data: dict[str, Any], source: str = "") -> _C:
    """Build and validate a config from parsed TOML (or any dict of the same shape)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("code_only")}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(key, f"unknown key (known keys: {known})", source)
        values[key] = _coerce(source, key, hints[key], value)
    try:
        return cls(**values)
    except ConfigError as exc:  # checked in __post_init__; name the file too
        raise ConfigError(exc.key, exc.problem, source) from None


def _load(cls: type[_C], path: str | Path) -> _C:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from exc
    return from_dict(cls, data, str(path))


def load_segw(path: str | Path) -> SegwConfig:
    return _load(SegwConfig, path)


def load_fap(path: str | Path) -> FapConfig:
    return _load(FapConfig, path)


# --- command-line arguments: argparse ``type=`` checks with the same rules ------------------


def port_arg(text: str) -> int:
    """A UDP port number 0-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a UDP port (0-65535), not {text}")
    return value


def int_arg(low: int, high: int) -> Callable[[str], int]:
    """An integer within [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}, not {text}")
        return value
    return parse


def seconds_arg(low: float, high: float, *, zero: bool = False) -> Callable[[str], float]:
    """A finite number of seconds within [low, high] (or 0 when ``zero``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if zero and value == 0:
            return value
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low:g}-{high:g} seconds, not {text}")
        return value
    return parse


def output_file_arg(text: str) -> str:
    """A file to create or append to: its directory exists and it is not a directory."""
    try:
        _check_output_file("file", text, "")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None
    return text
