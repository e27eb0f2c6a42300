#!/usr/bin/env bash
# Gate a pull request on what its policy changes do to connectivity, with no cluster.
#
# Compares the Kubernetes manifests under MANIFEST_DIR as they are at BASE_REF (the
# target branch) with the working tree (the pull request), using
# `kubectl npexec --offline --diff`: NetworkPolicy connectivity in np-guard's notation
# and AuthorizationPolicy decisions per source identity and port. Prints the changes
# as a table (and writes them as JSON to $REPORT when set) and exits:
#   0  no change of the kind $FAIL_ON names
#   1  such a change exists (default FAIL_ON=newly-denied: the PR would cut traffic)
#   2  bad input (a manifest that does not parse, a bad flag)
#
# Usage: policy-diff.sh [BASE_REF [MANIFEST_DIR]]   (defaults: origin/main, .)
# Environment: FAIL_ON=newly-denied|newly-allowed|any, REPORT=changes.json,
#              NPEXEC=path to kubectl-npexec (default: kubectl-npexec on PATH).
# Run it from the repository's top directory, with the base ref fetched.
set -euo pipefail

base_ref=${1:-origin/main}
dir=${2:-.}
fail_on=${FAIL_ON:-newly-denied}
npexec=${NPEXEC:-kubectl-npexec}

before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT

# The manifests as the base branch has them (none if the directory is new there).
if git cat-file -e "${base_ref}:${dir}" 2>/dev/null; then
  git archive --format=tar "$base_ref" -- "$dir" | tar -x -C "$before"
fi
mkdir -p "$before/$dir"
# An empty model is a valid "before": give the reader a file to find.
printf '# empty\n' > "$before/$dir/.policy-diff-empty.yaml"
after_empty=
if ! find "$dir" -name '*.yaml' -o -name '*.yml' -o -name '*.json' | grep -q .; then
  after_empty=$(mktemp -d)
  printf '# empty\n' > "$after_empty/empty.yaml"
fi

if [ -n "${REPORT:-}" ]; then
  "$npexec" --offline --before "$before/$dir" --after "${after_empty:-$dir}" --diff \
    -o json --fail-on any > "$REPORT" || [ $? -eq 1 ]
fi
set +e
"$npexec" --offline --before "$before/$dir" --after "${after_empty:-$dir}" --diff \
  -o wide --fail-on "$fail_on"
rc=$?
set -e
[ -n "$after_empty" ] && rm -rf "$after_empty"
case $rc in
  0) echo "policy-diff: no ${fail_on} change against ${base_ref}" ;;
  1) echo "policy-diff: ${fail_on} changes against ${base_ref} (see above)" >&2 ;;
esac
exit "$rc"
