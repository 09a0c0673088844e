#!/bin/bash
# t-throttle.sh - a source behind a throttling front end (issue 19):
# tools/limitproxy.py answers commands beyond 250 a second with
# "NO [THROTTLED]" (Microsoft's words) without passing them on, the
# EXAMINEs included, and answers them ahead of the server's replies to
# the commands before.  Whatever it refuses, a run that exits 0 has
# copied everything (nothing lost, no message of another folder), and
# the runs that exit 75 converge when run again.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-throttle

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Src!throttle7'
DEST_PW='Dest!pass1'
N=16

rig_start_source src || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
SPORT=$(rig_port src)
rig_users_defer
for i in $(seq 1 $N); do
	rig_add_user src "old$i" "$SRC_PW"
	rig_add_user dest "u$i@example.com" "$DEST_PW" "userdb_migrate_source_user=old$i"
done
rig_users_settle
for i in $(seq 1 $N); do
	"$PY" "$T/gen-corpus.py" --port "$SPORT" --user "old$i" --password-env SRC_IMAP_PASSWORD \
		--seed "$((500 + i))" --messages 30 --max-size 40K --connections 1 >/dev/null ||
		rig_die "gen-corpus for old$i failed"
done
rig_start_limitproxy p "$SPORT" --max-commands-per-sec 250 --burst 50 --throttle-reply
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_retries 0
rig_dest_plugin_set dest migrate_source_host 127.0.0.1
rig_dest_plugin_set dest migrate_source_port "$PPORT"
PWFILE=$(rig_password_file src-pw "$SRC_PW")
rig_dest_plugin_set dest migrate_source_password_file "$PWFILE"

equal() {   # equal I
	"$PY" "$T/imap-compare.py" -q --src-port "$SPORT" --src-user "old$1" \
		--dest-port "$(rig_port dest)" --dest-user "u$1@example.com" >"$RIG/cmp.$1" 2>&1
}
# rounds of every account not done yet, 8 at once, until each exits 0
declare -A RC
todo=$(seq 1 $N)
bad_ok=0 partial=0 rounds=0
while [ -n "$todo" ] && [ $rounds -lt 6 ]; do
	rounds=$((rounds + 1))
	for i in $todo; do
		( rc=0; rig_doveadm dest -o plugin/migrate_workers=1 migrate -u "u$i@example.com" \
			>"$RIG/m$i.$rounds.out" 2>&1 || rc=$?; echo $rc >"$RIG/rc.$i" ) &
		[ "$(jobs -r | wc -l)" -ge 8 ] && wait -n
	done
	wait
	next=""
	for i in $todo; do
		if [ "$(cat "$RIG/rc.$i")" = 0 ]; then
			if ! equal "$i"; then
				bad_ok=$((bad_ok + 1))
				tap_diag "u$i exited 0 in round $rounds, but: $(head -n 3 "$RIG/cmp.$i")"
			fi
		else
			partial=$((partial + 1))
			next="$next $i"
		fi
	done
	todo=$next
done
tap_is "$bad_ok" 0 "no run that exited 0 left a difference ($partial runs exited otherwise, $rounds rounds)"
tap_is "$todo" "" "every account converged"
throttled=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["throttled"])' "$RIG/p.stats")
tap_run "... while the front end throttled $throttled commands" test "$throttled" -gt 0
tap_done
