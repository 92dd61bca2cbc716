#!/bin/bash
# Memory per queued message (docs/performance.md, "Memory per message", Session 6): starts
# `pigeon serve` with the resident limits lifted, publishes N 16-byte messages with
# queued_memory_publisher.py (a raw AMQP 0-9-1 publisher: any exchange and routing key), and
# prints (RSS with the queue full - RSS before) / N.
# usage: bench/queued_memory.sh PIGEON_BIN N EXCHANGE ROUTING_KEY QUEUE [X_MESSAGE_TTL_MS]
#   e.g. bench/queued_memory.sh target/release/pigeon 3000000 amq.direct q q
BIN=$1; N=$2; X=$3; K=$4; Q=$5; TTL=${6:-0}
D=$(mktemp -d)
HERE=$(dirname "$0")
cat > $D/pigeon.toml <<EOT
[server]
amqp_listen = "127.0.0.1:5871"
mqtt_listen = []
mqtt_ws_listen = []
management_listen = []
prometheus_listen = []
data_dir = "$D/data"
memory_high_watermark_bytes = 20000000000
queue_resident_messages = 100000000
queue_resident_bytes = 100000000000
EOT
$BIN serve -c $D/pigeon.toml > $D/log 2>&1 &
PID=$!
for i in $(seq 100); do grep -q "5871" <(ss -ltn) && break; sleep 0.1; done
sleep 1
before=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
coproc PUB { python3 "$HERE/queued_memory_publisher.py" 5871 $N "$X" "$K" "$Q" 16 $TTL; }
read -u ${PUB[0]} line
sleep 0.3
after=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
echo >&${PUB[1]}
wait $PUB_PID 2>/dev/null
kill $PID; wait $PID 2>/dev/null
echo "N=$N x='$X' key='$K' ttl=$TTL $line before=${before}kB after=${after}kB per_msg=$(( (after-before)*1024/N ))B"
rm -rf $D
