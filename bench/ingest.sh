#!/usr/bin/env bash
# Ingest throughput and latency: wrk POSTs a new Invite per request (bench/unique-invite.lua)
# first to bench/http-sink, a hyper server that does no work, then to herald, which commits
# each event with two rendered deliveries before it responds, while its dispatcher sends them
# to postfix's smtp-sink and to a second http-sink.
# With DISPATCH=off the channels are throttled to one send per 1,000 s, so the run measures
# intake alone: parse, schema check, rules, rendering and the durable commit.
# usage: [DISPATCH=off] bench/ingest.sh [CONNS=64] [SECS=10] [RUNS=3]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
conns=${1:-64}; secs=${2:-10}; runs=${3:-3}
port=8090; smtp_port=2530; sms_port=8091
tmp=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do stop_pid "$p"; done; rm -rf "$tmp"' EXIT

build_all
/usr/sbin/smtp-sink -u nobody -c -m 2000 "127.0.0.1:$smtp_port" 4096 >"$tmp/sink" 2>&1 & pids+=($!)
"$HTTP_SINK" "127.0.0.1:$sms_port" 1000000000 & pids+=($!)
wait_port "$smtp_port"; wait_port "$sms_port"
if [ "${DISPATCH:-on}" = off ]; then
  make_config "$tmp/config" "s/    on_missing_env: file/    on_missing_env: file\n    rate_limit: 0.001/"
else
  make_config "$tmp/config"
fi
start_herald "$tmp/config" "$tmp/data" "$port" "$smtp_port" "$sms_port"; herald=$!; pids+=("$herald")
wait_port "$port"

wrk_run() { TZ=America/Los_Angeles wrk -t 2 -c "$conns" -d "$2" --latency -s "$BENCH_DIR/unique-invite.lua" "http://127.0.0.1:$1/webhook"; }

# $1 server name, $2 port, $3 PID: a warm-up, then the runs.
load() {
  wrk_run "$2" 2s >/dev/null
  for r in $(seq "$runs"); do
    cpu0=$(proc_cpu "$3")
    out=$(wrk_run "$2" "${secs}s")
    cpu=$(echo "$(proc_cpu "$3") - $cpu0" | bc)
    echo "$out" | awk -v name="$1" -v r="$r" -v cpu="$cpu" -v rss="$(proc_hwm_mib "$3")" '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
      /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
      /Non-2xx/ { bad += $NF } /Socket errors/ { gsub(/,/, ""); bad += $4 + $6 + $8 + $10 }
      END { printf "%s %s %.0f %.3f %.3f %d %.2f %s\n", name, r, rps, p50, p99, bad, cpu, rss }'
  done
}

echo "# $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); herald $(git -C "$REPO_DIR" rev-parse --short HEAD); c=$conns ${secs}s dispatch=${DISPATCH:-on}"
echo "server run req_per_s p50_ms p99_ms non2xx_or_errors cpu_s rss_mib"
# The baseline: a hyper server that reads each body and responds without other work.
baseline_port=8095
"$HTTP_SINK" "127.0.0.1:$baseline_port" 1000000000 & baseline=$!; pids+=("$baseline")
wait_port "$baseline_port"
load no-work "$baseline_port" "$baseline"
stop_pid "$baseline"
load herald "$port" "$herald"
