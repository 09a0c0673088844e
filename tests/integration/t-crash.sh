#!/bin/bash
# t-crash.sh - kill -9 doveadm migrate at random points, again and again;
# the next complete run must leave an exact mirror with no duplicate.
# make check kills the runs of each phase at most 6 times (T_CRASH_KILLS),
# make soak up to 60 times.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-crash

PY=$RIG_PY
T=$RIG_TOOLS
N=${T_CRASH_MESSAGES:-2000}
KILLS=${T_CRASH_KILLS:-6}
SRC_PW='Crash!src1'
DEST_PW='Crash!dst1'
# reproducible "random" kill points; the seed is printed for a re-run
SEED=${T_CRASH_SEED:-$RANDOM}
RANDOM=$SEED

rig_start_source src || exit 1
rig_start_dest dest || exit 1
# the kills (of doveadm, and of the source's imap processes below) must
# not leave a lock that stalls the next run for 120 s
rig_dotlocks_with_pid src
rig_dotlocks_with_pid dest
rig_add_user src carol "$SRC_PW"
rig_add_user dest carol@example.com "$DEST_PW" userdb_migrate_source_user=carol
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"
# small batches: more commit points to be killed between
rig_dest_plugin_set dest migrate_batch_messages 50

tap_diag "kill points seed: T_CRASH_SEED=$SEED"

compare() {
	"$PY" "$T/imap-compare.py" \
		--src-port "$(rig_port src)" --src-user carol \
		--dest-port "$(rig_port dest)" --dest-user carol@example.com "$@"
}

# start a run and kill -9 it DELAY ms after doveadm started; returns 0
# when the kill came before the run finished
killed_run() {
	local delay=$1 pid i
	rig_doveadm dest migrate -u carol@example.com >>"$RIG/runs.log" 2>&1 &
	pid=$!
	# from doveadm's start: on a busy machine the subshell may not have
	# got there within DELAY, and a kill that finds nothing to kill would
	# count as a run that finished by itself
	for i in $(seq 1 1000); do
		pgrep -x -P "$pid" doveadm >/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.002
	done
	sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
	# $! is the subshell running rig_doveadm: kill what it runs (doveadm
	# itself, exec'd by unshare and sh), then collect the subshell
	if pkill -9 -P "$pid" 2>/dev/null; then
		wait "$pid" 2>/dev/null
		echo "killed after ${delay} ms" >>"$RIG/runs.log"
		return 0
	fi
	wait "$pid" 2>/dev/null
	return 1
}

# kill runs at growing, jittered delays (STEP ms apart) until one finishes
# by itself: each kill lands at another point of the work
kill_until_done() {
	local step=$1 i
	KILLED=0
	for i in $(seq 1 "$KILLS"); do
		killed_run $((step * i + RANDOM % step)) || return 0
		KILLED=$((KILLED + 1))
	done
}

final_run() {
	local rc=0
	rig_doveadm dest migrate -u carol@example.com >"$RIG/final.log" 2>&1 || rc=$?
	echo "$rc"
}

tap_run "gen-corpus seeds $N messages" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user carol \
	--password-env SRC_IMAP_PASSWORD --seed 11 --messages "$N" --max-size 2M

# --- phase 1: the first copy, killed repeatedly -------------------------------
# 20 ms steps from doveadm's start: 3 kills or more before a run gets
# through, even where the copy is quick
kill_until_done 20
tap_diag "phase 1: $KILLED runs were killed mid-way"
if [ "$KILLED" -ge 3 ]; then
	tap_ok "runs were killed mid-copy ($KILLED)"
else
	tap_fail "only $KILLED runs were killed mid-copy"
fi
tap_is "$(final_run)" 0 "the run after the kills completes"
tap_run "checker: exact mirror, no duplicate, after kills during the copy" compare
tap_diag "$(tail -n 2 <<<"$TAP_OUT")"

# --- phase 2: changes at the source, the mirror run killed ---------------------
simap() { rig_imap src carol "$SRC_PW" "$@"; }
simap expunge Sent --first 20 >/dev/null
simap expunge INBOX --first 30 >/dev/null
simap set-flags Work --all --flags '\Flagged $Forwarded' >/dev/null
simap rename-folder 'Old Stuff' 'Renamed Stuff' >/dev/null
# enough new mail that the kills below land in the middle of copying it
# (with 40 new messages the whole mirror run took 46 ms)
for i in $(seq 1 400); do
	printf 'From: crash@example.org\r\nSubject: after %s\r\nMessage-ID: <after-%s@example.org>\r\n\r\nBody %s\r\n' \
		"$i" "$i" "$i" >"$RIG/a$i.eml"
done
simap append INBOX "$RIG"/a{1..400}.eml >/dev/null
kill_until_done 25
tap_diag "phase 2: $KILLED runs killed"
if [ "$KILLED" -ge 1 ]; then
	tap_ok "mirror runs were killed mid-way ($KILLED)"
else
	tap_fail "only $KILLED mirror runs were killed mid-way"
fi
tap_is "$(final_run)" 0 "the mirror run after the kills completes"
tap_run "checker: exact mirror after kills during a mirror run" compare
tap_diag "$(tail -n 2 <<<"$TAP_OUT")"

# --- the source drops the connection in the middle of a run ------------------
# large enough (400 x 150 KB) that the copy is still going when the test
# sees the first batch land, whichever process copies the folder
work_dir=$(rig_maildir dest carol@example.com)/.Work
src_master=$(cat "$(rig_base_dir src)/master.pid")
# seed 400 more messages numbered from $1
seed_drop() {
	local i
	for i in $(seq "$1" $(($1 + 399))); do
		printf 'From: drop@example.org\r\nSubject: drop %s\r\nMessage-ID: <drop-%s@example.org>\r\n\r\n%s\r\n' \
			"$i" "$i" "$(head -c 150000 /dev/zero | tr '\0' x | fold -w 76)" >"$RIG/d$i.eml"
	done
	simap append Work $(seq -f "$RIG/d%g.eml" "$1" $(($1 + 399))) >/dev/null
}
dest_count() { find "$work_dir/cur" "$work_dir/new" -type f | wc -l; }
# run with doveadm options "$@"; once the first batch of the new messages
# is saved, kill the source's imap processes: the connection drops in the
# middle of the copy.  Sets DROP_RC, DROP_BASE, DROP_ROW (the summary).
drop_run() {
	local i pid
	DROP_BASE=$(dest_count)
	rig_doveadm dest -f tab "$@" migrate -u carol@example.com >"$RIG/drop.log" 2>&1 &
	pid=$!
	for i in $(seq 1 2000); do
		[ "$(dest_count)" -gt "$DROP_BASE" ] && break
		sleep 0.005
	done
	pkill -9 -P "$src_master" -x imap
	DROP_RC=0
	wait "$pid" || DROP_RC=$?
	DROP_ROW=$(grep -A1 $'^user\tresult' "$RIG/drop.log" | tail -n 1)
}

# without retries: exit 75, what was saved is kept
seed_drop 41
drop_run -o plugin/migrate_retries=0
tap_is "$DROP_RC" 75 "a connection dropped mid-copy, no retries: exits 75 (tempfail)"
now=$(dest_count)
if [ "$now" -gt "$DROP_BASE" ] && [ "$now" -lt $((DROP_BASE + 400)) ]; then
	tap_ok "the drop came mid-copy: $((now - DROP_BASE)) of 400 saved, kept"
else
	tap_fail "the drop did not come mid-copy ($((now - DROP_BASE)) of 400 saved)"
fi
tap_is "$(final_run)" 0 "the re-run after the drop completes"
tap_run "checker: exact mirror after the dropped connection" compare

# with retries (the default): the run connects again and goes on
seed_drop 441
drop_run -o plugin/migrate_retry_delay=1s
tap_is "$DROP_RC" 0 "a connection dropped mid-copy is retried: the run exits 0"
tap_is "$(cut -f19 <<<"$DROP_ROW")" 1 "the summary counts 1 retry"
tap_like "the retry is logged with its cause" \
	'Retry 1 of 3 in 1 s, going on from what is copied: .*Work' "$(cat "$RIG/drop.log")"
tap_is "$(cut -f8 <<<"$DROP_ROW")" 400 "the two passes copied the 400 once (no duplicate)"
tap_run "checker: exact mirror after the retried drop" compare

# --- and once more: nothing left to do --------------------------------------
rig_doveadm dest -f tab migrate -u carol@example.com >"$RIG/last.log" 2>&1
row=$(grep -A1 $'^user\tresult' "$RIG/last.log" | tail -n 1)
tap_like "a further run copies and deletes nothing" \
	$'^carol@example.com\tok\t[0-9]+\t[0-9]+\t0\t0\t0\t0\t0\t0\t' "$row"

# the long lock waits seen now and then after a kill (README, "not
# understood yet"): show what held which lock, for whoever looks into it
locks=$(grep -h 'was locked for\|while waiting for lock' "$RIG"/*.log \
	"$(rig_log dest)" 2>/dev/null | head -n 5)
[ -z "$locks" ] || tap_diag "lock waits in this run:" "$locks"

tap_done
