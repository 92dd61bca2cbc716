#!/usr/bin/env bash
# Runs the interop scenarios, Python (pika) and Node (amqplib), against an AMQP 0-9-1 broker.
#
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f interop/run.sh   # a broker that is already running
#   interop/run.sh                                                   # builds Pigeon (debug), starts it
#                                                                    # on a free port, stops it after
#
# Dependencies go into interop/.venv and interop/node/node_modules, pinned by
# python/requirements.txt and node/package-lock.json. Exits non-zero if any scenario fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

section() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'interop: %s\n' "$*" >&2
  exit 1
}

# --- dependencies -------------------------------------------------------------------------------
section "Python dependencies (interop/.venv)"
venv="$here/.venv"
if ! "$venv/bin/python" -c '' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" ||
    die "could not create $venv; on Debian or Ubuntu install python3-venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -Ei '^(pika|pytest) '

section "Node dependencies (interop/node/node_modules)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "Node.js 20 or newer is needed, found $(node --version)"
(cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
echo "node $(node --version), amqplib $(node -p 'require(process.argv[1]).version' "$here/node/node_modules/amqplib/package.json")"

# --- the broker ---------------------------------------------------------------------------------
broker_pid=""
broker_dir=""
stop_broker() {
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill "$broker_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$broker_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  broker_pid=""
  if [ -n "$broker_dir" ]; then rm -rf "$broker_dir"; fi
}
trap stop_broker EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_broker_log() {
  if [ -n "$broker_dir" ] && [ -s "$broker_dir/pigeon.log" ]; then
    section "Last lines of Pigeon's log"
    tail -n 60 "$broker_dir/pigeon.log"
  fi
}

if [ -z "${AMQP_URL:-}" ]; then
  section "Building Pigeon (debug)"
  (cd "$root" && cargo build -p pigeon)
  target_dir="${CARGO_TARGET_DIR:-target}"
  case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
  pigeon="$target_dir/debug/pigeon"
  [ -x "$pigeon" ] || die "no binary at $pigeon after cargo build"

  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  section "Starting Pigeon on 127.0.0.1:$port"
  broker_dir="$(mktemp -d)"
  # Run it in a scratch directory so nothing it writes lands in the repository.
  (cd "$broker_dir" && exec "$pigeon" --amqp-listen "127.0.0.1:$port") >"$broker_dir/pigeon.log" 2>&1 &
  broker_pid=$!
  deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$broker_pid" 2>/dev/null; then
      show_broker_log
      die "Pigeon exited before accepting connections on port $port"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_broker_log
      die "Pigeon did not accept connections on port $port within 30s"
    fi
    sleep 0.1
  done
  echo "Pigeon (pid $broker_pid) accepts connections"
  export AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2f"
fi
export AMQP_URL

# --- the scenarios ------------------------------------------------------------------------------
# Each scenario bounds its own waits; this caps a whole suite in case something hangs anyway.
suite_timeout="${INTEROP_SUITE_TIMEOUT:-300}"
shown_url="$(printf '%s' "$AMQP_URL" | sed -E 's#//[^@/]*@#//***@#')"
python_result=passed
node_result=passed

section "Checking that $shown_url answers"
if ! (cd "$here/python" && "$venv/bin/python" -c '
import sys
from helpers import AMQP_URL, connect
try:
    conn = connect()
except Exception as err:
    sys.exit(f"interop: cannot open an AMQP connection: {err!r}")
props = conn._impl.server_properties
print("connected to", props.get("product", "?"), props.get("version", "?"))
conn.close()
'); then
  show_broker_log
  exit 1
fi

section "Python scenarios (pika) against $shown_url"
(cd "$here/python" && timeout -k 10 "$suite_timeout" "$venv/bin/python" -m pytest) || python_result=FAILED

section "Node scenarios (amqplib) against $shown_url"
(cd "$here/node" && timeout -k 10 "$suite_timeout" node --test test/*.test.js) || node_result=FAILED

section "Interop: python $python_result, node $node_result"
if [ "$python_result" != passed ] || [ "$node_result" != passed ]; then
  show_broker_log
  exit 1
fi
