# shellcheck shell=bash
# Helpers for herald's benchmarks. Everything listens on 127.0.0.1; every process started
# here is stopped by its PID.

HZ=$(getconf CLK_TCK)
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
HERALD="$REPO_DIR/target/release/herald"
HTTP_SINK="$BENCH_DIR/http-sink/target/release/http-sink"

# CPU seconds (user+sys) a live process has used so far.
proc_cpu() { awk -v hz="$HZ" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }

# Peak resident set size of a live process, in MiB.
proc_hwm_mib() { awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"; }

# Wait until 127.0.0.1:$1 accepts connections (at most 30 s).
wait_port() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$1" >&2
  return 1
}

stop_pid() { [ -n "${1:-}" ] && { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }; }

now() { date +%s.%N; }

# "median (min-max)" of the numbers given as arguments.
stats() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%g (%g-%g)\n", m, v[1], v[NR] }'; }

build_all() {
  (cd "$REPO_DIR" && cargo build --release --quiet)
  (cd "$BENCH_DIR/http-sink" && cargo build --release --quiet)
}

# A copy of the repository's configuration in $1, optionally changed by sed expressions on
# rules.yaml given as further arguments.
make_config() {
  local dir=$1; shift
  mkdir -p "$dir"
  cp -r "$REPO_DIR/rules.yaml" "$REPO_DIR/templates" "$REPO_DIR/schemas" "$dir/"
  for expression in "$@"; do sed -i "$expression" "$dir/rules.yaml"; done
}

# Start herald: $1 config dir, $2 data dir, $3 port, $4 SMTP port, $5 SMS port; PID in $!.
start_herald() {
  SMTP_URL="smtp://127.0.0.1:$4?tls=none" SMS_API_URL="http://127.0.0.1:$5" SMS_ACCOUNT_SID=AC1 \
    SMS_AUTH_TOKEN=token SMS_FROM=+15550100100 RUST_LOG=warn \
    "$HERALD" serve --config-dir "$1" --data-dir "$2" --listen "127.0.0.1:$3" >"$2.log" 2>&1 &
}
