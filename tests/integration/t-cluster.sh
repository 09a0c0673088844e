#!/bin/bash
# t-cluster.sh - a whole migration run from a Dovecot proxy in front of two
# backends, through doveadm's own protocol: each account's mail is written
# by the backend the proxy's passdb names (proxy=y host=...), and by no
# other; the source credentials travel inside the doveadm connection; the
# domain's phases live in one dict all three nodes read, so LMTP on both
# backends relays while the domain migrates and delivers after cutover; a
# stopped backend fails only its own accounts, and the next run converges.
#
# The nodes share this machine: backends on 127.0.0.2 and 127.0.0.3 (same
# ports, as a cluster's nodes have them), the proxy on 127.0.0.1.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-cluster

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Src!pass1'
DEST_PW='Dest!pass1'
USERS="alice bob carol dave"
# the proxy's passdb: alice and carol live on b1, bob and dave on b2
backend_of() { case $1 in alice|carol) echo b1 ;; *) echo b2 ;; esac; }
other_of() { case $1 in alice|carol) echo b2 ;; *) echo b1 ;; esac; }
declare -A ADDR=([b1]=127.0.0.2 [b2]=127.0.0.3)

rig_start_source src || exit 1
# prepare indexes on the backends (Debian's dovecot-fts-xapian)
RIG_EXTRA_MAIL_PLUGINS+=(fts fts_xapian)
DPORT=$(rig_free_port 127.0.0.1 127.0.0.2 127.0.0.3) || rig_die "no free port"
rig_start_dest b1 --listen 127.0.0.2 --doveadm-port "$DPORT" || exit 1
rig_start_dest b2 --listen 127.0.0.3 --doveadm-port "$DPORT" || exit 1
rig_start_dest proxy --doveadm-proxy "$DPORT" || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"

# one domain dict for the three nodes: Dovecot's SQL dict on PostgreSQL,
# through each node's dict service, with the shipped maps and tables
rig_start_postgres || rig_die "postgresql and dovecot-pgsql are not installed (make installs them as root)"
rig_psql -U dovecot -d mail -f "$MIGRATE_SRCDIR/conf.d/dovecot-migrate-dict.sql" ||
	rig_die "loading the dict schema failed"
DICTCONF=$RIG/dict-sql.conf.ext
rig_pg_conf "$MIGRATE_SRCDIR/conf.d/dovecot-migrate-dict-sql.conf.ext" "$DICTCONF"
DICT=proxy::migrate
for n in b1 b2 proxy; do
	rig_conf_add "$n" "dict {
  migrate = pgsql:$DICTCONF
}
service dict {
  unix_listener dict {
    mode = 0660
    user = dovecot
    group = ${RIG_MAIL_GROUP:-nogroup}
  }
}" || rig_die "the dict service of $n"
	rig_reload "$n" || rig_die "reload $n"
	rig_dest_plugin_set "$n" migrate_source_ssl no
	rig_dest_plugin_set "$n" migrate_domain_dict "$DICT"
	rig_dest_plugin_set "$n" migrate_retries 0
	rig_dest_plugin_set "$n" fts xapian
	rig_dest_plugin_set "$n" fts_xapian "partial=3 full=20 verbose=0"
	rig_dest_plugin_set "$n" fts_autoindex no
done

# doveadm migrate ARGS on the proxy
px() { rig_doveadm proxy migrate "$@"; }

# --- the accounts, created on the proxy into the PostgreSQL all nodes read ------
# the backends: the shipped sql passdb and userdb; the proxy: the same
# table, its passdb answering proxy=y host=<the user's backend> (a real
# proxy would take the host from a column or a director)
rig_psql -U dovecot -d mail -f "$MIGRATE_SRCDIR/conf.d/dovecot-migrate-accounts.sql" ||
	rig_die "loading the accounts schema failed"
ACCCONF=$RIG/accounts-sql.conf.ext
rig_pg_conf "$MIGRATE_SRCDIR/conf.d/dovecot-migrate-accounts-sql.conf.ext" "$ACCCONF"
PROXYCONF=$RIG/proxy-sql.conf.ext
"$PY" - "$ACCCONF" "$PROXYCONF" <<'PYEOF'
import re, sys
conf = open(sys.argv[1]).read()
query = ("password_query = SELECT username AS user, password, 'y' AS proxy, "
         "CASE WHEN username IN ('alice@example.com', 'carol@example.com') "
         "THEN '127.0.0.2' ELSE '127.0.0.3' END AS host "
         "FROM migrate_accounts WHERE username = '%u'\n")
conf = re.sub(r"^password_query = (.*\\\n)*.*\n", query, conf, count=1, flags=re.M)
open(sys.argv[2], "w").write(conf)
PYEOF
rig_secret_input "$PROXYCONF"
chmod 644 "$PROXYCONF"
grep -q "'y' AS proxy" "$PROXYCONF" || rig_die "the proxy's password_query"
for n in b1 b2 proxy; do
	pconf=$ACCCONF
	[ "$n" = proxy ] && pconf=$PROXYCONF
	rig_conf_add "$n" "passdb {
  driver = sql
  args = $pconf
}
userdb {
  driver = sql
  args = $ACCCONF
  default_fields = home=$RIG/$n/mail/%u
}" || rig_die "the sql passdb of $n"
	rig_reload "$n" || rig_die "reload $n"
done
ACCOUNTS=$RIG/contas.csv
{
	printf 'usuario;dominio;senha;cota;tipo;nome completo;idioma;fuso horario;formato de data\r\n'
	for u in $USERS; do
		printf '%s;example.com;"%s";1;0;%s;pt-br;America/Sao_Paulo;dd/mm/aaaa\r\n' \
			"$u" "$DEST_PW" "$u"
	done
} >"$ACCOUNTS"
rig_secret "$DEST_PW" "destination password"
rig_secret_input "$ACCOUNTS"
rc=0
rig_doveadm proxy -o "plugin/migrate_accounts_sql=$ACCCONF" migrate accounts "$ACCOUNTS" >"$RIG/accounts.out" 2>&1 || rc=$?
tap_is "$rc" 0 "migrate accounts on the proxy: the domain's accounts into PostgreSQL"
tap_is "$(grep -c ' created ' "$RIG/accounts.out")" 4 "... 4 created"
for u in alice bob; do
	b=$(backend_of "$u")
	rc=0; rig_imap "$b" "$u@example.com" "$DEST_PW" capability >/dev/null 2>&1 || rc=$?
	tap_is "$rc" 0 "$u logs in at $b with the new account"
done

rig_users_defer
for u in $USERS; do
	rig_add_user src "$u" "$SRC_PW"
done
rig_users_settle
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
seed=20
for u in $USERS; do
	seed=$((seed + 1))
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user "$u" \
		--password-env SRC_IMAP_PASSWORD --seed "$seed" --messages 40 \
		--max-size 30K --connections 1 >/dev/null || rig_die "gen-corpus for $u"
done

TEMPLATE=$RIG/template.txt
for u in $USERS; do
	printf '127.0.0.1:%s;%s;%s;mx.example.com;%s@example.com;Str0ng!dest\n' \
		"$(rig_port src)" "$u" "$SRC_PW" "$u"
done >"$TEMPLATE"
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$TEMPLATE"

# run batch on the proxy; BATCH_RC, $RIG/batch.N.{out,err,json}
BATCH_RUN=0
batch() {
	BATCH_RUN=$((BATCH_RUN + 1))
	BATCH_RC=0
	px batch --json "$RIG/batch.$BATCH_RUN.json" "$@" "$TEMPLATE" \
		>"$RIG/batch.$BATCH_RUN.out" 2>"$RIG/batch.$BATCH_RUN.err" || BATCH_RC=$?
}
# the JSON report's field of an account
acct() {
	"$PY" - "$RIG/batch.$BATCH_RUN.json" "$1@example.com" "$2" <<-'EOF'
	import json, sys
	rep = json.load(open(sys.argv[1]))
	for a in rep["accounts"]:
	    if a["user"] == sys.argv[2]:
	        print(a.get(sys.argv[3], ""))
	EOF
}
# source and the account's backend equal (imap-compare)
equal_on() {
	local u=$1 b=$2
	"$PY" "$T/imap-compare.py" -q --src-port "$(rig_port src)" --src-user "$u" \
		--src-password-env SRC_IMAP_PASSWORD --dest-host "${ADDR[$b]}" \
		--dest-port "$(rig_port "$b")" --dest-user "$u@example.com" \
		--dest-password-env DEST_IMAP_PASSWORD >"$RIG/cmp.$u" 2>&1
}
all_equal() {
	local u bad=0
	for u in $USERS; do
		equal_on "$u" "$(backend_of "$u")" ||
			{ bad=$((bad + 1)); tap_diag "$u: $(tail -n1 "$RIG/cmp.$u")"; }
	done
	[ "$bad" = 0 ]
}
# messages in USER's mail on backend B (0 when it has none)
mail_count() {
	find "$(rig_home "$1" "$2@example.com")" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null |
		grep -c . || true
}
msg() {
	printf 'From: %s@example.org\r\nSubject: %s\r\nMessage-ID: <%s@t-cluster>\r\n\r\n%s\r\n' \
		"$1" "$1" "$1" "$1"
}

# --- the domain starts on the proxy; LMTP on both backends relays ---------------
MX_PORT=$(rig_free_port) || rig_die "no free port"
tap_run "domain start on the proxy" px domain start --old-mx "127.0.0.1:$MX_PORT" example.com
for b in b1 b2; do
	rig_lmtp_relay "$b" "$DICT" || rig_die "relay passdb on $b"
done
SINK=$RIG/sink
"$PY" "$T/smtp-sink.py" --port "$MX_PORT" --dir "$SINK" --pidfile "$RIG/sink.pid" &
for _ in $(seq 50); do [ -s "$RIG/sink.pid" ] && break; sleep 0.1; done
rig_on_exit 'kill $(cat "$RIG/sink.pid") 2>/dev/null'
for b in b1 b2; do
	msg "relayed-$b" >"$RIG/relay-$b.eml"
	rc=0; rig_deliver "$b" alice@example.com "$RIG/relay-$b.eml" >"$RIG/lmtp.out" 2>&1 || rc=$?
	tap_is "$rc" 0 "LMTP on $b accepts mail for the migrating domain"
	tap_is "$(grep -l "relayed-$b" "$SINK"/*.eml 2>/dev/null | wc -l)" 1 \
		"... and relays it to the old MX (the phase the proxy set)"
done

# dovecot-lda on a backend reads the same phase (as the mail user, through
# the dict service) and defers
lda() {
	/usr/lib/dovecot/dovecot-lda -c "$(rig_conf "$1")" -d "$2" \
		-f sender@example.org <"$3" >"$RIG/lda.out" 2>&1
}
msg lda-before >"$RIG/lda.eml"
rc=0; lda b2 dave@example.com "$RIG/lda.eml" || rc=$?
tap_is "$rc" 75 "dovecot-lda on b2 defers the migrating domain's mail (75)"
tap_is "$(grep -rl lda-before "$(rig_home b2 dave@example.com)" 2>/dev/null | wc -l)" 0 \
	"... and stores nothing"

# --- check from the proxy: each account's dry run on its backend -----------------
rc=0; px check "$TEMPLATE" >"$RIG/check.out" 2>&1 || rc=$?
tap_is "$rc" 0 "check on the proxy: every account ok"
tap_like "... each dry run on the account's backend" \
	"doveadm\\(carol@example.com\\).*migrate: Finished" "$(cat "$(rig_log b1)")"
tap_is "$(mail_count b1 alice)$(mail_count b2 bob)" 00 "... which copied nothing"

# --- the mirror sync from the proxy: each account on its own backend ------------
batch
tap_is "$BATCH_RC" 0 "batch on the proxy: every account ok"
tap_diag "$(tail -n2 "$RIG/batch.$BATCH_RUN.err")"
tap_run "every account equal to its source on its own backend" all_equal
other=0
for u in $USERS; do
	c=$(mail_count "$(other_of "$u")" "$u")
	[ "$c" = 0 ] || { other=$((other + 1)); tap_diag "$u has $c messages on $(other_of "$u")"; }
done
tap_is "$other" 0 "no account's mail on the other backend"
tap_is "$(acct alice copied)" 40 "the record came back through the proxy: alice's 40 copies counted"
tap_is "$(acct alice backend) $(acct dave backend)" "127.0.0.2:$DPORT 127.0.0.3:$DPORT" \
	"the report names each account's backend"
tap_like "batch found the two backends in the passdb" \
	"2 backends \\(doveadm_port $DPORT\\)" "$(cat "$RIG/batch.$BATCH_RUN.err")"
tap_is "$(grep -c "in plaintext" "$RIG/batch.$BATCH_RUN.err")" 0 \
	"... on loopback: no warning about plaintext"
# the command reached the backends through their doveadm servers
for b in b1 b2; do
	tap_like "$b's doveadm server ran the accounts it owns" \
		"doveadm\\((alice|bob)@example.com\\).*migrate: Finished" "$(cat "$(rig_log "$b")")"
done
tap_is "$(grep -c "migrate: Finished" "$(rig_log proxy)")" 0 \
	"the proxy copied nothing itself"
px domain status example.com >"$RIG/status.out" 2>&1
tap_like "domain status on the proxy lists the accounts the backends ran, and where" \
	"dave@example.com .* ok +[0-9]+ +[0-9]+ +127\\.0\\.0\\.3:$DPORT" "$(cat "$RIG/status.out")"
tap_is "$(rig_psql -U dovecot -d mail -c "SELECT count(*) FROM migrate_dict_account WHERE domain = 'example.com'")" 4 \
	"... kept in PostgreSQL: 4 accounts' results"
rig_doveadm b2 migrate domain status example.com >"$RIG/status-b2.out" 2>&1
tap_like "domain status on a backend shows the same" \
	"alice@example.com .* ok" "$(cat "$RIG/status-b2.out")"

# --- concurrency per backend ----------------------------------------------------
batch -j 4 --jobs-per-backend 1
tap_is "$BATCH_RC" 0 "-j 4 --jobs-per-backend 1: ok"
tap_like "... at most one account at once on b1" \
	"backend 127.0.0.2:$DPORT: 2 accounts, at most 1 at once" "$(cat "$RIG/batch.$BATCH_RUN.err")"
tap_like "... and on b2" \
	"backend 127.0.0.3:$DPORT: 2 accounts, at most 1 at once" "$(cat "$RIG/batch.$BATCH_RUN.err")"

# --- a backend beyond loopback without TLS: warned about --------------------------
# (0.0.0.1 refuses at once: the account fails without waiting)
rig_add_user proxy erin@other.example "$DEST_PW" proxy=y host=0.0.0.1
rig_add_user src erin "$SRC_PW"
printf '127.0.0.1:%s;erin;%s;mx.example.com;erin@other.example;Str0ng!dest\n' \
	"$(rig_port src)" "$SRC_PW" >"$RIG/erin.txt"
rig_secret_input "$RIG/erin.txt"
rc=0; px batch --retries 0 "$RIG/erin.txt" >"$RIG/erin.out" 2>&1 || rc=$?
tap_is "$rc" 75 "an unreachable backend: 75"
tap_like "... and the credentials' way there in plaintext is warned about" \
	"backend 0.0.0.1:$DPORT: the source credentials of its 1 account go there over the doveadm protocol in plaintext" \
	"$(cat "$RIG/erin.out")"

# --- the doveadm protocol over TLS, verified -------------------------------------
CERTS=$RIG/tls
mkdir -p "$CERTS"
rig_test_certs "$CERTS" "IP:127.0.0.2,IP:127.0.0.3" || rig_die "test certificates"
mkdir -p "$RIG/othertls"
rig_test_certs "$RIG/othertls" || rig_die "test certificates"
for b in b1 b2; do
	rig_conf_add "$b" "ssl = yes
ssl_cert = <$CERTS/server.pem
ssl_key = <$CERTS/server.key
service doveadm {
  inet_listener doveadm {
    ssl = yes
  }
}" || rig_die "TLS on $b"
	rig_reload "$b" || rig_die "reload $b"
done
rig_conf_add proxy "doveadm_ssl = ssl
ssl_client_ca_file = $RIG/othertls/ca.pem" || rig_die "doveadm_ssl on the proxy"
batch --retries 0
tap_is "$BATCH_RC" 75 "doveadm over TLS, the backends' CA unknown to the proxy: 75"
tap_like "... the backends' certificate refused" "Received invalid SSL certificate" "$(cat "$RIG/batch.$BATCH_RUN.err")"
sed -i "s|^ssl_client_ca_file = .*|ssl_client_ca_file = $CERTS/ca.pem|" "$RIG/proxy/extra.conf"
batch
tap_is "$BATCH_RC" 0 "... with their CA: ok"
tap_like "... over TLS" "backend 127.0.0.2:$DPORT: 2 accounts, at most [0-9]+ at once, doveadm protocol over TLS" \
	"$(cat "$RIG/batch.$BATCH_RUN.err")"

# --- a backend stopped mid-run: only its accounts fail, retried; the next run
# converges (nothing lost, nothing twice) ----------------------------------------
# b2's accounts get 40 new messages of 12 KB each, read through a slow line
# (tools/delayproxy.py: 100 ms, 2 Mbit/s), so that their copy is under way
# when b2 dies (its master and its doveadm servers killed: a stopped
# master lets the commands under way finish)
for u in $USERS; do
	msg "new-$u" >"$RIG/new.eml"
	rig_imap_append src "$u" "$SRC_PW" INBOX "$RIG/new.eml" >/dev/null
done
big() {
	printf 'From: big@example.org\r\nSubject: big %s\r\nMessage-ID: <big-%s@t-cluster>\r\n\r\n' "$1" "$1"
	for _ in $(seq 200); do printf 'the quick brown fox %s jumps over the lazy dog, again\r\n' "$1"; done
}
for u in bob dave; do
	for i in $(seq 1 40); do
		big "$u-$i" >"$RIG/big.eml"
		rig_imap_append src "$u" "$SRC_PW" INBOX "$RIG/big.eml" >/dev/null
	done
done
SLOW_PORT=$(rig_free_port) || rig_die "no free port"
"$PY" "$T/delayproxy.py" --port "$SLOW_PORT" --target-port "$(rig_port src)" \
	--rtt-ms 100 --bandwidth-mbit 2 --log "$RIG/slow.log" \
	--pidfile "$RIG/slow.pid" --daemon || rig_die "delayproxy"
rig_on_exit 'kill $(cat "$RIG/slow.pid") 2>/dev/null'
SLOW_TEMPLATE=$RIG/template-slow.txt
for u in $USERS; do
	port=$(rig_port src)
	case $u in bob|dave) port=$SLOW_PORT ;; esac
	printf '127.0.0.1:%s;%s;%s;mx.example.com;%s@example.com;Str0ng!dest\n' \
		"$port" "$u" "$SRC_PW" "$u"
done >"$SLOW_TEMPLATE"
rig_secret_input "$SLOW_TEMPLATE"
BATCH_RUN=$((BATCH_RUN + 1))
px batch --retries 1 --retry-delay 1 --json "$RIG/batch.$BATCH_RUN.json" "$SLOW_TEMPLATE" \
	>"$RIG/batch.$BATCH_RUN.out" 2>"$RIG/batch.$BATCH_RUN.err" &
BATCH_PID=$!
# b2's doveadm servers are copying bob's and dave's new mail: stop b2
for _ in $(seq 100); do
	[ "$(find "$(rig_maildir b2 bob@example.com)" "$(rig_maildir b2 dave@example.com)" \
		-name '*big*' 2>/dev/null | wc -l)" -gt 0 ] && break
	grep -q "Message-ID: <big-" -r "$(rig_maildir b2 bob@example.com)" 2>/dev/null && break
	sleep 0.1
done
copied_before=$(grep -rl "Message-ID: <big-" "$(rig_home b2 bob@example.com)" "$(rig_home b2 dave@example.com)" 2>/dev/null | wc -l)
b2_master=$(rig__master_pid b2) || rig_die "no master for b2"
kill -KILL $(pgrep -P "$b2_master") "$b2_master"
# a killed master may stay a zombie a while: its pid file would stop the
# restart below
rm -f "$RIG/b2/run/master.pid"
BATCH_RC=0; wait "$BATCH_PID" || BATCH_RC=$?
tap_ok_if() { if [ "$1" = 1 ]; then tap_ok "$2"; else tap_fail "$2"; fi; }
tap_ok_if "$([ "$copied_before" -gt 0 ] && [ "$copied_before" -lt 80 ] && echo 1)" \
	"b2 died with the copy under way ($copied_before of the 80 new messages there)"
tap_is "$BATCH_RC" 75 "b2 died mid-run: batch exits 75"
tap_is "$(acct alice status)/$(acct carol status)" ok/ok "... b1's accounts are ok"
tap_is "$(acct bob status)/$(acct dave status)" failed/failed "... b2's fail"
tap_is "$(acct bob exit_code)/$(acct bob attempts)" 75/2 "... temporarily (75), and were retried"
tap_run "alice has her new message on b1" equal_on alice b1
rig_restart b2 || rig_die "restart b2"
batch
tap_is "$BATCH_RC" 0 "b2 back: the next run is ok"
tap_run "... and every account is equal again (nothing lost, nothing twice)" all_equal

# --- doveadm migrate -u MASK (-A, -F) on the proxy: each user on its backend,
# with the credentials batch stored on the proxy ---------------------------------
for u in alice dave; do
	msg "mask-$u" >"$RIG/mask.eml"
	rig_imap_append src "$u" "$SRC_PW" INBOX "$RIG/mask.eml" >/dev/null
done
rc=0; px -q -u '*@example.com' >"$RIG/mask.out" 2>&1 || rc=$?
tap_is "$rc" 0 "migrate -u '*@example.com' on the proxy: ok"
tap_run "... alice's new message on b1" equal_on alice b1
tap_run "... dave's on b2" equal_on dave b2
tap_is "$(grep -c "Credential store" "$RIG/mask.out")" 0 "... with the proxy's stored credentials"
msg "file-carol" >"$RIG/mask.eml"
rig_imap_append src carol "$SRC_PW" INBOX "$RIG/mask.eml" >/dev/null
echo carol@example.com >"$RIG/users.txt"
rc=0; px -q -F "$RIG/users.txt" >"$RIG/file.out" 2>&1 || rc=$?
tap_is "$rc" 0 "migrate -F FILE on the proxy: ok"
tap_run "... carol's new message on b1" equal_on carol b1


tap_run "domain cutover on the proxy" px domain cutover example.com
for b in b1 b2; do
	u=alice; [ "$b" = b2 ] && u=bob
	msg "after-$b" >"$RIG/after-$b.eml"
	rc=0; rig_deliver "$b" "$u@example.com" "$RIG/after-$b.eml" >"$RIG/lmtp.out" 2>&1 || rc=$?
	tap_is "$rc" 0 "after cutover LMTP on $b delivers"
	tap_is "$(grep -l "after-$b" "$(rig_maildir "$b" "$u@example.com")"/{new,cur}/* 2>/dev/null | wc -l)" 1 \
		"... into $u's mailbox on $b"
done

msg lda-after >"$RIG/lda.eml"
rc=0; lda b1 carol@example.com "$RIG/lda.eml" || rc=$?
tap_is "$rc" 0 "after cutover dovecot-lda on b1 delivers"
tap_is "$(grep -l lda-after "$(rig_maildir b1 carol@example.com)"/{new,cur}/* 2>/dev/null | wc -l)" 1 \
	"... into carol's mailbox"

# --- the final sync from the proxy: new mail only, nothing deleted --------------
msg late-carol >"$RIG/late.eml"
rig_imap_append src carol "$SRC_PW" INBOX "$RIG/late.eml" >/dev/null
batch
tap_is "$BATCH_RC" 0 "final batch on the proxy"
tap_is "$(acct carol copied)/$(acct carol deleted)" 1/0 "... carol: her 1 new message, nothing deleted"
tap_is "$(acct bob deleted)" 0 "... bob: nothing deleted (his mail delivered after cutover included)"
tap_is "$(grep -l after-b2 "$(rig_maildir b2 bob@example.com)"/{new,cur}/* 2>/dev/null | wc -l)" 1 \
	"... bob's mail delivered after cutover is kept"

# --- archive and index from the proxy, then finish ------------------------------
rc=0; px prepare -d example.com >"$RIG/prepare.out" 2>&1 || rc=$?
tap_is "$rc" 0 "prepare -d on the proxy: each user prepared on its backend"
tap_like "... b2 indexed dave" "doveadm\\(dave@example.com\\).*index: Finished: [0-9]+ folders, 82 messages indexed" \
	"$(cat "$(rig_log b2)")"
tap_is "$(grep -c "doveadm(dave@example.com).*index: Finished" "$(rig_log b1)")" 0 "... and b1 did not"
tap_run "domain finish on the proxy" px domain finish example.com
batch
tap_is "$BATCH_RC" 78 "after finish batch on the proxy refuses the domain"
rc=0; px -u alice@example.com >"$RIG/after.out" 2>&1 || rc=$?
# 2.3.19's doveadm protocol has no word for 78: the client gets 75
tap_is "$rc" 75 "... and alice's backend refuses a sync sent there"
tap_like "... saying why" "example.com is finished" "$(cat "$RIG/after.out")"

# --- the source password stays inside the protocol ------------------------------
tap_is "$(cat "$(rig_log b1)" "$(rig_log b2)" "$(rig_log proxy)" | grep -c -F -f <(printf '%s\n' "$SRC_PW"))" 0 \
	"no source password in any node's log"

tap_done
