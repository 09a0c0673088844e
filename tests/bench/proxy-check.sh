#!/bin/bash
# tests/bench/proxy-check.sh - is tools/delayproxy.py what the bench needs?
#
#   tests/bench/proxy-check.sh [ROUNDS]        (default 5 rounds)
#
# Loads the bench's quick corpus (BENCH_MESSAGES, BENCH_MAX_SIZE and
# BENCH_SEED as in run-bench.sh) into a private source Dovecot, then, in
# ROUNDS interleaved rounds:
#   - the ceiling (bench-tool.py ceiling) straight to the source, and
#     through the proxy at RTT 0: the proxy must not be the bottleneck;
#   - at RTT 20 and 50 ms, 10 sequential NOOPs (bench-tool.py probe: each
#     should cost one RTT, and the proxy should count 12 waited round
#     trips: LOGIN, the NOOPs, LOGOUT) and the ceiling (3 waited round
#     trips: LOGIN, LIST, the rest in one write).
# Prints one line per measurement and the medians.  Nothing is asserted.

set -u
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/rig.sh
. "$BENCH_DIR/../lib/rig.sh"
ROUNDS=${1:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "proxy-check: ROUNDS: a number" >&2; exit 2; }

rig_init pxcheck
PY=$RIG_PY
T=$RIG_TOOLS
TOOL="$PY $BENCH_DIR/bench-tool.py"
mkdir -p "$RIG/logs"
printf 'Bench!src1' >"$RIG/src.pw"
chmod 600 "$RIG/src.pw"
rig_start_source src || exit 2
rig_add_user src bench "$(cat "$RIG/src.pw")"
SRC=$(rig_port src)
"$PY" "$T/gen-corpus.py" --port "$SRC" --user bench --password-file "$RIG/src.pw" \
	--seed "${BENCH_SEED:-7}" --messages "${BENCH_MESSAGES:-5000}" \
	--max-size "${BENCH_MAX_SIZE:-3M}" --manifest "$RIG/manifest" \
	>"$RIG/logs/gen-corpus.log" 2>&1 || { cat "$RIG/logs/gen-corpus.log" >&2; exit 2; }
echo "# corpus: $(wc -l <"$RIG/manifest") messages," \
	"$(awk -F '\t' '{ s += $3 } END { printf "%.1f", s / 1e6 }' "$RIG/manifest") MB"

# one proxy per RTT, each with its own log and label file
declare -A PORT
for rtt in 0 20 50; do
	PORT[$rtt]=$(rig_free_port)
	echo - >"$RIG/label-$rtt"
	"$PY" "$T/delayproxy.py" --port "${PORT[$rtt]}" --target-port "$SRC" \
		--rtt-ms "$rtt" --log "$RIG/logs/proxy-$rtt.log" \
		--label-file "$RIG/label-$rtt" --pidfile "$RIG/proxy-$rtt.pid" --daemon || exit 2
done
# shellcheck disable=SC2016 # expanded at exit
rig_on_exit 'for f in "$RIG"/proxy-*.pid; do kill "$(cat "$f")"; done 2>/dev/null'

# measure NAME RTT PORT SUBCOMMAND ARGS...: one run, its wall time and the
# waited round trips the proxy counted (RTT "-": no proxy)
measure() {
	local name=$1 rtt=$2 port=$3 label
	shift 3
	label=$name/$RANDOM$RANDOM
	[ "$rtt" = - ] || echo "$label" >"$RIG/label-$rtt"
	local start=$EPOCHREALTIME
	$TOOL "$@" --port "$port" --user bench --password-file "$RIG/src.pw" \
		>"$RIG/out.json" || exit 2
	local wall rts=-
	wall=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
	if [ "$rtt" != - ]; then
		echo - >"$RIG/label-$rtt"
		rts=$($TOOL proxy-stats --log "$RIG/logs/proxy-$rtt.log" --label "$label" |
			"$PY" -c 'import json, sys; print(json.load(sys.stdin)["round_trips"])')
	fi
	printf '%s\t%s\t%s\t%s\n' "$name" "$wall" "$rts" "$(cat "$RIG/out.json")" |
		tee -a "$RIG/results.tsv"
}

for r in $(seq 1 "$ROUNDS"); do
	measure ceiling-direct - "$SRC" ceiling
	measure ceiling-rtt0 0 "${PORT[0]}" ceiling
	for rtt in 20 50; do
		measure "probe-rtt$rtt" "$rtt" "${PORT[$rtt]}" probe --count 10
		measure "ceiling-rtt$rtt" "$rtt" "${PORT[$rtt]}" ceiling
	done
done

echo "# medians over $ROUNDS rounds: wall s, waited round trips, NOOP ms"
"$PY" - "$RIG/results.tsv" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, wall, rts, out = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(wall), rts, json.loads(out)))
for name, rs in rows.items():
    noop = [o["noop_ms_median"] for _w, _r, o in rs if "noop_ms_median" in o]
    print("%-16s wall %.3f s  round trips %s%s" % (
        name, statistics.median(w for w, _r, _o in rs),
        "/".join(sorted({r for _w, r, _o in rs})),
        "  NOOP %.2f ms" % statistics.median(noop) if noop else ""))
EOF
