#!/usr/bin/env bash
# Delivery throughput. For each channel (e-mail to postfix's smtp-sink, SMS to
# bench/http-sink): fill the outbox with N deliveries while the channel is throttled to one
# send per 1,000 s, stop herald, then start it unthrottled and time how long the N-1 pending
# deliveries take to reach the sink (the sink exits on the last one). A third run times the
# whole job end to end: N webhooks POSTed from 8 connections while delivery runs, until the
# N-th e-mail arrives.
# usage: bench/delivery.sh [N=10000] [RUNS=3]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
n=${1:-10000}; runs=${2:-3}
port=8092; smtp_port=2531; sms_port=8093
tmp=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do stop_pid "$p"; done; rm -rf "$tmp"' EXIT
build_all


pending_run() {  # $1 channel, $2 run number
  local channel=$1 dir="$tmp/$1-$2"
  local keep="s/send: \[email, sms\]/send: [$channel]/"
  make_config "$dir/throttled" "$keep" "s/    on_missing_env: file/    on_missing_env: file\n    rate_limit: 0.001/"
  make_config "$dir/normal" "$keep"
  start_herald "$dir/throttled" "$dir/data" "$port" "$smtp_port" "$sms_port"; local h=$!
  wait_port "$port"
  python3 "$BENCH_DIR/post_events.py" "http://127.0.0.1:$port/webhook" "$n" 8 >/dev/null
  stop_pid "$h"
  if [ "$channel" = email ]; then
    /usr/sbin/smtp-sink -u nobody -c -m 2000 -M "$((n - 1))" "127.0.0.1:$smtp_port" 4096 >"$dir/sink" 2>&1 & local sink=$!
  else
    "$HTTP_SINK" "127.0.0.1:$sms_port" "$((n - 1))" & local sink=$!
  fi
  wait_port "$( [ "$channel" = email ] && echo "$smtp_port" || echo "$sms_port")"
  local t0; t0=$(now)
  start_herald "$dir/normal" "$dir/data" "$port" "$smtp_port" "$sms_port"; h=$!
  wait "$sink"
  local t1; t1=$(now)
  local cpu rss; cpu=$(proc_cpu "$h"); rss=$(proc_hwm_mib "$h")
  stop_pid "$h"
  echo "$channel $2 $(echo "($n - 1) / ($t1 - $t0)" | bc) $(printf %.2f "$(echo "$t1 - $t0" | bc)") $cpu $rss"
}

end_to_end_run() {  # $1 run number
  local dir="$tmp/e2e-$1"
  make_config "$dir/config" "s/send: \[email, sms\]/send: [email]/"
  /usr/sbin/smtp-sink -u nobody -c -m 2000 -M "$n" "127.0.0.1:$smtp_port" 4096 >"$dir.sink" 2>&1 & local sink=$!
  wait_port "$smtp_port"
  start_herald "$dir/config" "$dir/data" "$port" "$smtp_port" "$sms_port"; local h=$!
  wait_port "$port"
  local t0; t0=$(now)
  local post; post=$(python3 "$BENCH_DIR/post_events.py" "http://127.0.0.1:$port/webhook" "$n" 8)
  wait "$sink"
  local t1; t1=$(now)
  local cpu rss; cpu=$(proc_cpu "$h"); rss=$(proc_hwm_mib "$h")
  stop_pid "$h"
  echo "end-to-end $1 $(echo "$n / ($t1 - $t0)" | bc) $(printf %.2f "$(echo "$t1 - $t0" | bc)") $cpu $rss post=${post%% *}s"
}

echo "# herald $(git -C "$REPO_DIR" rev-parse --short HEAD); N=$n"
echo "job run msgs_per_s wall_s herald_cpu_s herald_rss_mib"
for r in $(seq "$runs"); do pending_run email "$r"; done
for r in $(seq "$runs"); do pending_run sms "$r"; done
for r in $(seq "$runs"); do end_to_end_run "$r"; done
