#!/bin/bash
# t-pop3.sh - POP3 continuity: with migrate_source_pop3 = yes the copies
# of INBOX keep the source's POP3 UIDLs, so that the POP3 server here
# answers UIDL as the old one did (a source whose pop3_uidl_format, %g,
# differs from ours), for the first run and for the messages of later
# mirror runs; two messages whose headers are the same are reported, not
# guessed; a real client, fetchmail with keep and UIDL tracking, switched
# from the old server to us downloads nothing it had (without the UIDLs it
# downloads all again); a POP3 server that never answers ends the run at
# migrate_account_timeout; a source with POP3 only is migrated by UIDL
# (copies, re-runs, the mirror's deletions after a second session, the
# deletion limit, the final sync); migrate_source_protocol = auto reads a
# Dovecot serving POP3 only over POP3 and keeps each account on the
# protocol it was migrated with, never falls back after a refused login,
# a timeout or a TLS failure; a template's source_protocol column (check
# and batch) and a domain's --source-protocol; pop3_order_differs against
# Dovecot (0) and a POP3 server of the test's in another order; without
# the setting nothing changes.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-pop3

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Pop3!src5'
DEST_PW='Pop3!dst5'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_pop3_enable src || exit 1
rig_conf_add src "pop3_uidl_format = %g" || exit 1
rig_pop3_enable dest || exit 1
rig_add_user src pat "$SRC_PW"
rig_add_user dest pat@example.com "$DEST_PW" userdb_migrate_source_user=pat \
	userdb_migrate_source_pop3=yes "userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}"
rig_add_user src nop "$SRC_PW"
rig_add_user dest nop@example.com "$DEST_PW" userdb_migrate_source_user=nop
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"

# uidls INSTANCE USER PASSWORD: "N UIDL" lines of the POP3 server
uidls() { rig_pop3_uidls "${RIG_POP3_PORTS[$1]}" "$2" "$3"; }
message() {
	printf 'From: pop%s@example.org\r\nSubject: pop3 %s\r\nMessage-ID: <pop3.%s@t-pop3>\r\n\r\nbody %s\r\n' \
		"$1" "$1" "$1" "$1"
}
for i in $(seq 1 30); do message "$i" >"$RIG/m$i.eml"; done
rig_imap_append src pat "$SRC_PW" INBOX "$RIG/m1.eml" >/dev/null
for i in $(seq 2 30); do
	rig_imap src pat "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null
done
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user pat \
	--password-env SRC_IMAP_PASSWORD --seed 5 --messages 60 --max-size 30K \
	--connections 1 >/dev/null || rig_die "gen-corpus"
for u in nop; do
	for i in 1 2 3; do rig_imap src "$u" "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
done

declare -A MIG
migrate() {
	MIG_OUT=$RIG/mig.$1.$RANDOM
	MIG_RC=0
	rig_doveadm dest -f tab migrate -u "$1@example.com" >"$MIG_OUT" 2>&1 || MIG_RC=$?
	rig_summary "$MIG_OUT"
}

SRC_UIDLS=$(uidls src pat "$SRC_PW")
n=$(wc -l <<<"$SRC_UIDLS")
tap_diag "source INBOX: $n POP3 messages, UIDLs like $(head -n 1 <<<"$SRC_UIDLS")"
migrate pat
tap_is "$MIG_RC/${MIG[pop3_uidls]}/${MIG[pop3_unmatched]}" "0/$n/0" \
	"the first run gives all $n copies of INBOX their source UIDL"
tap_is "$(uidls dest pat@example.com "$DEST_PW")" "$SRC_UIDLS" \
	"our POP3 server answers UIDL as the source's does, in the same order"
tap_is "${MIG[pop3_order_differs]}" 0 \
	"... and lists them in the source's POP3 order (pop3_order_differs 0)"

# new mail at the source: the mirror run gives the new copies theirs and
# reads the headers of the new POP3 messages only
for i in 31 32 33; do
	message "$i" >"$RIG/m$i.eml"
	rig_imap src pat "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null
done
migrate pat
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}" "0/3/3" "a mirror run: 3 new copies, 3 UIDLs"
tap_is "$(uidls dest pat@example.com "$DEST_PW")" "$(uidls src pat "$SRC_PW")" \
	"... and UIDL is the source's again"
migrate pat
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}" "0/0/0" "an unchanged re-run assigns nothing"

# two messages whose headers are the same (a copy of one appended twice):
# no guess, both keep UIDLs of this server, and the run says so
rig_imap src pat "$SRC_PW" append INBOX "$RIG/m1.eml" >/dev/null
rig_imap src pat "$SRC_PW" append INBOX "$RIG/m1.eml" >/dev/null
migrate pat
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}/${MIG[pop3_unmatched]}" "0/2/0/2" \
	"two new messages with the same header: no UIDL is guessed for them"
tap_like "... and the log says so" '2 POP3 messages of INBOX match no copy or more than one' \
	"$(cat "$MIG_OUT")"

# a real POP3 client that leaves mail on the server (fetchmail, keep, with
# UIDL tracking in its id file), switched from the old server to us: it
# downloads nothing it had, and what arrives afterwards
command -v fetchmail >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		fetchmail >/dev/null 2>&1 || rig_die "the client test needs Debian's fetchmail"
FM=$RIG/fetchmail
mkdir -p "$FM/mail"
printf '#!/bin/sh\ncat >"%s/mail/$(date +%%s%%N).$$"\n' "$FM" >"$FM/mda"
chmod 755 "$FM/mda"
rig_add_user src fm@example.com "$SRC_PW"
rig_add_user dest fm@example.com "$DEST_PW" userdb_migrate_source_user=fm@example.com \
	userdb_migrate_source_pop3=yes "userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}"
for i in 1 2 3 4 5; do rig_imap src fm@example.com "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
fm_conf() {   # INSTANCE PASSWORD
	cat >"$FM/rc" <<-EOF
	set no bouncemail
	poll 127.0.0.1 with protocol pop3 service ${RIG_POP3_PORTS[$1]} uidl
	  user "fm@example.com" there with password "$2" is root here
	  keep sslproto ""
	  mda "$FM/mda"
	EOF
	chmod 600 "$FM/rc"
	rig_secret_input "$FM/rc"
}
# fm_poll LABEL: one poll; FM_NEW is the number of messages it delivered
fm_poll() {
	local before rc=0
	before=$(ls "$FM/mail" | wc -l)
	fetchmail -f "$FM/rc" -i "$FM/ids" --nosyslog --nodetach -v \
		>"$FM/$1.log" 2>&1 || rc=$?
	# 0: mail delivered, 1: no mail
	[ "$rc" -le 1 ] || tap_diag "fetchmail exited $rc: $(tail -n 5 "$FM/$1.log")"
	FM_NEW=$(( $(ls "$FM/mail" | wc -l) - before ))
}
fm_conf src "$SRC_PW"
fm_poll src1
tap_is "$FM_NEW" 5 "fetchmail (keep, UIDL) downloads the 5 messages from the old server"
fm_poll src2
tap_is "$FM_NEW" 0 "... and nothing on its next poll"
migrate fm
tap_is "$MIG_RC/${MIG[pop3_uidls]}" "0/5" "the migration gives the 5 copies their UIDLs"
fm_conf dest "$DEST_PW"
fm_poll dest1
tap_is "$FM_NEW" 0 "fetchmail, switched to us with its id file, downloads nothing"
message 50 >"$RIG/m50.eml"
rig_deliver dest fm@example.com "$RIG/m50.eml" >/dev/null 2>&1 ||
	rig_imap dest fm@example.com "$DEST_PW" append INBOX "$RIG/m50.eml" >/dev/null
fm_poll dest2
tap_is "$FM_NEW" 1 "... and then exactly the message that arrived here afterwards"

# auto: a source whose POP3 server answers is read, one without is not,
# and the run goes on; yes without one fails the run (75)
DEAD=$(rig_free_port)
for u in auto1 auto2 yes2; do
	rig_add_user src "$u" "$SRC_PW"
	for i in 1 2; do rig_imap src "$u" "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
done
rig_add_user dest auto1@example.com "$DEST_PW" userdb_migrate_source_user=auto1 \
	userdb_migrate_source_pop3=auto "userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}"
rig_add_user dest auto2@example.com "$DEST_PW" userdb_migrate_source_user=auto2 \
	userdb_migrate_source_pop3=auto "userdb_migrate_source_pop3_port=$DEAD"
rig_add_user dest yes2@example.com "$DEST_PW" userdb_migrate_source_user=yes2 \
	userdb_migrate_source_pop3=yes "userdb_migrate_source_pop3_port=$DEAD" \
	userdb_migrate_retries=0
migrate auto1
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}" "0/2/2" "auto with a POP3 server: its UIDLs are kept"
migrate auto2
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}" "0/2/0" "auto without one: the run copies and exits 0"
tap_like "... saying why no UIDL is kept" "Not keeping POP3 UIDLs: the source's POP3 server cannot be read" \
	"$(cat "$MIG_OUT")"
migrate yes2
tap_is "$MIG_RC/${MIG[copied]}" "75/2" "yes without one: the run fails (75), its copies kept"

# a POP3 server that refuses the login: 77 at once, one failed login
# although migrate_retries is 3 (old providers lock accounts); here our own
# POP3 server, which has no user "refu"
rig_add_user src refu "$SRC_PW"
rig_imap src refu "$SRC_PW" append INBOX "$RIG/m1.eml" >/dev/null
rig_add_user dest refu@example.com "$DEST_PW" userdb_migrate_source_user=refu \
	userdb_migrate_source_pop3=yes "userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[dest]}" \
	userdb_migrate_retries=3
migrate refu
tap_is "$MIG_RC/${MIG[retries]}" "77/0" "a POP3 login refused: 77, not retried"
tap_is "$(grep -c 'pop3-login: .*auth failed.*user=<refu>' "$(rig_log dest)")" 1 \
	"... one failed POP3 login"

# a POP3 server that accepts and never answers holds the account no
# longer than migrate_account_timeout
SILENT=$(rig_free_port)
"$PY" - "$SILENT" "$RIG/silent.ready" <<-'EOF' &
	import socket, sys
	s = socket.socket()
	s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	s.bind(("127.0.0.1", int(sys.argv[1])))
	s.listen(8)
	open(sys.argv[2], "w").close()
	held = []
	while True:
	    held.append(s.accept()[0])
	EOF
SILENT_PID=$!
rig_on_exit "kill $SILENT_PID 2>/dev/null"
for _ in $(seq 1 50); do [ -e "$RIG/silent.ready" ] && break; sleep 0.1; done
rig_add_user src mute "$SRC_PW"
rig_imap src mute "$SRC_PW" append INBOX "$RIG/m1.eml" >/dev/null
rig_add_user dest mute@example.com "$DEST_PW" userdb_migrate_source_user=mute \
	userdb_migrate_source_pop3=yes "userdb_migrate_source_pop3_port=$SILENT" \
	userdb_migrate_account_timeout=4s userdb_migrate_retries=0
start=$SECONDS
migrate mute
tap_is "$MIG_RC/${MIG[copied]}" "75/1" "a POP3 server that never answers: 75, the IMAP copy kept"
tap_like "... after migrate_account_timeout ($((SECONDS - start)) s)" \
	'migrate_account_timeout' "$(cat "$MIG_OUT")"
if [ $((SECONDS - start)) -lt 25 ]; then
	tap_ok "... within seconds, not pop3c's own timeouts ($((SECONDS - start)) s)"
else
	tap_fail "... took $((SECONDS - start)) s"
fi

# a source with POP3 only (migrate_source_protocol = pop3; its IMAP port
# here is one nobody listens on): INBOX is copied by UIDL, re-runs copy
# what is new, the mirror deletes what the source no longer lists, the
# final sync copies what is new and deletes nothing
rig_add_user src only@pop.test "$SRC_PW"
for i in 1 2 3 4 5; do rig_imap src only@pop.test "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
rig_add_user dest only@pop.test "$DEST_PW" userdb_migrate_source_user=only@pop.test \
	userdb_migrate_source_protocol=pop3 "userdb_migrate_source_port=$DEAD" \
	"userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}"
migrate_only() {
	MIG_OUT=$RIG/mig.only.$RANDOM
	MIG_RC=0
	rig_doveadm dest -f tab migrate "$@" -u only@pop.test >"$MIG_OUT" 2>&1 || MIG_RC=$?
	rig_summary "$MIG_OUT"
}
compare_only() {
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user only@pop.test \
		--dest-port "$(rig_port dest)" --dest-user only@pop.test --no-dates --no-flags
}
migrate_only
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}" "0/5/5" "POP3 only: the first run copies the 5 of INBOX"
tap_run "checker: INBOX is a mirror (bytes; POP3 has no flags nor dates)" compare_only
tap_is "$(uidls dest only@pop.test "$DEST_PW")" "$(uidls src only@pop.test "$SRC_PW")" \
	"... and our POP3 server answers UIDL as the source's"
migrate_only
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/0/0" "a re-run copies nothing"
rig_imap src only@pop.test "$SRC_PW" append INBOX "$RIG/m6.eml" >/dev/null
rig_imap src only@pop.test "$SRC_PW" expunge INBOX --first 1 >/dev/null
migrate_only -n
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/1/1" "a dry run: 1 to copy, 1 to delete"
migrate_only
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/1/1" \
	"the mirror copies the new one and deletes the one gone (confirmed by a second session)"
tap_run "checker: a mirror again" compare_only
message 60 >"$RIG/m60.eml"
rig_deliver dest only@pop.test "$RIG/m60.eml" >/dev/null 2>&1 ||
	rig_imap dest only@pop.test "$DEST_PW" append INBOX "$RIG/m60.eml" >/dev/null
for i in 1 2 3; do rig_imap src only@pop.test "$SRC_PW" expunge INBOX --first 1 >/dev/null; done
migrate_only
tap_is "$MIG_RC/${MIG[deleted]}/${MIG[foreign]}" "65/0/1" \
	"3 of 5 gone at once: over migrate_max_delete_percent, nothing deleted (65); the local message is foreign"
rig_doveadm dest migrate domain start --old-mx 127.0.0.1:25 pop.test >/dev/null 2>&1 ||
	tap_fail "domain start pop.test"
rig_doveadm dest migrate domain cutover pop.test >/dev/null 2>&1 || tap_fail "domain cutover pop.test"
rig_imap src only@pop.test "$SRC_PW" append INBOX "$RIG/m7.eml" >/dev/null
migrate_only
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}/${MIG[mode]}" "0/1/0/final" \
	"the final sync copies the new one and deletes nothing"
tap_is "$(rig_imap dest only@pop.test "$DEST_PW" count INBOX)" 7 \
	"INBOX: the 5 kept, the 1 new of the mirror, the local one... and the final sync's"

# an account migrated over IMAP before is not copied again over POP3
rig_add_user src swi "$SRC_PW"
rig_imap src swi "$SRC_PW" append INBOX "$RIG/m1.eml" >/dev/null
rig_add_user dest swi@example.com "$DEST_PW" userdb_migrate_source_user=swi \
	"userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}"
migrate swi
tap_is "$MIG_RC/${MIG[copied]}" "0/1" "an account migrated over IMAP"
MIG_OUT=$RIG/mig.swi.pop3
MIG_RC=0
rig_doveadm dest -f tab -o plugin/migrate_source_protocol=pop3 migrate -u swi@example.com \
	>"$MIG_OUT" 2>&1 || MIG_RC=$?
rig_summary "$MIG_OUT"
tap_is "$MIG_RC/${MIG[copied]}" "78/0" "... then switched to POP3 only: refused (78), nothing copied twice"
tap_like "... saying why" 'migrate_source_protocol = pop3, but this account was migrated over IMAP before' \
	"$(cat "$MIG_OUT")"

# POP3 only, and the POP3 server refuses the login: 77, one attempt
rig_add_user dest refu2@example.com "$DEST_PW" userdb_migrate_source_user=refu2 \
	userdb_migrate_source_protocol=pop3 "userdb_migrate_source_port=$DEAD" \
	"userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[dest]}" userdb_migrate_retries=3
migrate refu2
tap_is "$MIG_RC/${MIG[retries]}" "77/0" "POP3 only, login refused: 77, not retried"
tap_is "$(grep -c 'pop3-login: .*auth failed.*user=<refu2>' "$(rig_log dest)")" 1 \
	"... one failed POP3 login"

# --- how the source is read: migrate_source_protocol = auto, a template
# row's source_protocol, a domain's --source-protocol -----------------------
# popsrc: a Dovecot serving POP3 only ("protocols = pop3": its IMAP port
# refuses connections); the mail is put in over IMAP before IMAP is closed
json() {   # json FILE-CONTENT PYTHON-EXPR(r)
	"$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
# migrate_as USER [DOVEADM OPTIONS]: as migrate, for any user name
migrate_as() {
	local u=$1
	shift
	MIG_OUT=$RIG/mig.$RANDOM
	MIG_RC=0
	rig_doveadm dest -f tab "$@" migrate -u "$u" >"$MIG_OUT" 2>&1 || MIG_RC=$?
	rig_summary "$MIG_OUT"
}
imap_port() {   # imap_port open|closed: waits until popsrc's IMAP port is
	"$PY" - "$(rig_port popsrc)" "$1" <<-'EOF'
	import socket, sys, time
	for _ in range(100):
	    try:
	        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
	        if sys.argv[2] == "open":
	            sys.exit(0)
	    except ConnectionRefusedError:
	        if sys.argv[2] == "closed":
	            sys.exit(0)
	    time.sleep(0.05)
	sys.exit(1)
	EOF
}
rig_start_source popsrc || exit 1
rig_pop3_enable popsrc || exit 1
PSRC=$(rig_port popsrc)
PSRC_POP3=${RIG_POP3_PORTS[popsrc]}
for u in ap@example.com mp@mix.test pd@pdom.test pd2@pdom.test; do
	rig_add_user popsrc "$u" "$SRC_PW"
	for i in 1 2 3; do rig_imap popsrc "$u" "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
done
rig_conf_add popsrc "protocols = pop3" || exit 1
imap_port closed && tap_ok "a source with POP3 only: its IMAP port refuses connections" ||
	tap_fail "popsrc still answers on its IMAP port"
PLOG=$(rig_log popsrc)

# (a) auto, a source whose IMAP port refuses connections: over POP3
rig_add_user dest ap@example.com "$DEST_PW" userdb_migrate_source_user=ap@example.com \
	userdb_migrate_source_protocol=auto "userdb_migrate_source_port=$PSRC" \
	"userdb_migrate_source_pop3_port=$PSRC_POP3" userdb_migrate_retries=0
AP_STATE=$(rig_home dest ap@example.com)/.migrate
migrate ap
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}/${MIG[source_protocol]}" "0/3/3/pop3" \
	"auto, the IMAP port refuses connections: INBOX copied over POP3 (summary: pop3)"
tap_like "... the log says why" \
	"Info: migrate: Reading the source over POP3 only \\(port $PSRC_POP3\\): migrate_source_protocol = auto: its IMAP port 127.0.0.1:$PSRC refused the connection" \
	"$(cat "$MIG_OUT")"
tap_is "$(json "$(cat "$AP_STATE/report.json")" 'r["source_protocol"], r["source_protocol_why"]')" \
	"('pop3', 'migrate_source_protocol = auto: its IMAP port 127.0.0.1:$PSRC refused the connection')" \
	"... and so does report.json"
tap_is "$(uidls dest ap@example.com "$DEST_PW")" "$(uidls popsrc ap@example.com "$SRC_PW")" \
	"... by UIDL: our POP3 server answers UIDL as the source's"
tap_is "$(stat -c %a "$AP_STATE/pop3-only" 2>&1)" 600 \
	"... and the state directory records that it was migrated over POP3 only (0600)"
migrate ap
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}/${MIG[source_protocol]}" "0/0/0/pop3" \
	"a re-run copies nothing, over POP3 again"

# (d) auto, the IMAP port answers but refuses the login: 77 once, no POP3
rig_add_user dest ghost@example.com "$DEST_PW" userdb_migrate_source_user=ghost \
	userdb_migrate_source_protocol=auto "userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}" \
	userdb_migrate_retries=3
migrate ghost
tap_is "$MIG_RC/${MIG[retries]}/${MIG[source_protocol]}" "77/0/imap" \
	"auto, the IMAP login refused: 77, not retried, no POP3 instead"
tap_is "$(grep -c 'imap-login: .*auth failed.*user=<ghost>' "$(rig_log src)")/$(grep -c 'pop3-login: .*user=<ghost>' "$(rig_log src)")" \
	"1/0" "... one failed IMAP login, no POP3 login"
# ... nor after a timeout: an IMAP port that accepts and never answers
rig_add_user dest mute2@example.com "$DEST_PW" userdb_migrate_source_user=mute2 \
	userdb_migrate_source_protocol=auto "userdb_migrate_source_port=$SILENT" \
	"userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}" \
	userdb_migrate_account_timeout=4s userdb_migrate_retries=0
migrate mute2
tap_is "$MIG_RC/${MIG[source_protocol]}/$(grep -c 'pop3-login: .*user=<mute2>' "$(rig_log src)")" "75/imap/0" \
	"auto, an IMAP port that never answers: 75, no POP3 instead"
# ... nor after a TLS failure (STARTTLS from a server that has none;
# imaps against a port without TLS is not used here: under load Dovecot
# 2.3.19's imapc may crash on that failed handshake, before and after this)
rig_add_user dest tlsx@example.com "$DEST_PW" userdb_migrate_source_user=tlsx \
	userdb_migrate_source_protocol=auto userdb_migrate_source_ssl=starttls \
	"userdb_migrate_source_port=$(rig_port src)" "userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}" \
	userdb_migrate_retries=0
migrate tlsx
tap_is "$MIG_RC/${MIG[source_protocol]}/$(grep -c 'pop3-login: .*tlsx' "$(rig_log src)")" "76/imap/0" \
	"auto, TLS to the IMAP port fails (no STARTTLS): 76, no POP3 instead"

# (c) auto, a source with IMAP: over IMAP, as before
rig_add_user src aimap "$SRC_PW"
for i in 1 2; do rig_imap src aimap "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
rig_add_user dest aimap@example.com "$DEST_PW" userdb_migrate_source_user=aimap \
	userdb_migrate_source_protocol=auto "userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}"
migrate aimap
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}/${MIG[source_protocol]}" "0/2/0/imap" \
	"auto, a source with IMAP: copied over IMAP (summary: imap)"
tap_is "$(ls "$(rig_home dest aimap@example.com)/.migrate" | grep -c -x -e state -e pop3-only)" 1 \
	"... with a state of its folders, no POP3-only record"
# ... and stays on IMAP: its IMAP port refusing connections later is a
# failure (75), not a reason to copy its mail again over POP3
rig_add_user dest aimap@example.com "$DEST_PW" userdb_migrate_source_user=aimap \
	userdb_migrate_source_protocol=auto "userdb_migrate_source_port=$DEAD" \
	"userdb_migrate_source_pop3_port=${RIG_POP3_PORTS[src]}" userdb_migrate_retries=0
migrate aimap
tap_is "$MIG_RC/${MIG[copied]}/${MIG[source_protocol]}/$(grep -c 'pop3-login: .*user=<aimap>' "$(rig_log src)")" \
	"75/0/imap/0" "auto, an account migrated over IMAP whose IMAP port now refuses: 75, no POP3"

# (e) a template's source_protocol column: a pop3 row and an imap row, both
# checked (the POP3 row logs in over POP3, its IMAP port being closed) and
# migrated each its own way
rig_add_user src mi "$SRC_PW"
for i in 1 2; do rig_imap src mi "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
rig_add_user dest mp@mix.test "$DEST_PW" "userdb_migrate_source_pop3_port=$PSRC_POP3"
rig_add_user dest mi@mix.test "$DEST_PW"
rig_add_user dest bx@mix.test "$DEST_PW"
rig_add_user dest by@mix.test "$DEST_PW"
TDEST_PW='Str0ng!mix1'
rig_secret "$TDEST_PW" "t-pop3 template dest_password"
MIX=$RIG/mix.csv
{
	echo "source_host,source_user,source_password,dest_host,dest_user,dest_password,Protocol"
	echo "127.0.0.1:$PSRC,mp@mix.test,$SRC_PW,mx,mp@mix.test,$TDEST_PW,pop3"
	echo "127.0.0.1:$(rig_port src),mi,$SRC_PW,mx,mi@mix.test,$TDEST_PW,IMAP"
} >"$MIX"
rig_secret_input "$MIX"
acct() {   # acct REPORT USER: the account's (source_protocol, copied, class)
	json "$(cat "$1")" "[(a['source_protocol'], a['copied'], a['class']) for a in r['accounts'] if a['user'] == '$2']"
}
rc=0
rig_doveadm dest migrate check --json "$RIG/check.json" "$MIX" >"$RIG/check.out" 2>&1 || rc=$?
tap_is "$rc/$(acct "$RIG/check.json" mp@mix.test)/$(acct "$RIG/check.json" mi@mix.test)" \
	"0/[('pop3', 3, 'ok')]/[('imap', 2, 'ok')]" \
	"check: the pop3 row is checked over POP3 (its IMAP port closed), the imap row over IMAP"
tap_like "... logging in at the POP3 server" 'pop3-login: Info: Login: user=<mp@mix.test>' "$(cat "$PLOG")"
rc=0
rig_doveadm dest migrate batch --retries 0 --json "$RIG/mix.json" --csv "$RIG/mix.csv.report" "$MIX" \
	>"$RIG/mix.out" 2>&1 || rc=$?
tap_is "$rc/$(acct "$RIG/mix.json" mp@mix.test)/$(acct "$RIG/mix.json" mi@mix.test)" \
	"0/[('pop3', 3, 'ok')]/[('imap', 2, 'ok')]" \
	"batch: the pop3 row migrated over POP3, the imap row over IMAP"
tap_is "$(tr -d '\r' <"$RIG/mix.csv.report" | awk -F, 'NR == 1 { print $NF } NR > 1 { print $1 " " $NF }')" \
	"$(printf 'source_protocol\nmp@mix.test pop3\nmi@mix.test imap')" "... and the CSV report"
tap_is "$(uidls dest mp@mix.test "$DEST_PW")" "$(uidls popsrc mp@mix.test "$SRC_PW")" \
	"... the pop3 row by UIDL"
tap_is "$(ls "$(rig_home dest mi@mix.test)/.migrate" | grep -c -x -e state -e pop3-only)/$(ls "$(rig_home dest mp@mix.test)/.migrate" | grep -c -x pop3-only)" \
	"1/1" "... each recorded as migrated its way"
# later runs of the account read the protocol from the credential store
migrate_as mp@mix.test
tap_is "$MIG_RC/${MIG[copied]}/${MIG[source_protocol]}" "0/0/pop3" \
	"doveadm migrate -u of the pop3 row: over POP3, from the stored credentials"

# (f) a bad value: the file's problem, with its line and column; nothing
# is stored or changed
BAD=$RIG/bad.csv
{
	echo "source_host;source_user;source_password;dest_host;dest_user;dest_password;source_protocol"
	echo "127.0.0.1:$PSRC;mp@mix.test;$SRC_PW;mx;bx@mix.test;$TDEST_PW;pop3"
	echo "127.0.0.1:$(rig_port src);mi;$SRC_PW;mx;by@mix.test;$TDEST_PW;smtp"
} >"$BAD"
rig_secret_input "$BAD"
CRED=$(rig_dir dest)/state/migrate/credentials
rc=0
rig_doveadm dest migrate batch --retries 0 "$BAD" >"$RIG/bad.out" 2>&1 || rc=$?
tap_is "$rc" 65 "a template whose source_protocol is smtp: exit 65, as the other template problems"
tap_like "... naming the file, the line and the column" \
	"$BAD:3: column [0-9]+ \\(source_protocol\\): 'smtp' is not imap, pop3 or auto" "$(cat "$RIG/bad.out")"
tap_is "$(ls "$CRED" | grep -c -e '^bx@' -e '^by@')/$(ls -d "$(rig_home dest bx@mix.test)/.migrate" "$(rig_home dest by@mix.test)/.migrate" 2>/dev/null | wc -l)" \
	"0/0" "... nothing stored, nothing migrated"

# (g) the domain's --source-protocol holds for its accounts; a row's comes
# first
rc=0
rig_doveadm dest migrate domain start --old-mx 127.0.0.1:25 --source-protocol smtp pdom.test \
	>"$RIG/dom.out" 2>&1 || rc=$?
tap_is "$rc" 64 "domain start --source-protocol smtp: usage (64)"
tap_like "... saying what it takes" '--source-protocol smtp: not imap, pop3 or auto' "$(cat "$RIG/dom.out")"
rig_doveadm dest migrate domain start --old-mx 127.0.0.1:25 --source-protocol POP3 pdom.test \
	>"$RIG/dom.out" 2>&1 || tap_fail "domain start --source-protocol pop3 pdom.test"
rig_add_user dest pd@pdom.test "$DEST_PW" userdb_migrate_source_user=pd@pdom.test \
	"userdb_migrate_source_port=$PSRC" "userdb_migrate_source_pop3_port=$PSRC_POP3"
migrate_as pd@pdom.test
tap_is "$MIG_RC/${MIG[copied]}/${MIG[source_protocol]}" "0/3/pop3" \
	"domain start --source-protocol pop3: its account is migrated over POP3"
rig_add_user src pi "$SRC_PW"
for i in 1 2; do rig_imap src pi "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
rig_add_user dest pi@pdom.test "$DEST_PW"
rig_add_user dest pd2@pdom.test "$DEST_PW" "userdb_migrate_source_pop3_port=$PSRC_POP3"
PDOM=$RIG/pdom.csv
{
	echo "source_host,source_user,source_password,dest_host,dest_user,dest_password,source_protocol"
	echo "127.0.0.1:$(rig_port src),pi,$SRC_PW,mx,pi@pdom.test,$TDEST_PW,imap"
	echo "127.0.0.1:$PSRC,pd2@pdom.test,$SRC_PW,mx,pd2@pdom.test,$TDEST_PW,"
} >"$PDOM"
rig_secret_input "$PDOM"
rc=0
rig_doveadm dest migrate batch --retries 0 --json "$RIG/pdom.json" "$PDOM" >"$RIG/pdom.out" 2>&1 || rc=$?
tap_is "$rc/$(acct "$RIG/pdom.json" pi@pdom.test)/$(acct "$RIG/pdom.json" pd2@pdom.test)" \
	"0/[('imap', 2, 'ok')]/[('pop3', 3, 'ok')]" \
	"... a row's imap comes first; an empty column is the domain's pop3"

# (b) IMAP open again at popsrc: auto keeps the account on POP3 without
# trying IMAP; migrate_source_protocol = imap is refused (78), the
# destination unchanged
rig_conf_add popsrc "protocols = imap pop3" || exit 1
imap_port open && rig_imap popsrc ap@example.com "$SRC_PW" count INBOX >/dev/null ||
	tap_fail "popsrc answers IMAP again"
ap_logins() { grep -c 'imap-login: Login: user=<ap@example.com>' "$PLOG"; }
ap_dest() {
	find "$(rig_maildir dest ap@example.com)" -path '*/cur/*' -o -path '*/new/*' | sort
	uidls dest ap@example.com "$DEST_PW"
	ls "$AP_STATE"
}
before_logins=$(ap_logins)
before=$(ap_dest)
migrate ap
tap_is "$MIG_RC/${MIG[source_protocol]}/$(($(ap_logins) - before_logins))" "0/pop3/0" \
	"IMAP open again: auto goes on over POP3, without trying IMAP"
before_logins=$(ap_logins)
rig_add_user dest ap@example.com "$DEST_PW" userdb_migrate_source_user=ap@example.com \
	userdb_migrate_source_protocol=imap "userdb_migrate_source_port=$PSRC" \
	"userdb_migrate_source_pop3_port=$PSRC_POP3"
migrate ap
tap_is "$MIG_RC/${MIG[copied]}/${MIG[source_protocol]}" "78/0/imap" \
	"migrate_source_protocol = imap for an account migrated over POP3 only: refused (78)"
tap_like "... naming the setting and the state directory" \
	"migrate_source_protocol = imap, but this account was migrated over POP3 only before \\($AP_STATE\\)" \
	"$(cat "$MIG_OUT")"
tap_is "$(ap_dest)/$(($(ap_logins) - before_logins))" "$before/0" \
	"... the destination unchanged, the source not even logged in to"

# (h) the POP3 order: Dovecot's is its UID order, kept (pop3_order_differs
# 0, above); a POP3 server whose order is not the IMAP UID order (the
# test's own, serving the same messages) is counted, as a POP3 client
# sees it
rig_add_user src ord "$SRC_PW"
for i in 1 2 3 4 5; do rig_imap src ord "$SRC_PW" append INBOX "$RIG/m$i.eml" >/dev/null; done
ORD_PORT=$(rig_free_port)
POP3_PASSWORD=$SRC_PW "$PY" "$T/pop3-files.py" --port "$ORD_PORT" --user ord \
	--password-env POP3_PASSWORD --ready "$RIG/ord.ready" \
	"$RIG/m3.eml" "$RIG/m1.eml" "$RIG/m2.eml" "$RIG/m5.eml" "$RIG/m4.eml" &
ORD_PID=$!
rig_on_exit "kill $ORD_PID 2>/dev/null"
for _ in $(seq 1 50); do [ -e "$RIG/ord.ready" ] && break; sleep 0.1; done
rig_add_user dest ord@example.com "$DEST_PW" userdb_migrate_source_user=ord \
	userdb_migrate_source_pop3=yes "userdb_migrate_source_pop3_port=$ORD_PORT"
MIG_OUT=$RIG/mig.ord
MIG_RC=0
# with -R (batch's result descriptor) the record is the output: the counts
# from the run's report.json
rig_doveadm dest -f tab migrate -u ord@example.com -R 3 >"$MIG_OUT" 2>&1 3>"$RIG/ord.rec" || MIG_RC=$?
ORD_REPORT=$(cat "$(rig_home dest ord@example.com)/.migrate/report.json")
ORD_SRC=$(rig_pop3_uidls "$ORD_PORT" ord "$SRC_PW")
ORD_DEST=$(uidls dest ord@example.com "$DEST_PW")
measured=$(rig_pop3_order_differs "$ORD_SRC" "$ORD_DEST")
tap_diag "POP3 order at the source: $(cut -d' ' -f2 <<<"$ORD_SRC" | tr '\n' ' ')"
tap_is "$MIG_RC/$(json "$ORD_REPORT" 'r["pop3_uidls"]')/$(json "$ORD_REPORT" 'r["pop3_order_differs"]')" "0/5/$measured" \
	"a source whose POP3 order is not its UID order: pop3_order_differs is what a POP3 client sees ($measured)"
tap_is "$measured" 2 "... 2 of 5 out of order (3 1 2 5 4)"
tap_like "... warned about" '2 copies of INBOX are listed by POP3 here out of the source.s POP3 order' \
	"$(cat "$MIG_OUT")"
tap_is "$(json "$(cat "$RIG/ord.rec")" 'r["pop3_order_differs"]')/$(json "$(cat "$(rig_home dest ord@example.com)/.migrate/report.json")" 'r["pop3_order_differs"]')" \
	"2/2" "... in the run's record (the batch reports') and report.json"

# without migrate_source_pop3 nothing of this happens
migrate nop
tap_is "$MIG_RC/${MIG[copied]}/${MIG[pop3_uidls]}" "0/3/0" "without migrate_source_pop3: copies, no UIDLs read"
tap_unlike_uidl=$(uidls dest nop@example.com "$DEST_PW" | cut -d' ' -f2 | sort)
tap_is "$(grep -c -F -x -f <(uidls src nop "$SRC_PW" | cut -d' ' -f2) <<<"$tap_unlike_uidl")" 0 \
	"... and our POP3 server gives UIDLs of its own"

tap_done
