#!/bin/bash
# t-courier.sh - what only the real Courier-IMAP (5.0, Debian's packages run
# unpacked: tests/lib/rig-foreign.sh) shows; its seeded account is migrated
# in t-sources.sh with the other sources.
#
# 1. A wrong password: Courier answers "NO Login failed." without a
#    response code.  doveadm migrate exits 77 within seconds, after one
#    failed login in Courier's log, although migrate_retries allows three
#    more; doveadm migrate batch --retries 3 of that account also logs in
#    once (77 is never retried).
# 2. Folder names Courier takes and Dovecot refuses or reads as wildcards:
#    "INBOX.~tilde", "INBOX.a%b", "INBOX.a*b" (made in the maildir with
#    rig_courier_add_folder), each with a message: the run exits 0, every
#    message arrives, in folders named _x7etilde, a_x25b and a_x2ab.
# 3. Courier's POP3 server (courier-pop): with migrate_source_pop3 our
#    POP3 server answers UIDL with Courier's UIDLs, and pop3_order_differs
#    counts the copies our POP3 server lists out of Courier's POP3 order
#    (which is at times not its IMAP UID order), as a POP3 client sees
#    both.
# And the host's own Courier paths are left as they were.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-courier
. "$(dirname "$0")/../lib/rig-foreign.sh"

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Cour;src 5'
DAVE_PW='Dave,src 6'
WRONG_PW='Wrong;pw 7'
DEST_PW='Dest!cour 8'
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW

if ! why=$(rig_foreign_fetch courier); then
	tap_ok "# SKIP Courier-IMAP as a source: ${why//$'\n'/ }"
	tap_done
fi
# the paths Courier has built in, on the host, before and after
host_paths() { ls -ld /etc/courier /run/courier /usr/lib/courier /usr/lib/courier-authlib 2>&1; }
HOST_BEFORE=$(host_paths)
rig_start_courier courier || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
tap_ok "Courier-IMAP up on :$(rig_port courier)"

rig_foreign_add_user courier carol "$SRC_PW" || exit 1
rig_foreign_add_user courier dave "$DAVE_PW" || exit 1
rig_secret "$WRONG_PW" "wrong source password"
# every destination user logs in at Courier with the password file's
# password: carol's, so dave's is wrong
rig_migrate_source dest courier "$SRC_PW"
rig_dest_plugin_set dest migrate_retry_delay 1s
rig_add_user dest refused@example.com "$DEST_PW" userdb_migrate_source_user=dave \
	"userdb_migrate_source_port=$(rig_port courier)"
rig_add_user dest odd@example.com "$DEST_PW" userdb_migrate_source_user=carol \
	"userdb_migrate_source_port=$(rig_port courier)"

CLOG=$(rig_log courier)
failed_logins() { grep -c 'LOGIN FAILED, user=dave,' "$CLOG"; }
declare -A MIG
migrate() { rig_migrate_user dest "$1@example.com" "${@:2}"; }

# --- 1. a wrong password is refused once ------------------------------------------
before=$(failed_logins)
start=$SECONDS
migrate refused -o plugin/migrate_retries=3
secs=$((SECONDS - start))
tap_is "$MIG_RC" 77 "wrong password at Courier: doveadm migrate exits 77"
[ "$MIG_RC" = 77 ] || tap_diag "$(tail -n 5 "$MIG_OUT")"
tap_is "$(($(failed_logins) - before))" 1 "... after one failed login in Courier's log, not retried"
tap_like "... within seconds ($secs s, Courier waits before it answers)" '^([0-9]|1[0-9])$' "$secs"
tap_like "... and says Courier refused the login" 'Login failed' "$(cat "$MIG_OUT")"

TEMPLATE=$RIG/template.txt
printf '127.0.0.1:%s;dave;"%s";mx.example.com;refused@example.com;Str0ng!dest\n' \
	"$(rig_port courier)" "$WRONG_PW" >"$TEMPLATE"
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$TEMPLATE"
before=$(failed_logins)
start=$SECONDS
rc=0
rig_doveadm dest migrate batch --retries 3 --retry-delay 0 --json "$RIG/batch.json" \
	"$TEMPLATE" >"$RIG/batch.out" 2>"$RIG/batch.err" || rc=$?
secs=$((SECONDS - start))
tap_is "$rc" 77 "wrong password in a batch: exit 77"
[ "$rc" = 77 ] || tap_diag "$(tail -n 5 "$RIG/batch.err")"
tap_is "$(($(failed_logins) - before))" 1 \
	"... one failed login with --retries 3 ($secs s)"
tap_like "... the account is reported as a refused login, one attempt" \
	'"user":"refused@example.com"[^}]*"class":"login refused"[^}]*"attempts":1' \
	"$(cat "$RIG/batch.json")"

# --- 2. folder names Dovecot refuses ---------------------------------------------------
for f in INBOX 'INBOX.~tilde' 'INBOX.a%b' 'INBOX.a*b' 'INBOX.Plain' 'INBOX.Übersicht'; do
	[ "$f" = INBOX ] || rig_courier_add_folder courier carol "$f"
	printf 'From: odd@example.org\r\nSubject: in %s\r\nMessage-ID: <%s@odd>\r\n\r\nA message in %s.\r\n' \
		"$f" "${f//[^A-Za-z]/_}" "$f" >"$RIG/msg"
	rig_imap_append courier carol "$SRC_PW" "$f" "$RIG/msg" '\Seen' >/dev/null ||
		rig_die "APPEND to $f failed"
done
tap_is "$(rig_imap courier carol "$SRC_PW" list | grep -cxF -e 'INBOX.~tilde' -e 'INBOX.a%b' -e 'INBOX.a*b')" 3 \
	"Courier lists INBOX.~tilde, INBOX.a%b and INBOX.a*b as they were made"

migrate odd
tap_diag "doveadm migrate with these folders: exit $MIG_RC" "$(grep -v '^user' "$MIG_OUT" | tail -n 6)"
# the content hashes of the destination's messages, in any folder
snap() {
	"$PY" "$T/seed-account.py" --port "$(rig_port "$1")" --user "$2" \
		--password-env "$3" snapshot --no-dates | cut -f1,2
}
SRC_SNAP=$(snap courier carol SRC_IMAP_PASSWORD)
DEST_SNAP=$(snap dest odd@example.com DEST_IMAP_PASSWORD)
in_dest() {   # in_dest FOLDER: its message's hash is somewhere at the destination
	local h
	h=$(awk -F '\t' -v f="$1" '$1 == f { print $2 }' <<<"$SRC_SNAP")
	[ -n "$h" ] && grep -qF "$h" <<<"$DEST_SNAP"
}
tap_is "$MIG_RC" 0 "a source with INBOX.~tilde, INBOX.a%b and INBOX.a*b: the run exits 0"
for f in INBOX INBOX.Plain INBOX.Übersicht 'INBOX.a%b' 'INBOX.a*b'; do
	in_dest "$f" && got=yes || got=no
	tap_is "$got" yes "... the message of $f is at the destination"
done
in_dest 'INBOX.~tilde' && got=yes || got=no
tap_is "$got" yes "... the message of INBOX.~tilde is at the destination"
tap_is "$(rig_doveadm dest mailbox list -u odd@example.com | grep -c -x -e '_x7etilde' -e 'a_x25b' -e 'a_x2ab')" 3 \
	"... in folders named _x7etilde, a_x25b and a_x2ab"

# 3. POP3 UIDLs: Courier's own POP3 server (courier-pop) numbers its
# messages with UIDLs of Courier's format; with migrate_source_pop3 the
# copies of INBOX keep them, and our POP3 server answers UIDL as Courier's
CPOP3=$(rig_courier_pop3 courier)
rig_pop3_enable dest || exit 1
for i in 1 2 3; do
	printf 'From: pop%s@example.org\r\nSubject: courier pop3 %s\r\nMessage-ID: <cpop.%s@t-courier>\r\n\r\nbody %s\r\n' \
		"$i" "$i" "$i" "$i" >"$RIG/cpop$i.eml"
	rig_imap_append courier carol "$SRC_PW" INBOX "$RIG/cpop$i.eml" >/dev/null
done
rig_add_user dest popc@example.com "$DEST_PW" userdb_migrate_source_user=carol \
	"userdb_migrate_source_port=$(rig_port courier)" userdb_migrate_source_pop3=yes \
	"userdb_migrate_source_pop3_port=$CPOP3"
C_UIDLS=$(rig_pop3_uidls "$CPOP3" carol "$SRC_PW")
tap_diag "Courier's POP3: $(wc -l <<<"$C_UIDLS") messages, UIDLs like $(head -n 1 <<<"$C_UIDLS")"
migrate popc
tap_is "$MIG_RC/${MIG[pop3_uidls]}/${MIG[pop3_unmatched]}" "0/$(wc -l <<<"$C_UIDLS")/0" \
	"every copy of INBOX gets its Courier POP3 UIDL"
# (the same UIDLs; not always in the same order: Courier numbers its POP3
# messages in an order of its own, ours is the UID order)
D_UIDLS=$(rig_pop3_uidls "${RIG_POP3_PORTS[dest]}" popc@example.com "$DEST_PW")
tap_is "$(cut -d' ' -f2 <<<"$D_UIDLS" | sort)" \
	"$(cut -d' ' -f2 <<<"$C_UIDLS" | sort)" "our POP3 server answers UIDL with Courier's UIDLs"
# ... and counts the copies our POP3 server lists out of Courier's POP3
# order, as a POP3 client sees them on both servers (Courier's as the
# run's POP3 session saw it: after its IMAP session, no later)
differs=$(rig_pop3_order_differs "$(rig_pop3_uidls "$CPOP3" carol "$SRC_PW")" "$D_UIDLS")
tap_diag "Courier's POP3 order against ours: $differs out of order"
tap_is "${MIG[pop3_order_differs]}" "$differs" \
	"pop3_order_differs is what a POP3 client sees: $differs of Courier's order not kept"

rig_stop courier
tap_is "$(host_paths)" "$HOST_BEFORE" "the host's /etc/courier, /run/courier and /usr/lib/courier* are as before"

tap_done
