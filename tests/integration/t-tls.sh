#!/bin/bash
# t-tls.sh - the source over TLS: STARTTLS by default, imaps, certificate
# verification on by default, and verification against a host name while
# connecting to the IP address the customer gave: in the configuration,
# per domain (domain start --source-tls-name) and per template row (the
# tls_name column).  check shows each source's certificate and pins it
# (--pin): a different certificate is then refused by every connection,
# imapc's and our own, even with verification off.  No TLS, or no
# verification, is warned about in every run and recorded in report.json
# and the batch reports.

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
# a test CA, trusted by our destination besides that self-signed certificate
CA=$RIG/ca
mkdir -p "$CA"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Migrate Test CA" \
	-keyout "$CA/ca.key" -out "$CA/ca.pem" 2>/dev/null || rig_die "openssl failed"
cat "$RIG/cert.pem" "$CA/ca.pem" >"$RIG/trust.pem"
rig_conf_add dest "ssl_client_ca_file = $RIG/trust.pem"

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
# scenario_put DIR: the scenario JSON on stdin becomes DIR/scenario.json
# (atomically), with an mtime later than the last one's: quirkyimap
# re-reads it at its next connection when the mtime changed
scenario_put() {
	local old now
	old=$(stat -c %Y "$1/scenario.json" 2>/dev/null || echo 0)
	now=$(date +%s)
	[ "$now" -gt "$old" ] || now=$old
	cat >"$1/s.tmp" && mv "$1/s.tmp" "$1/scenario.json" || rig_die "scenario_put $1"
	touch -d "@$((now + 1))" "$1/scenario.json"
}
# qscen STARTTLS(0|1): the scenario, with or without STARTTLS offered
qscen() {
	"$PY" - "$1" <<-'EOF' | scenario_put "$Q"
	import json, sys
	tls = sys.argv[1] == "1"
	caps = ["IMAP4rev1", "AUTH=PLAIN", "LITERAL+"] + (["STARTTLS"] if tls else [])
	sc = {"user": "quser", "capabilities": caps, "separator": "/", "prefix": "",
	      "folders": [{"name": "INBOX", "uidvalidity": 5, "messages": [
	          {"uid": 1, "file": "m1.eml", "internaldate": "01-Jan-2021 10:00:00 +0000"}]}]}
	print(json.dumps(sc))
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
logins=$(grep -c ' login ' "$Q/log")
qmigrate
tap_is "$MIG_RC" 76 "a STARTTLS source that stops offering STARTTLS is refused (76)"
tap_like "... saying so" 'STARTTLS' "$(cat "$MIG_OUT")"
tap_is "$(grep -c ' login ' "$Q/log")" "$logins" "... and no password went out in plaintext (no login)"

# --- sources given by IP address in a batch, with a certificate the CA
# signed for a name ---------------------------------------------------------
CANAME=imap.ca-provider.test
CAPW='Tls!ca-src4'
TDEST='Tls!dst1'
# mkcert NAME: a key and a certificate for $CANAME signed by the test CA
mkcert() {
	openssl req -newkey rsa:2048 -nodes -subj "/CN=$CANAME" -keyout "$CA/$1.key" \
		-out "$CA/$1.csr" 2>/dev/null &&
		openssl x509 -req -in "$CA/$1.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" \
			-CAcreateserial -days 30 -out "$CA/$1.pem" \
			-extfile <(printf 'subjectAltName=DNS:%s\n' "$CANAME") 2>/dev/null
}
mkcert one && mkcert two || rig_die "openssl failed"
fingerprint() { openssl x509 -noout -fingerprint -sha256 -in "$1" | sed 's/^[^=]*=//'; }
FP1=$(fingerprint "$CA/one.pem")
FP2=$(fingerprint "$CA/two.pem")
[ -n "$FP1" ] && [ "$FP1" != "$FP2" ] || rig_die "no fingerprints"
# live: what the source shows (copied over, then the source restarted)
use_cert() {
	cp "$CA/$1.pem" "$CA/live.pem" && cp "$CA/$1.key" "$CA/live.key" &&
		rig_restart casrc
}
cp "$CA/one.pem" "$CA/live.pem"
cp "$CA/one.key" "$CA/live.key"
rig_start_source casrc || exit 1
rig_conf_add casrc "ssl = yes
ssl_cert = <$CA/live.pem
ssl_key = <$CA/live.key" || rig_die "TLS for casrc"
CAPORT=$(rig_port casrc)
rig_users_defer
for u in ca1 ca2 ca3; do
	rig_add_user casrc "$u" "$CAPW"
done
for u in i1@ip.example i2@ip.example r1@row.example; do
	rig_add_user dest "$u" "$DEST_PW"
done
rig_users_settle
for u in ca1 ca2 ca3; do
	SRC_IMAP_PASSWORD=$CAPW "$PY" "$T/gen-corpus.py" --port "$CAPORT" --user "$u" \
		--password-env SRC_IMAP_PASSWORD --seed 31 --messages 6 --max-size 8K \
		--connections 1 >/dev/null || rig_die "gen-corpus for $u failed"
done
rig_secret "$TDEST" "template dest_password"

# the templates: ip.example in imapsync's form; row.example with and
# without the tls_name column; ip.example with a column that names a
# wrong certificate for one row (the row's name wins over the domain's)
IPT=$RIG/ip.txt
ROW0=$RIG/row0.csv
ROWT=$RIG/row.csv
IPT2=$RIG/ip2.csv
printf '127.0.0.1:%s;ca1;%s;mx.ip.example;i1@ip.example;%s\n127.0.0.1:%s;ca2;%s;mx.ip.example;i2@ip.example;%s\n' \
	"$CAPORT" "$CAPW" "$TDEST" "$CAPORT" "$CAPW" "$TDEST" >"$IPT"
printf 'source_host,source_user,source_password,dest_host,dest_user,dest_password\n127.0.0.1:%s,ca3,%s,mx,r1@row.example,%s\n' \
	"$CAPORT" "$CAPW" "$TDEST" >"$ROW0"
printf 'source_host,source_user,source_password,dest_host,dest_user,dest_password,TLS name\n127.0.0.1:%s,ca3,%s,mx,r1@row.example,%s,%s\n' \
	"$CAPORT" "$CAPW" "$TDEST" "$CANAME" >"$ROWT"
printf 'host1;user1;password1;host2;user2;password2;tls_name\n127.0.0.1:%s;ca1;%s;mx;i1@ip.example;%s;\n127.0.0.1:%s;ca2;%s;mx;i2@ip.example;%s;imap.wrong.test\n' \
	"$CAPORT" "$CAPW" "$TDEST" "$CAPORT" "$CAPW" "$TDEST" >"$IPT2"
for f in "$IPT" "$ROW0" "$ROWT" "$IPT2"; do
	rig_secret_input "$f"
done

# batch [doveadm -o ARGS] -- BATCH ARGS: output in $B_OUT/$B_ERR, JSON in
# $B_JSON, CSV in $B_CSV
B_N=0
batch() {
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	B_N=$((B_N + 1))
	B_OUT=$RIG/b.$B_N.out B_ERR=$RIG/b.$B_N.err
	B_JSON=$RIG/b.$B_N.json B_CSV=$RIG/b.$B_N.csv
	B_RC=0
	rig_doveadm dest "${opts[@]}" migrate batch --retries 0 --json "$B_JSON" \
		--csv "$B_CSV" "$@" >"$B_OUT" 2>"$B_ERR" || B_RC=$?
}
# acct_field JSON USER KEY: a field of an account in a batch/check report
acct_field() {
	"$PY" -c 'import json,sys
for a in json.load(open(sys.argv[1]))["accounts"]:
    if a["user"] == sys.argv[2]:
        v = a
        for k in sys.argv[3].split("."):
            v = v.get(k) if isinstance(v, dict) else None
        print("" if v is None else v)' "$1" "$2" "$3"
}
cacompare() {
	SRC_IMAP_PASSWORD=$CAPW "$PY" "$T/imap-compare.py" -q --src-port "$CAPORT" \
		--src-user "$1" --dest-port "$(rig_port dest)" --dest-user "$2"
}

batch -- "$IPT"
tap_is "$B_RC" 76 "batch: sources given by IP, no certificate name: 76"
tap_is "$(acct_field "$B_JSON" i1@ip.example class)" "TLS failure" "... a TLS failure"
tap_like "... saying where the certificate's name goes" "given by IP address: .*--source-tls-name" \
	"$(acct_field "$B_JSON" i1@ip.example reason)"

rc=0
rig_doveadm dest migrate domain start --old-mx "127.0.0.1:$(rig_free_port)" \
	--source-tls-name 192.0.2.7 ip.example >"$RIG/start.out" 2>&1 || rc=$?
tap_is "$rc" 64 "domain start --source-tls-name takes a host name, not an address"
rc=0
rig_doveadm dest migrate domain start --old-mx "127.0.0.1:$(rig_free_port)" \
	--source-tls-name "$CANAME" ip.example >"$RIG/start.out" 2>&1 || rc=$?
tap_is "$rc" 0 "domain start --source-tls-name $CANAME ip.example"
batch -- "$IPT"
tap_is "$B_RC" 0 "batch: with the domain's certificate name, the IP rows verify and succeed"
tap_run "checker: i1 equal" cacompare ca1 i1@ip.example
tap_run "checker: i2 equal" cacompare ca2 i2@ip.example
tap_is "$(acct_field "$B_JSON" i1@ip.example tls.name)" "$CANAME" "... verified as the domain's name (batch JSON)"
tap_is "$(acct_field "$B_JSON" i1@ip.example tls.insecure)" "" "... nothing insecure"

batch -- "$ROW0"
tap_is "$B_RC" 76 "batch: row.example has no certificate name: 76"
batch -- "$ROWT"
tap_is "$B_RC" 0 "batch: with the template row's tls_name column, the row verifies and succeeds"
tap_run "checker: r1 equal" cacompare ca3 r1@row.example
batch -- "$IPT2"
tap_is "$(acct_field "$B_JSON" i1@ip.example status)" ok "a row without a name takes the domain's"
tap_is "$(acct_field "$B_JSON" i2@ip.example class)" "TLS failure" "a row's wrong name wins over the domain's (76)"
tap_is "$B_RC" 76 "... and the batch exits 76"

# --- check shows the certificate, and pins it --------------------------------
EXPIRES="$(date -u -d "$(openssl x509 -noout -enddate -in "$CA/one.pem" | cut -d= -f2)" \
	'+%Y-%m-%d %H:%M:%S') UTC"
rc=0
rig_doveadm dest migrate check "$IPT" >"$RIG/check.1.out" 2>"$RIG/check.1.err" || rc=$?
tap_is "$rc" 0 "check passes"
CHECK=$(grep "source 127.0.0.1:$CAPORT " "$RIG/check.1.err")
tap_like "check: one line for the source" "starttls, verified as $CANAME" "$CHECK"
tap_like "... its subject" "subject CN=$CANAME," "$CHECK"
tap_like "... its issuer" "issuer CN=Migrate Test CA," "$CHECK"
tap_like "... its expiry" "expires $EXPIRES," "$CHECK"
tap_like "... its SHA-256, as openssl x509 -fingerprint -sha256 says" "SHA-256 $FP1" "$CHECK"
rc=0
rig_doveadm dest migrate check --pin "$IPT" >"$RIG/check.2.out" 2>"$RIG/check.2.err" || rc=$?
tap_is "$rc" 0 "check --pin"
tap_like "... pins the source's certificate for ip.example" \
	"source 127.0.0.1:$CAPORT: pinned SHA-256 $FP1 for ip.example" "$(cat "$RIG/check.2.err")"
rig_doveadm dest migrate domain status ip.example >/dev/null 2>"$RIG/status.err"
tap_like "domain status shows the pin" "source 127.0.0.1:$CAPORT pinned to SHA-256 $FP1" \
	"$(cat "$RIG/status.err")"

# another certificate, signed by the same CA for the same name: valid, but
# not the pinned one
use_cert two || rig_die "restart casrc"
batch -- "$IPT"
tap_is "$B_RC" 76 "another certificate (valid, same CA and name) is refused: 76"
tap_like "... saying it is not the pinned one" "not the one pinned" "$(acct_field "$B_JSON" i1@ip.example reason)"
tap_is "$(acct_field "$B_JSON" i1@ip.example tls.certificate.sha256)" "$FP2" "... the report names what was seen"
logins=$(grep -c 'Login: user=<' "$(rig_log casrc)")
batch -o plugin/migrate_source_ssl_verify=no -- "$IPT"
tap_is "$B_RC" 76 "... refused even with migrate_source_ssl_verify=no"
tap_is "$(grep -c 'Login: user=<' "$(rig_log casrc)")" "$logins" \
	"... before any login (in the handshake)"
rc=0
rig_doveadm dest migrate check "$IPT" >"$RIG/check.3.out" 2>"$RIG/check.3.err" || rc=$?
tap_is "$rc" 76 "check: 76 against the pin"
tap_like "... and shows the new certificate is not the pinned one" \
	"SHA-256 $FP2; NOT the pinned one \\(SHA-256 $FP1\\)" "$(cat "$RIG/check.3.err")"

use_cert one || rig_die "restart casrc"
batch -o plugin/migrate_source_ssl_verify=no -- "$IPT"
tap_is "$B_RC" 0 "the pinned certificate again: ok with verification off"
tap_is "$(acct_field "$B_JSON" i1@ip.example tls.insecure)" "migrate_source_ssl_verify = no" \
	"... recorded in the batch JSON"
tap_like "... and among its warnings" "is not verified \\(migrate_source_ssl_verify = no\\): only the pinned one" \
	"$(acct_field "$B_JSON" i1@ip.example warnings)"
tap_like "... and in the batch CSV" "starttls,no,$CANAME,migrate_source_ssl_verify = no,$FP1" "$(cat "$B_CSV")"
batch -- "$IPT"
tap_is "$B_RC" 0 "... and with verification on"
rc=0
rig_doveadm dest -o plugin/migrate_source_ssl=no migrate -u i1@ip.example \
	>"$RIG/nossl-pinned.out" 2>&1 || rc=$?
tap_is "$rc" 76 "a pinned source read without TLS is refused (76)"

# --- no TLS, no verification: a warning in every run, and a record ---------
rc=0
rig_doveadm dest -o plugin/migrate_source_ssl=no migrate -u r1@row.example \
	>"$RIG/nossl.out" 2>&1 || rc=$?
tap_is "$rc" 0 "migrate_source_ssl=no works"
tap_like "... with a warning in the log" "Warning: .*read without TLS \\(migrate_source_ssl = no\\)" \
	"$(cat "$RIG/nossl.out")"
REPORT=$(rig_home dest r1@row.example)/.migrate/report.json
tap_like "... and in report.json" '"insecure":"migrate_source_ssl = no"' "$(cat "$REPORT" 2>/dev/null)"
rc=0
rig_doveadm dest -o plugin/migrate_source_ssl=no migrate -u r1@row.example \
	>"$RIG/nossl2.out" 2>&1 || rc=$?
tap_like "... every run" "read without TLS" "$(cat "$RIG/nossl2.out")"
batch -o plugin/migrate_source_ssl=no -- "$ROWT"
tap_is "$B_RC" 0 "batch with migrate_source_ssl=no"
rc=0
rig_doveadm dest -o plugin/migrate_source_ssl=no migrate check --pin "$ROWT" \
	>"$RIG/check.nossl.out" 2>"$RIG/check.nossl.err" || rc=$?
tap_is "$rc" 76 "check --pin of a source without TLS: nothing to pin (76)"
tap_like "... saying so" "source 127.0.0.1:$CAPORT: not pinned: read without TLS" \
	"$(cat "$RIG/check.nossl.err")"
tap_is "$(acct_field "$B_JSON" r1@row.example tls.insecure)" "migrate_source_ssl = no" "... in the batch JSON"
tap_like "... and in the batch CSV" ',no,no,,migrate_source_ssl = no,' "$(grep r1@row.example "$B_CSV")"
rc=0
rig_doveadm dest -o plugin/migrate_source_ssl_verify=no migrate -u r1@row.example \
	>"$RIG/noverify.out" 2>&1 || rc=$?
tap_is "$rc" 0 "migrate_source_ssl_verify=no works"
tap_like "... with a warning" "is not verified \\(migrate_source_ssl_verify = no\\)" "$(cat "$RIG/noverify.out")"
tap_like "... and in report.json" '"insecure":"migrate_source_ssl_verify = no"' "$(cat "$REPORT" 2>/dev/null)"
rig_doveadm dest migrate -u r1@row.example >"$RIG/clean.out" 2>&1
tap_run "a clean run removes the report (a verified one: moved here from t-quirks.sh)" \
	test ! -e "$REPORT"

# the old provider renews its certificate: check --pin again pins it
use_cert two || rig_die "restart casrc"
rc=0
rig_doveadm dest migrate check --pin "$IPT" >"$RIG/check.4.out" 2>"$RIG/check.4.err" || rc=$?
tap_is "$rc" 76 "check --pin against the old pin: the accounts fail (76) ..."
tap_like "... and the new certificate is pinned" \
	"source 127.0.0.1:$CAPORT: pinned SHA-256 $FP2 for ip.example" "$(cat "$RIG/check.4.err")"
batch -- "$IPT"
tap_is "$B_RC" 0 "the next batch accepts the renewed certificate"

# --- our own connection checks the pin too ----------------------------------
# a source whose later connections show another certificate: imapc's login
# connection gets the pinned one, ours (for the large message) the other
Q2=$RIG/quirky2
Q2PW='Tls!quirky5'
mkdir -p "$Q2"
chmod 755 "$Q2"
cp "$CA/one.pem" "$CA/one.key" "$CA/two.pem" "$CA/two.key" "$Q2/"
{
	printf 'From: big@example.org\r\nSubject: big over TLS\r\n\r\n'
	head -c $((2500 * 1024)) /dev/zero | tr '\0' 'x' | fold -w 76 | sed 's/$/\r/'
} >"$Q2/big.eml"
# q2scen [N]: the scenario; connections from N on get certificate two
# (q2scen N many: also a folder of 150 small messages, for a worker)
q2scen() {
	"$PY" - "${1:-0}" "${2:-}" <<-'EOF' | scenario_put "$Q2"
	import json, sys
	first = int(sys.argv[1])
	sc = {"user": "q2user", "capabilities": ["IMAP4rev1", "AUTH=PLAIN", "LITERAL+", "STARTTLS"],
	      "separator": "/", "prefix": "",
	      "folders": [{"name": "INBOX", "uidvalidity": 7, "messages": [
	          {"uid": 1, "file": "big.eml", "internaldate": "01-Jan-2021 10:00:00 +0000"}]}]}
	if sys.argv[2] == "small":
	    sc["folders"].append({"name": "Small", "uidvalidity": 9, "messages": [
	        {"uid": u, "body": "Subject: s%d\r\n\r\nsmall\r\n" % u,
	         "internaldate": "01-Jan-2021 10:00:00 +0000"} for u in range(1, 4)]})
	if sys.argv[2] == "many":
	    sc["folders"].append({"name": "Many", "uidvalidity": 8, "messages": [
	        {"uid": u, "body": "Subject: m%d\r\n\r\nsmall\r\n" % u,
	         "internaldate": "01-Jan-2021 10:00:00 +0000"} for u in range(1, 151)]})
	if first:
	    sc["tls_certs"] = {str(n): {"cert": "two.pem", "key": "two.key"} for n in range(first, first + 20)}
	print(json.dumps(sc))
	EOF
}
q2scen 0
Q2PORT=$(rig_free_port)
rig_secret "$Q2PW" "quirky2 password"
QUIRKY_PASSWORD=$Q2PW "$PY" "$T/quirkyimap.py" --port "$Q2PORT" --scenario "$Q2/scenario.json" \
	--log "$Q2/log" --pidfile "$Q2/pid" --daemon --tls-cert "$Q2/one.pem" --tls-key "$Q2/one.key" || exit 1
rig_on_exit 'kill "$(cat "$Q2/pid")" 2>/dev/null'
rig_add_user dest q1@quirk.example "$DEST_PW"
QT=$RIG/quirk.csv
printf 'source_host,source_user,source_password,dest_host,dest_user,dest_password,tls_name\n127.0.0.1:%s,q2user,%s,mx,q1@quirk.example,%s,%s\n' \
	"$Q2PORT" "$Q2PW" "$TDEST" "$CANAME" >"$QT"
rig_secret_input "$QT"
rc=0
rig_doveadm dest migrate check --pin "$QT" >"$RIG/check.q.out" 2>"$RIG/check.q.err" || rc=$?
tap_is "$rc" 0 "check --pin of the scripted source"
n=$(grep -c '^conn [0-9]* open' "$Q2/log")
# the sync's first connection (imapc's) shows the pinned certificate, every
# later one (ours, which reads the large message in pieces) the other
q2scen $((n + 2))
# (-j given: batch opens no connection of its own to time the round trip)
batch -o plugin/migrate_retries=0 -- -j 1 "$QT"
tap_is "$B_RC" 76 "our own connection refuses a certificate that is not the pinned one (76)"
tap_like "... while fetching the large message" "Fetching UID 1 of INBOX failed: The source's certificate \\(SHA-256 $FP2" \
	"$(acct_field "$B_JSON" q1@quirk.example reason)"
tap_like "... after imapc's connection logged in with the pinned one" "conn $((n + 1)) login q2user ok" "$(cat "$Q2/log")"
tap_is "$(grep -c "^conn $((n + 2)) login" "$Q2/log")" 0 "... and ours never sent the login"
q2scen 0
batch -o plugin/migrate_retries=0 -- "$QT"
tap_is "$B_RC" 0 "with the pinned certificate on every connection, the large message is copied"

# pinrun NAME WORKERS: q1's sync with the scenario in place, with that many
# processes; PIN_RC its exit code, its output in $RIG/NAME.out
pinrun() {
	PIN_RC=0
	rig_doveadm dest -o plugin/migrate_retries=0 migrate -w "$2" -u q1@quirk.example \
		>"$RIG/$1.out" 2>&1 || PIN_RC=$?
}

# small messages and the folders' STATUS go over our connection too; where
# it is refused the storage does that work on its pinned connection, and
# the run still fails: someone may be in the middle
n=$(grep -c '^conn [0-9]* open' "$Q2/log")
q2scen $((n + 2)) small
pinrun small 1
tap_is "$PIN_RC" 76 "small messages only: our connection's refused certificate fails the run (76)"
tap_like "... naming the pin" "not the one pinned for it" "$(cat "$RIG/small.out")"
q2scen 0 small
pinrun small2 1
tap_is "$PIN_RC" 0 "with the pinned certificate, the small messages are copied"

# a worker process (a folder of 150 to copy) connects on its own: it has
# the pin from its owner
n=$(grep -c '^conn [0-9]* open' "$Q2/log")
q2scen $((n + 2)) many
pinrun worker 2
tap_is "$PIN_RC" 76 "a worker's connection refuses a certificate that is not the pinned one (76)"
tap_like "... the worker says so" "migrate worker: .*not the one pinned for it" "$(cat "$RIG/worker.out")"
q2scen 0 many
pinrun worker2 2
tap_is "$PIN_RC" 0 "with the pinned certificate, the worker copies the folder"
tap_is "$(rig_imap dest q1@quirk.example "$DEST_PW" count Many)" 150 "... all 150"

leftover=$(find /tmp -maxdepth 1 -name 'dovecot-migrate.*' -newer "$RIG/cert.pem" 2>/dev/null)
tap_is "$leftover" "" "the private resolver leaves nothing behind"

tap_done
