#!/bin/bash
# Build strongSwan's charon-systemd with the load-tester plugin from Debian's source package.
#
# Why: Debian ships no load-tester, and its fake kernel (CHILD SAs installed nowhere) is the
# like-for-like anchor for a control-plane-only responder. The build goes into a cache dir outside
# the repo; a second run finds it there and returns at once. Prints the install prefix on the
# last line of stdout; progress and timings go to stderr.
#
# Usage: benches/strongswan_loadtester.sh [PREFIX]
#        (default PREFIX: $IKECP_BENCH_CACHE/strongswan-loadtester, IKECP_BENCH_CACHE defaulting
#        to /var/cache/ikecp-bench). Needs root (apt-get) on Debian 12.
set -euo pipefail

PREFIX=${1:-${IKECP_BENCH_CACHE:-/var/cache/ikecp-bench}/strongswan-loadtester}
# The plugins handshake_rate.py loads (ikecp.lab.strongswan.PLUGINS plus the kernel
# interfaces), pki, and load-tester; nothing else, so the daemon is what the bench measures.
PLUGINS="charon systemd ikev2 swanctl vici pki load-tester kernel-netlink socket-default
  random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints curve25519 gmp hmac kdf
  sha1 sha2 aes gcm chapoly attr"

if [[ -f "$PREFIX/.built" && -x "$PREFIX/sbin/charon-systemd" ]]; then
    echo "cached: $(cat "$PREFIX/.built")" >&2
    echo "$PREFIX"
    exit 0
fi

mkdir -p "$PREFIX"
exec 9>"$PREFIX.lock"
flock 9  # one build at a time; a waiting second run then finds the cache
if [[ -f "$PREFIX/.built" && -x "$PREFIX/sbin/charon-systemd" ]]; then
    echo "$PREFIX"
    exit 0
fi

start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive

# deb-src in deb822 form, mirroring the existing Debian entry (a one-line .list entry for the
# same URI conflicts with the .sources entry on Signed-By).
SRC=/etc/apt/sources.list.d/ikecp-bench-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    cat >"$SRC" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
apt-get update -qq >&2
need=()
for p in build-essential pkg-config dpkg-dev libssl-dev libgmp-dev libsystemd-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then apt-get install -y -qq "${need[@]}" >&2; fi

WORK=$(mktemp -d "${PREFIX%/*}/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
apt-get source --download-only -qq strongswan >&2
dpkg-source -x strongswan_*.dsc src >&2
cd src
# A Debian patch touches src/libtls/Makefile.am; keep the shipped generated files newer so make
# does not ask for automake/autoconf.
touch aclocal.m4 && sleep 1 && touch configure config.h.in 2>/dev/null || true
find . -name Makefile.in -exec touch {} +

flags=(--prefix="$PREFIX" --sysconfdir="$PREFIX/etc" --with-systemdsystemunitdir="$PREFIX/lib/systemd/system"
       --disable-defaults)
for p in $PLUGINS; do flags+=(--enable-"$p"); done
./configure -q "${flags[@]}" >&2
make -s -j2 AUTOMAKE=: ACLOCAL=: AUTOCONF=: AUTOHEADER=: >&2
make -s install >&2

version=$(dpkg-parsechangelog -S Version)
took=$(( $(date +%s) - start ))
echo "strongswan $version with load-tester, built in ${took} s on $(date -u +%FT%TZ)" >"$PREFIX/.built"
echo "built in ${took} s: $(cat "$PREFIX/.built")" >&2
echo "$PREFIX"
