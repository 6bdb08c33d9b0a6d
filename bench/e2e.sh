#!/usr/bin/env bash
# bench/e2e.sh: Viaduct's throughput benchmark, driven by viaduct-load.
#
#   viaduct-load uac -> viaduct -> two viaduct-load uas
#
# It first runs the same load straight at a third UAS (the baseline), then
# through Viaduct, and prints:
#   - forwarded messages per second (every datagram the UAC sent or received
#     went through Viaduct: requests one way, responses the other),
#   - the latency Viaduct adds (first response and INVITE->200, p50 and p99,
#     through Viaduct minus direct),
#   - Viaduct's CPU time per forwarded message (utime+stime from
#     /proc/PID/stat of the viaduct process over the run).
#
# Usage: bench/e2e.sh                      (10000 calls/s for 10s)
#        RATE=20000 DURATION=20 bench/e2e.sh
#        FIND_MAX=1 bench/e2e.sh           (also: highest call rate through Viaduct)
# Environment: RATE, DURATION (s), SCENARIO (call|register|options|message),
# PORT_BASE (viaduct on PORT_BASE, UASes on +1 and +2, baseline UAS on +3), VIADUCT_ARGS (extra
# flags for viaduct), UAC_ARGS (extra flags for viaduct-load uac).
# Uses 127.0.0.1 only. Needs go and awk.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-10000}
DURATION=${DURATION:-10}
SCENARIO=${SCENARIO:-call}
PORT_BASE=${PORT_BASE:-45060}
FIND_MAX=${FIND_MAX:-0}
VIADUCT_ARGS=${VIADUCT_ARGS:-}
UAC_ARGS=${UAC_ARGS:-}

. bench/lib.sh # $work, $pids, cleanup on exit

go build -o "$work/viaduct" ./cmd/viaduct
go build -o "$work/viaduct-load" ./cmd/viaduct-load
VL="$work/viaduct-load"

proxy="127.0.0.1:$PORT_BASE"
uas1="127.0.0.1:$((PORT_BASE + 1))"
uas2="127.0.0.1:$((PORT_BASE + 2))"
uas0="127.0.0.1:$((PORT_BASE + 3))"

# jnum FILE KEY [N]: the N-th (default first) numeric value of "KEY" in a JSON file.
jnum() {
	grep -o "\"$2\": *[0-9.e+-]*" "$1" | sed -n "${3:-1}p" | sed 's/.*: *//'
}

# cpu_ticks PID: utime + stime of a process, in clock ticks.
cpu_ticks() {
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

echo "machine: $(nproc) cores;$(uptime | sed 's/.*load average/ load average/')"
"$VL" uas --listen "$uas0" --quiet >"$work/uas0.log" 2>&1 &
pids+=($!)
"$VL" uas --listen "$uas1" --quiet >"$work/uas1.log" 2>&1 &
uas1pid=$!
pids+=("$uas1pid")
"$VL" uas --listen "$uas2" --quiet >"$work/uas2.log" 2>&1 &
uas2pid=$!
pids+=("$uas2pid")
sleep 0.3

echo "== baseline: viaduct-load uac -> viaduct-load uas ($SCENARIO, $RATE/s for ${DURATION}s)"
# shellcheck disable=SC2086
"$VL" uac --target "$uas0" --scenario "$SCENARIO" --rate "$RATE" --duration "${DURATION}s" --quiet \
	--json "$work/direct.json" $UAC_ARGS >"$work/direct.txt" || true
grep -E 'achieved|failed|latency|->' "$work/direct.txt" || true

# shellcheck disable=SC2086
"$work/viaduct" --listen "$proxy" --upstream "$uas1" --upstream "$uas2" --log-level warn --admin-listen off --shutdown-drain 0 $VIADUCT_ARGS \
	>"$work/viaduct.log" 2>&1 &
vpid=$!
pids+=("$vpid")
sleep 0.5
kill -0 "$vpid" 2>/dev/null || { echo "viaduct did not start:"; cat "$work/viaduct.log"; exit 1; }

echo "== through Viaduct: viaduct-load uac -> viaduct -> 2 x viaduct-load uas"
t0=$(cpu_ticks "$vpid")
# shellcheck disable=SC2086
"$VL" uac --target "$proxy" --scenario "$SCENARIO" --rate "$RATE" --duration "${DURATION}s" --quiet \
	--json "$work/proxy.json" $UAC_ARGS >"$work/proxy.txt" || true
t1=$(cpu_ticks "$vpid")
grep -E 'achieved|failed|latency|->' "$work/proxy.txt" || true
if [ "$FIND_MAX" != 1 ]; then
	kill -TERM "$uas1pid" "$uas2pid" 2>/dev/null || true
	wait "$uas1pid" "$uas2pid" 2>/dev/null || true
	for f in uas1 uas2; do
		echo "$f: $(grep -h -o 'requests [0-9]*: INVITE [0-9]*' "$work/$f.log" || echo 'no summary')"
	done
fi

hz=$(getconf CLK_TCK)
sent=$(jnum "$work/proxy.json" messages_sent)
recv=$(jnum "$work/proxy.json" messages_received)
secs=$(jnum "$work/proxy.json" sending_seconds)
elapsed=$(jnum "$work/proxy.json" elapsed_seconds)
failed=$(jnum "$work/proxy.json" failed)
started=$(jnum "$work/proxy.json" started)
# Latency: first response p50 / p99 (the first "p50_ms" is the first-response
# summary, the second INVITE->200 when the scenario is call).
d50=$(jnum "$work/direct.json" p50_ms 1); d99=$(jnum "$work/direct.json" p99_ms 1)
p50=$(jnum "$work/proxy.json" p50_ms 1); p99=$(jnum "$work/proxy.json" p99_ms 1)

echo
awk -v s="$sent" -v r="$recv" -v secs="$secs" -v el="$elapsed" -v t="$((t1 - t0))" -v hz="$hz" \
	-v d50="$d50" -v d99="$d99" -v p50="$p50" -v p99="$p99" -v f="$failed" -v st="$started" -v rate="$RATE" 'BEGIN {
	fwd = s + r
	cpu = t / hz
	printf "RESULT rate=%d/s calls=%d failed=%d\n", rate, st, f
	printf "RESULT forwarded_messages=%d forwarded_per_second=%.0f\n", fwd, fwd / secs
	printf "RESULT added_latency_first_response_ms p50=%.3f p99=%.3f (direct %.3f/%.3f, via viaduct %.3f/%.3f)\n", p50 - d50, p99 - d99, d50, d99, p50, p99
	printf "RESULT viaduct_cpu_seconds=%.2f over %.1fs (%.2f cores), cpu_per_message_us=%.2f\n", cpu, el, cpu / el, 1e6 * cpu / fwd
}'

if [ "$FIND_MAX" = 1 ]; then
	echo
	echo "== highest call rate through Viaduct (failures <= 0.1%)"
	# shellcheck disable=SC2086
	"$VL" uac --target "$proxy" --scenario "$SCENARIO" --find-max --find-start "$RATE" --quiet \
		--json "$work/max.json" $UAC_ARGS >"$work/max.txt" || true
	echo "RESULT max_rate_through_viaduct=$(jnum "$work/max.json" max_rate)/s"
fi
