#!/usr/bin/env bash
# make dist: build release binaries for the targets this machine can build, pack one
# archive per plugin and platform (binary, completion helper, LICENSE), hash them, and
# render plugin-manifests/NAME.yaml from scripts/krew/ with the real checksums, listing
# exactly the platforms whose archives were built here. Never a placeholder checksum.
set -euo pipefail
cd "$(dirname "$0")/.."

PLUGINS=(npexec rbaclog authzcheck)
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' Cargo.toml)
REPO_URL=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^repository *= *"\(.*\)"/\1/p}' Cargo.toml)
[ -n "$VERSION" ] || { echo "dist: cannot read workspace version" >&2; exit 2; }

# Platforms: by default the host only (cross toolchains cannot be fetched here), built now.
# DIST_PREBUILT=DIR packs binaries built elsewhere instead (DIR/OS_ARCH/kubectl-NAME[.exe]),
# as the release workflow in .github/workflows/release.yml does for the full matrix.
# DIST_OUT=DIR writes DIR/dist and DIR/plugin-manifests instead (tests use it).
out=${DIST_OUT:-.}
mkdir -p "$out/dist" "$out/plugin-manifests"
platforms=()
if [ -n "${DIST_PREBUILT:-}" ]; then
  for d in "$DIST_PREBUILT"/*_*; do
    [ -d "$d" ] || continue
    b=$(basename "$d"); platforms+=("${b%_*} ${b#*_} $d")
  done
else
  host=$(rustc -vV | sed -n 's/^host: //p')
  case "$host" in
    x86_64-unknown-linux-gnu) osarch="linux amd64" ;;
    aarch64-unknown-linux-gnu) osarch="linux arm64" ;;
    x86_64-apple-darwin) osarch="darwin amd64" ;;
    aarch64-apple-darwin) osarch="darwin arm64" ;;
    x86_64-pc-windows-*) osarch="windows amd64" ;;
    *) echo "dist: unsupported host $host" >&2; exit 2 ;;
  esac
  pkgs=()
  for p in "${PLUGINS[@]}"; do pkgs+=(-p "kubectl-$p"); done
  cargo build --release --locked "${pkgs[@]}"
  target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  platforms=("$osarch $target_dir/release")
fi
[ ${#platforms[@]} -gt 0 ] || { echo "dist: no platform to pack" >&2; exit 2; }

out_abs=$(cd "$out" && pwd)
# Archives of an earlier run (another version or platform) must not be listed again.
rm -f "$out/dist/"kubectl-*_v*.tar.gz "$out/dist/"kubectl-*_v*.zip "$out/dist/SHA256SUMS"
for p in "${PLUGINS[@]}"; do
  : > "$out/dist/$p.platforms"
done

for entry in "${platforms[@]}"; do
  read -r os arch bindir <<<"$entry"
  for p in "${PLUGINS[@]}"; do
    exe="kubectl-$p"; [ "$os" = windows ] && exe="kubectl-$p.exe"
    stage=$(mktemp -d)
    install -m 0755 "$bindir/$exe" "$stage/$exe"
    install -m 0755 "scripts/completion/kubectl_complete-$p" "$stage/kubectl_complete-$p"
    install -m 0644 LICENSE "$stage/LICENSE"
    if [ "$os" = windows ]; then
      archive="kubectl-${p}_v${VERSION}_${os}_${arch}.zip"
      (cd "$stage" && zip -q -X "$out_abs/dist/$archive" "$exe" "kubectl_complete-$p" LICENSE)
    else
      archive="kubectl-${p}_v${VERSION}_${os}_${arch}.tar.gz"
      # Reproducible archive: fixed order, owner and mtime.
      tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
        -C "$stage" -cf - "$exe" "kubectl_complete-$p" LICENSE | gzip -n > "$out/dist/$archive"
    fi
    rm -rf "$stage"
    sum=$(sha256sum "$out/dist/$archive" | cut -d' ' -f1)
    echo "$os $arch $archive $sum $exe" >> "$out/dist/$p.platforms"
  done
done

# A YAML double-quoted scalar.
yaml_quote() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

render() {
  local p=$1 dest=$2 platforms=$3 SHORT HOMEPAGE_PATH
  # KEY=value lines, read as data (never sourced).
  SHORT=$(sed -n 's/^SHORT=//p' "scripts/krew/$p.meta")
  HOMEPAGE_PATH=$(sed -n 's/^HOMEPAGE_PATH=//p' "scripts/krew/$p.meta")
  [ -n "$SHORT" ] || { echo "dist: no SHORT in scripts/krew/$p.meta" >&2; exit 2; }
  {
    echo "apiVersion: krew.googlecontainertools.github.com/v1alpha2"
    echo "kind: Plugin"
    echo "metadata:"
    echo "  name: $p"
    echo "spec:"
    echo "  version: v$VERSION"
    echo "  homepage: $(yaml_quote "$REPO_URL$HOMEPAGE_PATH")"
    echo "  shortDescription: $(yaml_quote "$SHORT")"
    echo "  description: |"
    sed 's/^\(.\)/    \1/' "scripts/krew/$p.description"
    echo "  caveats: |"
    sed -e "s/@VERSION@/v$VERSION/g" -e 's/^\(.\)/    \1/' "scripts/krew/$p.caveats"
    echo "  platforms:"
    while read -r os arch archive sum exe; do
      echo "  - selector:"
      echo "      matchLabels:"
      echo "        os: $os"
      echo "        arch: $arch"
      echo "    uri: $REPO_URL/releases/download/v$VERSION/$archive"
      echo "    sha256: $sum"
      echo "    bin: $exe"
      echo "    files:"
      echo "    - from: $exe"
      echo "      to: ."
      echo "    - from: kubectl_complete-$p"
      echo "      to: ."
      echo "    - from: LICENSE"
      echo "      to: ."
    done < "$platforms"
  } > "$dest"
}

for p in "${PLUGINS[@]}"; do
  # Sorted by os then arch, so the manifest does not depend on directory order.
  sort -o "$out/dist/$p.platforms" "$out/dist/$p.platforms"
  render "$p" "$out/plugin-manifests/$p.yaml" "$out/dist/$p.platforms"
  rm -f "$out/dist/$p.platforms"
done
(
  cd "$out/dist"
  shopt -s nullglob
  sha256sum kubectl-*_v*.tar.gz kubectl-*_v*.zip > SHA256SUMS
)
echo "dist: archives in $out/dist/, manifests in $out/plugin-manifests/ (version v$VERSION)" >&2
