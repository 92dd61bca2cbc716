#!/usr/bin/env bash
# Runs the interop scenarios against a broker: AMQP 0-9-1 with Python (pika) and Node (amqplib),
# MQTT 3.1.1/5.0 with Python (paho-mqtt), Node (mqtt.js) and Mosquitto's mosquitto_pub/sub/rr
# (interop/mosquitto/run.sh), both protocols together (MQTT in, AMQP out and back), and the
# management HTTP API with RabbitMQ's rabbitmqadmin over HTTP and HTTPS (interop/rabbitmqadmin.sh,
# on a Pigeon of its own; skipped without rabbitmqadmin, except in CI).
#
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f interop/run.sh   # a broker that is already running
#   AMQP_URL=... MQTT_URL=mqtt://127.0.0.1:1883 interop/run.sh       # ... with MQTT too (without
#                                                                    # MQTT_URL the MQTT ones are skipped)
#   ... MQTT_WS_URL=ws://127.0.0.1:8083/mqtt interop/run.sh            # ... and MQTT over WebSocket (started
#                                                                    # by the script on its own broker)
#   interop/run.sh                                                   # builds Pigeon (debug), starts it
#                                                                    # on free loopback ports, stops it after
#   PIGEON_BIN=/path/to/pigeon interop/run.sh                        # ... that binary instead of building
#
# INTEROP_TLS=1 (the default; 0 leaves them out) also runs the TLS and WebSocket scenarios (python/tls_*.py, node/test/tls_*.js,
# mosquitto/tls_run.sh): pika and amqplib over AMQPS (CA verification, client certificate with
# SASL EXTERNAL), paho-mqtt, mqtt.js and mosquitto_pub/sub over MQTTS, WebSocket and secure
# WebSocket. When this script starts Pigeon it makes the certificates (interop/tls/make-certs.sh:
# a CA, a server certificate for localhost/127.0.0.1/::1, a client certificate with CN
# interop-cert-user, a user Pigeon is configured with) and adds the TLS and WebSocket listeners
# on free ports. Against a running broker, give AMQPS_URL, MQTTS_URL, MQTT_WS_URL, MQTT_WSS_URL
# (any subset; scenarios without theirs are skipped) and TLS_DIR, a directory as make-certs.sh
# makes it whose client certificate's CN is a user the broker knows (INTEROP_MQTT5=0 for a broker
# without MQTT 5.0). INTEROP_TLS=only runs the TLS scenarios alone.
#
# PIGEON_STREAM_TESTS=1 (the default; 0 turns them off) runs the RabbitMQ Stream protocol scenarios
# (python/test_stream_*.py with rstream, node/test/stream_*.test.js with rabbitmq-stream-js-client): the
# Pigeon this script starts then gets a stream listener on a free loopback port (stream_listen,
# advertised as 127.0.0.1 and that port); against a running broker, give its STREAM_URL
# (rabbitmq-stream://guest:guest@127.0.0.1:5552/%2f). The scenarios skip what the RabbitMQ they
# run against lacks (RabbitMQ 3.10: StreamStats, single active consumer, CreateSuperStream,
# filtering), never for Pigeon.
#
# PAHO_TESTING_DIR=/path/to/paho.mqtt.testing/interoperability also runs the Eclipse Paho client
# conformance tests (interop/paho/README.md says how to get them; not gating: some need broker
# features Pigeon lacks).
#
# The web dashboard's browser scenarios (interop/browser/run.sh: Debian's chromium driven by
# playwright-core) run last, on a Pigeon of their own with the management listener.
#
# Dependencies go into interop/.venv and interop/node/node_modules (interop/browser/node_modules),
# pinned by python/requirements.txt and the package-lock.json files. Exits non-zero if any scenario fails.
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
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -Ei '^(pika|paho-mqtt|pytest|rstream) '

section "Node dependencies (interop/node/node_modules)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "Node.js 20 or newer is needed, found $(node --version)"
(cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
version_of() { node -p 'require(process.argv[1]).version' "$here/node/node_modules/$1/package.json"; }
echo "node $(node --version), amqplib $(version_of amqplib), mqtt $(version_of mqtt), rabbitmq-stream-js-client $(version_of rabbitmq-stream-js-client)"

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

INTEROP_TLS="${INTEROP_TLS:-1}"
PIGEON_STREAM_TESTS="${PIGEON_STREAM_TESTS:-1}"
tls_on() { [ "$INTEROP_TLS" = 1 ] || [ "$INTEROP_TLS" = only ]; }
# The user named in the client certificate's CN (SASL EXTERNAL, MQTT certificate login).
cert_user="interop-cert-user"

if [ -z "${AMQP_URL:-}" ]; then
  if [ -n "${PIGEON_BIN:-}" ]; then
    # A binary built elsewhere (e.g. copied out of a target directory shared by several
    # checkouts, whose debug/pigeon may be another checkout's).
    section "Using Pigeon at $PIGEON_BIN"
    pigeon="$PIGEON_BIN"
    [ -x "$pigeon" ] || die "PIGEON_BIN=$pigeon is not an executable"
  else
    section "Building Pigeon (debug)"
    (cd "$root" && cargo build -p pigeon)
    target_dir="${CARGO_TARGET_DIR:-target}"
    case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
    pigeon="$target_dir/debug/pigeon"
    [ -x "$pigeon" ] || die "no binary at $pigeon after cargo build"
  fi

  # Both listeners on free loopback ports (none on a default port). The ports are free when
  # chosen, but another process may take one before Pigeon binds it: Pigeon then exits with
  # "Address already in use" and new ports are tried.
  broker_dir="$(mktemp -d)"
  if tls_on; then
    export TLS_DIR="$broker_dir/certs"
    "$here/tls/make-certs.sh" "$TLS_DIR" "$cert_user"
  fi
  for attempt in 1 2 3; do
    read -r port mqtt_port amqps_port mqtts_port ws_port wss_port prom_port stream_port < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(8)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    section "Starting Pigeon: AMQP on 127.0.0.1:$port, MQTT on 127.0.0.1:$mqtt_port, MQTT over WebSocket on 127.0.0.1:$ws_port"
    printf '[server]\namqp_listen = "127.0.0.1:%s"\nmqtt_listen = "127.0.0.1:%s"\nmqtt_ws_listen = "127.0.0.1:%s"\nmanagement_listen = []\nprometheus_listen = "127.0.0.1:%s"\n' \
      "$port" "$mqtt_port" "$ws_port" "$prom_port" >"$broker_dir/pigeon.toml"
    # A Pigeon with the Stream protocol (it knows the stream_listen key) would otherwise bind its
    # default ports (5552, and 5551 with TLS) on every interface: they are given or turned off.
    wait_ports=("$port" "$mqtt_port" "$ws_port")
    if grep -qa stream_advertised_host "$pigeon"; then
      if [ "$PIGEON_STREAM_TESTS" = 1 ]; then
        echo "Stream protocol on 127.0.0.1:$stream_port"
        printf 'stream_listen = "127.0.0.1:%s"\nstream_advertised_host = "127.0.0.1"\nstream_advertised_port = %s\n' \
          "$stream_port" "$stream_port" >>"$broker_dir/pigeon.toml"
        wait_ports+=("$stream_port")
      else
        echo 'stream_listen = []' >>"$broker_dir/pigeon.toml"
      fi
      if tls_on; then echo 'stream_tls_listen = []' >>"$broker_dir/pigeon.toml"; fi
    elif [ "$PIGEON_STREAM_TESTS" = 1 ]; then
      die "PIGEON_STREAM_TESTS=1 but this Pigeon has no stream listener (no stream_listen key)"
    fi
    if tls_on; then
      echo "TLS: AMQPS $amqps_port, MQTTS $mqtts_port, secure WebSocket $wss_port"
      # Client certificates are asked for and verified, but optional (PLAIN over TLS goes on
      # without one), as RabbitMQ's verify_peer with fail_if_no_peer_cert = false. The
      # certificate's user must exist for EXTERNAL; its password is never used.
      cat >>"$broker_dir/pigeon.toml" <<EOF
amqps_listen = "127.0.0.1:$amqps_port"
mqtts_listen = "127.0.0.1:$mqtts_port"
mqtt_wss_listen = "127.0.0.1:$wss_port"
management_tls_listen = []
prometheus_tls_listen = []
# The certificate's user is named by its common name (RabbitMQ: ssl_cert_login_from = common_name).
ssl_cert_login_from = "common_name"
users = [
  { name = "guest", password = "guest", loopback_only = true },
  { name = "$cert_user", password = "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" },
]

[tls]
certfile = "$TLS_DIR/server.pem"
keyfile = "$TLS_DIR/server.key"
cacertfile = "$TLS_DIR/ca.pem"
verify = "verify_peer"
fail_if_no_peer_cert = false
EOF
    fi
    # Run it in a scratch directory so nothing it writes lands in the repository.
    (cd "$broker_dir" && exec "$pigeon" --config pigeon.toml) >"$broker_dir/pigeon.log" 2>&1 &
    broker_pid=$!
    deadline=$((SECONDS + 30))
    up=yes
    for p in "${wait_ports[@]}"; do
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
  export MQTT_WS_URL="ws://127.0.0.1:$ws_port/mqtt"
  if [ "$PIGEON_STREAM_TESTS" = 1 ]; then
    export STREAM_URL="rabbitmq-stream://guest:guest@127.0.0.1:$stream_port/%2f"
  fi
  # The Prometheus endpoint (python/test_prometheus.py; skipped without it).
  export PROMETHEUS_URL="http://127.0.0.1:$prom_port"
  if tls_on; then
    # The certificate names localhost: the TLS URLs use that name, the WebSocket one the address.
    export AMQPS_URL="amqps://guest:guest@localhost:$amqps_port/%2f"
    export MQTTS_URL="mqtts://localhost:$mqtts_port"
    export MQTT_WSS_URL="wss://localhost:$wss_port/mqtt"
    # A listener that did not open (a Pigeon without it yet) leaves its scenarios skipped, loudly.
    for var in AMQPS_URL MQTTS_URL MQTT_WSS_URL; do
      p="${!var##*:}"
      p="${p%%/*}"
      deadline=$((SECONDS + 10))
      until (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
          echo "interop: WARNING: nothing listens for $var (port $p): its scenarios are skipped"
          unset "$var"
          break
        fi
        sleep 0.1
      done
    done
  fi
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
# The Stream protocol scenarios: with PIGEON_STREAM_TESTS=1 and a STREAM_URL only.
if [ "$PIGEON_STREAM_TESTS" = 1 ] && [ -n "${STREAM_URL:-}" ]; then
  export STREAM_URL
  echo "interop: Stream protocol scenarios against $(printf '%s' "$STREAM_URL" | sed -E 's#//[^@/]*@#//***@#')"
elif [ "$PIGEON_STREAM_TESTS" = 1 ]; then
  die "PIGEON_STREAM_TESTS=1 against a running broker needs its STREAM_URL"
else
  echo "interop: Stream protocol scenarios not run (PIGEON_STREAM_TESTS=0)"
  unset STREAM_URL
  python_skip+=(--ignore-glob='test_stream_*')
fi
# The Node stream scenarios run on their own (below), with --test-force-exit:
# rabbitmq-stream-js-client 1.0.0 can leave a socket open after close(), which would keep a test
# file's process alive after its last test.
node_skip="$node_skip|^test/stream_"
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

if [ "$INTEROP_TLS" = only ]; then
  echo "interop: INTEROP_TLS=only: the TLS and WebSocket scenarios alone"
  python_result=skipped node_result=skipped mosquitto_result=skipped
fi

if [ "$python_result" != skipped ]; then
  section "Python scenarios (pika, paho-mqtt) against $shown_url${MQTT_URL:+ and $MQTT_URL}"
  (cd "$here/python" && timeout -k 10 "$suite_timeout" "$venv/bin/python" -m pytest "${python_skip[@]}") || python_result=FAILED
fi

if [ "$node_result" != skipped ]; then
  section "Node scenarios (amqplib, mqtt.js) against $shown_url${MQTT_URL:+ and $MQTT_URL}"
  (cd "$here/node" && timeout -k 10 "$suite_timeout" node --test "${node_tests[@]}") || node_result=FAILED
  if [ -n "${STREAM_URL:-}" ]; then
    section "Node Stream protocol scenarios (rabbitmq-stream-js-client)"
    (cd "$here/node" && timeout -k 10 "$suite_timeout" node --test --test-force-exit test/stream_*.test.js) || node_result=FAILED
  fi
fi

if [ "$mosquitto_result" != skipped ]; then
  section "MQTT scenarios (mosquitto_pub, mosquitto_sub, mosquitto_rr) against $MQTT_URL"
  if command -v mosquitto_sub >/dev/null || [ -n "${CI:-}" ]; then
    timeout -k 10 "$suite_timeout" "$here/mosquitto/run.sh" || mosquitto_result=FAILED
  else
    echo "interop: mosquitto_sub not found (Debian: apt-get install mosquitto-clients); skipped"
    mosquitto_result=skipped
  fi
fi

# --- rabbitmqadmin (the management HTTP API, over HTTP and HTTPS) ------------------------------------
# interop/rabbitmqadmin.sh starts a Pigeon of its own (the management listeners are off on the one
# above), so it needs the binary this script built: not run against a broker given by AMQP_URL.
rabbitmqadmin_result=skipped
if [ "$INTEROP_TLS" = only ]; then
  :
elif [ -z "${pigeon:-}" ]; then
  echo "interop: rabbitmqadmin scenarios need the Pigeon this script builds (AMQP_URL given): skipped"
else
  section "rabbitmqadmin (RabbitMQ's management CLI) against Pigeon's management API"
  # In CI a missing rabbitmqadmin is a failure (.ci/run installs Debian's rabbitmq-server for it
  # and sets RABBITMQADMIN_REQUIRED).
  if RABBITMQADMIN_REQUIRED="${RABBITMQADMIN_REQUIRED:-${CI:+1}}" timeout -k 10 "$suite_timeout" "$here/rabbitmqadmin.sh" "$pigeon"; then
    command -v rabbitmqadmin >/dev/null && rabbitmqadmin_result=passed
  else
    rabbitmqadmin_result=FAILED
  fi
fi

# --- TLS and WebSocket ---------------------------------------------------------------------------
tls_result=""
if tls_on; then
  if [ -n "${TLS_DIR:-}" ]; then
    export TLS_CA_FILE="${TLS_CA_FILE:-$TLS_DIR/ca.pem}"
    export TLS_CLIENT_CERT="${TLS_CLIENT_CERT:-$TLS_DIR/client.pem}"
    export TLS_CLIENT_KEY="${TLS_CLIENT_KEY:-$TLS_DIR/client.key}"
    export TLS_OTHER_CA="${TLS_OTHER_CA:-$TLS_DIR/other-ca.pem}"
    export TLS_UNTRUSTED_CERT="${TLS_UNTRUSTED_CERT:-$TLS_DIR/untrusted.pem}"
    export TLS_UNTRUSTED_KEY="${TLS_UNTRUSTED_KEY:-$TLS_DIR/untrusted.key}"
    export TLS_CERT_USER="${TLS_CERT_USER:-$(openssl x509 -in "$TLS_CLIENT_CERT" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= *//p')}"
  fi
  tls_result=", tls passed"
  section "TLS and WebSocket scenarios against: $(printf '%s ' "${AMQPS_URL:-}" "${MQTTS_URL:-}" \
    "${MQTT_WS_URL:-}" "${MQTT_WSS_URL:-}" | sed -E 's#//[^@/ ]*@#//***@#g')"
  if [ -z "${TLS_CA_FILE:-}" ]; then
    echo "interop: INTEROP_TLS needs TLS_DIR (or TLS_CA_FILE and the TLS_CLIENT_* files)"
    tls_result=", tls FAILED"
  else
    (cd "$here/python" && timeout -k 10 "$suite_timeout" "$venv/bin/python" -m pytest tls_amqp.py tls_mqtt.py) ||
      tls_result=", tls FAILED"
    (cd "$here/node" && timeout -k 10 "$suite_timeout" node --test test/tls_amqp.js test/tls_mqtt.js) ||
      tls_result=", tls FAILED"
    if [ -n "${MQTTS_URL:-}" ] && command -v mosquitto_sub >/dev/null; then
      timeout -k 10 "$suite_timeout" "$here/mosquitto/tls_run.sh" || tls_result=", tls FAILED"
    elif [ -n "${MQTTS_URL:-}" ]; then
      echo "interop: mosquitto_sub not found (Debian: apt-get install mosquitto-clients); its TLS scenarios skipped"
    fi
  fi
else
  echo "interop: TLS and WebSocket scenarios not run (INTEROP_TLS=1 runs them)"
fi

# --- the web dashboard in chromium ----------------------------------------------------------------
# interop/browser/run.sh starts a Pigeon of its own with the management listener (this script's
# has none), or uses PIGEON_HTTP_URL with AMQP_URL; without chromium it is skipped (fails in CI).
browser_result=""
if [ "$INTEROP_TLS" != only ] && { [ -n "${PIGEON_HTTP_URL:-}" ] || [ -n "$broker_dir" ]; }; then
  section "Web dashboard in chromium (interop/browser: playwright-core, amqplib)"
  "$here/browser/run.sh" && browser_result=", browser passed" || browser_result=", browser FAILED"
fi

if [ -n "${PAHO_TESTING_DIR:-}" ] && [ -n "${MQTT_URL:-}" ]; then
  section "Eclipse Paho MQTT client conformance tests (not gating) against $MQTT_URL"
  hostport="${MQTT_URL#mqtt://}"
  "$venv/bin/python" "$here/paho/run_paho.py" --suite "$PAHO_TESTING_DIR" \
    --host "${hostport%:*}" --port "${hostport##*:}" && paho_result=", paho passed" ||
    paho_result=", paho FAILED (not gating)"
fi

section "Interop: python $python_result, node $node_result, mosquitto $mosquitto_result, rabbitmqadmin $rabbitmqadmin_result$tls_result$browser_result$paho_result"
if [ "$python_result" = FAILED ] || [ "$node_result" = FAILED ] || [ "$mosquitto_result" = FAILED ] ||
  [ "$rabbitmqadmin_result" = FAILED ] || [ "$tls_result" = ", tls FAILED" ] || [ "$browser_result" = ", browser FAILED" ]; then
  show_broker_log
  exit 1
fi
