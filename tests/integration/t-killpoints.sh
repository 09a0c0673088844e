#!/bin/bash
# t-killpoints.sh - kill doveadm migrate at each step of its per-message and
# per-folder sequence (migrate_debug_kill = STEP[:N] makes the process
# SIGKILL itself the Nth time it reaches STEP), as isync's test suite does;
# the next run must complete with nothing lost and nothing copied twice.
#
# Each step gets its own source account, seeded the same way.  Phase 1 kills
# the first copy, phase 2 a mirror run after changes at the source (flags,
# expunges, a folder renamed, a folder deleted, new mail).  A step is tested
# where the run reaches it; every step must be reached in at least one phase.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-killpoints

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Kill!src1'
DEST_PW='Kill!dst1'

# STEP:N [workers]; the owner alone unless workers are given
STEPS=(list create save:120 commit:2 state:2 flags finish:2 rename expunge
	delete-folder subscribe:2 state-commit "save:150 2" "commit:3 2")

rig_start_source src || exit 1
rig_start_dest dest || exit 1
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"
# small batches: several commits per folder
rig_dest_plugin_set dest migrate_batch_messages 40

simap() { local u=$1; shift; rig_imap src "$u" "$SRC_PW" "$@"; }
compare() {
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user "$1" \
		--dest-port "$(rig_port dest)" --dest-user "$1@example.com"
}
# run as user U with extra doveadm args; sets RUN_RC and RUN_ROW
run() {
	local u=$1
	shift
	RUN_OUT=$RIG/run.$u.$RANDOM
	RUN_RC=0
	rig_doveadm dest -f tab "$@" migrate -u "$u@example.com" >"$RUN_OUT" 2>&1 || RUN_RC=$?
	RUN_ROW=$(grep -A1 -m1 $'^user\tresult' "$RUN_OUT" | tail -n 1)
}
# the kill came at the step asked for, after its log line: SIGKILL (137),
# or 75 when it was a worker that died (its owner then stops)
killed_at() {
	{ [ "$RUN_RC" = 137 ] || [ "$RUN_RC" = 75 ]; } &&
		grep -q "killing this process at step $1 " "$RUN_OUT"
}

# every step's accounts at once (one wait for Dovecot to see them)
rig_users_defer
for i in $(seq 1 ${#STEPS[@]}); do
	rig_add_user src "k$i" "$SRC_PW"
	rig_add_user dest "k$i@example.com" "$DEST_PW" userdb_migrate_source_user="k$i"
done
rig_users_settle

i=0
for entry in "${STEPS[@]}"; do
	i=$((i + 1))
	u=k$i
	read -r step workers <<<"$entry"
	workers=${workers:-1}
	name=${step%%:*}
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user "$u" \
		--password-env SRC_IMAP_PASSWORD --seed 21 --messages 300 \
		--max-size 96K >/dev/null || tap_fail "$u: seeding failed"
	kills=0

	# --- phase 1: the first copy -------------------------------------------------
	run "$u" -o "plugin/migrate_debug_kill=$step" -o "plugin/migrate_workers=$workers"
	if killed_at "$name"; then
		kills=$((kills + 1))
		run "$u" -o "plugin/migrate_workers=$workers"
		tap_is "$RUN_RC" 0 "$entry: the copy after the kill completes"
		tap_run "$entry: checker: exact mirror after the kill in the first copy" compare "$u"
	elif [ "$RUN_RC" != 0 ]; then
		tap_fail "$entry: first copy exited $RUN_RC without the kill"
		tap_diag "$(tail -n 5 "$RUN_OUT")"
	fi

	# --- phase 2: changes at the source, a mirror run ---------------------------
	simap "$u" set-flags INBOX --first 30 --flags '\Flagged $Forwarded' --mode add >/dev/null
	simap "$u" expunge INBOX --first 10 >/dev/null
	simap "$u" rename-folder Work "Work Renamed" >/dev/null
	folder=$(simap "$u" list | grep -v -x -e INBOX -e 'Work Renamed' -e 'Work Renamed/.*' \
		-e Sent -e Trash -e Drafts -e Junk | tail -n 1)
	simap "$u" delete-folder "$folder" >/dev/null
	printf 'From: kill@example.org\r\nSubject: new %s\r\nMessage-ID: <new-%s@example.org>\r\n\r\nNew.\r\n' \
		"$u" "$u" >"$RIG/new.$u.eml"
	simap "$u" append --create "New Folder" "$RIG/new.$u.eml" >/dev/null
	simap "$u" append INBOX "$RIG/new.$u.eml" >/dev/null
	run "$u" -o "plugin/migrate_debug_kill=$step" -o "plugin/migrate_workers=$workers"
	if killed_at "$name"; then
		kills=$((kills + 1))
		run "$u" -o "plugin/migrate_workers=$workers"
		tap_is "$RUN_RC" 0 "$entry: the mirror run after the kill completes"
	else
		tap_is "$RUN_RC" 0 "$entry: the mirror run (not killed) completes"
	fi
	tap_run "$entry: checker: exact mirror after the changes${kills:+ and the kill}" compare "$u"
	run "$u"
	tap_like "$entry: a further run copies, updates and deletes nothing" \
		$'^'"$u"$'@example.com\tok\t[0-9]+\t[0-9]+\t0\t0\t0\t0\t0\t0\t' "$RUN_ROW"
	if [ "$kills" -gt 0 ]; then
		tap_ok "$entry: the run was killed at the step ($kills of 2 phases)"
	else
		tap_fail "$entry: no run reached the step"
	fi
done

tap_done
