#!/bin/bash
# t-connlimit.sh - connection limits per source host (issue 19): a real
# Dovecot source behind tools/limitproxy.py, which refuses every
# connection beyond N from our IP as providers do (NO [UNAVAILABLE] at
# the login).  batch --max-connections-per-host keeps all its accounts'
# connections under the limit; without it the proxy refuses.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-connlimit

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Src!limit4pw'
DEST_PW='Dest!pass1'
N=12

rig_start_source src || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_retries 0
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
SPORT=$(rig_port src)

rig_users_defer
for i in $(seq 1 $N); do
	rig_add_user src "old$i" "$SRC_PW"
	rig_add_user dest "$(printf 'u%02d@example.com' "$i")" "$DEST_PW"
done
rig_users_settle
for i in $(seq 1 $N); do
	"$PY" "$T/gen-corpus.py" --port "$SPORT" --user "old$i" --password-env SRC_IMAP_PASSWORD \
		--seed "$((300 + i))" --messages 40 --max-size 60K --connections 1 >/dev/null ||
		rig_die "gen-corpus for old$i failed"
done

# --- the proxy: at most 4 connections from our IP -------------------------------
proxy_start() {   # proxy_start NAME ARGS...: port in $PPORT
	local name=$1
	shift
	PPORT=$(rig_free_port) || rig_die "no free port"
	"$PY" "$T/limitproxy.py" --port "$PPORT" --target-port "$SPORT" \
		--log "$RIG/$name.log" --stats "$RIG/$name.stats" \
		--pidfile "$RIG/$name.pid" --daemon "$@" || rig_die "limitproxy $name did not start"
	rig_on_exit "kill \$(cat '$RIG/$name.pid') 2>/dev/null"
}
pstat() {   # pstat NAME KEY
	"$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
		"$RIG/$1.stats" "$2"
}
template() {   # template FILE PORT
	local i
	{
		echo "source_host,source_user,source_password,dest_host,dest_user,dest_password"
		for i in $(seq 1 $N); do
			printf '127.0.0.1:%s,old%d,%s,mx,u%02d@example.com,Str0ng!dest\n' "$2" "$i" "$SRC_PW" "$i"
		done
	} >"$1"
	rig_secret_input "$1"
}
rig_secret 'Str0ng!dest' "template dest_password"
compare_all() {
	local i bad=0
	for i in $(seq 1 $N); do
		"$PY" "$T/imap-compare.py" -q --src-port "$SPORT" --src-user "old$i" \
			--dest-port "$(rig_port dest)" --dest-user "$(printf 'u%02d@example.com' "$i")" \
			>"$RIG/cmp.$i" 2>&1 || { bad=$((bad + 1)); tap_diag "old$i: $(tail -n1 "$RIG/cmp.$i")"; }
	done
	[ "$bad" = 0 ]
}

proxy_start p4 --max-conns 4 --refuse-style login
template "$RIG/t4.csv" "$PPORT"
rc=0
rig_doveadm dest migrate batch -j 16 --max-connections-per-host 4 --retries 2 --retry-delay 1 \
	--json "$RIG/b4.json" "$RIG/t4.csv" >"$RIG/b4.out" 2>&1 || rc=$?
kill -USR1 "$(cat "$RIG/p4.pid")"; sleep 0.5
tap_is "$rc" 0 "batch -j 16 of $N accounts, at most 4 connections: exit 0"
tap_run "checker: every account equals its source" compare_all
mc=$(pstat p4 max_concurrent)
tap_run "... never more than 4 connections open at once (the proxy saw $mc)" test "$mc" -le 4
refused=$(pstat p4 refused)
tap_like "... the summary names the host's limit" \
	"source 127.0.0.1:$PPORT: at most 4 connections allowed; 2 accounts at once at most \\(4 connections\\), [0-9]+ waited" \
	"$(cat "$RIG/b4.out")"
tap_diag "refused by the proxy: $refused (a connection closed by one account may still be counted when the next opens)"

# the same re-run without our limit: the proxy refuses connections
proxy_start p4b --max-conns 4 --refuse-style login
template "$RIG/t4b.csv" "$PPORT"
rc=0
rig_doveadm dest migrate batch -j 16 --max-connections-per-host 0 --retries 0 \
	"$RIG/t4b.csv" >"$RIG/b4b.out" 2>&1 || rc=$?
kill -USR1 "$(cat "$RIG/p4b.pid")"; sleep 0.5
refused=$(pstat p4b refused)
tap_run "without the limit (--max-connections-per-host 0) the proxy refuses: $refused connections" \
	test "$refused" -gt 0

# one account alone (-j 1), on its first run (its workers log in while it
# lists): they stay under the limit, 2 connections, one process; the same
# without the limit opens more, and the proxy refuses them
for i in 13 14; do
	rig_add_user src "old$i" "$SRC_PW"
	rig_add_user dest "u$i@example.com" "$DEST_PW"
	"$PY" "$T/gen-corpus.py" --port "$SPORT" --user "old$i" --password-env SRC_IMAP_PASSWORD \
		--seed "$((300 + i))" --messages 60 --max-size 60K --connections 1 >/dev/null ||
		rig_die "gen-corpus for old$i failed"
done
one() {   # one NAME I MAXCONN
	proxy_start "$1" --max-conns 2 --refuse-style bye
	printf 'source_host,source_user,source_password,dest_host,dest_user,dest_password\n127.0.0.1:%s,old%d,%s,mx,u%d@example.com,Str0ng!dest\n' \
		"$PPORT" "$2" "$SRC_PW" "$2" >"$RIG/$1.csv"
	rig_secret_input "$RIG/$1.csv"
	rc=0
	rig_doveadm dest -o plugin/migrate_workers=4 migrate batch -j 1 --retries 0 \
		--max-connections-per-host "$3" "$RIG/$1.csv" >"$RIG/$1.out" 2>&1 || rc=$?
	kill -USR1 "$(cat "$RIG/$1.pid")"; sleep 0.5
}
one p2 13 2
tap_is "$rc/$(pstat p2 refused)" "0/0" "-j 1, migrate_workers = 4, at most 2 connections: exit 0, none refused"
mc=$(pstat p2 max_concurrent)
tap_run "... never more than 2 open at once ($mc)" test "$mc" -le 2
tap_run "checker: its copy equals the source" "$PY" "$T/imap-compare.py" -q --src-port "$SPORT" \
	--src-user old13 --dest-port "$(rig_port dest)" --dest-user u13@example.com
one p2b 14 0
refused=$(pstat p2b refused)
tap_run "... without the limit its workers open more: $refused refused" test "$refused" -gt 0
tap_is "$rc" 0 "... and the account makes do with the connections it got: exit 0"
tap_run "checker: its copy equals the source" "$PY" "$T/imap-compare.py" -q --src-port "$SPORT" \
	--src-user old14 --dest-port "$(rig_port dest)" --dest-user u14@example.com

tap_done
