#!/bin/bash
# t-tls.sh - the source over TLS: STARTTLS by default, imaps, certificate
# verification on by default, and verification against a host name while
# connecting to the IP address the customer gave.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-tls

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Tls!src1'
DEST_PW='Tls!dst1'
NAME=imap.old-provider.test

rig_start_source src || exit 1
rig_start_dest dest || exit 1

# a self-signed certificate for the old provider's name (not for 127.0.0.1)
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$NAME" \
	-addext "subjectAltName=DNS:$NAME" -keyout "$RIG/key.pem" \
	-out "$RIG/cert.pem" 2>/dev/null || rig_die "openssl failed"
IMAPS_PORT=$(rig_free_port)
rig_conf_add src "ssl = yes
ssl_cert = <$RIG/cert.pem
ssl_key = <$RIG/key.pem
service imap-login {
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
  }
}"
rig_conf_add dest "ssl_client_ca_file = $RIG/cert.pem"

rig_add_user src gil "$SRC_PW"
rig_add_user dest gil@example.com "$DEST_PW" userdb_migrate_source_user=gil
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
# STARTTLS, the default
rig_migrate_source dest src "$SRC_PW" starttls

# one message above the size read in pieces, over a connection of its own
{
	printf 'From: big@example.org\r\nSubject: big\r\n\r\n'
	head -c $((6 * 1024 * 1024)) /dev/urandom | base64 -w 76 | sed 's/$/\r/'
} >"$RIG/big.eml"
rig_imap src gil "$SRC_PW" append --create Big "$RIG/big.eml" >/dev/null
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user gil \
	--password-env SRC_IMAP_PASSWORD --seed 9 --messages 120 --max-size 256K >/dev/null

migrate() {
	MIG_OUT=$RIG/out.$((++MIG_N))
	MIG_RC=0
	rig_doveadm dest "$@" migrate -u gil@example.com >"$MIG_OUT" 2>&1 || MIG_RC=$?
}
compare() {
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user gil \
		--dest-port "$(rig_port dest)" --dest-user gil@example.com "$@"
}

# STARTTLS is the default, and the certificate does not name 127.0.0.1
migrate
tap_is "$MIG_RC" 76 "STARTTLS to an IP the certificate does not name fails (76, not a tempfail)"
tap_like "the error is about the certificate" '[Cc]ertificate|SSL|ssl' "$(cat "$MIG_OUT")"
tap_run "nothing was copied" test ! -e "$(rig_home dest gil@example.com)/.migrate/state"

migrate -o "plugin/migrate_source_ssl_hostname=$NAME"
tap_is "$MIG_RC" 0 "STARTTLS to the IP, verified against $NAME, works"
tap_run "checker: equal over STARTTLS" compare

rig_imap src gil "$SRC_PW" set-flags INBOX --first 2 --flags '\Flagged' >/dev/null
migrate -o "plugin/migrate_source_ssl_hostname=$NAME" -o plugin/migrate_source_ssl=imaps \
	-o "plugin/migrate_source_port=$IMAPS_PORT"
tap_is "$MIG_RC" 0 "imaps to the IP, verified against $NAME, works"
tap_run "checker: equal over imaps" compare

migrate -o "plugin/migrate_source_ssl_hostname=imap.wrong.test"
tap_is "$MIG_RC" 76 "a name the certificate does not carry is refused"

migrate -o "plugin/migrate_source_ssl_hostname=$NAME" -o plugin/migrate_source_host=localhost
tap_is "$MIG_RC" 78 "migrate_source_ssl_hostname with a host name (not an IP) is a settings error"

migrate -o plugin/migrate_source_ssl_verify=no
tap_is "$MIG_RC" 0 "with verification off, the mismatching certificate is accepted"

# --- another source: a self-signed certificate nobody trusts, and a source
# that stops offering STARTTLS (tools/quirkyimap.py) -----------------------------
QPW='Tls!quirky3'
Q=$RIG/quirky
mkdir -p "$Q"
chmod 755 "$Q"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=127.0.0.1" \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$Q/key.pem" \
	-out "$Q/cert.pem" 2>/dev/null || rig_die "openssl failed"
printf 'From: q@example.org\r\nSubject: over TLS\r\n\r\nHello.\r\n' >"$Q/m1.eml"
# qscen STARTTLS(0|1): the scenario, with or without STARTTLS offered
qscen() {
	"$PY" - "$Q" "$1" <<-'EOF'
	import json, os, sys
	q, tls = sys.argv[1], sys.argv[2] == "1"
	caps = ["IMAP4rev1", "AUTH=PLAIN", "LITERAL+"] + (["STARTTLS"] if tls else [])
	sc = {"user": "quser", "capabilities": caps, "separator": "/", "prefix": "",
	      "folders": [{"name": "INBOX", "uidvalidity": 5, "messages": [
	          {"uid": 1, "file": "m1.eml", "internaldate": "01-Jan-2021 10:00:00 +0000"}]}]}
	with open(os.path.join(q, "s.tmp"), "w") as f:
	    json.dump(sc, f)
	os.rename(os.path.join(q, "s.tmp"), os.path.join(q, "scenario.json"))
	EOF
}
qscen 1
QPORT=$(rig_free_port)
QUIRKY_PASSWORD=$QPW "$PY" "$T/quirkyimap.py" --port "$QPORT" --scenario "$Q/scenario.json" \
	--log "$Q/log" --pidfile "$Q/pid" --daemon --tls-cert "$Q/cert.pem" --tls-key "$Q/key.pem" || exit 1
rig_on_exit 'kill "$(cat "$Q/pid")" 2>/dev/null'
# a second customer at that source; only for it, an admin may turn off
# verification in its userdb entry (or its template row)
rig_add_user dest hal@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT" \
	"userdb_migrate_source_password_file=$(rig_password_file quirky-pw "$QPW")"
qmigrate() {
	MIG_OUT=$RIG/out.$((++MIG_N))
	MIG_RC=0
	rig_doveadm dest -o plugin/migrate_retries=0 "$@" migrate -u hal@example.com >"$MIG_OUT" 2>&1 || MIG_RC=$?
}
qmigrate
tap_is "$MIG_RC" 76 "a self-signed certificate nobody trusts is refused (76)"
tap_like "... saying why" '[Cc]ertificate|SSL' "$(cat "$MIG_OUT")"
tap_is "$(grep -c ' login ' "$Q/log")" 0 "... before any login"
rig_add_user dest hal@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT" \
	"userdb_migrate_source_password_file=$RIG/quirky-pw.pw" \
	userdb_migrate_source_ssl_verify=no
qmigrate
tap_is "$MIG_RC" 0 "with migrate_source_ssl_verify=no for that source only, it is accepted"
tap_is "$(rig_imap dest hal@example.com "$DEST_PW" count INBOX)" 1 "... and its mail copied"
tap_like "... over TLS" 'conn [0-9]+ tls' "$(cat "$Q/log")"
migrate
tap_is "$MIG_RC" 76 "the other customer's source is still verified (its name mismatch still refused)"
# the source stops offering STARTTLS (a man in the middle strips it)
qscen 0
touch -d "@$(($(date +%s) + 5))" "$Q/scenario.json"
logins=$(grep -c ' login ' "$Q/log")
qmigrate
tap_is "$MIG_RC" 76 "a STARTTLS source that stops offering STARTTLS is refused (76)"
tap_like "... saying so" 'STARTTLS' "$(cat "$MIG_OUT")"
tap_is "$(grep -c ' login ' "$Q/log")" "$logins" "... and no password went out in plaintext (no login)"

leftover=$(find /tmp -maxdepth 1 -name 'dovecot-migrate.*' -newer "$RIG/cert.pem" 2>/dev/null)
tap_is "$leftover" "" "the private resolver leaves nothing behind"

tap_done
