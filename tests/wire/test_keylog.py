"""Key log lines in the UAT syntax tshark 4.0 was seen to decrypt with."""

from __future__ import annotations

import asyncio

from ikecp import keylog
from ikecp.const import EncrId, IntegId
from ikecp.lab.demo import Topology


def test_algorithm_names() -> None:
    assert keylog.encr_name(EncrId.AES_CBC, 128) == "AES-CBC-128 [RFC3602]"
    assert keylog.encr_name(EncrId.AES_GCM_16, 256) == \
        "AES-GCM-256 with 16 octet ICV [RFC5282]"
    assert keylog.encr_name(EncrId.AES_GCM_8, 128) == "AES-GCM-128 with 8 octet ICV [RFC5282]"
    assert keylog.encr_name(EncrId.CHACHA20_POLY1305, None) is None  # no UAT name
    assert keylog.integ_name(IntegId.HMAC_SHA2_256_128) == "HMAC_SHA2_256_128 [RFC4868]"
    assert keylog.integ_name(IntegId.NONE) == "NONE [RFC4306]"
    assert keylog.integ_name(999) is None


def test_cbc_hmac_sa_logged_by_both_roles(tmp_path) -> None:
    fap_log, segw_log = tmp_path / "fap.keys", tmp_path / "segw.keys"
    suite = {"proposals": ("aes128-sha256-x25519",), "esp_proposals": ("aes128-sha256",)}

    async def main() -> tuple[str, str]:
        topo = Topology(1, fap_options={**suite, "keylog": str(fap_log)},
                        segw_options={**suite, "keylog": str(segw_log)})
        try:
            await topo.start()
            st = topo.faps[0].status
            return st.spi_i or "", st.spi_r or ""
        finally:
            await topo.stop()

    spi_i, spi_r = asyncio.run(main())
    assert fap_log.read_text() == segw_log.read_text()  # both sides hold the same keys
    assert oct(fap_log.stat().st_mode & 0o777) == "0o600"
    (line,) = fap_log.read_text().splitlines()
    f = line.split(",")
    assert f[:2] == [spi_i, spi_r]
    assert f[4] == '"AES-CBC-128 [RFC3602]"' and f[7] == '"HMAC_SHA2_256_128 [RFC4868]"'
    assert [len(bytes.fromhex(x)) for x in (f[2], f[3], f[5], f[6])] == [16, 16, 32, 32]
