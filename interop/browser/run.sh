#!/usr/bin/env bash
# The web dashboard in a real browser: Debian's chromium, headless, driven by playwright-core
# (interop/browser/dashboard.test.js), against a Pigeon this script builds (debug) and starts
# on free loopback ports with its management listener, or against a running one.
#
#   interop/browser/run.sh                 # build, start Pigeon, run the scenarios, stop it
#   interop/browser/run.sh --screenshots   # ... and save screenshots to docs/screenshots/
#   PIGEON_BIN=/path/to/pigeon interop/browser/run.sh   # start that binary instead of building one
#   PIGEON_HTTP_URL=http://127.0.0.1:15672 AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
#     [MQTT_URL=mqtt://127.0.0.1:1883] interop/browser/run.sh   # a broker that is already running
#
# Needs Node.js 20+ and chromium (Debian: apt-get install chromium; CHROMIUM=path for another).
# Without chromium the scenarios are skipped, unless CI is set (then it fails). Nothing
# downloads a browser: playwright-core only drives the one installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
screenshots=""
for arg in "$@"; do
  case "$arg" in
    --screenshots) screenshots="$root/docs/screenshots" ;;
    *) echo "usage: $0 [--screenshots]" >&2; exit 2 ;;
  esac
done

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ -n "${CI:-}" ]; then
    echo "browser: no chromium at $chromium (Debian: apt-get install chromium)" >&2
    exit 1
  fi
  echo "browser: no chromium at $chromium (Debian: apt-get install chromium); skipped"
  exit 0
fi
export CHROMIUM="$chromium"

(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
echo "node $(node --version), $("$chromium" --version 2>/dev/null | tail -n 1), playwright-core $(cd "$here" && node -p 'require("playwright-core/package.json").version')"

pid=""
dir=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "$dir" ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

if [ -z "${PIGEON_HTTP_URL:-}" ]; then
  if [ -n "${PIGEON_BIN:-}" ]; then
    # A binary built elsewhere (e.g. a copy, when several worktrees share one target dir).
    pigeon="$PIGEON_BIN"
  else
    (cd "$root" && cargo build -p pigeon)
    target_dir="${CARGO_TARGET_DIR:-target}"
    case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
    pigeon="$target_dir/debug/pigeon"
  fi
  dir="$(mktemp -d)"
  for attempt in 1 2 3; do
    read -r amqp http mqtt < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    printf '[server]\namqp_listen = "127.0.0.1:%s"\nmanagement_listen = "127.0.0.1:%s"\nmqtt_listen = "127.0.0.1:%s"\nmqtt_ws_listen = []\nprometheus_listen = []\nstream_listen = []\ndata_dir = "%s/data"\n' \
      "$amqp" "$http" "$mqtt" "$dir" >"$dir/pigeon.toml"
    (cd "$dir" && exec "$pigeon" --config pigeon.toml) >"$dir/pigeon.log" 2>&1 &
    pid=$!
    up=no
    for _ in $(seq 300); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$amqp") 2>/dev/null; then
        up=yes
        break
      fi
      sleep 0.1
    done
    if [ "$up" = yes ]; then break; fi
    wait "$pid" 2>/dev/null || true
    pid=""
    if [ "$attempt" -eq 3 ] || ! grep -q "Address already in use" "$dir/pigeon.log"; then
      tail -n 40 "$dir/pigeon.log" >&2
      echo "browser: Pigeon did not start" >&2
      exit 1
    fi
  done
  export PIGEON_HTTP_URL="http://127.0.0.1:$http"
  export AMQP_URL="amqp://guest:guest@127.0.0.1:$amqp/%2f"
  export MQTT_URL="mqtt://127.0.0.1:$mqtt"
  echo "Pigeon (pid $pid): dashboard at $PIGEON_HTTP_URL"
fi

if [ -n "$screenshots" ]; then export SCREENSHOTS="$screenshots"; fi
status=0
(cd "$here" && timeout -k 10 "${INTEROP_SUITE_TIMEOUT:-300}" node --test dashboard.test.js) || status=$?
if [ "$status" -ne 0 ] && [ -n "$dir" ]; then
  echo "--- last lines of Pigeon's log" >&2
  tail -n 40 "$dir/pigeon.log" >&2
fi
if [ -n "$screenshots" ] && [ "$status" -eq 0 ]; then echo "screenshots in $screenshots"; fi
exit "$status"
