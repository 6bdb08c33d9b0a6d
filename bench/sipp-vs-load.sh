#!/usr/bin/env bash
# bench/sipp-vs-load.sh: the highest call rate this machine sustains with
# failures <= MAXFAIL (default 0.1%), measured the same way for
#
#   sipp -sn uac         -> sipp -sn uas          (a ramp of fixed-rate sipp runs)
#   viaduct-load uac     -> viaduct-load uas      (viaduct-load uac --find-max)
#
# and the ratio of the two. Both ramps start at START calls/s, multiply the
# rate by GROWTH while steps pass, then bisect between the last passing and
# the first failing rate until they are within PRECISION. A step passes when
# its failed calls are at most MAXFAIL of the calls and the calls were
# started at >= 97% of the rate (viaduct-load's own criterion); for sipp the
# rate achieved is its calls over its run time (StartTime to CurrentTime of
# its statistics), which includes the last call's duration, so sipp gets a
# looser SIPP_MIN_ACHIEVED=0.95 by default.
#
# The machine may be shared, so the two ramps alternate ROUNDS times
# (default 2) and the best result of each tool counts; every round is
# printed with the load average at its start.
#
# Usage: bench/sipp-vs-load.sh            (about 8-12 minutes)
#        STEP=10 ROUNDS=3 bench/sipp-vs-load.sh
# Needs: go, sipp (Debian package sip-tester), awk. Uses 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

STEP=${STEP:-5}                    # seconds per rate step
START=${START:-2000}               # first rate, calls/s
GROWTH=${GROWTH:-1.5}
PRECISION=${PRECISION:-0.05}
MAXFAIL=${MAXFAIL:-0.001}
SIPP_MIN_ACHIEVED=${SIPP_MIN_ACHIEVED:-0.95}
PAUSE=${PAUSE:-1}                  # seconds between steps
ROUNDS=${ROUNDS:-2}                # ramps per tool, alternating; the best of each counts
PORT_BASE=${PORT_BASE:-35060}      # sipp uas, sipp uac, viaduct-load uas
SIPP=${SIPP:-sipp}
# Extra options for both sipp processes (default none: sipp as the issue
# names it). For example SIPP_ARGS="-buff_size 16777216" gives sipp the
# 16 MiB socket buffers viaduct-load uses (sipp's default is 64 KiB).
SIPP_ARGS=${SIPP_ARGS:-}
# Extra options for both viaduct-load processes. By default each uses one
# core, as each sipp process is one thread: two processes sharing a small
# machine then do not also compete inside each runtime's scheduler.
VL_ARGS=${VL_ARGS:---concurrency 1}

command -v "$SIPP" >/dev/null || { echo "sipp not found (install sip-tester)" >&2; exit 2; }
. bench/lib.sh # $work, $pids, cleanup on exit

go build -o "$work/viaduct-load" ./cmd/viaduct-load

echo "machine: $(nproc) cores; load at start:$(uptime | sed 's/.*load average/ load average/')"
echo "criteria: failures <= $MAXFAIL, steps of ${STEP}s, start $START/s, growth x$GROWTH, precision $PRECISION"
echo "sipp options: ${SIPP_ARGS:-(defaults)}; viaduct-load options: ${VL_ARGS:-(defaults)}"

# csv_col FILE NAME: value of column NAME on the last line of a sipp stat CSV.
csv_col() {
	awk -F';' -v name="$2" 'NR==1 { for (i = 1; i <= NF; i++) if ($i == name) c = i } END { print $c }' "$1"
}

# csv_time FILE NAME: the epoch seconds of a time column ("date<TAB>time<TAB>epoch").
csv_time() {
	csv_col "$1" "$2" | awk -F'\t' '{ print $3 }'
}

# sipp_step RATE: one fixed-rate sipp run; returns 0 if it passed.
sipp_step() {
	local rate=$1 n d ok fail wall achieved verdict
	n=$(awk -v r="$rate" -v s="$STEP" 'BEGIN { printf "%d", r * s }')
	d="$work/sipp-$rate"
	mkdir -p "$d"
	# shellcheck disable=SC2086
	(cd "$d" && timeout $((STEP * 2 + 30)) "$SIPP" -sn uac -i 127.0.0.1 -p $((PORT_BASE + 1)) \
		-r "$rate" -m "$n" -timeout $((STEP * 2 + 10)) -nostdin $SIPP_ARGS \
		-trace_stat -stf stat.csv -fd 1 "127.0.0.1:$PORT_BASE" >screen.log 2>&1) || true
	if [ ! -s "$d/stat.csv" ]; then
		echo "sipp: rate $rate/s -> FAIL (no statistics)" >&2
		return 1
	fi
	ok=$(csv_col "$d/stat.csv" 'SuccessfulCall(C)')
	fail=$(csv_col "$d/stat.csv" 'FailedCall(C)')
	wall=$(awk -v a="$(csv_time "$d/stat.csv" StartTime)" -v b="$(csv_time "$d/stat.csv" CurrentTime)" 'BEGIN { printf "%.3f", b - a }')
	achieved=$(awk -v n="$((ok + fail))" -v w="$wall" 'BEGIN { printf "%.1f", n / w }')
	verdict=$(awk -v ok="$ok" -v f="$fail" -v n="$n" -v r="$rate" -v a="$achieved" -v mf="$MAXFAIL" -v ma="$SIPP_MIN_ACHIEVED" \
		'BEGIN { t = ok + f; if (t >= n && f <= mf * t && a >= ma * r) print "pass"; else print "FAIL" }')
	echo "sipp: rate $rate/s -> $verdict (achieved $achieved/s over ${wall}s, ok $ok, failed $fail of $n)" >&2
	sleep "$PAUSE"
	[ "$verdict" = pass ]
}

# ramp STEPFN: grows then bisects like viaduct-load --find-max; sets
# RAMP_MAX to the highest passing rate (0 if none).
ramp() {
	local fn=$1 rate=$START lo=0 hi=0 mid
	while :; do
		if $fn "$rate"; then
			lo=$rate
			[ "$hi" != 0 ] && break
			rate=$(awk -v r="$rate" -v g="$GROWTH" 'BEGIN { printf "%d", r * g + 0.5 }')
		else
			hi=$rate
			[ "$lo" != 0 ] && break
			rate=$((rate / 2))
			[ "$rate" -lt 1 ] && break
		fi
	done
	while [ "$lo" != 0 ] && [ "$hi" != 0 ] &&
		awk -v l="$lo" -v h="$hi" -v p="$PRECISION" 'BEGIN { exit !((h - l) / l > p) }'; do
		mid=$(((lo + hi + 1) / 2))
		if $fn "$mid"; then lo=$mid; else hi=$mid; fi
	done
	RAMP_MAX=$lo
}

# sipp_max: one sipp ramp against a fresh sipp uas; sets RAMP_MAX.
sipp_max() {
	local pid
	# shellcheck disable=SC2086
	(cd "$work" && exec "$SIPP" -sn uas -i 127.0.0.1 -p "$PORT_BASE" -nostdin $SIPP_ARGS >"$work/sipp-uas.log" 2>&1) &
	pid=$!
	pids+=("$pid")
	sleep 0.5
	ramp sipp_step
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# vl_max: one viaduct-load --find-max against a fresh viaduct-load uas;
# sets RAMP_MAX.
vl_max() {
	local pid
	# shellcheck disable=SC2086
	"$work/viaduct-load" uas --listen "127.0.0.1:$((PORT_BASE + 2))" --quiet $VL_ARGS >"$work/vl-uas.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	sleep 0.5
	# shellcheck disable=SC2086
	"$work/viaduct-load" uac --target "127.0.0.1:$((PORT_BASE + 2))" --find-max --find-start "$START" $VL_ARGS \
		--find-step "${STEP}s" --find-growth "$GROWTH" --find-precision "$PRECISION" --max-fail "$MAXFAIL" \
		--quiet --json "$work/vl.json" >"$work/vl.out" 2>"$work/vl.err" || true
	sed 's/\r//; s/\x1b\[K//' "$work/vl.err" | grep '^find-max' | sed 's/^find-max/viaduct-load/' >&2 || true
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	RAMP_MAX=$(grep -o '"max_rate": *[0-9.]*' "$work/vl.json" | head -1 | sed 's/.*: *//')
}

best_sipp=0
best_vl=0
for round in $(seq 1 "$ROUNDS"); do
	echo "== round $round: sipp -sn uac -> sipp -sn uas ($(uptime | sed 's/.*load average/load average/'))"
	sipp_max
	s=$RAMP_MAX
	echo "round $round sipp max: $s calls/s"
	echo "== round $round: viaduct-load uac -> viaduct-load uas ($(uptime | sed 's/.*load average/load average/'))"
	vl_max
	v=$RAMP_MAX
	echo "round $round viaduct-load max: $v calls/s"
	best_sipp=$(awk -v a="$best_sipp" -v b="$s" 'BEGIN { print (b > a ? b : a) }')
	best_vl=$(awk -v a="$best_vl" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
done

echo "load at end:$(uptime | sed 's/.*load average/ load average/')"
echo
printf 'RESULT sipp=%s viaduct-load=%s ratio=%s (best of %s rounds each)\n' "$best_sipp" "$best_vl" \
	"$(awk -v a="$best_vl" -v b="$best_sipp" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')" "$ROUNDS"
