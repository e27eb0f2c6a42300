#!/usr/bin/env bash
# make install PREFIX=...: build the three plugins in release mode and put them, with their
# completion helpers, in PREFIX/bin (default ~/.local/bin), where kubectl finds plugins by name
# and kubectl (1.26 or later) finds kubectl_complete-NAME for tab completion.
#
# INSTALL_PREBUILT=DIR installs DIR/kubectl-NAME instead of building (tests use the debug
# binaries `make test` already built). INSTALL_LINK=1 links the binaries instead of copying
# them (a development install that follows rebuilds; the helpers are always copied).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-${PREFIX:-$HOME/.local}}
[ -n "$prefix" ] || { echo "install: empty PREFIX" >&2; exit 2; }
bindir="$prefix/bin"
PLUGINS=(npexec rbaclog authzcheck)

if [ -n "${INSTALL_PREBUILT:-}" ]; then
  src=$INSTALL_PREBUILT
else
  pkgs=()
  for p in "${PLUGINS[@]}"; do pkgs+=(-p "kubectl-$p"); done
  cargo build --release --locked "${pkgs[@]}"
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  src="$target_dir/release"
fi
[ -d "$src" ] || { echo "install: no such directory: $src" >&2; exit 2; }
src=$(cd "$src" && pwd)
for p in "${PLUGINS[@]}"; do
  [ -x "$src/kubectl-$p" ] || { echo "install: $src/kubectl-$p not built" >&2; exit 2; }
done

mkdir -p "$bindir"
for p in "${PLUGINS[@]}"; do
  if [ "${INSTALL_LINK:-0}" = 1 ]; then
    ln -sfn "$src/kubectl-$p" "$bindir/kubectl-$p"
  else
    # Replace rather than overwrite in place: a running copy keeps its inode.
    rm -f "$bindir/kubectl-$p"
    install -m 0755 "$src/kubectl-$p" "$bindir/kubectl-$p"
  fi
  install -m 0755 "scripts/completion/kubectl_complete-$p" "$bindir/kubectl_complete-$p"
done
echo "installed kubectl-{$(IFS=,; echo "${PLUGINS[*]}")} and their completion helpers in $bindir" >&2
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "note: add $bindir to your PATH so kubectl finds the plugins" >&2 ;;
esac
