#!/usr/bin/env bash
# MQTT interop scenarios driven by Eclipse Mosquitto's command-line clients (Debian package
# mosquitto-clients: mosquitto_pub, mosquitto_sub, mosquitto_rr), against the broker at $MQTT_URL
# (mqtt://host:port; default mqtt://127.0.0.1:1883). Each scenario runs for MQTT 3.1.1 and 5.0
# where both apply.
#
#   MQTT_URL=mqtt://127.0.0.1:1883 interop/mosquitto/run.sh [SCENARIO ...]
#
# No sleep-and-hope: a subscriber runs with -d and the scenario waits for its "received SUBACK"
# line before anything is published; counts come from -C; every wait has a deadline
# (INTEROP_WAIT_SECONDS, default 10). Absence is checked with a sentinel published after what must
# not arrive. Ends with "mosquitto: N passed, N failed"; exits non-zero if any scenario failed.
set -uo pipefail

url="${MQTT_URL:-mqtt://127.0.0.1:1883}"
hostport="${url#mqtt://}"
hostport="${hostport%%/*}"
if [[ "$hostport" == *@* ]]; then
  echo "mosquitto: MQTT_URL with credentials is not supported here; use an anonymous URL" >&2
  exit 2
fi
host="${hostport%:*}"
port="${hostport##*:}"
[ "$port" != "$hostport" ] || port=1883
wait_s="${INTEROP_WAIT_SECONDS:-10}"

for tool in mosquitto_pub mosquitto_sub mosquitto_rr stdbuf; do
  command -v "$tool" >/dev/null || {
    echo "mosquitto: $tool not found; install Debian's mosquitto-clients" >&2
    exit 2
  }
done

work="$(mktemp -d)"
pids=()
cleanup() {
  stop "${pids[@]}"
  rm -rf "$work"
}
trap cleanup EXIT

run_id="$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
passed=0
failed=0

# --- helpers --------------------------------------------------------------------------------------
# Common options: broker, protocol version ($V: 311 or 5).
pub() { mosquitto_pub -h "$host" -p "$port" -V "$V" "$@"; }
sub() { mosquitto_sub -h "$host" -p "$port" -V "$V" "$@"; }

fail() {
  echo "$*" >"$work/reason"
  return 1
}

# spawn_sub NAME ARGS...: a background mosquitto_sub (debug on; give it -F "MSG|...") whose
# output goes to $work/NAME. Its pid is in $work/NAME.pid.
spawn_sub() {
  local name="$1"
  shift
  # Line-buffered: mosquitto_sub writes through stdio, fully buffered into a file otherwise.
  stdbuf -oL mosquitto_sub -h "$host" -p "$port" -V "$V" -d -W $((wait_s + 5)) "$@" >"$work/$name" 2>&1 &
  pids+=("$!")
  echo "$!" >"$work/$name.pid"
}

# start_sub NAME ARGS...: spawn_sub, then wait until the broker acknowledged the subscriptions.
start_sub() {
  spawn_sub "$@"
  wait_for "$1" "received SUBACK" 1 || fail "$1: no SUBACK within ${wait_s}s: $(tail -3 "$work/$1")"
}

# stop PID...: ends background clients without the shell reporting their death.
stop() {
  local pid
  for pid in "$@"; do
    kill "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null
  done
}

# wait_for NAME PATTERN COUNT: until $work/NAME has COUNT lines containing PATTERN.
wait_for() {
  local deadline=$((SECONDS + wait_s))
  # (grep -c prints nothing for a file not there yet: count 0.)
  local n
  while n="$(grep -c -F -- "$2" "$work/$1" 2>/dev/null)"; [ "${n:-0}" -lt "$3" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.02
  done
}

# messages NAME: the "MSG|" lines of a subscriber, without the prefix.
messages() { grep -F 'MSG|' "$work/$1" | sed 's/^MSG|//'; }

# expect_messages NAME WHAT EXPECTED: waits for as many messages as EXPECTED has lines, compares.
expect_messages() {
  local n
  n="$(printf '%s\n' "$3" | wc -l)"
  wait_for "$1" 'MSG|' "$n" || fail "$2: timed out after ${wait_s}s; got: $(messages "$1" | tr '\n' ' ')" || return 1
  local got
  got="$(messages "$1")"
  [ "$got" == "$3" ] || fail "$2: expected [$(echo "$3" | tr '\n' ' ')] got [$(echo "$got" | tr '\n' ' ')]"
}

# --- scenarios ------------------------------------------------------------------------------------
# Each scenario is a function using $V (protocol version) and $T (a topic prefix unique to it).

qos_round_trip() {
  local q
  for q in 0 1 2; do
    start_sub "sub$q" -q 2 -t "$T/q$q" -C 10 -F "MSG|%q|%r|%p" || return 1
    # One connection, -l: one message per line, in order.
    seq 0 9 | sed 's/^/m/' | pub -q "$q" -t "$T/q$q" -l || fail "mosquitto_pub -q $q failed" || return 1
    expect_messages "sub$q" "QoS $q round trip" "$(seq 0 9 | sed "s/^/$q|0|m/")" || return 1
  done
}

qos_downgrade() {
  # A QoS 2 publish to a QoS 1 subscription is delivered at QoS 1, to QoS 0 at QoS 0.
  start_sub s1 -q 1 -t "$T" -C 1 -F "MSG|%q|%p" || return 1
  start_sub s0 -q 0 -t "$T" -C 1 -F "MSG|%q|%p" || return 1
  pub -q 2 -t "$T" -m two || fail "publish failed" || return 1
  expect_messages s1 "QoS 1 subscription" "1|two" || return 1
  expect_messages s0 "QoS 0 subscription" "0|two"
}

wildcards() {
  start_sub plus -q 1 -t "$T/+/temp" -F "MSG|%t" || return 1
  start_sub hash -q 1 -t "$T/#" -F "MSG|%t" || return 1
  local t
  for t in "$T/room1/temp" "$T/room2/temp" "$T/room1/humidity" "$T/room1/temp/raw" "$T" "$T/zz/temp"; do
    # QoS 1: each mosquitto_pub exits after PUBACK, so the next is routed after it.
    pub -q 1 -t "$t" -m "$t" || fail "publish to $t failed" || return 1
  done
  expect_messages plus "$T/+/temp" "$(printf '%s\n' "$T/room1/temp" "$T/room2/temp" "$T/zz/temp")" || return 1
  expect_messages hash "$T/#" "$(printf '%s\n' "$T/room1/temp" "$T/room2/temp" "$T/room1/humidity" \
    "$T/room1/temp/raw" "$T" "$T/zz/temp")"
}

retained() {
  pub -q 1 -r -t "$T" -m the-retained || fail "retained publish failed" || return 1
  start_sub late -q 1 -t "$T" -F "MSG|%r|%q|%p" || return 1
  expect_messages late "later subscriber" "1|1|the-retained" || return 1
  # -n: an empty payload; with -r it clears the retained message.
  pub -q 1 -r -t "$T" -n || fail "empty retained publish failed" || return 1
  expect_messages late "the empty retained publish forwarded with RETAIN 0" \
    "$(printf '%s\n' "1|1|the-retained" "0|1|")" || return 1
  # A new subscriber: retained messages come right after its SUBACK, so the sentinel published
  # after that SUBACK would follow any.
  start_sub after -q 1 -t "$T" -F "MSG|%r|%p" || return 1
  pub -q 1 -t "$T" -m sentinel || fail "sentinel publish failed" || return 1
  expect_messages after "a subscriber after the clear" "0|sentinel"
}

will() {
  start_sub watcher -q 2 -t "$T/will" -F "MSG|%t|%q|%r|%p" || return 1
  # A normal DISCONNECT: its will must be discarded.
  pub -t "$T/other" -m x --will-topic "$T/will" --will-payload polite-will --will-qos 1 ||
    fail "polite client failed" || return 1
  # A client killed with SIGKILL: the broker sees the TCP connection end without DISCONNECT.
  start_sub doomed -t "$T/unused" --will-topic "$T/will" --will-payload dropped-will --will-qos 1 || return 1
  local doomed
  doomed="$(cat "$work/doomed.pid")"
  kill -KILL "$doomed"
  { wait "$doomed"; } 2>/dev/null
  expect_messages watcher "the will of a killed client (and none from the polite one)" \
    "$T/will|1|0|dropped-will"
}

persistent_session() {
  local id="mosq-$run_id-$V" expiry=()
  [ "$V" != 5 ] || expiry=(-x 300)
  # -c: clean session 0 / clean start 0; -E: exit (with DISCONNECT) once subscribed.
  sub -c "${expiry[@]}" -i "$id" -q 1 -t "$T" -E || fail "first connection failed" || return 1
  seq 0 4 | sed 's/^/offline-/' | pub -q 1 -t "$T" -l || fail "publish failed" || return 1
  # The queued messages may come before the SUBACK of its (repeated) subscription: no wait for it.
  spawn_sub back -c "${expiry[@]}" -i "$id" -q 1 -t "$T" -C 5 -F "MSG|%q|%p"
  expect_messages back "messages queued while offline" "$(seq 0 4 | sed 's/^/1|offline-/')"
  local ok=$?
  stop "$(cat "$work/back.pid")"
  # Leave no session behind: a clean connection discards it.
  sub -i "$id" -t "$T" -E >/dev/null 2>&1
  return $ok
}

user_properties() {
  start_sub s -q 1 -t "$T" -C 1 -F "MSG|%P|%C|%p" || return 1
  pub -q 1 -t "$T" -m payload -D publish user-property zeta 1 -D publish user-property alpha two \
    -D publish user-property dup first -D publish user-property dup second \
    -D publish content-type text/plain || fail "publish failed" || return 1
  expect_messages s "user properties in order, repeated names kept [MQTT-3.3.2-18]" \
    "zeta:1 alpha:two dup:first dup:second|text/plain|payload"
}

request_response() {
  local req="$T/requests" resp="$T/replies"
  start_sub responder -q 1 -t "$req" -C 1 -F "MSG|%R|%D|%P|%p" || return 1
  # mosquitto_rr subscribes to the response topic, then publishes the request with it.
  stdbuf -oL mosquitto_rr -h "$host" -p "$port" -V 5 -t "$req" -e "$resp" -m ping -q 1 -W $((wait_s + 5)) \
    -D publish correlation-data "corr-$run_id" -D publish user-property k v \
    -F "MSG|%t|%D|%P|%p" >"$work/requester" 2>&1 &
  local rr=$!
  pids+=("$rr")
  expect_messages responder "the request" "$resp|corr-$run_id|k:v|ping" || return 1
  pub -q 1 -t "$resp" -m pong -D publish correlation-data "corr-$run_id" -D publish user-property status ok ||
    fail "response publish failed" || return 1
  expect_messages requester "the response" "$resp|corr-$run_id|status:ok|pong"
}

# --- runner ---------------------------------------------------------------------------------------
both=(qos_round_trip qos_downgrade wildcards retained will persistent_session)
v5_only=(user_properties request_response)
selected=("$@")

run() {
  local scenario="$1"
  V="$2"
  if [ ${#selected[@]} -gt 0 ] && [[ " ${selected[*]} " != *" $scenario "* ]]; then return; fi
  local label="MQTT 3.1.1 $scenario"
  [ "$V" != 5 ] || label="MQTT 5.0 $scenario"
  T="interop/mosq/$scenario-v$V/$run_id"
  rm -f "$work"/*
  pids=()
  if "$scenario"; then
    echo "ok       $label"
    passed=$((passed + 1))
  else
    echo "FAILED   $label: $(cat "$work/reason" 2>/dev/null || echo 'see above')"
    failed=$((failed + 1))
  fi
  stop "${pids[@]}"
}

echo "mosquitto clients $(mosquitto_sub --help 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1) against $host:$port"
for scenario in "${both[@]}"; do
  run "$scenario" 311
  run "$scenario" 5
done
for scenario in "${v5_only[@]}"; do run "$scenario" 5; done

echo "mosquitto: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
