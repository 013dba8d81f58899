"""A SeGW and a FAP embedded in one asyncio program, on loopback (no root, no file written).

    python examples/embed.py

The SeGW answers a configuration attribute of the application's own (a private-use type,
RFC 7296 §3.15.1) after an asynchronous lookup, through a CP provider that returns a
``Deferred``; the FAP asks for it with its own CP handler. Callbacks report the binding
table's changes on the SeGW and the public address the FAP learned. With no NAT in between,
that address is the FAP's own loopback address and port: the FAP asks for
EXTERNAL_SOURCE_IP4_NAT_INFO always (``nat_info_mode = "always"``), not only behind a NAT.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ikecp import (
    BindingChanged,
    CpContext,
    Deferred,
    FapConfig,
    Femto,
    Gateway,
    PublicAddressUpdate,
    SaFailure,
    SegwConfig,
)

#: The application's own attribute: a private-use type (16384-32767) carrying a site name.
SITE_NAME = 20000
PSK = "an example secret, not for production"
SITES = {"fap-1.example": "building 4, floor 2"}


class SiteProvider:
    """SeGW side: the site of the authenticated FAP, from a lookup that takes a while (an
    inventory database, say). It returns a ``Deferred`` and settles it when the lookup
    is done; the Gateway then sends the IKE_AUTH response at once."""

    attr_type = SITE_NAME

    def __init__(self, sites: dict[str, str]) -> None:
        self.sites = sites
        self.lookups: set[asyncio.Task[None]] = set()

    def provide(self, ctx: CpContext, requested: list[bytes]) -> Deferred:
        answer = Deferred()

        async def lookup() -> None:
            await asyncio.sleep(0.05)
            answer.resolve([self.sites.get(str(ctx.peer_id), "unknown").encode()])

        task = asyncio.get_running_loop().create_task(lookup())
        self.lookups.add(task)
        task.add_done_callback(self.lookups.discard)
        return answer

    def release(self, ctx: CpContext) -> None:
        """Nothing was allocated for the SA."""


class SiteHandler:
    """FAP side: asks for the site name in CFG_REQUEST and keeps the answer."""

    attr_type = SITE_NAME

    def __init__(self) -> None:
        self.site: str | None = None

    def request(self, ctx: CpContext) -> bytes | None:
        return b""

    def handle(self, ctx: CpContext, values: list[bytes]) -> None:
        self.site = values[0].decode() if values else None


@dataclass
class Seen:
    """What the callbacks saw."""

    bindings: list[BindingChanged] = field(default_factory=list)
    public: list[PublicAddressUpdate] = field(default_factory=list)
    failures: list[SaFailure] = field(default_factory=list)
    site: str | None = None
    fap_local: str = ""


async def main() -> Seen:
    seen = Seen()
    gateway = Gateway(
        SegwConfig(identity="segw.example", psk=PSK, listen=("127.0.0.1",), port=0,
                   natt_port=0, pool="10.7.0.0/24"),
        providers=[SiteProvider(SITES)],
        on_binding=seen.bindings.append, on_sa_failed=seen.failures.append)
    await gateway.start()
    port, natt = gateway.ports
    print(f"SeGW listening on 127.0.0.1 ports {port}/{natt}")
    site = SiteHandler()
    fap = Femto(
        FapConfig(identity="fap-1.example", psk=PSK, segw="127.0.0.1", local="127.0.0.1",
                  port=0, natt_port=0, segw_port=port, segw_natt_port=natt,
                  segw_id="segw.example", nat_info_mode="always"),
        handlers=[site], on_public_address=seen.public.append,
        on_sa_failed=seen.failures.append)
    try:
        await fap.start()
        status = await fap.wait_established(10.0)
        seen.site, seen.fap_local = site.site, status.local
        print(f"FAP {status.describe()}")
        for update in seen.public:
            print(f"FAP learned its public address {update.address}:{update.port} "
                  f"(its own socket: {status.local})")
        print(f"FAP got the site name: {site.site!r}")
    finally:
        await fap.stop()
        await gateway.stop()
    for change in seen.bindings:
        print(f"binding {change.kind}: {change.identity} inner {change.inner_ip} public "
              f"{change.public_ip}:{change.public_port}"
              + (f" ({change.reason})" if change.reason else ""))
    for failure in seen.failures:
        print(f"failure ({failure.kind}): {failure.peer} {failure.reason}")
    return seen


if __name__ == "__main__":
    asyncio.run(main())
