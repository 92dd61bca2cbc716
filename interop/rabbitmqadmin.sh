#!/usr/bin/env bash
# rabbitmqadmin (RabbitMQ's management CLI, e.g. Debian's rabbitmq-server package) against
# Pigeon's management HTTP API: the commands an operator types (list, declare, publish, get,
# export, import, delete), checked by their output, over HTTP and over HTTPS (`--ssl`, the
# management TLS listener, verifying the certificate against the CA interop/tls/make-certs.sh
# makes). Run by interop/run.sh (and so by .ci/run); by hand:
#   interop/rabbitmqadmin.sh [path/to/pigeon]   (default: target/debug/pigeon)
# RABBITMQADMIN_REQUIRED=1 (interop/run.sh sets it in CI) fails instead of skipping when
# rabbitmqadmin is not installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pigeon=${1:-$here/../target/debug/pigeon}
if ! command -v rabbitmqadmin >/dev/null; then
  if [ -n "${RABBITMQADMIN_REQUIRED:-}" ]; then
    echo "FAILED: rabbitmqadmin not installed (Debian: apt-get install rabbitmq-server)"
    exit 1
  fi
  echo "rabbitmqadmin not installed: skipped"
  exit 0
fi
[ -x "$pigeon" ] || { echo "no binary at $pigeon (cargo build -p pigeon)"; exit 1; }
dir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$here/tls/make-certs.sh" "$dir/certs" >/dev/null
# Free loopback ports; should one be taken before Pigeon binds it, Pigeon exits and others are
# tried.
for attempt in 1 2 3; do
  read -r amqp http https < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  {
    printf '[server]\n'
    printf 'amqp_listen = "127.0.0.1:%s"\n' "$amqp"
    printf 'management_listen = "127.0.0.1:%s"\n' "$http"
    printf 'management_tls_listen = "127.0.0.1:%s"\n' "$https"
    printf 'mqtt_listen = []\nmqtt_ws_listen = []\nprometheus_listen = []\nstream_listen = []\n'
    printf 'amqps_listen = []\nmqtts_listen = []\nmqtt_wss_listen = []\nprometheus_tls_listen = []\n'
    printf 'data_dir = "%s/data"\n\n' "$dir"
    printf '[tls]\ncertfile = "%s/certs/server.pem"\nkeyfile = "%s/certs/server.key"\n' "$dir" "$dir"
  } >"$dir/pigeon.toml"
  "$pigeon" --config "$dir/pigeon.toml" >"$dir/pigeon.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then break; fi
  wait "$pid" 2>/dev/null || true
  pid=""
  if [ "$attempt" -eq 3 ] || ! grep -q "Address already in use" "$dir/pigeon.log"; then
    echo "FAILED: Pigeon did not start:"
    tail -n 30 "$dir/pigeon.log"
    exit 1
  fi
done
admin() { rabbitmqadmin -H 127.0.0.1 -P "$http" -u guest -p guest "$@"; }
for _ in $(seq 50); do admin show overview >/dev/null 2>&1 && break; sleep 0.1; done
expect() { # expect WORD COMMAND...: the command's output contains WORD
  local word=$1; shift
  local out; out=$(admin "$@" 2>&1) || { echo "FAILED: $* -> $out"; exit 1; }
  grep -qF -- "$word" <<<"$out" || { echo "FAILED: $* did not print $word:"; echo "$out"; exit 1; }
  echo "ok: $*"
}
expect "3.13" show overview
expect "vhost declared" declare vhost name=interop
expect "user declared" declare user name=ops password=pw tags=monitoring
expect "permission declared" declare permission vhost=interop user=guest configure=.* write=.* read=.*
expect "queue declared" -V interop declare queue name=jobs durable=true
expect "exchange declared" -V interop declare exchange name=events type=topic
expect "binding declared" -V interop declare binding source=events destination=jobs routing_key='job.#'
expect "Message published" -V interop publish exchange=events routing_key=job.1 payload=hello
expect "hello" -V interop get queue=jobs ackmode=ack_requeue_true
expect "| jobs | 1" -V interop list queues name messages
expect "job.#" -V interop list bindings
expect "events" -V interop list exchanges
expect "ops" list users
expect "interop" list vhosts
expect "pigeon@" list nodes
expect "Exported" export "$dir/defs.json"
expect "queue deleted" -V interop delete queue name=jobs
expect "Uploaded" import "$dir/defs.json"
# Definitions carry no messages: the queue comes back empty.
expect "| jobs | 0" -V interop list queues name messages
# The same CLI over HTTPS: the certificate is checked against the CA, for the name localhost.
secure() {
  rabbitmqadmin --ssl --ssl-ca-cert-file="$dir/certs/ca.pem" -H localhost -P "$https" \
    -u guest -p guest "$@"
}
secure_expect() { # as expect, over HTTPS
  local word=$1; shift
  local out; out=$(secure "$@" 2>&1) || { echo "FAILED (https): $* -> $out"; exit 1; }
  grep -qF -- "$word" <<<"$out" || { echo "FAILED (https): $* did not print $word:"; echo "$out"; exit 1; }
  echo "ok (https): $*"
}
secure_expect "3.13" show overview
secure_expect "queue declared" -V interop declare queue name=secure
secure_expect "Message published" -V interop publish routing_key=secure payload=over-tls
secure_expect "over-tls" -V interop get queue=secure ackmode=ack_requeue_false
secure_expect "| secure | 0" -V interop list queues name messages
# A client that does not trust the certificate's CA is refused.
if rabbitmqadmin --ssl --ssl-ca-cert-file="$dir/certs/other-ca.pem" -H localhost -P "$https" \
  -u guest -p guest show overview >/dev/null 2>&1; then
  echo "FAILED (https): a client trusting another CA was served"
  exit 1
fi
echo "ok (https): a client trusting another CA is refused"
expect "vhost deleted" delete vhost name=interop
echo "rabbitmqadmin interop: all passed"
