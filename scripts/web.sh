#!/usr/bin/env bash
# The admin dashboard (web/admin): install its pinned dependencies, then
#   scripts/web.sh deps    only the install
#   scripts/web.sh build   static export into web/admin/out (the binary embeds it when built)
#   scripts/web.sh lint    ESLint and tsc --noEmit
#   scripts/web.sh test    Vitest, then the end-to-end run in Chromium against the debug build
# Needs node >= 20 and npm; the end-to-end run needs Debian's chromium (scripts/install-test-deps.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
web=$root/web/admin
command -v npm >/dev/null || { echo "web: npm is required (Node.js 20)" >&2; exit 1; }
cd "$web"
# npm ci only when the lock file changed since the last install.
stamp=node_modules/.bkg-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
case ${1:-build} in
  deps) ;;
  build)
    npm run --silent build
    ;;
  lint)
    npm run --silent lint
    npm run --silent typecheck
    ;;
  test)
    npm run --silent test
    BKG_BIN=${BKG_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/bkg-target}/debug/bkg-db} \
      CHROMIUM=${CHROMIUM:-$(command -v chromium || true)} npm run --silent e2e
    ;;
  *)
    echo "usage: scripts/web.sh deps|build|lint|test" >&2
    exit 2
    ;;
esac
