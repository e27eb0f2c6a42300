#!/usr/bin/env bash
# make install PREFIX=...: build the three plugins in release mode and put them, with their
# completion helpers, in PREFIX/bin (default ~/.local/bin), where kubectl finds plugins by name.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-$HOME/.local}
bindir="$prefix/bin"
PLUGINS=(npexec rbaclog authzcheck)
pkgs=()
for p in "${PLUGINS[@]}"; do pkgs+=(-p "kubectl-$p"); done
cargo build --release --locked "${pkgs[@]}"
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
mkdir -p "$bindir"
for p in "${PLUGINS[@]}"; do
  install -m 0755 "$target_dir/release/kubectl-$p" "$bindir/kubectl-$p"
  install -m 0755 "scripts/completion/kubectl_complete-$p" "$bindir/kubectl_complete-$p"
done
echo "installed kubectl-{${PLUGINS[*]// /,}} and their completion helpers in $bindir" >&2
case ":$PATH:" in *":$bindir:"*) ;; *) echo "note: add $bindir to your PATH so kubectl finds the plugins" >&2 ;; esac
