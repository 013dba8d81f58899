"""A dispatcher as one worker of several (in memory, exact bytes): messages whose SPI names
another worker are counted as misrouted (what the reuseport steering program must never
let happen), and workers that share a COOKIE key accept each other's cookies, also across
a rotation made at the same version."""

from __future__ import annotations

import os

from ikecp.const import NotifyType
from ikecp.net.reuseport import tag_spi
from ikecp.roles.dispatch import Dispatcher
from test_dispatch import FAP_IP, SEGW_IP, fap_settings, segw_settings
from test_dispatch_limits import notifies_in


def init_from(spi_tag: int) -> tuple[Dispatcher, bytes]:
    fap = Dispatcher(None, FAP_IP)
    sa = fap.connect(fap_settings(spi_tag=spi_tag), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    assert sa.spi_i[0] == spi_tag
    return fap, fap.datagrams_to_send()[0].wire()


def test_misrouted_counts_foreign_spis_only(backend) -> None:
    worker = Dispatcher(segw_settings(spi_tag=1), SEGW_IP, worker=(1, 2),
                        cookie_threshold=None)
    _, mine = init_from(1)
    _, foreign = init_from(2)  # 2 % 2 == 0: worker 0's
    worker.receive(mine, 500, (FAP_IP, 500), 0.0)
    assert worker.stats.misrouted == 0 and worker.half_open == 1
    (reply,) = worker.datagrams_to_send()
    assert reply.wire()[8] == 1  # the SPIr it handed out names this worker
    worker.receive(foreign, 500, (FAP_IP, 501), 0.0)
    assert worker.stats.misrouted == 1  # still served: the kernel's choice stands
    # An IKE_AUTH-like request for an SA of worker 0 (SPIr tagged 0), and one of ours that
    # this worker no longer holds (not misrouted: just unknown).
    for tag, misrouted in ((0, 2), (1, 2)):
        header = bytearray(mine[:28])
        header[8:16] = tag_spi(os.urandom(8), tag)
        header[18], header[19] = 35, 0x08
        worker.receive(bytes(header), 500, (FAP_IP, 500), 0.0)
        assert worker.stats.misrouted == misrouted
    single = Dispatcher(segw_settings(), SEGW_IP)
    single.receive(foreign, 500, (FAP_IP, 500), 0.0)
    assert single.stats.misrouted == 0


def test_workers_with_one_cookie_key_accept_each_others_cookies(backend) -> None:
    key = os.urandom(32)
    a, b = (Dispatcher(segw_settings(), SEGW_IP, cookie_threshold=0, cookie_key=key)
            for _ in range(2))
    lone = Dispatcher(segw_settings(), SEGW_IP, cookie_threshold=0)
    for d in (a, b, lone):
        d.rotate_cookie_secret(version=7)
    fap, init = init_from(3)
    a.receive(init, 500, (FAP_IP, 500), 0.0)
    challenge = a.datagrams_to_send()
    assert notifies_in(backend, challenge) == [NotifyType.COOKIE]
    fap.receive(challenge[0].wire(), 500, (SEGW_IP, 500), 0.0)
    with_cookie = fap.datagrams_to_send()[0].wire()
    lone.receive(with_cookie, 500, (FAP_IP, 500), 0.0)
    assert lone.stats.bad_cookies == 1 and lone.half_open == 0
    b.rotate_cookie_secret(version=8)  # the cookie's version is now b's previous one
    b.receive(with_cookie, 500, (FAP_IP, 500), 0.0)
    assert b.stats.bad_cookies == 0 and b.half_open == 1
