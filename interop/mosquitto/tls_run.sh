#!/usr/bin/env bash
# MQTT over TLS with Eclipse Mosquitto's command-line clients (mosquitto_pub, mosquitto_sub),
# against the broker at $MQTTS_URL (mqtts://[user:password@]host:port; the host must be a name in
# the broker's certificate, e.g. localhost), as a user would run them:
#   --cafile             the broker verified against the CA, QoS 1 round trip (3.1.1 and 5.0)
#   --cert/--key         a client certificate and no user name (certificate login)
#   a wrong CA           mosquitto_pub refuses the broker
#   an untrusted cert    a client certificate from another CA is refused (the broker verifies
#                        client certificates: verify_peer)
#
#   MQTTS_URL=mqtts://localhost:8883 TLS_CA_FILE=ca.pem TLS_CLIENT_CERT=client.pem \
#     TLS_CLIENT_KEY=client.key TLS_OTHER_CA=other-ca.pem TLS_UNTRUSTED_CERT=untrusted.pem \
#     TLS_UNTRUSTED_KEY=untrusted.key interop/mosquitto/tls_run.sh
#
# INTEROP_MQTT5=0 leaves MQTT 5.0 out. Waits as in run.sh (a subscriber's "received SUBACK" before
# publishing, deadlines of INTEROP_WAIT_SECONDS). Ends with "mosquitto tls: N passed, N failed".
set -uo pipefail

url="${MQTTS_URL:?MQTTS_URL is not set}"
ca="${TLS_CA_FILE:?TLS_CA_FILE is not set}"
hostport="${url#mqtts://}"
hostport="${hostport%%/*}"
creds=()
if [[ "$hostport" == *@* ]]; then
  userinfo="${hostport%@*}"
  hostport="${hostport##*@}"
  creds=(-u "${userinfo%%:*}")
  [[ "$userinfo" != *:* ]] || creds+=(-P "${userinfo#*:}")
fi
host="${hostport%:*}"
port="${hostport##*:}"
[ "$port" != "$hostport" ] || port=8883
wait_s="${INTEROP_WAIT_SECONDS:-10}"
versions=(311 5)
[ "${INTEROP_MQTT5:-1}" != 0 ] || versions=(311)

for tool in mosquitto_pub mosquitto_sub stdbuf; do
  command -v "$tool" >/dev/null || {
    echo "mosquitto tls: $tool not found; install Debian's mosquitto-clients" >&2
    exit 2
  }
done

work="$(mktemp -d)"
pids=()
stop() {
  local pid
  for pid in "$@"; do
    kill "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null
  done
}
cleanup() {
  stop "${pids[@]}"
  rm -rf "$work"
}
trap cleanup EXIT

run_id="$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
passed=0
failed=0

# AUTH: how the client identifies itself (the URL's credentials, or a client certificate).
pub() { mosquitto_pub -h "$host" -p "$port" -V "$V" "${AUTH[@]}" "$@"; }

fail() {
  echo "$*" >"$work/reason"
  return 1
}

wait_for() { # NAME PATTERN COUNT
  local deadline=$((SECONDS + wait_s)) n
  while n="$(grep -c -F -- "$2" "$work/$1" 2>/dev/null)"; [ "${n:-0}" -lt "$3" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.02
  done
}

start_sub() { # NAME ARGS...
  local name="$1"
  shift
  stdbuf -oL mosquitto_sub -h "$host" -p "$port" -V "$V" "${AUTH[@]}" -d -W $((wait_s + 5)) "$@" \
    >"$work/$name" 2>&1 &
  pids+=("$!")
  wait_for "$name" "received SUBACK" 1 || fail "$name: no SUBACK within ${wait_s}s: $(tail -3 "$work/$name")"
}

round_trip() {
  start_sub sub -q 1 -t "$T" -C 10 -F "MSG|%q|%p" || return 1
  seq 0 9 | sed 's/^/m/' | pub -q 1 -t "$T" -l || fail "mosquitto_pub failed" || return 1
  wait_for sub 'MSG|' 10 || fail "timed out; got: $(grep -F 'MSG|' "$work/sub" | tr '\n' ' ')" || return 1
  local got
  got="$(grep -F 'MSG|' "$work/sub" | sed 's/^MSG|//')"
  [ "$got" == "$(seq 0 9 | sed 's/^/1|m/')" ] || fail "expected m0..m9 at QoS 1, got [$(echo "$got" | tr '\n' ' ')]"
}

# --- scenarios ------------------------------------------------------------------------------------
cafile_round_trip() {
  AUTH=(--cafile "$ca" "${creds[@]}")
  round_trip
}

client_certificate_round_trip() {
  AUTH=(--cafile "$ca" --cert "${TLS_CLIENT_CERT:?}" --key "${TLS_CLIENT_KEY:?}")
  round_trip
}

wrong_ca_is_refused() {
  AUTH=(--cafile "${TLS_OTHER_CA:?}" "${creds[@]}")
  if pub -q 1 -t "$T" -m never >"$work/out" 2>&1; then
    fail "mosquitto_pub accepted a broker its CA did not sign"
    return 1
  fi
  grep -qi "certificate\|tls\|ssl\|handshake" "$work/out" ||
    fail "refused, but not for the certificate: $(cat "$work/out")"
}

untrusted_client_certificate_is_refused() {
  AUTH=(--cafile "$ca" --cert "${TLS_UNTRUSTED_CERT:?}" --key "${TLS_UNTRUSTED_KEY:?}")
  if pub -q 1 -t "$T" -m never >"$work/out" 2>&1; then
    fail "the broker accepted a client certificate from an unknown CA"
    return 1
  fi
}

# --- runner ---------------------------------------------------------------------------------------
run() { # SCENARIO VERSION
  local scenario="$1"
  V="$2"
  local label="MQTT 3.1.1 $scenario"
  [ "$V" != 5 ] || label="MQTT 5.0 $scenario"
  T="interop/mosq-tls/$scenario-v$V/$run_id"
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

echo "mosquitto clients over TLS against $host:$port"
for V in "${versions[@]}"; do
  run cafile_round_trip "$V"
  [ -z "${TLS_CLIENT_CERT:-}" ] || run client_certificate_round_trip "$V"
done
[ -z "${TLS_OTHER_CA:-}" ] || run wrong_ca_is_refused "${versions[0]}"
[ -z "${TLS_UNTRUSTED_CERT:-}" ] || run untrusted_client_certificate_is_refused "${versions[0]}"

echo "mosquitto tls: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
