#!/bin/sh
# run.sh runs the viaduct-vs-sipgo parser benchmarks and prints a markdown
# table of the medians for each message, for "parse + proxy fields" and for
# "parse" alone.
#
#   ./run.sh                 run with -count 5 and print the tables
#   COUNT=10 ./run.sh        more samples per benchmark
#   BENCHTIME=2s ./run.sh    passed to -benchtime (default: go test's 1s)
#   INTERLEAVE=1 ./run.sh    build the test binary once and run it COUNT
#                            times with -count 1, so that every round covers
#                            all benchmarks: on a shared, loaded machine the
#                            samples of viaduct and sipgo then see the same
#                            load instead of 5 back-to-back runs of each
#   CPU=1 ./run.sh           passed to -cpu (GOMAXPROCS); with 1, sipgo's
#                            garbage collection runs on the measured core
#                            instead of an idle second one
#   STAT=min ./run.sh        report the fastest sample instead of the median
#                            (less sensitive to other load on the machine)
#   ./run.sh results.txt     only format an existing `go test -bench` output
#
# The raw output of a run is kept in $OUT (default: a file in ${TMPDIR:-/tmp})
# so it can be compared later, e.g. with benchstat.
set -eu

cd "$(dirname "$0")"

if [ $# -ge 1 ]; then
	out=$1
else
	count=${COUNT:-5}
	out=${OUT:-$(mktemp "${TMPDIR:-/tmp}/viaduct-compare.XXXXXX")}
	echo "load before: $(uptime)"
	if [ -n "${INTERLEAVE:-}" ]; then
		bin=$(mktemp "${TMPDIR:-/tmp}/viaduct-compare-test.XXXXXX")
		trap 'rm -f "$bin"' EXIT
		go test -c -o "$bin" .
		set -- -test.run '^$' -test.bench . -test.benchmem -test.count 1
		if [ -n "${BENCHTIME:-}" ]; then
			set -- "$@" -test.benchtime "$BENCHTIME"
		fi
		if [ -n "${CPU:-}" ]; then
			set -- "$@" -test.cpu "$CPU"
		fi
		echo "command: (cd bench/compare && go test -c -o compare.test . && for i in \$(seq $count); do ./compare.test $*; done)"
		: >"$out"
		i=0
		while [ "$i" -lt "$count" ]; do
			"$bin" "$@" >>"$out"
			i=$((i + 1))
		done
	else
		set -- -run '^$' -bench . -benchmem -count "$count"
		if [ -n "${BENCHTIME:-}" ]; then
			set -- "$@" -benchtime "$BENCHTIME"
		fi
		if [ -n "${CPU:-}" ]; then
			set -- "$@" -cpu "$CPU"
		fi
		echo "command: (cd bench/compare && go test $*)"
		go test "$@" . >"$out"
	fi
	echo "load after:  $(uptime)"
	echo "raw output: $out"
fi
echo

awk -v stat="${STAT:-median}" '
# Benchmark<Case>/<Message>/<impl>-<procs>  N  x ns/op  [y MB/s]  z B/op  w allocs/op
/^Benchmark(Parse|ProxyFields)\/.*\/(viaduct|sipgo)(-[0-9]+)?[ \t]/ {
	split($1, part, "/")
	bench = substr(part[1], 10)
	msg = part[2]
	impl = part[3]
	sub(/-[0-9]+$/, "", impl)
	if (!((bench SUBSEP msg) in seenmsg)) {
		seenmsg[bench, msg] = 1
		order[bench, ++nmsg[bench]] = msg
	}
	for (i = 3; i < NF; i++) {
		if ($(i+1) == "ns/op" || $(i+1) == "B/op" || $(i+1) == "allocs/op") {
			k = bench SUBSEP msg SUBSEP impl SUBSEP $(i+1)
			vals[k, ++n[k]] = $i + 0
		}
	}
}

# median of the samples of key k (sorted in place by insertion sort)
function median(k,    c, i, j, t) {
	c = n[k]
	if (c == 0)
		return ""
	for (i = 2; i <= c; i++) {
		t = vals[k, i]
		for (j = i - 1; j >= 1 && vals[k, j] > t; j--)
			vals[k, j+1] = vals[k, j]
		vals[k, j+1] = t
	}
	if (stat == "min")
		return vals[k, 1]
	if (c % 2)
		return vals[k, (c+1)/2]
	return (vals[k, c/2] + vals[k, c/2+1]) / 2
}

function num(x) {
	if (x == "")
		return "?"
	if (x >= 100 || x == int(x))
		return sprintf("%.0f", x)
	return sprintf("%.1f", x)
}

function table(bench, title,    i, msg, vn, vb, va, sn, sb, sa, r, samples) {
	if (nmsg[bench] == 0)
		return
	printf "### %s (%s of %d runs)\n\n", title, stat, n[bench SUBSEP order[bench, 1] SUBSEP "viaduct" SUBSEP "ns/op"]
	print "| message | viaduct ns/op | viaduct B/op | viaduct allocs/op | sipgo ns/op | sipgo B/op | sipgo allocs/op | ratio (sipgo/viaduct) |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nmsg[bench]; i++) {
		msg = order[bench, i]
		vn = median(bench SUBSEP msg SUBSEP "viaduct" SUBSEP "ns/op")
		vb = median(bench SUBSEP msg SUBSEP "viaduct" SUBSEP "B/op")
		va = median(bench SUBSEP msg SUBSEP "viaduct" SUBSEP "allocs/op")
		sn = median(bench SUBSEP msg SUBSEP "sipgo" SUBSEP "ns/op")
		sb = median(bench SUBSEP msg SUBSEP "sipgo" SUBSEP "B/op")
		sa = median(bench SUBSEP msg SUBSEP "sipgo" SUBSEP "allocs/op")
		r = (vn != "" && sn != "" && vn > 0) ? sprintf("%.1fx", sn / vn) : "?"
		printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", msg, num(vn), num(vb), num(va), num(sn), num(sb), num(sa), r
	}
	print ""
}

END {
	if (nmsg["ProxyFields"] + nmsg["Parse"] == 0) {
		print "no benchmark results found" > "/dev/stderr"
		exit 1
	}
	table("ProxyFields", "Parse + proxy fields")
	table("Parse", "Parse alone")
}
' "$out"
