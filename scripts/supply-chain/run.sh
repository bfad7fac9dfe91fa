#!/usr/bin/env bash
# The supply-chain steps behind `make sbom|slsa|sign|verify` (see docs/governance.md):
#   dist     build the binary (PROFILE=release|debug) and copy it to $DIST
#   sbom     CycloneDX SBOM of the binary's crates ($DIST/bkg-db.cdx.json), validated against the
#            CycloneDX schema; the web admin's SBOM too once web/admin exists
#   slsa     SLSA v1 provenance for the binary and the SBOMs ($DIST/bkg-db.intoto.json)
#   sign     a cosign-format signature (base64 DER ECDSA P-256 over SHA-256) beside every
#            artifact, and the public key ($DIST/signing-key.pub.pem). The key is SIGN_KEY (a PEM
#            EC P-256 private key); SIGN_THROWAWAY=1 makes a throwaway one (CI)
#   verify   every signature with openssl (and the provenance's digests, the SBOM's schema)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/scripts/supply-chain"
DIST=${DIST:-$root/dist}
PROFILE=${PROFILE:-release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bkg-target}
venv=${BKG_VENV:-$HOME/.cache/bkg-venv}
CYCLONEDX_LIB_VERSION=11.12.0

python_with_cyclonedx() {
  if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('cyclonedx-python-lib') != '$CYCLONEDX_LIB_VERSION')" >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "cyclonedx-python-lib[json-validation]==$CYCLONEDX_LIB_VERSION"
  fi
  echo "$venv/bin/python"
}

artifacts() {
  for f in "$DIST/bkg-db" "$DIST"/*.cdx.json "$DIST"/*.intoto.json; do
    [[ -f $f ]] && echo "$f"
  done
}

step=${1:?usage: run.sh dist|sbom|slsa|sign|verify}
mkdir -p "$DIST"
case $step in
  dist)
    flag=()
    [[ $PROFILE == release ]] && flag=(--release)
    date -u +%Y-%m-%dT%H:%M:%SZ > "$DIST/.build-started"
    (cd "$root" && cargo build --locked "${flag[@]}" -p bkg-db --bin bkg-db)
    cp "$CARGO_TARGET_DIR/$PROFILE/bkg-db" "$DIST/bkg-db"
    echo "dist: $DIST/bkg-db ($PROFILE build)"
    ;;
  sbom)
    py=$(python_with_cyclonedx)
    python3 "$here/sbom.py" --out "$DIST/bkg-db.cdx.json" --binary "$DIST/bkg-db"
    if [[ -f $root/web/admin/package-lock.json ]]; then
      # The dashboard's dependencies as installed from its lock file (scripts/web.sh installs them).
      "$root/scripts/web.sh" deps
      (cd "$root/web/admin" && npx --yes @cyclonedx/cyclonedx-npm@6.0.1 --omit dev --output-format JSON \
        --output-file "$DIST/web-admin.cdx.json")
    else
      echo "sbom: web/admin does not exist yet: no npm SBOM"
    fi
    "$py" "$here/validate-sbom.py" "$DIST"/*.cdx.json
    ;;
  slsa)
    subjects=()
    for f in "$DIST"/*.cdx.json; do [[ -f $f ]] && subjects+=(--subject "$f"); done
    started=()
    [[ -f $DIST/.build-started ]] && started=(--started "$(cat "$DIST/.build-started")")
    python3 "$here/slsa.py" --binary "$DIST/bkg-db" --profile "$PROFILE" --out "$DIST/bkg-db.intoto.json" \
      "${subjects[@]}" "${started[@]}"
    python3 "$here/check-provenance.py" "$DIST/bkg-db.intoto.json" "$DIST"
    ;;
  sign)
    key=${SIGN_KEY:-}
    if [[ -z $key ]]; then
      if [[ ${SIGN_THROWAWAY:-0} != 1 ]]; then
        echo "sign: set SIGN_KEY to a PEM EC P-256 private key (or SIGN_THROWAWAY=1 for a throwaway key)" >&2
        exit 1
      fi
      keydir=$(mktemp -d)
      trap 'rm -rf "$keydir"' EXIT
      key=$keydir/throwaway.pem
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
      echo "sign: throwaway key (its public half is $DIST/signing-key.pub.pem)"
    fi
    openssl pkey -in "$key" -pubout -out "$DIST/signing-key.pub.pem"
    n=0
    while read -r f; do
      openssl dgst -sha256 -sign "$key" -out "$f.sig.der" "$f"
      base64 -w0 "$f.sig.der" > "$f.sig"
      rm -f "$f.sig.der"
      n=$((n + 1))
    done < <(artifacts)
    echo "sign: $n artifact(s) signed in $DIST"
    ;;
  verify)
    pub=${VERIFY_KEY:-$DIST/signing-key.pub.pem}
    n=0
    while read -r f; do
      if [[ ! -f $f.sig ]]; then
        echo "verify: $f has no signature" >&2
        exit 1
      fi
      der=$(mktemp)
      base64 -d "$f.sig" > "$der"
      if ! openssl dgst -sha256 -verify "$pub" -signature "$der" "$f" >/dev/null; then
        rm -f "$der"
        echo "verify: $f: the signature does not verify with $pub" >&2
        exit 1
      fi
      rm -f "$der"
      n=$((n + 1))
    done < <(artifacts)
    ((n > 0)) || { echo "verify: nothing to verify in $DIST" >&2; exit 1; }
    python3 "$here/check-provenance.py" "$DIST/bkg-db.intoto.json" "$DIST"
    echo "verify: $n signature(s) good (openssl, key $pub)"
    ;;
  *)
    echo "run.sh: unknown step $step" >&2
    exit 2
    ;;
esac
