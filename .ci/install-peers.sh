#!/usr/bin/env bash
# Installs the third-party peers and tools the network tests use: strongSwan (charon-systemd,
# swanctl, standard plugins for openssl/gcm, extra plugins for kernel-libipsec), nftables
# (kernel NAPT in network namespaces), tshark, and iperf3 and ping (traffic through the ESP
# data plane), conntrack (forces NAT rebindings).
# Idempotent and non-interactive; run as root on Debian/Ubuntu.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
    charon-systemd
    strongswan-swanctl
    libcharon-extra-plugins
    libstrongswan-standard-plugins
    libstrongswan-extra-plugins
    nftables
    iproute2
    tshark
    iperf3
    iputils-ping
    conntrack
)

# tshark's wireshark-common asks whether non-root users may capture; answer it up front.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-peers: all present"
    exit 0
fi

lock=(-o DPkg::Lock::Timeout=300)
apt-get "${lock[@]}" update -q
apt-get "${lock[@]}" install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
echo "install-peers: installed ${missing[*]}"
