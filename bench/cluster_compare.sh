#!/usr/bin/env bash
# bench/cluster_compare.sh: quorum queues on a three-node Pigeon cluster and on a three-node
# RabbitMQ cluster, side by side on this machine, in one run, under the same load generator
# (`pigeon bench ... --json`). See bench/README.md ("Clusters") and docs/performance.md
# ("Cluster").
#
# Both clusters run at once, every node a process of its own on 127.0.0.1 with ports and a data
# directory of its own (none of them the defaults, so brokers already running here are left
# alone). Every workload alternates brokers run by run, so that the noise of a busy machine
# falls on both alike.
#
# Steps (STEPS, in the order given; by default this one):
#   throughput, latency, failover (below), then
#   memory      RSS of every node and its CPU while idle (IDLE_CPU_SECS) with 0 quorum queues,
#               then with each count of IDLE_COUNTS (RABBIT_IDLE_COUNTS for RabbitMQ) declared
#               through node 1 by `pigeon bench declare` (3 members each); deleted at the end
#   throughput  quorum queue, 1 KiB, persistent, confirmed, consumers acking: 1->1 (publisher
#               on node 1, consumer on node 2) and 4->4 (4 queues; producer i on node i mod 3,
#               consumer i on node i+1 mod 3); queues declared through node 1 (their first
#               leader there, by RabbitMQ's default client-local locator and by Pigeon)
#   latency     1->1 at LATENCY_RATE msg/s, publisher on node 1, consumer on node 3:
#               publish-to-deliver latency across nodes, below saturation
#   failover    1->1 confirmed publishing (FAILOVER_RATE msg/s: the time to fail over, not a
#               throughput) through node 2, consumer on node 3, queue declared
#               through node 1; FAILOVER_KILL_AFTER s in, the queue's leader (asked of node 2)
#               gets SIGKILL; reported: from the kill to the first ack after it, and the
#               longest wait between two acks (`max_confirm_gap`); the node is restarted after
#
# Environment:
#   RUNS=3 DURATION=10  runs per workload and broker, seconds each run publishes
#   BROKERS="pigeon rabbitmq"   STEPS="throughput latency failover memory" (memory last: a
#               broker that just deleted thousands of quorum queues is not the same broker)
#   IDLE_COUNTS="1000 10000"    RABBIT_IDLE_COUNTS="1000"   IDLE_CPU_SECS=60
#   LATENCY_RATE=200    FAILOVER_DURATION=20   FAILOVER_KILL_AFTER=6   FAILOVER_RATE=1000
#   PIGEON_BIN=...      the Pigeon binary (default: target/release/pigeon, built when missing)
#   BENCH_TMPDIR=/var/tmp   where the nodes' data goes (a real disk: fsync must mean it)
#   OUT=bench/results/<date>-cluster   output prefix (.md and .jsonl)
#   KEEP=0              1: leave the node directories in place at exit (for their logs)
#   PIGEON_LOG=warn     the Pigeon nodes' log filter (e.g. "warn,pigeon_cluster=debug": WAL
#               rotations, slow fsyncs, snapshot builds)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
BROKERS=${BROKERS:-"pigeon rabbitmq"}
STEPS=${STEPS-"throughput latency failover memory"}
IDLE_COUNTS=${IDLE_COUNTS:-"1000 10000"}
RABBIT_IDLE_COUNTS=${RABBIT_IDLE_COUNTS:-"1000"}
IDLE_CPU_SECS=${IDLE_CPU_SECS:-60}
LATENCY_RATE=${LATENCY_RATE:-200}
FAILOVER_DURATION=${FAILOVER_DURATION:-20}
FAILOVER_KILL_AFTER=${FAILOVER_KILL_AFTER:-6}
FAILOVER_RATE=${FAILOVER_RATE:-1000}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
OUT=${OUT:-$root/bench/results/$(date +%Y-%m-%d)-cluster}
KEEP=${KEEP:-0}

# Ports of our own, below 32768 (the ephemeral range) and away from every default. Node i
# (1, 2, 3) adds i.
P_AMQP=22700
P_MQTT=22710
P_HTTP=22720
P_CLUSTER=22730
R_AMQP=22800
R_DIST=22810
R_NAME=qbench # node names qbench1@localhost ...

QQ_ARGS="--queue-arg x-queue-type=quorum --queue-arg x-quorum-initial-group-size=3"
COMMON="-s 1024 --persistent --confirm --confirm-window 128 --ack --multi-ack-every 50 --prefetch 200 $QQ_ARGS"

log() { printf '%s cluster_compare: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

wait_port() { # port, seconds
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

# --- the Pigeon binary ---------------------------------------------------------------------------
if [ -z "${PIGEON_BIN:-}" ]; then
    PIGEON_BIN=${CARGO_TARGET_DIR:-$root/target}/release/pigeon
    if [ ! -x "$PIGEON_BIN" ]; then
        log "building $PIGEON_BIN"
        (cd "$root" && cargo build --release -p pigeon)
    fi
fi
[ -x "$PIGEON_BIN" ] || die "PIGEON_BIN=$PIGEON_BIN is not an executable"
if [[ " $BROKERS " == *" rabbitmq "* ]] && ! command -v rabbitmq-server >/dev/null; then
    log "installing rabbitmq-server"
    apt-get install -y rabbitmq-server >/dev/null || die "apt-get install rabbitmq-server failed"
    # Debian starts it as a service on the default ports; the comparison runs its own nodes.
    systemctl stop rabbitmq-server 2>/dev/null || true
fi

# --- nodes ---------------------------------------------------------------------------------------
work=$(mktemp -d "$BENCH_TMPDIR/cluster-compare.XXXXXX")
chmod 755 "$work"
declare -A pid # pigeon1..3, rabbit1..3

cleanup() {
    local rc=$?
    local i
    for i in 1 2 3; do
        if [ -n "${pid[pigeon$i]:-}" ]; then kill -9 "${pid[pigeon$i]}" 2>/dev/null || true; fi
    done
    for i in 1 2 3; do
        if [ -n "${pid[rabbit$i]:-}" ]; then
            timeout 20 bash -c "$(declare -f rabbitctl); R_NAME=$R_NAME; rabbitctl $i stop" >/dev/null 2>&1 ||
                kill -9 "${pid[rabbit$i]}" 2>/dev/null || true
        fi
    done
    sleep 1
    for i in 1 2 3; do
        if [ -n "${pid[rabbit$i]:-}" ]; then kill -9 "${pid[rabbit$i]}" 2>/dev/null || true; fi
    done
    if [ "$KEEP" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_pigeon() { # node 1..3
    local i=$1 d=$work/pigeon$i
    mkdir -p "$d/data"
    cat >"$d/pigeon.toml" <<EOF
[server]
amqp_listen = "127.0.0.1:$((P_AMQP + i))"
mqtt_listen = "127.0.0.1:$((P_MQTT + i))"
management_listen = "127.0.0.1:$((P_HTTP + i))"
stream_listen = []
prometheus_listen = []
mqtt_ws_listen = []
data_dir = "$d/data"
mqtt_sys_interval = 0

[cluster]
node_name = "rabbit@pigeon$i"
listen = "127.0.0.1:$((P_CLUSTER + i))"
peers = ["127.0.0.1:$((P_CLUSTER + 1))", "127.0.0.1:$((P_CLUSTER + 2))", "127.0.0.1:$((P_CLUSTER + 3))"]
EOF
    setsid "$PIGEON_BIN" --config "$d/pigeon.toml" --log "${PIGEON_LOG:-warn}" >>"$d/pigeon.log" 2>&1 &
    pid[pigeon$i]=$!
}

pigeon_ctl() { # node, args...
    local i=$1
    shift
    "$PIGEON_BIN" ctl --node "http://127.0.0.1:$((P_HTTP + i))" "$@"
}

# Waits until node $1 sees every node of the cluster running.
pigeon_wait_cluster() {
    local i=$1 n
    wait_port "$((P_AMQP + i))" 60 || die "Pigeon node $i did not start: $(tail -5 "$work/pigeon$i/pigeon.log")"
    for ((n = 0; n < 600; n++)); do
        if pigeon_ctl "$i" cluster_status --formatter json 2>/dev/null |
            python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin).get("running_nodes", [])) == 3 else 1)'; then
            return 0
        fi
        sleep 0.2
    done
    die "Pigeon node $i does not see three running nodes"
}

start_pigeon_cluster() {
    local i
    for i in 1 2 3; do start_pigeon "$i"; done
    for i in 1 2 3; do pigeon_wait_cluster "$i"; done
    log "pigeon cluster running, pids ${pid[pigeon1]} ${pid[pigeon2]} ${pid[pigeon3]}"
}

rabbit_env() { # node
    local i=$1 d=$work/rabbit$i
    echo RABBITMQ_NODENAME="$R_NAME$i@localhost" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$((R_AMQP + i))" \
        RABBITMQ_DIST_PORT="$((R_DIST + i))" \
        RABBITMQ_MNESIA_BASE="$d/mnesia" \
        RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_FEATURE_FLAGS_FILE="$d/feature_flags" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
}

# rabbitmqctl against node $1, as the rabbitmq user (its Erlang cookie is every node's).
rabbitctl() {
    local i=$1
    shift
    (cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c "rabbitmqctl -n $R_NAME$i@localhost $(printf '%q ' "$@")")
}

start_rabbit() { # node
    local i=$1 d=$work/rabbit$i p
    mkdir -p "$d/mnesia" "$d/log"
    cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$((R_AMQP + i))
loopback_users = none
EOF
    echo '[].' >"$d/enabled_plugins"
    chown -R rabbitmq:rabbitmq "$d"
    # shellcheck disable=SC2046 # the variables are words
    (cd /var/lib/rabbitmq && exec setsid su rabbitmq -s /bin/sh -c \
        "env $(rabbit_env "$i") RABBITMQ_SERVER_START_ARGS='-kernel inet_dist_use_interface {127,0,0,1}' /usr/lib/rabbitmq/bin/rabbitmq-server") \
        >>"$d/start.log" 2>&1 &
    wait_port "$((R_AMQP + i))" 180 ||
        die "RabbitMQ node $i did not start: $(tail -5 "$d/start.log"; tail -5 "$d"/log/*.log 2>/dev/null)"
    pid[rabbit$i]=""
    for p in $(pgrep -x beam.smp); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "RABBITMQ_MNESIA_BASE=$d/mnesia"; then
            pid[rabbit$i]=$p
        fi
    done
    [ -n "${pid[rabbit$i]}" ] || die "RabbitMQ node $i: its beam.smp was not found"
}

start_rabbit_cluster() {
    local i
    for i in 1 2 3; do start_rabbit "$i"; done
    for i in 2 3; do
        rabbitctl "$i" stop_app >/dev/null
        rabbitctl "$i" join_cluster "${R_NAME}1@localhost" >/dev/null
        rabbitctl "$i" start_app >/dev/null
    done
    rabbitctl 1 cluster_status --formatter json |
        python3 -c 'import json,sys; s=json.load(sys.stdin); assert len(s["running_nodes"]) == 3, s' ||
        die "the RabbitMQ nodes did not form a cluster"
    log "rabbitmq $(dpkg-query -W -f '${Version}' rabbitmq-server) cluster running, pids ${pid[rabbit1]} ${pid[rabbit2]} ${pid[rabbit3]}"
}

for b in $BROKERS; do
    case "$b" in
        pigeon) start_pigeon_cluster ;;
        rabbitmq) start_rabbit_cluster ;;
        *) die "unknown broker $b" ;;
    esac
done

# --- measuring -----------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
key() { [ "$1" = pigeon ] && echo pigeon || echo rabbit; }
url() { # broker, node
    if [ "$1" = pigeon ]; then
        echo "amqp://guest:guest@127.0.0.1:$((P_AMQP + $2))/%2f"
    else
        echo "amqp://guest:guest@127.0.0.1:$((R_AMQP + $2))/%2f"
    fi
}
node_pid() { local k; k=$(key "$1"); echo "${pid[$k$2]}"; }
cpu_all() { # broker: "t1 t2 t3" ticks of the three nodes
    local i out=""
    for i in 1 2 3; do out="$out $(cpu_ticks "$(node_pid "$1" "$i")")"; done
    echo "$out"
}

mkdir -p "$(dirname "$OUT")"
jsonl=$OUT.jsonl
: >"$jsonl"
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
printf '{"step":"meta","machine":"%s","rabbitmq":"%s","pigeon":"%s","started":"%s","loadavg":"%s"}\n' \
    "$machine" "$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null)" \
    "$("$PIGEON_BIN" --version 2>/dev/null | head -1)" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$jsonl"

# Every node's RSS (KiB) and CPU over IDLE_CPU_SECS, as one JSON line.
idle_sample() { # broker, queues
    local b=$1 queues=$2 i before after rss=()
    before=$(cpu_all "$b")
    sleep "$IDLE_CPU_SECS"
    after=$(cpu_all "$b")
    for i in 1 2 3; do rss+=("$(rss_kib "$(node_pid "$b" "$i")")"); done
    python3 - "$b" "$queues" "$before" "$after" "$clk_tck" "$IDLE_CPU_SECS" "${rss[@]}" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF' >>"$jsonl"
import json, sys
b, q, before, after, tck, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
rss = [int(x) for x in sys.argv[7:10]]
cpu = [(a - c) / tck / secs * 100 for a, c in zip(map(int, after.split()), map(int, before.split()))]
print(json.dumps({"step": "memory", "broker": b, "queues": q, "rss_kib": rss, "idle_cpu_pct": [round(c, 2) for c in cpu], "idle_secs": secs, "loadavg": float(sys.argv[10])}))
EOF
    log "memory $b $queues queues: $(tail -1 "$jsonl")"
}

step_memory() {
    local b counts n declared
    for b in $BROKERS; do
        idle_sample "$b" 0
        if [ "$b" = pigeon ]; then counts=$IDLE_COUNTS; else counts=$RABBIT_IDLE_COUNTS; fi
        declared=0
        for n in $counts; do
            # Declare up to n: queues declared-1 ... n-1 (the earlier ones stay).
            local report
            report=$("$PIGEON_BIN" bench declare --url "$(url "$b" 1)" --count "$n" --prefix "qbench-idle" \
                $QQ_ARGS --connections 16 --timeout 120 2>/dev/null) || true
            printf '{"step":"declare","broker":"%s","queues":%d,"report":%s}\n' "$b" "$n" "${report:-null}" >>"$jsonl"
            log "declare $b $n: $report"
            declared=$n
            sleep 15 # a new group is awake for a few seconds (Pigeon: quorum_idle_after_ms + grace)
            idle_sample "$b" "$n"
        done
        # The queues stay for the exit's cleanup when nothing runs after them: deleting 1,000
        # quorum queues keeps RabbitMQ 3.10 busy for minutes.
        if [ "$declared" -gt 0 ] && [ "$b" != "${BROKERS##* }" ]; then
            "$PIGEON_BIN" bench declare --url "$(url "$b" 1)" --count "$declared" --prefix "qbench-idle" \
                --delete --connections 16 --timeout 120 >/dev/null 2>&1 || log "deleting $b's idle queues failed"
        fi
    done
}

# One bench run, its report with the brokers' CPU into the .jsonl.
bench_run() { # step, workload, broker, run, flags...
    local step=$1 w=$2 b=$3 run=$4 before after report cpu
    shift 4
    before=$(cpu_all "$b")
    report=$("$PIGEON_BIN" bench --json "$@" 2>>"$work/bench.log") || true
    after=$(cpu_all "$b")
    [ -n "$report" ] || report='{"errors":["no report"]}'
    cpu=$(python3 -c 'import sys; print("%.2f" % ((sum(map(int, sys.argv[2].split())) - sum(map(int, sys.argv[1].split()))) / int(sys.argv[3])))' "$before" "$after" "$clk_tck")
    printf '{"step":"%s","workload":"%s","broker":"%s","run":%d,"flags":"%s","broker_cpu_s":%s,"loadavg":%s,"report":%s}\n' \
        "$step" "$w" "$b" "$run" "$*" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)" "$report" >>"$jsonl"
    log "$w $b run $run: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); c=r.get("confirm_latency_us") or {}; l=r.get("latency_us") or {}; print("confirmed/s", r.get("confirmed_per_s"), "consumed/s", r.get("consumed_per_s"), "confirm p50/p99", c.get("p50"), c.get("p99"), "e2e p50/p99", l.get("p50"), l.get("p99"), "lost", r.get("lost"), "errors", r.get("errors"))' "$report")"
}

step_throughput() {
    local run b
    for ((run = 1; run <= RUNS; run++)); do
        for b in $BROKERS; do
            # shellcheck disable=SC2086 # the flags are words
            bench_run throughput qq-1k-1to1 "$b" "$run" --duration "$DURATION" --timeout 30 $COMMON \
                -x 1 -y 1 --url "$(url "$b" 1)" --consumer-url "$(url "$b" 2)" --declare-url "$(url "$b" 1)"
            # shellcheck disable=SC2086
            bench_run throughput qq-1k-4to4 "$b" "$run" --duration "$DURATION" --timeout 30 $COMMON \
                -x 4 -y 4 --queues 4 --url "$(url "$b" 1)" --url "$(url "$b" 2)" --url "$(url "$b" 3)" \
                --consumer-url "$(url "$b" 2)" --consumer-url "$(url "$b" 3)" --consumer-url "$(url "$b" 1)" \
                --declare-url "$(url "$b" 1)"
        done
    done
}

step_latency() {
    local run b
    for ((run = 1; run <= RUNS; run++)); do
        for b in $BROKERS; do
            # shellcheck disable=SC2086
            bench_run latency qq-1k-rate"$LATENCY_RATE"-n1-to-n3 "$b" "$run" --duration "$DURATION" --timeout 30 \
                $COMMON --rate "$LATENCY_RATE" -x 1 -y 1 --url "$(url "$b" 1)" --consumer-url "$(url "$b" 3)" \
                --declare-url "$(url "$b" 1)"
        done
    done
}

# The node (1..3) leading the quorum queue of the bench process $2 (its queues are named
# pigeon-bench-<time>-<pid>-<i>; an earlier run whose declaring node was killed leaves its queue
# behind), asked of node 2.
leader_of_bench_queue() { # broker, bench pid
    local out
    if [ "$1" = pigeon ]; then
        out=$(pigeon_ctl 2 list_queues name leader --formatter json 2>/dev/null) || return 1
        python3 -c 'import json,sys
for q in json.loads(sys.argv[1]):
    if str(q.get("name","")).startswith("pigeon-bench-") and str(q.get("name","")).endswith("-" + sys.argv[2] + "-0"):
        print(str(q.get("leader","")).rsplit("pigeon", 1)[-1]); break' "$out" "$2"
    else
        out=$(rabbitctl 2 list_queues name leader --quiet --no-table-headers 2>/dev/null) || return 1
        echo "$out" | awk -v suffix="-$2-0" 'index($1, "pigeon-bench-") == 1 && substr($1, length($1) - length(suffix) + 1) == suffix {print $2; exit}' |
            sed -E "s/^$R_NAME([0-9])@.*/\1/"
    fi
}

restart_node() { # broker, node
    local b=$1 i=$2
    if [ "$b" = pigeon ]; then
        start_pigeon "$i"
        for n in 1 2 3; do pigeon_wait_cluster "$n"; done
    else
        start_rabbit "$i"
        rabbitctl "$i" await_startup >/dev/null 2>&1 || true
    fi
    log "$b node $i restarted, pid $(node_pid "$b" "$i")"
}

step_failover() {
    local run b bench_pid leader kill_ms report
    for ((run = 1; run <= RUNS; run++)); do
        for b in $BROKERS; do
            # shellcheck disable=SC2086
            "$PIGEON_BIN" bench --json --duration "$FAILOVER_DURATION" --timeout 60 $COMMON -x 1 -y 1 \
                --rate "$FAILOVER_RATE" \
                --url "$(url "$b" 2)" --consumer-url "$(url "$b" 3)" --declare-url "$(url "$b" 1)" \
                >"$work/failover.json" 2>"$work/failover.log" &
            bench_pid=$!
            sleep "$FAILOVER_KILL_AFTER"
            leader=$(leader_of_bench_queue "$b" "$bench_pid") || leader=""
            case "$leader" in
                1 | 2 | 3) ;;
                *) log "failover $b run $run: leader not found ($leader); killing node 1"; leader=1 ;;
            esac
            kill_ms=$(date +%s%3N)
            kill -9 "$(node_pid "$b" "$leader")"
            log "failover $b run $run: SIGKILL to node $leader (the queue's leader)"
            wait "$bench_pid" || true
            cat "$work/failover.log" >>"$work/bench.log"
            report=$(cat "$work/failover.json")
            [ -n "$report" ] || report='{"errors":["no report"]}'
            # The confirmed rate before the kill and once confirms resumed, from the bench's
            # progress lines (one a second, each with its time).
            rates=$(python3 "$here/report_cluster.py" --rates "$work/failover.log" "$kill_ms" "$report" "$FAILOVER_DURATION")
            printf '{"step":"failover","workload":"qq-1k-failover","broker":"%s","run":%d,"killed_node":%s,"kill_unix_ms":%s,"confirmed_per_s":%s,"report":%s}\n' \
                "$b" "$run" "$leader" "$kill_ms" "$rates" "$report" >>"$jsonl"
            log "failover $b run $run: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); g=r.get("max_confirm_gap") or {}; k=int(sys.argv[2]); print("longest ack gap ms", g.get("ms"), "kill -> next ack ms", (g.get("to_unix_ms") or 0) - k, "confirmed/s before/after", sys.argv[3], "nacked", r.get("nacked"), "lost", r.get("lost"), "dups", r.get("duplicates"), "errors", r.get("errors"))' "$report" "$kill_ms" "$rates")"
            restart_node "$b" "$leader"
        done
    done
}

started=$(date +%s)
for s in $STEPS; do
    case "$s" in
        memory) step_memory ;;
        throughput) step_throughput ;;
        latency) step_latency ;;
        failover) step_failover ;;
        *) die "unknown step $s" ;;
    esac
done
log "all steps in $(($(date +%s) - started)) s"

python3 "$here/report_cluster.py" --jsonl "$jsonl" --out "$OUT.md" --meta "runs=$RUNS" --meta "duration=$DURATION"
log "wrote $OUT.md and $jsonl"
