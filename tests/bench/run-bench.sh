#!/bin/bash
# tests/bench/run-bench.sh - doveadm migrate against its peers on one corpus
#
#   tests/bench/run-bench.sh [--preset quick|large] [--out FILE.json]
#
# One private source Dovecot is loaded with a deterministic corpus
# (tests/tools/gen-corpus.py); then, on that same corpus, each tool copies
# the account into a fresh, empty destination:
#   migrate        doveadm migrate -u USER (our plugin; destination "mig")
#   dsync-default  doveadm backup -R -u USER imapc:   (destination "dsync")
#   dsync-tuned    the same with -o mail_prefetch_count=20
#   mbsync         isync's mbsync pulling into a plain Maildir
#   ceiling        one IMAP connection, per folder SELECT + pipelined
#                  UID FETCH 1:* BODY.PEEK[], bodies read and discarded
# Phases: a-full (empty destination), b-noop (re-run, nothing changed; not
# for the ceiling), c-changes (re-run after 100 appends, 100 flag changes
# and 100 expunges at the source, made once for all tools).
# Both destinations are rig instances (mail_fsync = never for both).
#
# Per tool and phase: wall s, CPU s (user+sys of the client process, from
# GNU time's wait4), peak RSS, MB/s for a-full, migrate's wall
# time / each other tool's, and fidelity after a and c (imap-compare for
# migrate and the dsyncs; counts/sizes/flags per folder for mbsync).
# Output: a table on stdout, all numbers in JSON (default
# tests/bench/out/bench-<preset>.json).
#
# Nothing is asserted about the times.  Exit status: 0 when every tool ran
# (exit 0) in every phase, 1 otherwise, 2 on setup errors.
# Knobs: BENCH_KEEP=1 keeps the temp dir; BENCH_MESSAGES, BENCH_MAX_SIZE,
# BENCH_SEED, BENCH_TIMEOUT (seconds per tool run) override the preset.

set -u
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/rig.sh
. "$BENCH_DIR/../lib/rig.sh"

PRESET=quick
OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--preset) PRESET=${2:-}; shift 2 ;;
	--out) OUT=${2:-}; shift 2 ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "run-bench: unknown argument $1" >&2; exit 2 ;;
	esac
done
case $PRESET in
quick) messages=5000 max_size=3M timeout=600 ;;
# gen-corpus.py has a fixed set of 16 folders (15 with messages)
large) messages=200000 max_size=3M timeout=14400 ;;
*) echo "run-bench: --preset quick|large" >&2; exit 2 ;;
esac
MESSAGES=${BENCH_MESSAGES:-$messages}
MAX_SIZE=${BENCH_MAX_SIZE:-$max_size}
SEED=${BENCH_SEED:-7}
TIMEOUT=${BENCH_TIMEOUT:-$timeout}
OUT=${OUT:-$BENCH_DIR/out/bench-$PRESET.json}
mkdir -p "$(dirname "$OUT")" || exit 2
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
[ "${BENCH_KEEP:-0}" = 1 ] && export RIG_KEEP=1

# mbsync (package isync) is one of the peers; GNU time measures CPU and
# peak RSS of each run
for need in mbsync:isync /usr/bin/time:time; do
	command -v "${need%%:*}" >/dev/null && continue
	echo "# installing ${need#*:}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need#*:}" >/dev/null ||
		{ echo "run-bench: cannot install ${need#*:}" >&2; exit 2; }
done

bench_start=$EPOCHREALTIME
rig_init bench
PY=$RIG_PY
T=$RIG_TOOLS
TOOL="$PY $BENCH_DIR/bench-tool.py"
SRC_USER=bench
mkdir -p "$RIG/logs" "$RIG/rec"
RESULTS=$RIG/results.jsonl
: >"$RESULTS"
FAILED=0

log() { echo "# $(date +%T) $*" >&2; }

# passwords in 0600 files, never on a command line
# (no newline: imapc_password = <FILE takes the file as it is)
printf 'Bench!src1' >"$RIG/src.pw"
printf 'Bench!dst1' >"$RIG/dest.pw"
chmod 600 "$RIG/src.pw" "$RIG/dest.pw"
SRC_PW=$(head -n1 "$RIG/src.pw")
DEST_PW=$(head -n1 "$RIG/dest.pw")

# --- instances ------------------------------------------------------------
rig_start_source src || exit 2
rig_start_dest mig || exit 2
rig_start_dest dsync --no-migrate || exit 2
rig_add_user src "$SRC_USER" "$SRC_PW"
rig_add_user mig "$SRC_USER" "$DEST_PW" "userdb_migrate_source_user=$SRC_USER"
rig_migrate_source mig src "$SRC_PW"
rig_add_user dsync dsync-default "$DEST_PW"
rig_add_user dsync dsync-tuned "$DEST_PW"
rig_conf_add dsync "imapc_host = 127.0.0.1
imapc_port = $(rig_port src)
imapc_user = $SRC_USER
imapc_password = <$RIG/src.pw
imapc_features = rfc822.size fetch-headers modseq" || exit 2
SRC_PORT=$(rig_port src)

# --- corpus ---------------------------------------------------------------
log "loading $MESSAGES messages (max size $MAX_SIZE, seed $SEED)"
load_start=$EPOCHREALTIME
"$PY" "$T/gen-corpus.py" --port "$SRC_PORT" --user "$SRC_USER" \
	--password-file "$RIG/src.pw" --seed "$SEED" --messages "$MESSAGES" \
	--max-size "$MAX_SIZE" --manifest "$RIG/manifest" >"$RIG/logs/gen-corpus.log" 2>&1 ||
	{ cat "$RIG/logs/gen-corpus.log" >&2; exit 2; }
corpus_bytes=$(awk -F '\t' '{ s += $3 } END { printf "%d", s }' "$RIG/manifest")
corpus_msgs=$(wc -l <"$RIG/manifest")
load_s=$(awk -v a="$load_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
log "corpus: $corpus_msgs messages, $((corpus_bytes / 1000000)) MB, loaded in $load_s s"

# --- mbsync configuration -------------------------------------------------
MBS=$RIG/mbsync
mkdir -p "$MBS/Maildir" "$MBS/state"
cat >"$MBS/mbsyncrc" <<EOF
IMAPAccount source
Host 127.0.0.1
Port $SRC_PORT
User $SRC_USER
PassCmd "cat $RIG/src.pw"
SSLType None
AuthMechs LOGIN

IMAPStore source-imap
Account source

MaildirStore local
Path $MBS/Maildir/
Inbox $MBS/INBOX
SubFolders Verbatim

Channel bench
Far :source-imap:
Near :local:
Patterns *
Create Near
Sync Pull
Expunge Near
CopyArrivalDate yes
SyncState $MBS/state/
EOF

# --- the commands ---------------------------------------------------------
# sets CMD to TOOL's command line.  doveadm of the "mig" destination sees
# our doveadm module only inside a private mount namespace (as rig_doveadm
# does; spelled out because the timing wrapper execs a program)
# shellcheck disable=SC2016 # $1/$2 belong to the inner sh
set_cmd() {
	case $1 in
	migrate) CMD=(unshare -m -- sh -c 'mods=$1 conf=$2; shift 2
		mount --bind "$mods" /usr/lib/dovecot/modules/doveadm || exit 97
		exec doveadm -c "$conf" "$@"' sh "$RIG/mods/doveadm" "$(rig_conf mig)"
		migrate -u "$SRC_USER") ;;
	dsync-default) CMD=(doveadm -c "$(rig_conf dsync)"
		backup -R -u dsync-default imapc:) ;;
	dsync-tuned) CMD=(doveadm -c "$(rig_conf dsync)" -o mail_prefetch_count=20
		backup -R -u dsync-tuned imapc:) ;;
	mbsync) CMD=(mbsync -q -c "$MBS/mbsyncrc" -a) ;;
	ceiling) CMD=("$PY" "$BENCH_DIR/bench-tool.py" ceiling --port "$SRC_PORT"
		--user "$SRC_USER" --password-file "$RIG/src.pw") ;;
	esac
}

# fidelity of TOOL's copy right now: prints the verdict, details in a file
check() {
	local tool=$1 phase=$2 inst user
	case $tool in
	migrate) inst=mig user=$SRC_USER ;;
	dsync-*) inst=dsync user=$tool ;;
	mbsync)
		$TOOL mbsync-check --port "$SRC_PORT" --user "$SRC_USER" \
			--password-file "$RIG/src.pw" --maildir "$MBS/Maildir" \
			--inbox "$MBS/INBOX" --json "$RIG/rec/check-$tool-$phase.json" \
			>"$RIG/logs/check-$tool-$phase.log" 2>&1
		# "mbsync-check: VERDICT (n/m messages, flags ..., X-TUID ..., keywords ...)"
		local line
		line=$(tail -n1 "$RIG/logs/check-$tool-$phase.log")
		case $line in
		"mbsync-check: "*) echo "${line#mbsync-check: }" ;;
		*) echo "check failed" ;;
		esac
		return ;;
	*) echo "-"; return ;;
	esac
	"$PY" "$T/imap-compare.py" --src-port "$SRC_PORT" --src-user "$SRC_USER" \
		--src-password-file "$RIG/src.pw" --dest-port "$(rig_port "$inst")" \
		--dest-user "$user" --dest-password-file "$RIG/dest.pw" \
		>"$RIG/logs/check-$tool-$phase.log" 2>&1
	# EQUAL, or DIFFERENT with imap-compare's first difference line
	local log=$RIG/logs/check-$tool-$phase.log
	case $(tail -n1 "$log") in
	*"imap-compare: EQUAL"*) echo EQUAL ;;
	*"imap-compare: DIFFERENT"*) echo "DIFFERENT ($(head -n1 "$log" | cut -c1-60))" ;;
	*) echo "compare error" ;;
	esac
}

# run TOOL for PHASE under the timing wrapper, check it, record a JSON line
run() {
	local tool=$1 phase=$2 rc=0 faithful="-"
	local rec=$RIG/rec/$tool-$phase.json
	log "$tool $phase"
	local CMD
	set_cmd "$tool"
	$TOOL time --out "$rec" --log "$RIG/logs/$tool-$phase.log" \
		--timeout "$TIMEOUT" -- "${CMD[@]}" || rc=$?
	if [ "$rc" != 0 ]; then
		FAILED=1
		log "$tool $phase FAILED (rc $rc); log tail:"
		tail -n 5 "$RIG/logs/$tool-$phase.log" >&2
	fi
	case $phase in a-full|c-changes) faithful=$(check "$tool" "$phase") ;; esac
	[ "$faithful" = "-" ] || log "  $tool $phase: $faithful"
	TOOL_NAME=$tool PHASE=$phase FAITHFUL=$faithful "$PY" -c '
import json, os, sys
r = json.load(open(sys.argv[1]))
r.update(tool=os.environ["TOOL_NAME"], phase=os.environ["PHASE"],
         faithful=os.environ["FAITHFUL"])
print(json.dumps(r))' "$rec" >>"$RESULTS"
}

TOOLS=(migrate dsync-default dsync-tuned mbsync ceiling)
for tool in "${TOOLS[@]}"; do run "$tool" a-full; done
for tool in "${TOOLS[@]}"; do
	[ "$tool" = ceiling ] || run "$tool" b-noop
done

# --- the same changes once for everyone -----------------------------------
# expunges in the largest folder, flag changes in the second largest, new
# messages into INBOX
mapfile -t big < <(cut -f1 "$RIG/manifest" | sort | uniq -c | sort -rn | head -n2 |
	sed 's/^ *[0-9]* //')
log "changes: 100 expunged in ${big[0]}, 100 flag changes in ${big[1]}, 100 new in INBOX"
imaptool() { "$PY" "$T/imaptool.py" --port "$SRC_PORT" --user "$SRC_USER" \
	--password-file "$RIG/src.pw" "$@"; }
mkdir -p "$RIG/new"
for i in $(seq 1 100); do
	printf 'From: new%d@example.org\r\nTo: bench@example.com\r\nSubject: new message %d\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <bench-new-%d@example.org>\r\n\r\nbody %d\r\n' \
		"$i" "$i" "$i" "$i" >"$RIG/new/$i.eml"
done
# shellcheck disable=SC2016 # a keyword, not a variable
{
	imaptool expunge "${big[0]}" --first 100 &&
	imaptool set-flags "${big[1]}" --first 100 --mode replace --flags '\Answered $Forwarded' &&
	imaptool append --flags '\Seen' INBOX "$RIG/new/"*.eml
} >"$RIG/logs/changes.log" 2>&1 || { cat "$RIG/logs/changes.log" >&2; exit 2; }

for tool in "${TOOLS[@]}"; do run "$tool" c-changes; done

# --- report ---------------------------------------------------------------
bench_s=$(awk -v a="$bench_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
PRESET=$PRESET MESSAGES=$MESSAGES MAX_SIZE=$MAX_SIZE SEED=$SEED \
CORPUS_MSGS=$corpus_msgs CORPUS_BYTES=$corpus_bytes LOAD_S=$load_s BENCH_S=$bench_s \
SRCDIR=$RIG_SRCDIR "$PY" - >"$RIG/meta.json" <<'EOF'
import json, os, platform, subprocess, time
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), None)
e = os.environ
print(json.dumps({
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "preset": e["PRESET"],
    "machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                "cpu": cpu, "mem_total_mb": int(mem) // 1024,
                "dovecot": out("dovecot", "--version"),
                "mbsync": out("mbsync", "--version")},
    "source_tree": out("git", "-C", e["SRCDIR"], "describe", "--always", "--dirty"),
    "corpus": {"generator": "tests/tools/gen-corpus.py", "seed": int(e["SEED"]),
               "max_size": e["MAX_SIZE"], "messages": int(e["CORPUS_MSGS"]),
               "bytes": int(e["CORPUS_BYTES"]), "load_s": float(e["LOAD_S"])},
    "changes": "phase c: 100 appended, 100 flag changes, 100 expunged",
    "destination": "rig instances, mail_fsync = never, maildir",
    "bench_seconds": float(e["BENCH_S"]),
}))
EOF
$TOOL report --results "$RESULTS" --meta "$RIG/meta.json" --out "$OUT"
echo "whole bench: ${bench_s} s"
exit "$FAILED"
