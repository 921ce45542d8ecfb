#!/usr/bin/env bash
# Benchmarks on this machine: starts a Tansu broker and a redis-server on free
# loopback ports, builds release binaries, and runs `funnel bench ingest`,
# `funnel bench predictor` or `funnel bench recommender`.
# Usage: scripts/bench.sh [EVENTS] [FLAGS...]               ingest
#        scripts/bench.sh predictor [EVENTS] [FLAGS...]     behavior-predictor
#        scripts/bench.sh recommender [EVENTS] [FLAGS...]   recommender
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bench=ingest
if [ "${1:-}" = predictor ] || [ "${1:-}" = recommender ]; then
  bench="$1"
  shift
fi
events="${1:-200000}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kafka_port="$(free_port)"
redis_port="$(free_port)"
work="$(mktemp -d)"
cleanup() {
  kill "${tansu_pid:-}" "${redis_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p ingest -p behavior-predictor -p recommender -p funnel
.tools/bin/tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ \
  >"$work/tansu.log" 2>&1 &
tansu_pid=$!
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && (echo >"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
  sleep 0.1
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; broker: Tansu (memory storage); redis $(redis-server --version | awk '{print $3}')"
target/release/funnel bench "$bench" --kafka "127.0.0.1:$kafka_port" --redis "redis://127.0.0.1:$redis_port" \
  --broker-pid "$tansu_pid" --events "$events" "${@:2}"
cpu() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }
echo "  whole run CPU seconds: redis-server $(cpu "$redis_pid"), tansu $(cpu "$tansu_pid")"
if [ "$bench" != ingest ]; then
  # Redis also served the in-process ingest pipeline that prepared the events, so its
  # command statistics would not be the service's alone (the recommender bench prints
  # its own per-request figures).
  exit 0
fi
echo "  redis used_memory_human: $(redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r')"
# Which Redis commands the run cost, per event ingested (the ingest path's Redis budget).
redis-cli -p "$redis_port" info commandstats | tr -d '\r' | awk -F'[:,=]' -v n="$events" '
  /^cmdstat_/ { name = substr($1, 9); calls[name] = $3; usec[name] = $5; total += $3; tusec += $5 }
  END {
    printf "  redis commands: %.2f per event, %.1f µs of command time per event\n", total / n, tusec / n
    for (c in calls) if (calls[c] / n >= 0.05) printf "    %-16s %6.2f/event %6.2f µs/call\n", c, calls[c] / n, usec[c] / calls[c]
  }'
