"""Registry values the wire depends on, pinned against their published source."""

from __future__ import annotations

from ikecp.const import ConfigAttr

# IANA "IKEv2 Configuration Payload Attribute Types" (ikev2-parameters-21), as also listed by
# libreswan's ikev2_cp_attribute_type_name table and Wireshark: 5, 9 and 11 are reserved.
IANA_CP_ATTRIBUTES = {
    1: "INTERNAL_IP4_ADDRESS", 2: "INTERNAL_IP4_NETMASK", 3: "INTERNAL_IP4_DNS",
    4: "INTERNAL_IP4_NBNS", 6: "INTERNAL_IP4_DHCP", 7: "APPLICATION_VERSION",
    8: "INTERNAL_IP6_ADDRESS", 10: "INTERNAL_IP6_DNS", 12: "INTERNAL_IP6_DHCP",
    13: "INTERNAL_IP4_SUBNET", 14: "SUPPORTED_ATTRIBUTES", 15: "INTERNAL_IP6_SUBNET",
    16: "MIP6_HOME_PREFIX", 17: "INTERNAL_IP6_LINK", 18: "INTERNAL_IP6_PREFIX",
    19: "HOME_AGENT_ADDRESS", 20: "P_CSCF_IP4_ADDRESS", 21: "P_CSCF_IP6_ADDRESS",
    22: "FTT_KAT", 23: "EXTERNAL_SOURCE_IP4_NAT_INFO", 24: "TIMEOUT_PERIOD_FOR_LIVENESS_CHECK",
    25: "INTERNAL_DNS_DOMAIN", 26: "INTERNAL_DNSSEC_TA", 27: "ENCDNS_IP4", 28: "ENCDNS_IP6",
    29: "ENCDNS_DIGEST_INFO",
}


def test_config_attribute_values() -> None:
    named = {m.value: m.name for m in ConfigAttr if not m.name.startswith("RESERVED_")}
    assert named == IANA_CP_ATTRIBUTES
    assert ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO == 23
    assert ConfigAttr.MIP6_HOME_PREFIX == 16
