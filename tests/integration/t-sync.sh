#!/bin/bash
# t-sync.sh - doveadm migrate mirrors one account from a private source
# Dovecot: full copy, unchanged re-run, changes at the source, local
# delivery, dry run, deletion limit, wrong password, the round trips of a
# re-run 20 ms away.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-sync

PY=$RIG_PY
T=$RIG_TOOLS
N=${T_SYNC_MESSAGES:-3000}
SRC_PW='S3cret;[=+(){}],"x'
DEST_PW='Dest!pass1'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
rig_add_user src alice "$SRC_PW"
rig_add_user src bob "$SRC_PW"
rig_add_user dest alice@example.com "$DEST_PW" userdb_migrate_source_user=alice
rig_add_user dest bob@example.com "$DEST_PW" userdb_migrate_source_user=bob \
	"userdb_migrate_source_password_file=$(rig_password_file bob 'Wrong!pass9')"
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW

rig_migrate_source dest src "$SRC_PW"

DEST_HOME=$(rig_home dest alice@example.com)

compare() {
	"$PY" "$T/imap-compare.py" \
		--src-port "$(rig_port src)" --src-user alice \
		--dest-port "$(rig_port dest)" --dest-user alice@example.com "$@"
}

# run doveadm migrate; output in $RIG/out.N, exit code in $MIG_RC, the
# summary row's fields in MIG[name]
declare -A MIG
MIG_RUN=0
# doveadm options before the command name
MIG_PRE=()
migrate() {
	MIG_RUN=$((MIG_RUN + 1))
	MIG_OUT=$RIG/out.$MIG_RUN
	MIG_RC=0
	rig_doveadm dest -f tab "${MIG_PRE[@]}" migrate "$@" >"$MIG_OUT" 2>&1 ||
		MIG_RC=$?
	MIG=()
	local header row i
	header=$(grep -m1 $'^user\tresult' "$MIG_OUT")
	row=$(grep -A1 -m1 $'^user\tresult' "$MIG_OUT" | tail -n 1)
	IFS=$'\t' read -r -a h <<<"$header"
	IFS=$'\t' read -r -a v <<<"$row"
	for i in "${!h[@]}"; do MIG[${h[$i]}]=${v[$i]:-}; done
}

source_bytes_out() {
	# sum of what the source's imap processes sent to clients
	grep -o 'out=[0-9]*' "$(rig_log src)" | awk -F= '{ s += $2 } END { print s + 0 }'
}

# --- 1. full copy ----------------------------------------------------------
tap_run "gen-corpus seeds $N messages" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user alice \
	--password-env SRC_IMAP_PASSWORD --seed 7 --messages "$N" \
	--max-size 4M --manifest "$RIG/manifest"

migrate -u alice@example.com
tap_is "$MIG_RC" 0 "first run exits 0"
tap_is "${MIG[copied]}" "$N" "first run copies all $N messages"
tap_run "checker: destination equals source (hash, flags, dates, folders)" \
	compare --subscriptions
tap_diag "$(tail -n 3 <<<"$TAP_OUT")"
if grep -qFf <(printf '%s\n' "$SRC_PW") "$MIG_OUT"; then
	tap_fail "first run output contains the source password"
else
	tap_ok "first run output has no password"
fi
tap_run "state kept with the user's mail, not world-readable" \
	test -f "$DEST_HOME/.migrate/state" -a \
	"$(stat -c %a "$DEST_HOME/.migrate")" = 700

# --- 2. unchanged re-run -----------------------------------------------------
sleep 1.1
touch "$RIG/marker"
before=$(source_bytes_out)
migrate -u alice@example.com
tap_is "$MIG_RC" 0 "unchanged re-run exits 0"
tap_is "${MIG[copied]}/${MIG[updated]}/${MIG[deleted]}" 0/0/0 \
	"unchanged re-run copies, updates and deletes nothing"
tap_is "${MIG[unchanged]}" "${MIG[folders]}" \
	"unchanged re-run does not open any folder"
changed=$(find "$DEST_HOME" -newer "$RIG/marker" -type f | head)
tap_is "$changed" "" "unchanged re-run writes nothing at the destination"
# let the source log its logout lines
sleep 0.5
after=$(source_bytes_out)
if [ $((after - before)) -lt 20000 ]; then
	tap_ok "unchanged re-run downloads no mail ($((after - before)) bytes from the source)"
else
	tap_fail "unchanged re-run read $((after - before)) bytes from the source"
fi

# --- 4 (setup). local delivery between runs ---------------------------------
printf 'From: local@example.net\r\nTo: alice@example.com\r\nSubject: delivered here\r\nMessage-ID: <local-1@example.net>\r\n\r\nDelivered locally, not at the source.\r\n' >"$RIG/local.eml"
tap_run "local delivery into the destination INBOX" \
	rig_deliver dest alice@example.com "$RIG/local.eml"
# LMTP adds its trace headers: take the hash as the destination has it
local_hash=$(rig_imap dest alice@example.com "$DEST_PW" fetch-hash INBOX |
	tail -n 1 | cut -d' ' -f2)

# --- 3. changes at the source -------------------------------------------------
simap() { rig_imap src alice "$SRC_PW" "$@"; }
for i in $(seq 1 15); do
	printf 'From: new@example.org\r\nSubject: new %s\r\nMessage-ID: <new-%s@example.org>\r\n\r\nNew message %s.\r\n' \
		"$i" "$i" "$i" >"$RIG/new$i.eml"
done
simap append INBOX "$RIG"/new{1..10}.eml --flags '\Seen' >/dev/null
simap append 'Work/Projects' "$RIG"/new{11..15}.eml >/dev/null
simap expunge Sent --first 5 >/dev/null
simap set-flags INBOX --first 10 --flags '\Answered $Forwarded project-x' >/dev/null
simap rename-folder 'Old Stuff' 'Older Stuff' >/dev/null
simap delete-folder Junk >/dev/null
junk_before=$(rig_imap dest alice@example.com "$DEST_PW" count Junk)

migrate -n -u alice@example.com
tap_is "$MIG_RC" 0 "dry run exits 0"
tap_like "dry run reports the 15 new messages" '^15$' "${MIG[copied]}"
tap_like "dry run reports deletions" '^[1-9][0-9]*$' "${MIG[deleted]}"
tap_is "$(rig_imap dest alice@example.com "$DEST_PW" count Junk)" "$junk_before" \
	"dry run changes nothing at the destination"

migrate -u alice@example.com
tap_is "$MIG_RC" 0 "run after source changes exits 0"
tap_is "${MIG[copied]}" 15 "only the 15 new messages are copied"
tap_is "${MIG[renamed]}" 1 "the renamed folder is renamed, not copied again"
tap_like "re-flagged messages are updated" '^(1[0-9]|[2-9][0-9])$' "${MIG[updated]}"
tap_run "checker: destination equals the changed source" \
	compare --allow-extra-dest-hash "$local_hash"
tap_diag "$(tail -n 3 <<<"$TAP_OUT")"
dlist=$(rig_imap dest alice@example.com "$DEST_PW" list)
tap_like "Older Stuff exists at the destination" $'(^|\n)Older Stuff(\n|$)' "$dlist"
if grep -qx -e 'Old Stuff' -e 'Junk' <<<"$dlist"; then
	tap_fail "deleted/renamed folders are gone at the destination"
else
	tap_ok "deleted/renamed folders are gone at the destination"
fi

# --- 4. the locally delivered message survived --------------------------------
hashes=$(rig_imap dest alice@example.com "$DEST_PW" fetch-hash INBOX)
tap_like "locally delivered message survives the mirror run" "$local_hash" "$hashes"

# --- UIDVALIDITY changed at the source ---------------------------------------------
work_n=$(simap count Work)
rig_doveadm src mailbox update -u alice --uid-validity 4242 Work
tap_like "the source's Work has a new UIDVALIDITY" 'uidvalidity=4242' \
	"$(rig_doveadm src mailbox status -u alice uidvalidity Work)"
migrate -u alice@example.com
tap_is "$MIG_RC" 0 "run after a UIDVALIDITY change exits 0"
tap_is "${MIG[copied]}/${MIG[deleted]}" 0/0 \
	"the $work_n messages are found again by content: nothing copied or deleted"
tap_run "checker: no duplicate after the UIDVALIDITY change" \
	compare --allow-extra-dest-hash "$local_hash"
simap set-flags Work --first 3 --flags '\Flagged' >/dev/null
migrate -u alice@example.com
tap_is "${MIG[updated]}" 3 "flags under the new UIDVALIDITY are followed"

# --- deletion limit --------------------------------------------------------------
inbox_n=$(simap count INBOX)
simap expunge INBOX --all >/dev/null
migrate -u alice@example.com
tap_is "$MIG_RC" 65 "deleting a whole INBOX stops at the limit (exit 65)"
tap_is "${MIG[deletes_withheld]}" "$inbox_n" "nothing deleted, $inbox_n withheld"
tap_is "$(rig_imap dest alice@example.com "$DEST_PW" count INBOX)" \
	"$((inbox_n + 1))" "destination INBOX untouched"
migrate -f -u alice@example.com
tap_is "$MIG_RC" 0 "--force deletes"
tap_is "$(rig_imap dest alice@example.com "$DEST_PW" count INBOX)" 1 \
	"only the locally delivered message is left in INBOX"

# --- 6. wrong source password ------------------------------------------------
BOB_HOME=$(rig_home dest bob@example.com)
snapshot() { find "$(rig_dir dest)/mail" -path '*/.migrate' -prune -o -print | sort | md5sum; }
before=$(snapshot)
migrate -u bob@example.com
tap_is "$MIG_RC" 77 "wrong source password exits 77"
tap_like "the error says the login failed" 'AUTHENTICATIONFAILED|[Aa]uthentication failed' "$(cat "$MIG_OUT")"
tap_is "$(snapshot)" "$before" "nothing changed at the destination"
tap_run "no state written for the failed account" test ! -e "$BOB_HOME/.migrate/state"
# (the passwords on grep's stdin, not its command line)
leaks=$(grep -rlFf <(printf '%s\n' "$SRC_PW" 'Wrong!pass9') "$RIG"/out.* "$(rig_log dest)" 2>/dev/null)
tap_is "$leaks" "" "no password in any output or log"

# --- round trips, 20 ms from the source --------------------------------------------
# tools/delayproxy.py logs each round trip the client waited for and what
# it sent then; one proxy (and log) per run
MIG_BOUND=()
delayed_migrate() {
	local log=$1
	shift
	DELAY_PORT=$(rig_free_port)
	"$PY" "$T/delayproxy.py" --port "$DELAY_PORT" --target-port "$(rig_port src)" \
		--rtt-ms 20 --trace --log "$log" --pidfile "$RIG/delayproxy.pid" \
		--daemon || tap_fail "the delay proxy starts"
	MIG_PRE=(-o "plugin/migrate_source_port=$DELAY_PORT" "${MIG_BOUND[@]}")
	migrate "$@"
	MIG_PRE=()
	# the connections' ends pass the proxy too
	sleep 0.3
	kill "$(cat "$RIG/delayproxy.pid")"
}
# "MS conn burst" of each round trip waited for (MS: milliseconds since
# the first connection opened), "MS open conn" and "MS close conn c2s"
proxy_trace() {
	"$PY" -c '
import json, sys
ev = sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda e: e["t"])
t0 = min(e["t"] for e in ev if e["event"] == "open")
for e in ev:
    ms = "%d" % round((e["t"] - t0) * 1000)
    if e["event"] == "wait": print(ms, e["conn"], e["burst"])
    elif e["event"] == "open": print(ms, "open", e["conn"])
    elif e["event"] == "close": print(ms, "close", e["conn"], e["c2s"])
' "$1"
}
# proxy_when TRACE CONN BURST: the milliseconds of CONN's first BURST
proxy_when() {
	awk -v c="$2" -v b="$3" '$2 == c && substr($0, index($0, $3)) == b { print $1; exit }' <<<"$1"
}
delayed_migrate "$RIG/delay-noop.log" -u alice@example.com
tap_is "$MIG_RC/${MIG[copied]}" 0/0 "an unchanged re-run 20 ms from the source exits 0"
trace=$(proxy_trace "$RIG/delay-noop.log")
tap_diag "$trace"
tap_like "the folders' STATUS and subscriptions come in one LIST after our login" \
	' 2 LIST "" "\*" RETURN \(SUBSCRIBED STATUS \(M.*HIGHESTMODSEQ\)\)' "$trace"
tap_is "$(grep -v 'RETURN (SUBSCRIBED STATUS' <<<"$trace" | grep -cE ' (LSUB|STATUS) ')" 0 \
	"... no LSUB and no STATUS of their own"
# both connections open at once; ours logs in only once the storage's
# login was answered (a round trip after it was sent)
tap_is "$(awk '$2 == "open" { print $3 }' <<<"$trace" | tr '\n' ' ')" "1 2 " \
	"two connections: the storage's, then ours"
opened=$(awk '$2 == "open" { print $1 }' <<<"$trace" | tail -n 1)
tap_like "... ours opens with the storage's (${opened} ms later), not after its login" \
	'^[0-9]$' "$opened"
gap=$(( $(proxy_when "$trace" 2 LOGIN) - $(proxy_when "$trace" 1 LOGIN) ))
tap_like "... and logs in once the storage's login was accepted (${gap} ms after it was sent)" \
	'^(1[89]|[2-9][0-9]|[1-9][0-9]{2,})$' "$gap"

# under a bound on the connections (batch's per host), ours opens only
# once the storage's login was accepted
MIG_BOUND=(-o plugin/migrate_source_max_connections=4)
delayed_migrate "$RIG/delay-bound.log" -u alice@example.com
trace=$(proxy_trace "$RIG/delay-bound.log")
opened=$(awk '$2 == "open" { print $1 }' <<<"$trace" | tail -n 1)
tap_like "with migrate_source_max_connections, ours opens after the storage's login (${opened} ms)" \
	'^([4-9][0-9]|[1-9][0-9]{2,})$' "$opened"
MIG_BOUND=()

delayed_migrate "$RIG/delay-refused.log" -u bob@example.com
tap_is "$MIG_RC" 77 "a refused login 20 ms from the source exits 77"
trace=$(proxy_trace "$RIG/delay-refused.log")
tap_diag "$trace"
tap_is "$(grep -c ' LOGIN$' <<<"$trace")" 1 "... after one LOGIN, never a second"
tap_is "$(awk '$2 == "close" && $3 == 2 { print $4 }' <<<"$trace")" 0 \
	"... and our connection, opened ahead, closes without a byte sent"

# --- bad settings ---------------------------------------------------------------
MIG_PRE=(-o plugin/migrate_source_ssl=maybe)
migrate -u alice@example.com
MIG_PRE=()
tap_is "$MIG_RC" 78 "invalid setting exits 78"
tap_like "the error names the setting" 'migrate_source_ssl' "$(cat "$MIG_OUT")"

tap_done
