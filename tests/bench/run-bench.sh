#!/bin/bash
# tests/bench/run-bench.sh - doveadm migrate against its peers on one corpus
#
#   tests/bench/run-bench.sh [--preset quick|large] [--out FILE.json]
#
# One private source Dovecot is loaded with a deterministic corpus
# (tests/tools/gen-corpus.py); then, on that same corpus, each tool copies
# the account into a fresh, empty destination:
#   migrate        doveadm migrate -u USER (our plugin; destination "mig")
#   dsync-default  doveadm backup -R -u USER imapc:   (destination "dsync";
#                  on loopback only: it fetches message by message)
#   dsync-pf1000   the same with -o mail_prefetch_count=1000
#   dsync-tuned    the same with -o mail_prefetch_count=20
#   mbsync         isync's mbsync pulling into a plain Maildir
#   ceiling        one IMAP connection; after LIST every folder's EXAMINE +
#                  UID FETCH 1:* BODY.PEEK[] in one write, bodies read and
#                  discarded
# Phases:
#   a-full     empty destination, fsync off everywhere (mail_fsync = never,
#              mbsync FSync no)
#   a-fsync    the same into other empty destinations with fsync on
#              (Dovecot's default mail_fsync = optimized, mbsync FSync yes;
#              migrate, dsync-tuned and mbsync; on loopback only)
#   b-noop     re-run, nothing changed (not for the ceiling)
#   d-new      re-run after 100 appends to INBOX alone (issue 18's point
#              3; only when BENCH_PHASES names it)
#   c-changes  re-run after 100 appends (INBOX), 100 flag changes (second
#              largest folder) and 100 expunges (largest folder) at the
#              source, made once for all tools, anew in each round
#   e-batch    BENCH_ACCOUNTS small accounts (their own corpus, seeds
#              1001...): migrate as an admin runs them, doveadm migrate
#              batch of a sync template of these accounts (its own default
#              -j, unless BENCH_JOBS is set); dsync-tuned, mbsync and the
#              ceiling one process per account, through xargs -P with
#              BENCH_JOBS at a time, by default as many as batch chose
#              when migrate ran (else twice the CPUs); the JSON records
#              the jobs of each tool's run
# Destinations are rig instances (mail_fsync = never unless a-fsync).
# Rounds (BENCH_ROUNDS; quick 3, large 1): a-full, b-noop and c-changes run
# that many times, the tools interleaved within each round (a-full into a
# destination emptied before each run); a-fsync and e-batch run once, and
# so does dsync-tuned at RTT > 0 (3-5x slower than the others there).
#
# Network (BENCH_RTT_MS=N, presets 0, 20 and 50): with N > 0 every tool,
# the ceiling included, reaches the source through tools/delayproxy.py, a
# streaming proxy that releases each chunk N/2 ms after it arrived, in
# either direction (a round trip costs N ms, a TCP handshake another);
# BENCH_BANDWIDTH_MBIT=M caps each direction at M Mbit/s (default: no cap,
# and on its own it puts the proxy in too); BENCH_PROXY=1 uses the proxy at
# RTT 0, to count round trips on loopback.  The fidelity checks and the
# changes talk to the source directly.  BENCH_LATENCY_MS=N, the older
# knob, means one way: BENCH_RTT_MS=2N.
#
# Per tool and phase (medians over the rounds): wall s (for migrate and
# dsync from inside the mount namespace doveadm runs in, whose set-up is
# the rig's), CPU s (user+sys of
# the client processes and their children, from GNU time's wait4), peak
# RSS (largest single process), MB/s for the full copies and the batch,
# the round trips the client waited for and its connections (counted at
# the proxy), migrate's wall time / each other tool's, and fidelity after
# a, c and e in the last round (imap-compare for migrate and the dsyncs;
# counts/sizes/flags per folder for mbsync); then the ratios issue 18 sets
# targets on.
# Output: a table on stdout, all numbers in JSON (default
# tests/bench/out/bench-<preset>.json).
#
# Nothing is asserted about the times.  Exit status: 0 when every tool ran
# (exit 0) in every phase, 1 otherwise, 2 on setup errors.
# Knobs: BENCH_KEEP=1 keeps the temp dir; BENCH_MESSAGES, BENCH_MAX_SIZE,
# BENCH_SEED, BENCH_TIMEOUT (seconds per tool run), BENCH_ACCOUNTS,
# BENCH_ACCOUNT_MESSAGES, BENCH_JOBS, BENCH_ROUNDS override the preset;
# (below about 1,000 BENCH_MESSAGES the 100 deletions of c-changes exceed
# migrate_max_delete_percent in the largest folder and migrate refuses
# them); BENCH_TOOLS="migrate mbsync ..." runs only those; BENCH_RTT_MS,
# BENCH_BANDWIDTH_MBIT, BENCH_PROXY as above; BENCH_TRACE=1 has the proxy
# log each waited round trip with the command that followed it, and each
# connection's bytes to the client per 10 ms (in logs/proxy.log of the
# kept temp dir); BENCH_WRAP="strace -f -tt -o FILE" runs migrate's
# doveadm under that command (its times are then not comparable);
# BENCH_PHASES="a-full e-batch" runs only those phases (default all);
# RIG_TMPDIR=DIR puts the servers and all mail there (e.g. a tmpfs);
# BENCH_SOURCE_FORMAT=sdbox|mdbox stores the source's mail so instead of
# in a Maildir, BENCH_DEST_FORMAT the same for migrate's and dsync's
# destinations (default maildir; the JSON records both).

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
quick) messages=5000 max_size=3M timeout=600 accounts=20 account_msgs=250 rounds=3 ;;
# gen-corpus.py has a fixed set of 16 folders (15 with messages)
large) messages=200000 max_size=3M timeout=14400 accounts=200 account_msgs=1000 rounds=1 ;;
*) echo "run-bench: --preset quick|large" >&2; exit 2 ;;
esac
MESSAGES=${BENCH_MESSAGES:-$messages}
MAX_SIZE=${BENCH_MAX_SIZE:-$max_size}
SEED=${BENCH_SEED:-7}
TIMEOUT=${BENCH_TIMEOUT:-$timeout}
ACCOUNTS=${BENCH_ACCOUNTS:-$accounts}
ACCOUNT_MSGS=${BENCH_ACCOUNT_MESSAGES:-$account_msgs}
# e-batch: BENCH_JOBS, else batch's own choice (migrate) or this
JOBS=${BENCH_JOBS:-}
LOAD_JOBS=$(($(nproc) * 2))
ROUNDS=${BENCH_ROUNDS:-$rounds}
if [ -n "${BENCH_RTT_MS:-}" ]; then
	RTT_MS=$BENCH_RTT_MS
elif [ -n "${BENCH_LATENCY_MS:-}" ]; then
	[[ $BENCH_LATENCY_MS =~ ^[0-9]+$ ]] || { echo "run-bench: BENCH_LATENCY_MS: not a number of ms" >&2; exit 2; }
	RTT_MS=$((BENCH_LATENCY_MS * 2))
else
	RTT_MS=0
fi
BANDWIDTH=${BENCH_BANDWIDTH_MBIT:-0}
SOURCE_FORMAT=${BENCH_SOURCE_FORMAT:-maildir}
DEST_FORMAT=${BENCH_DEST_FORMAT:-maildir}
for v in SOURCE_FORMAT DEST_FORMAT; do
	case ${!v} in
	maildir|sdbox|mdbox) ;;
	*) echo "run-bench: BENCH_$v: maildir, sdbox or mdbox" >&2; exit 2 ;;
	esac
done
for v in RTT_MS:BENCH_RTT_MS BANDWIDTH:BENCH_BANDWIDTH_MBIT ROUNDS:BENCH_ROUNDS; do
	n=${v%%:*}
	[[ ${!n} =~ ^[0-9]+$ ]] || { echo "run-bench: ${v#*:}: not a whole number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] || { echo "run-bench: BENCH_ROUNDS: at least 1" >&2; exit 2; }
USE_PROXY=0
[ "$RTT_MS" != 0 ] || [ "$BANDWIDTH" != 0 ] || [ "${BENCH_PROXY:-0}" = 1 ] && USE_PROXY=1
if [ -n "${BENCH_TOOLS:-}" ]; then
	read -r -a TOOLS <<<"$BENCH_TOOLS"
elif [ "$RTT_MS" = 0 ]; then
	TOOLS=(migrate dsync-default dsync-pf1000 dsync-tuned mbsync ceiling)
else
	# without prefetch imapc fetches one message per round trip: minutes
	# at 20 ms for the quick corpus
	TOOLS=(migrate dsync-pf1000 dsync-tuned mbsync ceiling)
fi
for tool in "${TOOLS[@]}"; do
	case $tool in
	migrate|dsync-default|dsync-pf1000|dsync-tuned|mbsync|ceiling) ;;
	*) echo "run-bench: BENCH_TOOLS: no tool $tool" >&2; exit 2 ;;
	esac
done
[ -z "$JOBS" ] || [[ $JOBS =~ ^[1-9][0-9]*$ ]] ||
	{ echo "run-bench: BENCH_JOBS: not a whole number" >&2; exit 2; }
read -r -a PHASES <<<"${BENCH_PHASES:-a-full a-fsync b-noop e-batch c-changes}"
for phase in "${PHASES[@]}"; do
	case $phase in
	a-full|a-fsync|b-noop|c-changes|d-new|e-batch) ;;
	*) echo "run-bench: BENCH_PHASES: no phase $phase" >&2; exit 2 ;;
	esac
done
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
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
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
rig_start_source src --format "$SOURCE_FORMAT" || exit 2
rig_start_dest mig --format "$DEST_FORMAT" || exit 2
rig_start_dest dsync --no-migrate --format "$DEST_FORMAT" || exit 2
# one wait for Dovecot to see all the users, not a second per user
rig_users_defer
rig_add_user src "$SRC_USER" "$SRC_PW"
rig_add_user mig "$SRC_USER" "$DEST_PW" "userdb_migrate_source_user=$SRC_USER"
rig_migrate_source mig src "$SRC_PW"
rig_add_user dsync dsync-default "$DEST_PW"
rig_add_user dsync dsync-tuned "$DEST_PW"
rig_add_user dsync dsync-pf1000 "$DEST_PW"
# a-fsync: the same account again into other empty destinations
rig_add_user mig "fs-$SRC_USER" "$DEST_PW" "userdb_migrate_source_user=$SRC_USER"
rig_add_user dsync dsync-fs "$DEST_PW"
rig_conf_add dsync "imapc_host = 127.0.0.1
imapc_port = $(rig_port src)
imapc_user = $SRC_USER
imapc_password = <$RIG/src.pw
imapc_features = rfc822.size fetch-headers modseq" || exit 2
# the tools' way to the source (the proxy's port with one); the checks and
# the changes always go straight
SRC_PORT=$(rig_port src)
TOOL_PORT=$SRC_PORT

# e-batch: the accounts b0001... at the source, at migrate's destination
# (same name) and at dsync's (dsync-b0001...)
BATCH_USERS=()
for i in $(seq 1 "$ACCOUNTS"); do
	u=$(printf 'b%04d' "$i")
	BATCH_USERS+=("$u")
	rig_add_user src "$u" "$SRC_PW"
	rig_add_user mig "$u" "$DEST_PW"
	rig_add_user dsync "dsync-$u" "$DEST_PW"
done
rig_users_settle
printf '%s\n' "${BATCH_USERS[@]}" >"$RIG/accounts"

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

log "loading $ACCOUNTS accounts of $ACCOUNT_MSGS messages"
mkdir -p "$RIG/batch-manifest"
# shellcheck disable=SC2016 # expanded by the inner sh
xargs -a "$RIG/accounts" -P "$LOAD_JOBS" -I{} sh -c '
	"$1" "$2/gen-corpus.py" --port "$3" --user "$4" --password-file "$5" \
		--seed "$(expr 1000 + "${4#b}")" --messages "$6" --max-size "$7" \
		--connections 1 --manifest "$8/$4" >"$9/gen-corpus-$4.log" 2>&1' \
	sh "$PY" "$T" "$SRC_PORT" {} "$RIG/src.pw" "$ACCOUNT_MSGS" "$MAX_SIZE" \
	"$RIG/batch-manifest" "$RIG/logs" ||
	{ log "loading the batch accounts failed"; exit 2; }
batch_bytes=$(cat "$RIG/batch-manifest/"* | awk -F '\t' '{ s += $3 } END { printf "%d", s }')
batch_msgs=$(cat "$RIG/batch-manifest/"* | wc -l)
log "batch corpus: $batch_msgs messages, $((batch_bytes / 1000000)) MB"

# --- every tool through the delay proxy (BENCH_RTT_MS) ----------------------
PROXY_LOG=$RIG/logs/proxy.log
LABEL=$RIG/proxy-label
probe_json=null
if [ "$USE_PROXY" = 1 ]; then
	PROXY=$(rig_free_port)
	echo - >"$LABEL"
	opts=()
	[ "$BANDWIDTH" = 0 ] || opts+=(--bandwidth-mbit "$BANDWIDTH")
	[ "${BENCH_TRACE:-0}" = 1 ] && opts+=(--trace)
	"$PY" "$T/delayproxy.py" --port "$PROXY" --target-port "$SRC_PORT" \
		--rtt-ms "$RTT_MS" "${opts[@]}" --log "$PROXY_LOG" --label-file "$LABEL" \
		--pidfile "$RIG/proxy.pid" --daemon || exit 2
	# shellcheck disable=SC2016 # expanded at exit
	rig_on_exit 'kill "$(cat "$RIG/proxy.pid")" 2>/dev/null'
	TOOL_PORT=$PROXY
	rig_dest_plugin_set mig migrate_source_port "$PROXY"
	rig_conf_add dsync "imapc_port = $PROXY" || exit 2
	# the proxy's own check: a NOOP costs one round trip, counted as one
	echo probe >"$LABEL"
	$TOOL probe --port "$TOOL_PORT" --user "$SRC_USER" --password-file "$RIG/src.pw" \
		--count 10 --json "$RIG/probe.json" >/dev/null || exit 2
	echo - >"$LABEL"
	$TOOL proxy-stats --log "$PROXY_LOG" --label probe --out "$RIG/probe-proxy.json"
	probe_json=$("$PY" -c 'import json, sys
p = json.load(open(sys.argv[1])); p["proxy"] = json.load(open(sys.argv[2]))
print(json.dumps(p))' "$RIG/probe.json" "$RIG/probe-proxy.json")
	bw_text="$BANDWIDTH Mbit/s"
	[ "$BANDWIDTH" = 0 ] && bw_text="not capped"
	log "every tool through tools/delayproxy.py: RTT $RTT_MS ms, bandwidth $bw_text; probe $probe_json"
fi

# --- mbsync configuration -------------------------------------------------
# mbsync_conf DIR USER FSYNC: one channel pulling USER's account into DIR
mbsync_conf() {
	local dir=$1 user=$2 fsync=$3
	mkdir -p "$dir/Maildir" "$dir/state"
	cat >"$dir/mbsyncrc" <<EOF
FSync $fsync

IMAPAccount source
Host 127.0.0.1
Port $TOOL_PORT
User $user
PassCmd "cat $RIG/src.pw"
SSLType None
AuthMechs LOGIN

IMAPStore source-imap
Account source

MaildirStore local
Path $dir/Maildir/
Inbox $dir/INBOX
SubFolders Verbatim

Channel bench
Far :source-imap:
Near :local:
Patterns *
Create Near
Sync Pull
Expunge Near
CopyArrivalDate yes
SyncState $dir/state/
EOF
}
MBS=$RIG/mbsync
mbsync_conf "$MBS" "$SRC_USER" no
mbsync_conf "$RIG/mbsync-fs" "$SRC_USER" yes
for u in "${BATCH_USERS[@]}"; do
	mbsync_conf "$RIG/mbsync-batch/$u" "$u" no
done

# --- the commands ---------------------------------------------------------
# doveadm (migrate's and dsync's) runs as an admin runs it where Dovecot
# runs: without -c, its settings come from the running instance's config
# socket, which a doveadm finds at /run/dovecot/config.  Each tool runs in
# a private mount namespace where a tmpfs on /run holds its instance's run
# dir (base_dir) there; the host's /run is not touched.  "mig" also sees
# our doveadm module there (rig_doveadm_cmd: a command line, as the timing
# wrapper execs a program).  BENCH_DOVEADM_CONFIG=file runs them
# with -c and the instance's dovecot.conf instead, as the sets before
# 2026-12-06 did: every doveadm process (migrate's workers, batch's
# accounts) then first runs doveconf on the file.  "acct TOOL USER" runs
# TOOL for one account of the batch.
case ${BENCH_DOVEADM_CONFIG:-socket} in
socket|file) DOVEADM_CONFIG=${BENCH_DOVEADM_CONFIG:-socket} ;;
*) echo "run-bench: BENCH_DOVEADM_CONFIG=socket|file" >&2; exit 2 ;;
esac
mapfile -d '' -t MIGRATE < <(rig_doveadm_cmd mig "$DOVEADM_CONFIG")
mapfile -d '' -t DSYNC < <(rig_doveadm_cmd dsync "$DOVEADM_CONFIG" -)
cat >"$RIG/acct" <<EOF
#!/bin/bash
# acct TOOL USER: one account of the e-batch phase
case \$1 in
dsync-tuned) exec $(printf '%q ' "${DSYNC[@]}") -o mail_prefetch_count=20 \\
	-o imapc_user="\$2" backup -R -u "dsync-\$2" imapc: ;;
dsync-pf1000) exec $(printf '%q ' "${DSYNC[@]}") -o mail_prefetch_count=1000 \\
	-o imapc_user="\$2" backup -R -u "dsync-\$2" imapc: ;;
mbsync) exec mbsync -q -c "$RIG/mbsync-batch/\$2/mbsyncrc" -a ;;
ceiling) exec $PY $BENCH_DIR/bench-tool.py ceiling --port $TOOL_PORT \\
	--user "\$2" --password-file $RIG/src.pw ;;
esac
exit 2
EOF
chmod 755 "$RIG/acct"

# e-batch of migrate: the sync template of the batch accounts, through
# the tools' way to the source (0600: it holds the passwords)
(umask 077
for u in "${BATCH_USERS[@]}"; do
	printf '127.0.0.1:%s;%s;%s;mx.example.com;%s;%s\n' "$TOOL_PORT" "$u" \
		"$SRC_PW" "$u" "$DEST_PW"
done >"$RIG/batch-template")
# the jobs of the e-batch runs so far: tool -> jobs
declare -A BATCH_JOBS=()

# sets CMD to TOOL's command line in PHASE
set_cmd() {
	local tool=$1 phase=$2
	case $tool:$phase in
	migrate:e-batch)
		# the other tools run unbounded against our own source:
		# so does batch (--max-connections-per-host 0)
		CMD=("${MIGRATE[@]}" migrate batch ${JOBS:+-j "$JOBS"}
			--max-connections-per-host 0 "$RIG/batch-template")
		return ;;
	*:e-batch)
		CMD=(xargs -a "$RIG/accounts" -P "$(other_jobs)" -n 1 "$RIG/acct"
			"$tool")
		return ;;
	esac
	case $tool:$phase in
	migrate:a-fsync) CMD=("${MIGRATE[@]}" -o mail_fsync=optimized
		migrate -u "fs-$SRC_USER") ;;
	migrate:*) CMD=("${MIGRATE[@]}" migrate -u "$SRC_USER") ;;
	dsync-default:*) CMD=("${DSYNC[@]}"
		backup -R -u dsync-default imapc:) ;;
	dsync-tuned:a-fsync) CMD=("${DSYNC[@]}" -o mail_prefetch_count=20
		-o mail_fsync=optimized backup -R -u dsync-fs imapc:) ;;
	dsync-tuned:*) CMD=("${DSYNC[@]}" -o mail_prefetch_count=20
		backup -R -u dsync-tuned imapc:) ;;
	dsync-pf1000:*) CMD=("${DSYNC[@]}" -o mail_prefetch_count=1000
		backup -R -u dsync-pf1000 imapc:) ;;
	mbsync:a-fsync) CMD=(mbsync -q -c "$RIG/mbsync-fs/mbsyncrc" -a) ;;
	mbsync:*) CMD=(mbsync -q -c "$MBS/mbsyncrc" -a) ;;
	ceiling:*) CMD=("$PY" "$BENCH_DIR/bench-tool.py" ceiling --port "$TOOL_PORT"
		--user "$SRC_USER" --password-file "$RIG/src.pw") ;;
	esac
}

# check_one TOOL SRC_USER LOG: fidelity of TOOL's copy of SRC_USER's
# account right now; prints the verdict, details in LOG
check_one() {
	local tool=$1 src_user=$2 log=$3 inst user mbs
	case $tool in
	migrate) inst=mig user=$src_user ;;
	migrate-fs) inst=mig user=fs-$src_user ;;
	dsync-*) inst=dsync user=$tool ;;
	mbsync*)
		case $tool in
		mbsync) mbs=$MBS ;;
		mbsync-fs) mbs=$RIG/mbsync-fs ;;
		*) mbs=$RIG/mbsync-batch/$src_user ;;
		esac
		$TOOL mbsync-check --port "$SRC_PORT" --user "$src_user" \
			--password-file "$RIG/src.pw" --maildir "$mbs/Maildir" \
			--inbox "$mbs/INBOX" >"$log" 2>&1
		# "mbsync-check: VERDICT (n/m messages, flags ..., X-TUID ..., keywords ...)"
		local line
		line=$(tail -n1 "$log")
		case $line in
		"mbsync-check: "*) echo "${line#mbsync-check: }" ;;
		*) echo "check failed" ;;
		esac
		return ;;
	*) echo "-"; return ;;
	esac
	"$PY" "$T/imap-compare.py" --src-port "$SRC_PORT" --src-user "$src_user" \
		--src-password-file "$RIG/src.pw" --dest-port "$(rig_port "$inst")" \
		--dest-user "$user" --dest-password-file "$RIG/dest.pw" \
		>"$log" 2>&1
	# EQUAL, or DIFFERENT with imap-compare's first difference line
	case $(tail -n1 "$log") in
	*"imap-compare: EQUAL"*) echo EQUAL ;;
	*"imap-compare: DIFFERENT"*) echo "DIFFERENT ($(head -n1 "$log" | cut -c1-60))" ;;
	*) echo "compare error" ;;
	esac
}

# the verdict on TOOL's result after PHASE
check() {
	local tool=$1 phase=$2 u v n=0 bad=0 first=
	case $phase in
	a-fsync)
		case $tool in
		migrate) check_one migrate-fs "$SRC_USER" "$RIG/logs/check-$tool-$phase.log" ;;
		dsync-tuned) check_one dsync-fs "$SRC_USER" "$RIG/logs/check-$tool-$phase.log" ;;
		mbsync) check_one mbsync-fs "$SRC_USER" "$RIG/logs/check-$tool-$phase.log" ;;
		*) echo "-" ;;
		esac ;;
	e-batch)
		[ "$tool" = ceiling ] && { echo "-"; return; }
		for u in "${BATCH_USERS[@]}"; do
			n=$((n + 1))
			case $tool in
			dsync-tuned) v=$(check_one "dsync-$u" "$u" "$RIG/logs/check-$tool-$phase-$u.log") ;;
			mbsync) v=$(check_one mbsync-batch "$u" "$RIG/logs/check-$tool-$phase-$u.log") ;;
			*) v=$(check_one "$tool" "$u" "$RIG/logs/check-$tool-$phase-$u.log") ;;
			esac
			case $v in
			EQUAL|"COUNTS+SIZES EQUAL"*) ;;
			*) bad=$((bad + 1)); [ -n "$first" ] || first="$u: $v" ;;
			esac
		done
		if [ "$bad" = 0 ]; then
			case $tool in
			mbsync) echo "COUNTS+SIZES EQUAL in $n/$n accounts (same caveats)" ;;
			*) echo "EQUAL in $n/$n accounts" ;;
			esac
		else
			echo "DIFFERENT in $bad/$n accounts (${first:0:70})"
		fi ;;
	*) check_one "$tool" "$SRC_USER" "$RIG/logs/check-$tool-$phase.log" ;;
	esac
}

# the accounts at a time of the other tools' e-batch: BENCH_JOBS, else
# what migrate batch chose, else twice the CPUs
other_jobs() {
	echo "${JOBS:-${BATCH_JOBS[migrate]:-$LOAD_JOBS}}"
}

# the jobs of TOOL's e-batch run whose log is LOG: migrate batch logs
# its -j ("... at a time (-j N...")
batch_jobs() {
	local tool=$1 log=$2 n
	if [ "$tool" = migrate ]; then
		n=$(sed -n 's/.* at a time (-j \([0-9]*\).*/\1/p' "$log" | head -n1)
		echo "${n:-$JOBS}"
	else
		other_jobs
	fi
}

# run TOOL PHASE ROUND [check]: TOOL under the timing wrapper (its proxy
# connections under the label TOOL/PHASE/ROUND), its result checked when
# asked, a JSON line recorded
run() {
	local tool=$1 phase=$2 round=$3 want_check=${4:-} rc=0 faithful="-" jobs='' wrap=''
	local name=$tool-$phase-$round
	local rec=$RIG/rec/$name.json
	log "$tool $phase (round $round)"
	local CMD
	set_cmd "$tool" "$phase"
	[ "$USE_PROXY" = 1 ] && echo "$tool/$phase/$round" >"$LABEL"
	if [ "${CMD[0]}" = unshare ]; then
		# doveadm's namespace (unshare, three mounts: 8-10 ms, the
		# rig's, not doveadm's) is set up before the clock starts: the
		# timer runs inside it (rig_doveadm_cmd's RIG_NS_EXEC), and
		# BENCH_WRAP inside the timer, for migrate only
		wrap=
		[ "$tool" = migrate ] && wrap=${BENCH_WRAP:-}
		RIG_NS_EXEC="$TOOL time --out $rec --log $RIG/logs/$name.log --timeout $TIMEOUT -- $wrap" \
			"${CMD[@]}" >>"$RIG/logs/$name.log" 2>&1 || rc=$?
		[ -s "$rec" ] || printf '{"wall_s": null, "cpu_s": null, "peak_rss_mb": null, "rc": %d, "timed_out": false}\n' \
			"$rc" >"$rec"
	else
		$TOOL time --out "$rec" --log "$RIG/logs/$name.log" \
			--timeout "$TIMEOUT" -- "${CMD[@]}" || rc=$?
	fi
	if [ "$USE_PROXY" = 1 ]; then
		echo - >"$LABEL"
		$TOOL proxy-stats --log "$PROXY_LOG" --label "$tool/$phase/$round" \
			--out "$rec.proxy"
	fi
	if [ "$rc" != 0 ]; then
		FAILED=1
		log "$tool $phase FAILED (rc $rc); log tail:"
		tail -n 5 "$RIG/logs/$name.log" >&2
	fi
	if [ "$phase" = e-batch ]; then
		jobs=$(batch_jobs "$tool" "$RIG/logs/$name.log")
		BATCH_JOBS[$tool]=$jobs
		log "  $tool $phase: ${jobs:-?} at a time"
	fi
	[ -n "$want_check" ] && faithful=$(check "$tool" "$phase")
	[ "$faithful" = "-" ] || log "  $tool $phase: $faithful"
	TOOL_NAME=$tool PHASE=$phase ROUND=$round FAITHFUL=$faithful JOBS_USED=$jobs "$PY" -c '
import json, os, sys
r = json.load(open(sys.argv[1]))
r.update(tool=os.environ["TOOL_NAME"], phase=os.environ["PHASE"],
         round=int(os.environ["ROUND"]), faithful=os.environ["FAITHFUL"])
if os.environ["JOBS_USED"]:
    r["jobs"] = int(os.environ["JOBS_USED"])
if os.path.exists(sys.argv[2]):
    r["proxy"] = json.load(open(sys.argv[2]))
print(json.dumps(r))' "$rec" "$rec.proxy" >>"$RESULTS"
}

# empties TOOL's destination of the a-full phase (state included)
wipe() {
	case $1 in
	migrate) rm -rf "$(rig_home mig "$SRC_USER")" ;;
	dsync-*) rm -rf "$(rig_home dsync "$1")" ;;
	mbsync) rm -rf "$MBS" && mbsync_conf "$MBS" "$SRC_USER" no ;;
	esac
}

has_tool() {
	local t
	for t in "${TOOLS[@]}"; do [ "$t" = "$1" ] && return 0; done
	return 1
}

# the rounds TOOL runs: at RTT > 0 dsync-tuned (prefetch 20) runs once,
# as it takes 3-5x as long as the others there and no target refers to it
rounds_of() {
	if [ "$1" = dsync-tuned ] && [ "$RTT_MS" != 0 ]; then echo 1; else echo "$ROUNDS"; fi
}
# in_round TOOL ROUND: whether TOOL runs in ROUND
in_round() { [ "$2" -le "$(rounds_of "$1")" ]; }
# the checks run in a tool's last round only
last() { [ "$2" = "$(rounds_of "$1")" ] && echo check; }

has_phase() {
	local p
	for p in "${PHASES[@]}"; do [ "$p" = "$1" ] && return 0; done
	return 1
}

has_phase a-full && for r in $(seq 1 "$ROUNDS"); do
	for tool in "${TOOLS[@]}"; do
		in_round "$tool" "$r" || continue
		wipe "$tool"
		run "$tool" a-full "$r" "$(last "$tool" "$r")"
	done
done
if [ "$USE_PROXY" = 0 ] && has_phase a-fsync; then
	# fsync is about the disk, not the network: on loopback only
	for tool in migrate dsync-tuned mbsync; do
		has_tool "$tool" && run "$tool" a-fsync 1 check
	done
fi
has_phase b-noop && for r in $(seq 1 "$ROUNDS"); do
	for tool in "${TOOLS[@]}"; do
		[ "$tool" != ceiling ] && in_round "$tool" "$r" && run "$tool" b-noop "$r"
	done
done
# migrate first: the others run as many at a time as its batch chose
has_phase e-batch && for tool in migrate dsync-tuned mbsync ceiling; do
	has_tool "$tool" && run "$tool" e-batch 1 check
done

# --- the same changes for everyone, anew in each round ---------------------
# expunges in the largest folder, flag changes in the second largest, new
# messages into INBOX
mapfile -t big < <(cut -f1 "$RIG/manifest" | sort | uniq -c | sort -rn | head -n2 |
	sed 's/^ *[0-9]* //')
imaptool() { "$PY" "$T/imaptool.py" --port "$SRC_PORT" --user "$SRC_USER" \
	--password-file "$RIG/src.pw" "$@"; }

# new_messages ROUND NAME SUBJECT DATE: 100 new messages into $RIG/new, From
# NAME<i>@, Subject "SUBJECT ROUND-i", Message-ID
# <bench-NAME-ROUND-i@>
new_messages() {
	local r=$1 name=$2 subject=$3 date=$4 i
	rm -rf "$RIG/new" && mkdir -p "$RIG/new"
	for i in $(seq 1 100); do
		printf 'From: %s%d@example.org\r\nTo: bench@example.com\r\nSubject: %s %d-%d\r\nDate: %s\r\nMessage-ID: <bench-%s-%d-%d@example.org>\r\n\r\nbody %d\r\n' \
			"$name" "$i" "$subject" "$r" "$i" "$date" "$name" "$r" "$i" "$i" >"$RIG/new/$i.eml"
	done
}

# changes ROUND: 100 expunged, 100 messages' flags replaced (by other flags
# than the last round's), 100 new messages
changes() {
	# shellcheck disable=SC2016 # a keyword, not a variable
	local r=$1 flags='\Answered $Forwarded'
	[ $((r % 2)) = 0 ] && flags='\Flagged'
	log "changes (round $r): 100 expunged in ${big[0]}, 100 flag changes in ${big[1]}, 100 new in INBOX"
	new_messages "$r" new "new message" "Mon, 1 Jan 2024 10:00:00 +0000"
	{
		imaptool expunge "${big[0]}" --first 100 &&
		imaptool set-flags "${big[1]}" --first 100 --mode replace --flags "$flags" &&
		imaptool append --flags '\Seen' INBOX "$RIG/new/"*.eml &&
		settle "${big[0]}" "${big[1]}" INBOX
	} >>"$RIG/logs/changes.log" 2>&1 || { cat "$RIG/logs/changes.log" >&2; exit 2; }
}

# settle FOLDER...: let the source Dovecot take in the changes just made
# before a tool is timed.  A Maildir whose directory changed within the
# last second stays "dirty" in its index, and the next session rescans it
# whole (cur/ of the 200,000 preset's INBOX: 82,000 files, about 0.2 s per
# scan, twice: new/ moved to cur/ dirties cur/ again).  Without this the
# first tool of each round pays that for the source.
settle() {
	local f
	sleep 1.1
	for f in "$@"; do imaptool uids "$f" >/dev/null || return 1; done
	sleep 1.1
	for f in "$@"; do imaptool uids "$f" >/dev/null || return 1; done
}

# new_mail ROUND: 100 new messages into INBOX, nothing else
new_mail() {
	log "new mail (round $1): 100 new in INBOX"
	new_messages "$1" d d-new "Tue, 2 Jan 2024 10:00:00 +0000"
	{ imaptool append INBOX "$RIG/new/"*.eml && settle INBOX; } >>"$RIG/logs/changes.log" 2>&1 ||
		{ cat "$RIG/logs/changes.log" >&2; exit 2; }
}

# rounds_after PHASE PREPARE: each round, PREPARE ROUND at the source, then
# every tool's PHASE run of that round (the ceiling only reads: not d-new)
rounds_after() {
	local phase=$1 prepare=$2 r tool
	has_phase "$phase" || return 0
	for r in $(seq 1 "$ROUNDS"); do
		"$prepare" "$r"
		for tool in "${TOOLS[@]}"; do
			[ "$phase:$tool" = d-new:ceiling ] && continue
			in_round "$tool" "$r" && run "$tool" "$phase" "$r" "$(last "$tool" "$r")"
		done
	done
	return 0
}
rounds_after c-changes changes
rounds_after d-new new_mail

# --- report ---------------------------------------------------------------
bench_s=$(awk -v a="$bench_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
PRESET=$PRESET MESSAGES=$MESSAGES MAX_SIZE=$MAX_SIZE SEED=$SEED \
CORPUS_MSGS=$corpus_msgs CORPUS_BYTES=$corpus_bytes LOAD_S=$load_s BENCH_S=$bench_s \
ACCOUNTS=$ACCOUNTS BATCH_MSGS=$batch_msgs BATCH_BYTES=$batch_bytes \
JOBS=$(for t in "${!BATCH_JOBS[@]}"; do printf '%s=%s ' "$t" "${BATCH_JOBS[$t]}"; done) \
RIG_DIR=$RIG ROUNDS=$ROUNDS SOURCE_FORMAT=$SOURCE_FORMAT DEST_FORMAT=$DEST_FORMAT DOVEADM_CONFIG=$DOVEADM_CONFIG RTT_MS=$RTT_MS BANDWIDTH=$BANDWIDTH USE_PROXY=$USE_PROXY \
PROBE=$probe_json LOAD_START=$loadavg_start LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg) \
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
    "batch": {"accounts": int(e["ACCOUNTS"]),
              "jobs": {t: int(n) for t, n in (w.split("=") for w in e["JOBS"].split())
                       if n},
              "messages": int(e["BATCH_MSGS"]), "bytes": int(e["BATCH_BYTES"])},
    "changes": "phase c: 100 appended, 100 flag changes, 100 expunged "
               "(anew in each round); phase d (when run): 100 appended "
               "to INBOX alone",
    "rounds": int(e["ROUNDS"]),
    "source_format": e["SOURCE_FORMAT"],
    "dest_format": e["DEST_FORMAT"],
    # where doveadm (migrate, dsync) read its settings: "socket" (the
    # running instance's, as without -c), "file" (-c dovecot.conf)
    "doveadm_config": e["DOVEADM_CONFIG"],
    "destination": "rig instances, " + e["DEST_FORMAT"] + ", mail_fsync = never "
                   "(a-fsync: optimized)",
    "filesystem": out("findmnt", "-n", "-o", "FSTYPE", "--target", e["RIG_DIR"]),
    "network": {"proxy": e["USE_PROXY"] == "1", "rtt_ms": int(e["RTT_MS"]),
                "bandwidth_mbit": int(e["BANDWIDTH"]) or None,
                "probe": json.loads(e["PROBE"])},
    "load_average": {"start": e["LOAD_START"], "end": e["LOAD_END"]},
    "bench_seconds": float(e["BENCH_S"]),
}))
EOF
$TOOL report --results "$RESULTS" --meta "$RIG/meta.json" --out "$OUT"
echo "whole bench: ${bench_s} s"
exit "$FAILED"
