#!/bin/bash
# t-exitcodes.sh - every way doveadm migrate (and batch, accounts, domain,
# worker) chooses an exit code, driven to it: each ends in a code of the
# README's table ("Output and exit codes").  Among them the paths that
# used to leak other codes: an unexpected error of the destination's
# storage (70, now 75), a source folder name Dovecot refuses (70, now 65),
# a batch account whose process was killed (70, now 75), a worker started
# by hand with bad input (70, now 64).

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-exitcodes

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Exit;src5'
QPW='Exit"quirky6'
DEST_PW='Exit!dest7'
export QUIRKY_PASSWORD=$QPW SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_migrate_source dest src "$SRC_PW"
rig_dest_plugin_set dest migrate_retries 0
rig_dest_plugin_set dest migrate_accounts_passwd_file "$RIG/accounts-users"

# two scripted sources: A lists a name Dovecot refuses, B refuses every
# login the way Courier does
Q=$RIG/quirky
mkdir -p "$Q"
chmod 755 "$Q"
quirky() {
	local name=$1 quirks=$2
	"$PY" - "$Q/$name.json" "$quirks" <<-'EOF'
	import json, sys
	msg = {"uid": 1, "body": "From: x@example.org\r\nSubject: one\r\n\r\nOne.\r\n"}
	json.dump({"user": "quser", "separator": ".", "prefix": "INBOX.",
	           "capabilities": ["IMAP4rev1", "LITERAL+", "AUTH=PLAIN", "NAMESPACE"],
	           "quirks": json.loads(sys.argv[2]),
	           "folders": [{"name": "INBOX", "uidvalidity": 1, "messages": [msg]},
	                       {"name": "INBOX.~tilde", "uidvalidity": 2, "messages": [msg]},
	                       {"name": "INBOX." + "L" * 300, "uidvalidity": 3, "messages": [msg]}]},
	          open(sys.argv[1], "w"))
	EOF
	QPORT[$name]=$(rig_free_port)
	"$PY" "$T/quirkyimap.py" --port "${QPORT[$name]}" --scenario "$Q/$name.json" \
		--log "$Q/$name.log" --pidfile "$Q/$name.pid" --daemon || exit 1
	rig_on_exit "kill \$(cat '$Q/$name.pid') 2>/dev/null"
}
declare -A QPORT
quirky a '{}'
quirky b '{"login_fail": "courier"}'

rig_users_defer
rig_add_user src ok "$SRC_PW"
rig_add_user src del "$SRC_PW"
rig_add_user dest ok@example.com "$DEST_PW" userdb_migrate_source_user=ok
rig_add_user dest del@example.com "$DEST_PW" userdb_migrate_source_user=del
rig_add_user dest quota@example.com "$DEST_PW" userdb_migrate_source_user=ok \
	userdb_quota_rule=*:messages=1
rig_add_user dest gone@example.com "$DEST_PW" userdb_migrate_source_user=ok \
	"userdb_migrate_source_port=$(rig_free_port)"
qpw=$(rig_password_file quirky "$QPW")
rig_add_user dest names@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=${QPORT[a]}" "userdb_migrate_source_password_file=$qpw"
rig_add_user dest tls@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=${QPORT[a]}" "userdb_migrate_source_password_file=$qpw" \
	userdb_migrate_source_ssl=starttls
rig_add_user dest auth@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=${QPORT[b]}" "userdb_migrate_source_password_file=$qpw"
rig_add_user dest conf@example.com "$DEST_PW" userdb_migrate_source_user=ok \
	userdb_migrate_source_port=abc
rig_users_settle

printf 'From: a@example.org\r\nSubject: exit codes\r\n\r\nHello.\r\n' >"$RIG/m.eml"
for i in 1 2 3; do rig_imap src ok "$SRC_PW" append INBOX "$RIG/m.eml" >/dev/null; done
for i in $(seq 1 10); do rig_imap src del "$SRC_PW" append INBOX "$RIG/m.eml" >/dev/null; done

# one CSV field, quoted; a sync template of one account
q() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }
rig_secret 'Str0ng!dest' "template dest_password"
printf '127.0.0.1:%s;ok;%s;mx.example.com;ok@example.com;%s\n' "$(rig_port src)" \
	"$(q "$SRC_PW")" "$(q 'Str0ng!dest')" >"$RIG/one.txt"
rig_secret_input "$RIG/one.txt"

# code TEXT EXPECTED doveadm-args...: run doveadm (stdin from /dev/null
# unless CODE_STDIN names a file) and assert its exit code
code() {
	local text=$1 expected=$2 rc=0
	shift 2
	CODE_OUT=$RIG/code.$RANDOM
	rig_doveadm dest "$@" <"${CODE_STDIN:-/dev/null}" >"$CODE_OUT" 2>&1 || rc=$?
	tap_is "$rc" "$expected" "$text: exit $expected"
	[ "$rc" = "$expected" ] || tap_diag "$(tail -n 5 "$CODE_OUT")"
}
report() { cat "$(rig_home dest "$1")/.migrate/report.json" 2>/dev/null; }

# --- 0 ------------------------------------------------------------------------------
code "a mirror" 0 migrate -u ok@example.com

# --- 64: usage -------------------------------------------------------------------------
code "an unexpected argument" 64 migrate -u ok@example.com extra
code "--maxage 0" 64 migrate --maxage 0 -u ok@example.com
# a number option's value that is not a number is refused, not ignored
# (doveadm drops such a value of a number parameter without a word)
code "--maxage with a unit" 64 migrate --maxage 30d -u ok@example.com
tap_like "... its error names the option and the value" '--maxage.*30d' "$(cat "$CODE_OUT")"
code "-w not a number" 64 migrate -w 4x -u ok@example.com
code "batch --retries not a number" 64 migrate batch --retries x "$RIG/one.txt"
tap_like "... its error names the option and the value" \
	'--retries: not a number: x' "$(cat "$CODE_OUT")"
code "check -j not a number" 64 migrate check -j four "$RIG/one.txt"
printf 'garbage\n' >"$RIG/garbage"
CODE_STDIN=$RIG/garbage code "migrate worker started by hand with bad input" 64 \
	migrate worker -u ok@example.com
code "an unknown verb" 64 migrate frobnicate

# --- 65: the run finished but left something out, or too much would go ---------------------
code "a folder name the destination refuses (left out)" 65 migrate -u names@example.com
tap_like "... reported with its reason in report.json" \
	'"result":"partial","exit_code":65(.|\n)*"uid":0,"size":0,"reason":"The destination refuses the name L{300}: Mailbox name too long"' \
	"$(report names@example.com)"
code "del: a first copy" 0 migrate -u del@example.com
rig_imap src del "$SRC_PW" expunge INBOX --first 8 >/dev/null
code "8 of 10 messages gone at the source (over migrate_max_delete_percent)" 65 \
	migrate -u del@example.com
printf 'only;three;fields\n' >"$RIG/bad-template.txt"
code "batch: a template with problems" 65 migrate batch "$RIG/bad-template.txt"

# --- 66: a template that cannot be read -------------------------------------------------
code "batch: no such template" 66 migrate batch "$RIG/nonexistent.txt"
code "accounts: no such template" 66 migrate accounts "$RIG/nonexistent.csv"

# --- 67: doveadm's own check of the user, and an unknown domain ---------------------
code "a user the userdb does not know" 67 migrate -u nosuch@example.com
code "domain status of a domain never migrated" 67 migrate domain status never.test

# --- 73: the destination is full ---------------------------------------------------
code "a destination over quota" 73 migrate -u quota@example.com

code "batch: a --json report that cannot be written" 73 \
	migrate batch --retries 0 --json "$RIG/no/such/dir/report.json" "$RIG/one.txt"
printf 'username;domain;password;quota;type;full name;language;time zone\nana;example.com;%s;1;0;Ana Silva;pt-br;America/Sao_Paulo\n' \
	"$(q 'Ana!pass1')" >"$RIG/accounts.csv"
rig_secret 'Ana!pass1' "accounts template password"
rig_secret_input "$RIG/accounts.csv"
code "accounts: a --json report that cannot be written" 73 \
	migrate accounts --json "$RIG/no/such/dir/accounts.json" "$RIG/accounts.csv"

# --- 75: temporary, or an unexpected error: progress is kept -------------------------
code "the source unreachable" 75 migrate -u gone@example.com
# another run's lock, held by a process of our own
"$PY" -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(30)' "$(rig_home dest ok@example.com)/.migrate/lock" >"$RIG/locked" &
lock_pid=$!
for i in $(seq 1 100); do [ -s "$RIG/locked" ] && break; sleep 0.05; done
code "the state locked by another run" 75 migrate -u ok@example.com
kill "$lock_pid" 2>/dev/null
wait "$lock_pid" 2>/dev/null
rig_imap src ok "$SRC_PW" append INBOX "$RIG/m.eml" >/dev/null
md=$(rig_maildir dest ok@example.com)
chmod 0555 "$md/tmp"
code "the destination's storage fails unexpectedly (it was 70)" 75 migrate -u ok@example.com
tap_like "... report.json names the storage's error, class failed" \
	'"result":"failed","exit_code":75,"error":"[^"]*Permission denied' "$(report ok@example.com)"
chmod 0700 "$md/tmp"
code "... and the next run completes" 0 migrate -u ok@example.com
code "batch: an account whose process was killed (it was 70)" 75 \
	-o plugin/migrate_debug_kill=list migrate batch --retries 0 "$RIG/one.txt"
tap_like "... the batch says so" 'killed by signal 9' "$(cat "$CODE_OUT")"

# --- 76: TLS --------------------------------------------------------------------------
code "STARTTLS the source does not offer" 76 migrate -u tls@example.com

# --- 77: the source refused the login ----------------------------------------------
code "a refused login" 77 migrate -u auth@example.com
printf '127.0.0.1:%s;quser;%s;mx.example.com;auth@example.com;%s\n' "${QPORT[b]}" \
	"$(q "$QPW")" "$(q 'Str0ng!dest')" >"$RIG/two.txt"
cat "$RIG/one.txt" >>"$RIG/two.txt"
rig_secret_input "$RIG/two.txt"
code "batch: the failure that matters most over the accounts" 77 \
	migrate batch --retries 0 "$RIG/two.txt"

# --- 78: bad settings --------------------------------------------------------------
code "migrate_source_port = abc" 78 migrate -u conf@example.com
code "migrate_escape_char = x (escapes end in hex digits)" 78 \
	-o plugin/migrate_escape_char=x migrate -u ok@example.com

# --- doveadm itself, before any of this tool runs ---------------------------------------
code "an unknown doveadm option before the command (Dovecot's fatal error)" 89 \
	-Z migrate -u ok@example.com

tap_done
