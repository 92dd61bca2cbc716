#!/usr/bin/env bash
# rabbitmqadmin (RabbitMQ's management CLI, e.g. Debian's rabbitmq-server package) against
# Pigeon's management HTTP API: the commands an operator types, checked by their output.
# Usage: interop/rabbitmqadmin.sh [path/to/pigeon]   (default: target/debug/pigeon)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pigeon=${1:-$here/../target/debug/pigeon}
command -v rabbitmqadmin >/dev/null || { echo "rabbitmqadmin not installed: skipped"; exit 0; }
[ -x "$pigeon" ] || { echo "no binary at $pigeon (cargo build -p pigeon)"; exit 1; }
dir=$(mktemp -d)
read -r amqp http < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
printf '[server]\namqp_listen = "127.0.0.1:%s"\nmqtt_listen = []\nmanagement_listen = "127.0.0.1:%s"\nprometheus_listen = []\nmqtt_ws_listen = []\ndata_dir = "%s/data"\n' \
  "$amqp" "$http" "$dir" >"$dir/pigeon.toml"
"$pigeon" --config "$dir/pigeon.toml" >"$dir/pigeon.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
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
expect "vhost deleted" delete vhost name=interop
echo "rabbitmqadmin interop: all passed"
