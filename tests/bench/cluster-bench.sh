#!/bin/bash
# tests/bench/cluster-bench.sh [--out FILE.json] - batch across backends
#
# The batch phase of a migration three ways, on one generated corpus of
# BENCH_ACCOUNTS accounts (default 16) of BENCH_MESSAGES messages each
# (default 150, up to BENCH_MAX_SIZE, default 64K):
#   local      doveadm migrate batch on a backend itself, as one machine
#              runs it (no doveadm_port)
#   proxy-1    batch on a Dovecot proxy whose passdb sends every account to
#              one backend, through the doveadm protocol
#   proxy-2    the same with the accounts split over two backends (odd
#              accounts on one, even on the other)
# Each with batch's own default jobs (--max-connections-per-host 0, as the
# other benchmarks), into destinations emptied before each run, the ways
# interleaved in each of BENCH_ROUNDS rounds (default 3).  All nodes share
# this machine (backends on 127.0.0.2 and 127.0.0.3): what it shows is the
# protocol's cost and each node's CPU, not a cluster's speed-up.
#
# Reported per way (medians): wall s, MB/s, the bytes each backend wrote,
# and the CPU seconds each node
# used (the source server, the node that ran batch, each backend), from a
# cpuacct cgroup per node (cgroup v1, as here; without it, no CPU).  The
# JSON records the machine, its load average and the jobs batch chose.
# Not part of make check: make bench-cluster.
set -u
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -u/s/^# \{0,1\}//p' "$0" | sed '$d'; exit 0 ;;
	*) echo "cluster-bench: unknown option $1" >&2; exit 64 ;;
	esac
done
. "$SRCDIR/tests/lib/rig.sh"
rig_init bench-cluster

N=${BENCH_ACCOUNTS:-16}
MSGS=${BENCH_MESSAGES:-150}
MAXSZ=${BENCH_MAX_SIZE:-64K}
ROUNDS=${BENCH_ROUNDS:-3}
WAYS="local proxy-1 proxy-2"
log() { echo "cluster-bench: $*" >&2; }
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built (make)"

# --- a cpuacct cgroup per node ----------------------------------------------------
CGROOT=/sys/fs/cgroup/cpuacct
CG=
if [ -w "$CGROOT/cgroup.procs" ] && mkdir "$CGROOT/dm-bench.$$" 2>/dev/null; then
	CG=$CGROOT/dm-bench.$$
	for n in src batch b1 b2 proxy; do mkdir "$CG/$n"; done
	cg_cleanup() {
		local n p
		for n in src batch b1 b2 proxy; do
			for p in $(cat "$CG/$n/cgroup.procs" 2>/dev/null); do
				echo "$p" >"$CGROOT/cgroup.procs" 2>/dev/null
			done
			rmdir "$CG/$n" 2>/dev/null
		done
		rmdir "$CG" 2>/dev/null
	}
	rig_on_exit cg_cleanup
else
	log "no cpuacct cgroup (cgroup v1) here: CPU per node not reported"
fi
# a node's master and what it starts from now on
cg_master() {
	[ -n "$CG" ] || return 0
	local pid
	pid=$(rig__master_pid "$1") || rig_die "no master for $1"
	echo "$pid" >"$CG/$2/cgroup.procs"
}
cg_ns() {
	if [ -n "$CG" ]; then cat "$CG/$1/cpuacct.usage"; else echo 0; fi
}

# --- the nodes ---------------------------------------------------------------------
SRC_PW='Src!pass1'
DEST_PW='Dest!pass1'
rig_start_source src || exit 1
DPORT=$(rig_free_port 127.0.0.1 127.0.0.2 127.0.0.3) || rig_die "no free port"
rig_start_dest b1 --listen 127.0.0.2 --doveadm-port "$DPORT" || exit 1
rig_start_dest b2 --listen 127.0.0.3 --doveadm-port "$DPORT" || exit 1
rig_start_dest proxy --doveadm-proxy "$DPORT" || exit 1
for n in b1 b2 proxy; do
	rig_dest_plugin_set "$n" migrate_source_ssl no
	rig_dest_plugin_set "$n" migrate_retries 0
done
cg_master src src
cg_master b1 b1
cg_master b2 b2
cg_master proxy proxy

user() { printf 'u%03d' "$1"; }
rig_users_defer
for i in $(seq 1 "$N"); do
	u=$(user "$i")
	rig_add_user src "$u" "$SRC_PW"
	rig_add_user b1 "$u@example.com" "$DEST_PW"
	rig_add_user b2 "$u@example.com" "$DEST_PW"
done
rig_users_settle
export SRC_IMAP_PASSWORD=$SRC_PW
log "loading $N accounts of $MSGS messages (up to $MAXSZ)"
for i in $(seq 1 "$N"); do
	"$RIG_PY" "$RIG_TOOLS/gen-corpus.py" --port "$(rig_port src)" --user "$(user "$i")" \
		--password-env SRC_IMAP_PASSWORD --seed "$((2000 + i))" --messages "$MSGS" \
		--max-size "$MAXSZ" --connections 2 >/dev/null || rig_die "gen-corpus"
done
TEMPLATE=$RIG/template.txt
for i in $(seq 1 "$N"); do
	printf '127.0.0.1:%s;%s;%s;mx.example.com;%s@example.com;Str0ng!dest\n' \
		"$(rig_port src)" "$(user "$i")" "$SRC_PW" "$(user "$i")"
done >"$TEMPLATE"
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$TEMPLATE"

# the proxy's passdb: every account on b1 (1), or every other on b2 (2)
proxy_users() {
	local i host
	rig_users_defer
	for i in $(seq 1 "$N"); do
		host=127.0.0.2
		[ "$1" = 2 ] && [ $((i % 2)) = 0 ] && host=127.0.0.3
		rig_add_user proxy "$(user "$i")@example.com" "$DEST_PW" proxy=y "host=$host"
	done
	rig_users_settle
}
wipe() {
	local b
	for b in b1 b2; do
		find "$RIG/$b/mail" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
	done
}

# run WAY ROUND: one batch, its figures as a JSON line in $RIG/runs
run() {
	local way=$1 round=$2 node=proxy cgn=batch
	local t0 t1 rc=0 n ns_before ns_after
	case $way in
	local) node=b1; cgn=b1 ;;
	proxy-1) proxy_users 1 ;;
	proxy-2) proxy_users 2 ;;
	esac
	wipe
	sync
	declare -A before
	for n in src batch b1 b2 proxy; do before[$n]=$(cg_ns "$n"); done
	t0=$(date +%s.%N)
	(
		[ -n "$CG" ] && echo "$BASHPID" >"$CG/$cgn/cgroup.procs"
		exec 3>&-
		rig_doveadm "$node" migrate batch --max-connections-per-host 0 \
			--json "$RIG/$way.$round.json" "$TEMPLATE"
	) >"$RIG/$way.$round.out" 2>"$RIG/$way.$round.err" || rc=$?
	t1=$(date +%s.%N)
	local cpu=""
	for n in src batch b1 b2 proxy; do
		ns_after=$(cg_ns "$n")
		cpu="$cpu\"$n\": $(awk -v a="${before[$n]}" -v b="$ns_after" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'), "
	done
	"$RIG_PY" - "$way" "$round" "$t0" "$t1" "$rc" "$RIG/$way.$round.json" \
		"$RIG/$way.$round.err" "{${cpu%, }}" >>"$RIG/runs" <<-'EOF'
	import json, re, sys
	way, rnd, t0, t1, rc, rep, err, cpu = sys.argv[1:]
	r = json.load(open(rep))
	jobs = re.search(r"(\d+) accounts? at a time", open(err).read())
	nodes = {}
	for a in r["accounts"]:
	    b = {None: "local", "127.0.0.2": "b1", "127.0.0.3": "b2"}[
	        a["backend"] and a["backend"].split(":")[0]]
	    nodes[b] = nodes.get(b, 0) + a["bytes"]
	print(json.dumps({"way": way, "round": int(rnd), "wall_s": float(t1) - float(t0),
	    "exit": int(rc), "bytes": r["bytes"], "failed": r["accounts_failed"],
	    "jobs": int(jobs.group(1)) if jobs else None, "cpu_s": json.loads(cpu),
	    "bytes_by_backend": nodes}))
	EOF
	log "$(tail -n1 "$RIG/runs")"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
	for way in $WAYS; do
		run "$way" "$r"
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

"$RIG_PY" - "$RIG/runs" "$N" "$MSGS" "$MAXSZ" "$load_before" "$load_after" \
	"$(git -C "$SRCDIR" describe --always --dirty 2>/dev/null || echo unknown)" \
	"${OUT:-}" <<-'EOF'
import json, os, platform, statistics, sys, time
runs_path, n, msgs, maxsz, lb, la, tree, out = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_path)]
ways = {}
for r in runs:
    ways.setdefault(r["way"], []).append(r)
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "")
res = {"benchmark": "cluster-bench", "tree": tree,
       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "machine": {"cpus": os.cpu_count(), "cpu": cpu_model,
                   "kernel": platform.release()},
       "load_before": lb, "load_after": la,
       "corpus": {"accounts": int(n), "messages_per_account": int(msgs),
                  "max_size": maxsz},
       "runs": runs, "ways": {}}
print("%-8s %7s %7s %5s  %s" % ("way", "wall s", "MB/s", "jobs", "CPU s per node (median)"))
for way, rs in ways.items():
    wall = statistics.median(r["wall_s"] for r in rs)
    mb = statistics.median(r["bytes"] for r in rs) / 1e6
    cpu = {k: round(statistics.median(r["cpu_s"][k] for r in rs), 3)
           for k in rs[0]["cpu_s"]}
    ok = all(r["exit"] == 0 and r["failed"] == 0 for r in rs)
    res["ways"][way] = {"wall_s": round(wall, 3), "mb_s": round(mb / wall, 1),
                        "mb": round(mb, 1), "jobs": rs[0]["jobs"],
                        "cpu_s": cpu, "all_ok": ok}
    print("%-8s %7.2f %7.1f %5s  %s%s" % (way, wall, mb / wall, rs[0]["jobs"],
          " ".join("%s %.2f" % kv for kv in cpu.items()), "" if ok else "  (FAILURES)"))
if out:
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print("cluster-bench: wrote %s" % out)
EOF
