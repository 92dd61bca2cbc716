#!/usr/bin/env bash
# Runs the interop scenarios against a broker: AMQP 0-9-1 with Python (pika) and Node (amqplib),
# MQTT 3.1.1/5.0 with Python (paho-mqtt), Node (mqtt.js) and Mosquitto's mosquitto_pub/sub/rr
# (interop/mosquitto/run.sh), and both protocols together (MQTT in, AMQP out and back).
#
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f interop/run.sh   # a broker that is already running
#   AMQP_URL=... MQTT_URL=mqtt://127.0.0.1:1883 interop/run.sh       # ... with MQTT too (without
#                                                                    # MQTT_URL the MQTT ones are skipped)
#   interop/run.sh                                                   # builds Pigeon (debug), starts it
#                                                                    # on free loopback ports, stops it after
#
# PAHO_TESTING_DIR=/path/to/paho.mqtt.testing/interoperability also runs the Eclipse Paho client
# conformance tests (interop/paho/README.md says how to get them; not gating: some need broker
# features Pigeon lacks).
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
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -Ei '^(pika|paho-mqtt|pytest) '

section "Node dependencies (interop/node/node_modules)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "Node.js 20 or newer is needed, found $(node --version)"
(cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
version_of() { node -p 'require(process.argv[1]).version' "$here/node/node_modules/$1/package.json"; }
echo "node $(node --version), amqplib $(version_of amqplib), mqtt $(version_of mqtt)"

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

  # Both listeners on free loopback ports (none on a default port). The ports are free when
  # chosen, but another process may take one before Pigeon binds it: Pigeon then exits with
  # "Address already in use" and new ports are tried.
  broker_dir="$(mktemp -d)"
  for attempt in 1 2 3; do
    read -r port mqtt_port < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    section "Starting Pigeon: AMQP on 127.0.0.1:$port, MQTT on 127.0.0.1:$mqtt_port"
    printf '[server]\namqp_listen = "127.0.0.1:%s"\nmqtt_listen = "127.0.0.1:%s"\nmanagement_listen = []\n' \
      "$port" "$mqtt_port" >"$broker_dir/pigeon.toml"
    # Run it in a scratch directory so nothing it writes lands in the repository.
    (cd "$broker_dir" && exec "$pigeon" --config pigeon.toml) >"$broker_dir/pigeon.log" 2>&1 &
    broker_pid=$!
    deadline=$((SECONDS + 30))
    up=yes
    for p in "$port" "$mqtt_port"; do
      until kill -0 "$broker_pid" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
          up=no
          break 2
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
          show_broker_log
          die "Pigeon did not accept connections on port $p within 30s"
        fi
        sleep 0.1
      done
    done
    # Still running once both answer: the ports are its own.
    if [ "$up" = yes ] && kill -0 "$broker_pid" 2>/dev/null; then break; fi
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
    if [ "$attempt" -eq 3 ] || ! grep -q "Address already in use" "$broker_dir/pigeon.log"; then
      show_broker_log
      die "Pigeon exited before accepting connections"
    fi
    echo "interop: a port was taken meanwhile; trying others"
  done
  echo "Pigeon (pid $broker_pid) accepts connections"
  export AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2f"
  export MQTT_URL="mqtt://127.0.0.1:$mqtt_port"
fi
export AMQP_URL

# --- the scenarios ------------------------------------------------------------------------------
# Each scenario bounds its own waits; this caps a whole suite in case something hangs anyway.
suite_timeout="${INTEROP_SUITE_TIMEOUT:-300}"
shown_url="$(printf '%s' "$AMQP_URL" | sed -E 's#//[^@/]*@#//***@#')"
python_result=passed
node_result=passed
mosquitto_result=passed
paho_result=""
# Without MQTT_URL (a broker given by AMQP_URL alone) the MQTT scenarios are left out.
python_skip=()
node_skip='^$' # matches no file name
if [ -z "${MQTT_URL:-}" ]; then
  echo "interop: MQTT_URL not set, MQTT scenarios skipped"
  python_skip=(--ignore-glob='test_mqtt_*')
  node_skip='^test/mqtt'
  mosquitto_result=skipped
else
  export MQTT_URL
fi
node_tests=()
for f in "$here"/node/test/*.test.js; do
  f="test/${f##*/}"
  [[ "$f" =~ $node_skip ]] || node_tests+=("$f")
done

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

section "Python scenarios (pika, paho-mqtt) against $shown_url${MQTT_URL:+ and $MQTT_URL}"
(cd "$here/python" && timeout -k 10 "$suite_timeout" "$venv/bin/python" -m pytest "${python_skip[@]}") || python_result=FAILED

section "Node scenarios (amqplib, mqtt.js) against $shown_url${MQTT_URL:+ and $MQTT_URL}"
(cd "$here/node" && timeout -k 10 "$suite_timeout" node --test "${node_tests[@]}") || node_result=FAILED

if [ "$mosquitto_result" != skipped ]; then
  section "MQTT scenarios (mosquitto_pub, mosquitto_sub, mosquitto_rr) against $MQTT_URL"
  if command -v mosquitto_sub >/dev/null || [ -n "${CI:-}" ]; then
    timeout -k 10 "$suite_timeout" "$here/mosquitto/run.sh" || mosquitto_result=FAILED
  else
    echo "interop: mosquitto_sub not found (Debian: apt-get install mosquitto-clients); skipped"
    mosquitto_result=skipped
  fi
fi

if [ -n "${PAHO_TESTING_DIR:-}" ] && [ -n "${MQTT_URL:-}" ]; then
  section "Eclipse Paho MQTT client conformance tests (not gating) against $MQTT_URL"
  hostport="${MQTT_URL#mqtt://}"
  "$venv/bin/python" "$here/paho/run_paho.py" --suite "$PAHO_TESTING_DIR" \
    --host "${hostport%:*}" --port "${hostport##*:}" && paho_result=", paho passed" ||
    paho_result=", paho FAILED (not gating)"
fi

section "Interop: python $python_result, node $node_result, mosquitto $mosquitto_result$paho_result"
if [ "$python_result" != passed ] || [ "$node_result" != passed ] || [ "$mosquitto_result" = FAILED ]; then
  show_broker_log
  exit 1
fi
