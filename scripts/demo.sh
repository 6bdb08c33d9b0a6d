#!/usr/bin/env bash
# demo.sh: Viaduct in one command, on loopback only.
#
# Builds every command into bin/, starts two `viaduct-load uas` responders
# and Viaduct in front of them (health checks on, admin API on), drives a
# bounded load through Viaduct with `viaduct-load uac`, prints the load
# generator's table and a few lines of /metrics, and stops everything it
# started (by PID, also on Ctrl-C or error).
#
# Settings (environment): DEMO_RATE (calls/s, default 500), DEMO_DURATION
# (default 10s), DEMO_PORT_BASE (default 25060: Viaduct on BASE, the
# responders on BASE+11 and BASE+12, the admin API on BASE+30).
# Exit status: the load generator's (0 when failures stayed under 0.1%).
set -euo pipefail

cd "$(dirname "$0")/.."

rate=${DEMO_RATE:-500}
duration=${DEMO_DURATION:-10s}
base=${DEMO_PORT_BASE:-25060}
sip=127.0.0.1:$base
uas1=127.0.0.1:$((base + 11))
uas2=127.0.0.1:$((base + 12))
adm=127.0.0.1:$((base + 30))

work=$(mktemp -d "${TMPDIR:-/tmp}/viaduct-demo.XXXXXX")
pids=()

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "$status" -ne 0 ] && [ -f "$work/viaduct.log" ]; then
		echo "--- viaduct log (last lines) ---" >&2
		tail -n 20 "$work/viaduct.log" >&2 || true
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }

# fetch URL: print the body (curl when installed, else a small Go client).
fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 5 "$1"
	else
		go run ./scripts/fetch "$1"
	fi
}

step "building: go build -o bin/ ./cmd/..."
mkdir -p bin
go build -o bin/ ./cmd/...

step "starting two responders on $uas1 and $uas2"
bin/viaduct-load uas --listen "$uas1" --workers 1 --quiet >"$work/uas1.log" 2>&1 &
pids+=($!)
bin/viaduct-load uas --listen "$uas2" --workers 1 --quiet >"$work/uas2.log" 2>&1 &
pids+=($!)

cat >"$work/viaduct.yaml" <<EOF
listen: [$sip]
workers: 2
upstreams:
  - {address: $uas1, id: uas-1}
  - {address: $uas2, id: uas-2}
health:
  interval: 1s
  timeout: 500ms
admin:
  listen: $adm
shutdown_drain: 0s
EOF

step "starting viaduct on $sip (admin API on http://$adm/)"
bin/viaduct --check --config "$work/viaduct.yaml" 2>&1 | sed 's/^/    /'
bin/viaduct --config "$work/viaduct.yaml" >"$work/viaduct.log" 2>&1 &
viaduct_pid=$!
pids+=("$viaduct_pid")

# Wait for /readyz: listening, and an upstream up.
for _ in $(seq 1 50); do
	if ! kill -0 "$viaduct_pid" 2>/dev/null; then
		echo "viaduct exited early" >&2
		exit 1
	fi
	if fetch "http://$adm/readyz" >/dev/null 2>&1; then
		break
	fi
	sleep 0.2
done
printf '    /readyz: %s\n' "$(fetch "http://$adm/readyz")"

step "load: viaduct-load uac --target $sip --rate $rate --duration $duration"
set +e
bin/viaduct-load uac --target "$sip" --rate "$rate" --duration "$duration" --sources 2 --quiet
load_status=$?
set -e

step "a few lines of http://$adm/metrics"
fetch "http://$adm/metrics" >"$work/metrics.txt"
grep -E '^viaduct_(requests_received_total\{method="(INVITE|ACK|BYE)"\}|requests_forwarded_total|responses_forwarded_total\{class="(1xx|2xx)"\}|upstream_requests_forwarded_total|upstream_up|upstream_probe_rtt_seconds_count|messages_dropped_total\{reason="(parse_error|no_upstream)"\}|kernel_receive_drops_total)' "$work/metrics.txt" |
	sed 's/^/    /'

step "upstreams: http://$adm/api/v1/upstreams (id, health, admin, requests_forwarded)"
fetch "http://$adm/api/v1/upstreams" | grep -E '"(id|health|admin|requests_forwarded)"' | sed 's/^ */    /'

step "stopping everything the demo started"
exit "$load_status"
