# bench/lib.sh: what the benchmark scripts share. Source it from the
# repository root (after set -euo pipefail): it makes $work, a scratch
# directory, and $pids, the background processes to kill; both go when the
# script exits.
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
