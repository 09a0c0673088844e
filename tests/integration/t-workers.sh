#!/bin/bash
# t-workers.sh - doveadm migrate copies large folders in worker processes
# (migrate_workers, -w): the result is the same exact mirror, the owner
# alone records the state, and a worker never outlives its owner.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-workers

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Work!src1'
DEST_PW='Work!dst1'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
# the kills must not leave a lock that stalls the next run for 120 s
rig_dotlocks_with_pid dest
rig_add_user src wanda "$SRC_PW"
rig_add_user dest wanda@example.com "$DEST_PW" userdb_migrate_source_user=wanda
rig_add_user dest solo@example.com "$DEST_PW" userdb_migrate_source_user=wanda
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"
# small batches: many commits for the kills below to fall between
rig_dest_plugin_set dest migrate_batch_messages 50

# a worker's command line names our destination's config: another test
# (or suite) on this machine may run workers for the same user names
WORKER_OF="$(rig_conf dest) migrate worker -u"

compare() {
	local user=$1
	shift
	"$PY" "$T/imap-compare.py" \
		--src-port "$(rig_port src)" --src-user wanda \
		--dest-port "$(rig_port dest)" --dest-user "$user" "$@"
}

# the PIDs in the names of a Maildir folder's files (Maildir names carry
# the writing process's PID: <secs>.M<usecs>P<pid>.<host>)
writers() {
	find "$1/cur" "$1/new" -type f 2>/dev/null |
		sed -n 's/.*\.M[0-9]*P\([0-9]*\)\..*/\1/p' | sort -u
}

# wait (at most about 15 s) until the Maildir folder DIR holds N messages
wait_saved() {
	local dir=$1 n=$2 i
	for i in $(seq 1 3000); do
		[ "$(find "$dir/cur" "$dir/new" -type f 2>/dev/null | wc -l)" -ge "$n" ] && return
		sleep 0.005
	done
}

# "copied" column of the summary row in FILE
copied_of() {
	awk -F'\t' '$1 == "user" { for (i = 1; i <= NF; i++) c[$i] = i; next }
		c["copied"] { print $c["copied"]; exit }' "$1"
}

tap_run "gen-corpus seeds 2500 messages" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user wanda \
	--password-env SRC_IMAP_PASSWORD --seed 31 --messages 2500 --max-size 512K

# --- the full copy with a worker --------------------------------------------
rc=0
rig_doveadm dest -f tab migrate -w 2 -u wanda@example.com >"$RIG/full.out" 2>"$RIG/full.err" || rc=$?
tap_is "$rc" 0 "migrate -w 2 exits 0"
tap_is "$(copied_of "$RIG/full.out")" 2500 "the summary counts the worker's copies (2500)"
tap_run "checker: exact mirror, no duplicate, with a worker" compare wanda@example.com

md=$(rig_maildir dest wanda@example.com)
inbox_pids=$(writers "$md")
work_pids=$(writers "$md/.Work")
all_pids=$( { writers "$md"; for d in "$md"/.[!.]*; do writers "$d"; done; } | sort -u | wc -l)
tap_is "$all_pids" 2 "two processes wrote the mail (owner and worker)"
if [ "$(wc -w <<<"$inbox_pids")" = 1 ] && [ -n "$work_pids" ] &&
   ! grep -qx "$inbox_pids" <<<"$work_pids"; then
	tap_ok "INBOX, the largest folder, was copied by the other process"
else
	tap_fail "INBOX writers: $inbox_pids; Work writers: $work_pids"
fi
if pgrep -f "$WORKER_OF wanda@example.com" >/dev/null; then
	tap_fail "a worker is still running after its owner ended"
else
	tap_ok "no worker left after the run"
fi

# the owner mapped the worker's copies by their GUIDs: nothing to do now
logins() { grep -c 'imap-login: .*Login: user=<wanda>' "$(rig_log src)"; }
n_login=$(logins)
rig_doveadm dest -f tab migrate -u wanda@example.com >"$RIG/noop.out" 2>&1
row=$(grep -A1 $'^user\tresult' "$RIG/noop.out" | tail -n 1)
tap_like "a re-run finds every folder unchanged and copies nothing" \
	$'^wanda@example.com\tok\t([0-9]+)\t\\1\t0\t0\t0\t0\t0\t0\t' "$row"
# a worker logs in before its first job only on an account's first run
tap_is "$(($(logins) - n_login))" 2 "... logging in twice (storage and our own connection), no worker woken"

# --- changes at the source: the mirror run delegates the new mail ----------
simap() { rig_imap src wanda "$SRC_PW" "$@"; }
for i in $(seq 1 150); do
	printf 'From: w@example.org\r\nSubject: new %s\r\nMessage-ID: <new-%s@example.org>\r\n\r\nBody %s\r\n' \
		"$i" "$i" "$i" >"$RIG/n$i.eml"
done
simap append INBOX "$RIG"/n{1..150}.eml >/dev/null
simap expunge INBOX --first 25 >/dev/null
simap set-flags Work --all --flags '\Flagged' >/dev/null
rc=0
rig_doveadm dest -f tab migrate -u wanda@example.com >"$RIG/changes.out" 2>&1 || rc=$?
tap_is "$rc" 0 "the mirror run after 150 new, 25 expunged, flag changes exits 0"
tap_is "$(copied_of "$RIG/changes.out")" 150 "it copies the 150 new messages"
tap_run "checker: exact mirror after the changes" compare wanda@example.com

# --- settings from the running Dovecot's config socket ------------------------
# doveadm without -c reads its settings from the running instance (its
# config socket); so do the worker and batch's accounts, which must not be
# sent to the default dovecot.conf (on this machine: the system's, which
# knows nothing of this rig).  A smaller account of its own: sally.
rig_add_user src sally "$SRC_PW"
tap_run "gen-corpus seeds sally's 400 messages" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user sally \
	--password-env SRC_IMAP_PASSWORD --seed 37 --messages 400 --max-size 64K
compare_sally() {
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user sally \
		--dest-port "$(rig_port dest)" --dest-user "$1"
}
all_writers() {
	local md
	md=$(rig_maildir dest "$1")
	{ writers "$md"; for d in "$md"/.[!.]*; do writers "$d"; done; } | sort -u | wc -l
}
rig_add_user dest sock@example.com "$DEST_PW" userdb_migrate_source_user=sally
rc=0
rig_doveadm_socket dest -f tab migrate -w 2 -u sock@example.com >"$RIG/sock.out" 2>"$RIG/sock.err" || rc=$?
tap_is "$rc" 0 "doveadm without -c (settings from the config socket), -w 2: exit 0"
tap_is "$(copied_of "$RIG/sock.out")" 400 "... the worker's copies counted (400)"
tap_is "$(all_writers sock@example.com)" 2 "... two processes wrote the mail: the worker read the same settings"
tap_run "checker: exact mirror, settings from the config socket" compare_sally sock@example.com

# --- -w 1: one process only ---------------------------------------------------
rig_doveadm dest -f tab migrate -w 1 -u solo@example.com >"$RIG/solo.out" 2>&1
smd=$(rig_maildir dest solo@example.com)
solo_pids=$( { writers "$smd"; for d in "$smd"/.[!.]*; do writers "$d"; done; } | sort -u | wc -l)
tap_is "$solo_pids" 1 "-w 1 copies in one process"
tap_run "checker: exact mirror with -w 1" compare solo@example.com

# --- the owner killed while its worker copies --------------------------------
# a fresh account with a large INBOX; kill -9 the owner mid-copy
rig_add_user dest kill1@example.com "$DEST_PW" userdb_migrate_source_user=wanda
kmd=$(rig_maildir dest kill1@example.com)
rig_doveadm dest migrate -u kill1@example.com >"$RIG/kill1.log" 2>&1 &
pid=$!
wait_saved "$kmd" 100
pkill -9 -P "$pid"
wait "$pid" 2>/dev/null
sleep 0.5
if pgrep -f "$WORKER_OF kill1@example.com" >/dev/null; then
	tap_fail "the worker outlived its killed owner"
	pkill -9 -f "$WORKER_OF kill1@example.com"
else
	tap_ok "the worker died with its owner"
fi
n=$(find "$kmd/cur" "$kmd/new" -type f 2>/dev/null | wc -l)
sleep 0.5
n2=$(find "$kmd/cur" "$kmd/new" -type f 2>/dev/null | wc -l)
tap_is "$n2" "$n" "nothing more was saved after the kill ($n of INBOX's messages)"
rc=0
rig_doveadm dest migrate -u kill1@example.com >"$RIG/kill1b.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the run after the kill completes"
tap_run "checker: exact mirror, no duplicate, after the owner was killed" \
	compare kill1@example.com

# --- the worker killed mid-copy ----------------------------------------------
rig_add_user dest kill2@example.com "$DEST_PW" userdb_migrate_source_user=wanda
kmd=$(rig_maildir dest kill2@example.com)
rc=0
rig_doveadm dest migrate -u kill2@example.com >"$RIG/kill2.log" 2>&1 &
pid=$!
wait_saved "$kmd" 100
pkill -9 -f "$WORKER_OF kill2@example.com"
wait "$pid" || rc=$?
tap_is "$rc" 75 "a worker killed mid-copy makes the run exit 75 (tempfail)"
tap_like "the error names the folder and the worker" \
	"INBOX: The worker copying it exited without an answer" "$(cat "$RIG/kill2.log")"
rc=0
rig_doveadm dest migrate -u kill2@example.com >"$RIG/kill2b.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the run after the worker's death completes"
tap_run "checker: exact mirror, no duplicate, after the worker was killed" \
	compare kill2@example.com

# --- soak (make soak): kill -9 the owner or its worker at random points ------
# T_WORKERS_KILLS accounts (0 in make check), each copied by runs killed
# once or twice (the owner or the worker, once the account holds a random
# number of messages), then by one clean run: an exact mirror every time.
SOAK=${T_WORKERS_KILLS:-0}
if [ "$SOAK" -gt 0 ]; then
	soak_kill() {   # USER: one run, killed at a random point
		local u=$1 pid target i
		rig_doveadm dest migrate -u "$u" >>"$RIG/soak.log" 2>&1 &
		pid=$!
		target=$((RANDOM % 2400 + 20))
		for i in $(seq 1 3000); do
			[ "$(find "$(rig_maildir dest "$u")" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null |
				wc -l)" -ge "$target" ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.01
		done
		if [ $((RANDOM % 2)) = 0 ]; then
			pkill -9 -P "$pid" && SOAK_OWNER=$((SOAK_OWNER + 1))
		else
			pkill -9 -f "$WORKER_OF $u\$" && SOAK_WORKER=$((SOAK_WORKER + 1))
		fi
		wait "$pid" 2>/dev/null
		pkill -9 -f "$WORKER_OF $u\$"
	}
	SOAK_OWNER=0 SOAK_WORKER=0 soak_bad=0
	for k in $(seq 1 "$SOAK"); do
		u=soak$k@example.com
		rig_add_user dest "$u" "$DEST_PW" userdb_migrate_source_user=wanda
		soak_kill "$u"
		[ $((RANDOM % 2)) = 0 ] && soak_kill "$u"
		rc=0
		rig_doveadm dest migrate -u "$u" >>"$RIG/soak.log" 2>&1 || rc=$?
		if [ "$rc" != 0 ] || ! compare "$u" >"$RIG/soak-compare.out" 2>&1; then
			soak_bad=$((soak_bad + 1))
			tap_diag "soak: $u: exit $rc" "$(tail -n 3 "$RIG/soak-compare.out")"
		fi
	done
	tap_diag "soak: $SOAK accounts, $SOAK_OWNER owner and $SOAK_WORKER worker processes killed"
	tap_is "$soak_bad" 0 "soak: after random kills of the owner or its worker, one clean run leaves an exact mirror ($SOAK accounts)"
fi

# --- credentials from the batch reach the worker, never its argv ------------
rig_add_user dest batch1@example.com "$DEST_PW"
tmpl=$RIG/template.txt
printf '127.0.0.1:%s;wanda;%s;mx.example.com;batch1@example.com;Str0ng!dest\n' \
	"$(rig_port src)" "$SRC_PW" >"$tmpl"
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$tmpl"
# the template alone names the source account
rig_dest_plugin_set dest migrate_source_password_file ""
rig_doveadm dest migrate batch -j 1 "$tmpl" >"$RIG/batch.out" 2>"$RIG/batch.err" &
pid=$!
: >"$RIG/ps.txt"
while kill -0 "$pid" 2>/dev/null; do
	ps -eo args >>"$RIG/ps.txt"
	sleep 0.02
done
rc=0
wait "$pid" || rc=$?
tap_is "$rc" 0 "batch -j 1 exits 0"
if grep -q "migrate worker -u batch1@example.com" "$RIG/ps.txt"; then
	tap_ok "the batch's account was copied with a worker"
else
	tap_fail "no worker seen for the batch's account"
fi
if grep -qFf <(printf '%s\n' "$SRC_PW") "$RIG/ps.txt"; then
	tap_fail "the source password appeared in the process list"
else
	tap_ok "the source password never appeared in the process list"
fi
tap_run "checker: exact mirror from the batch with a worker" compare batch1@example.com

# the same through the config socket: batch's account and its worker read
# the running instance's settings too
rig_add_user dest batch2@example.com "$DEST_PW"
printf '127.0.0.1:%s;sally;%s;mx.example.com;batch2@example.com;Str0ng!dest\n' \
	"$(rig_port src)" "$SRC_PW" >"$RIG/template2.txt"
rig_secret_input "$RIG/template2.txt"
rc=0
rig_doveadm_socket dest migrate batch -j 1 "$RIG/template2.txt" \
	>"$RIG/batch2.out" 2>"$RIG/batch2.err" || rc=$?
tap_is "$rc" 0 "batch without -c (settings from the config socket): exit 0"
tap_is "$(all_writers batch2@example.com)" 2 "... its account copied by two processes (owner and worker)"
tap_run "checker: exact mirror from the batch, settings from the config socket" \
	compare_sally batch2@example.com

# --- new folders with gaps in their UIDs -------------------------------------
# a folder met for the first time goes to a worker without the owner
# opening it: the job is every UID below UIDNEXT, and the worker tells
# which of them the folder does not have (expunged before the run)
rig_add_user src gappy "$SRC_PW"
rig_add_user dest gappy@example.com "$DEST_PW" userdb_migrate_source_user=gappy
gimap() { rig_imap src gappy "$SRC_PW" "$@"; }
# INBOX is large enough that its worker is still at it when the owner
# meets Lists (with 80 messages, a loaded machine let the first worker
# finish INBOX first and take Lists too: one writer)
for i in $(seq 1 680); do
	printf 'From: g@example.org\r\nSubject: gap %s\r\nMessage-ID: <gap-%s@example.org>\r\n\r\nBody %s\r\n' \
		"$i" "$i" "$i" >"$RIG/g$i.eml"
done
gimap append INBOX "$RIG"/g{1..680}.eml >/dev/null
gimap append Lists --create "$RIG"/g{1..60}.eml >/dev/null
gimap expunge INBOX --uids 5:9,30,41:50,80 >/dev/null
gimap expunge Lists --uids 1:3,20:29 >/dev/null
rig_migrate_source dest src "$SRC_PW"
rig_dest_plugin_set dest migrate_workers 3
rc=0
rig_doveadm dest -f tab migrate -u gappy@example.com >"$RIG/gaps.out" 2>"$RIG/gaps.err" || rc=$?
tap_is "$rc" 0 "new folders with UID gaps, copied by workers: exit 0"
tap_is "$(copied_of "$RIG/gaps.out")" 710 "it copies the 710 messages left (663 + 47)"
if grep -q "neither copied" "$RIG/gaps.err"; then
	tap_fail "the gaps were taken for messages not copied: $(grep "neither copied" "$RIG/gaps.err")"
else
	tap_ok "no gap is taken for a message that was not copied"
fi
tap_run "checker: exact mirror with the source's UIDs, gaps included" \
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user gappy \
	--dest-port "$(rig_port dest)" --dest-user gappy@example.com --check-uids
gmd=$(rig_maildir dest gappy@example.com)
gap_pids=$( { writers "$gmd"; writers "$gmd/.Lists"; } | sort -u | wc -l)
tap_is "$gap_pids" 2 "INBOX and Lists were copied by two workers at once"

# --- a bad migrate_workers is a settings error --------------------------------
rig_migrate_source dest src "$SRC_PW"
rig_dest_plugin_set dest migrate_workers 0
rc=0
rig_doveadm dest migrate -u solo@example.com >"$RIG/bad.log" 2>&1 || rc=$?
tap_is "$rc" 78 "migrate_workers = 0 exits 78 (config)"
tap_like "the error names migrate_workers" "migrate_workers" "$(cat "$RIG/bad.log")"

tap_done
