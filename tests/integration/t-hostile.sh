#!/bin/bash
# t-hostile.sh - sources that are hostile or broken on purpose, from
# tools/quirkyimap.py: a LIST line that never ends, a literal claiming
# 4 GB (in a LIST reply and in a FETCH), endless pieces of a large
# message, a message larger than the destination takes, one byte a second
# (the account's deadline), 20 bytes a second (the minimum rate), 100,000
# folders.  One batch runs them all beside a normal account: each ends in
# bounded time and memory with an error that says why, and the normal one
# ends ok.  Then the deadline's progress is kept, and a message that does
# not fit into the quota left is not downloaded.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-hostile

PY=$RIG_PY
T=$RIG_TOOLS
QPW='Hostile;src7'
DEST_PW='Hostile!dest5'
export QUIRKY_PASSWORD=$QPW DEST_IMAP_PASSWORD=$DEST_PW

rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_retries 0
# small bounds keep the script short; the line length is the default
rig_dest_plugin_set dest migrate_account_timeout 10s
rig_dest_plugin_set dest migrate_max_message_size 4M

# quirky NAME: a scripted server for scenario NAME, from the Python recipe
# on stdin (sets `folders`, may set `quirks`; helpers body(subject,
# size=...), msg(uid, data, **fields)); its port in QPORT[NAME]
declare -A QPORT
quirky() {
	local name=$1 dir=$RIG/q/$1 port
	mkdir -p "$dir"
	chmod 755 "$RIG/q" "$dir"
	cat >"$dir/recipe"
	"$PY" - "$dir" "$dir/recipe" <<-'EOF' || rig_die "scenario $name"
	import json, os, sys
	qdir = sys.argv[1]
	def body(subject, size=0):
	    b = ("From: hostile@example.org\r\nTo: user@example.com\r\n"
	         "Subject: %s\r\nMessage-ID: <%s@hostile>\r\n\r\nHello.\r\n"
	         % (subject, subject.replace(" ", "."))).encode()
	    line = b"y" * 76 + b"\r\n"
	    return b + line * max(0, (size - len(b)) // len(line))
	def msg(uid, data, **kw):
	    path = "%s.%d.eml" % (kw.pop("fid", "m"), uid)
	    with open(os.path.join(qdir, path), "wb") as f:
	        f.write(data)
	    m = {"uid": uid, "file": path,
	         "internaldate": "0%d-Mar-2022 10:00:00 +0000" % (uid % 9 + 1)}
	    m.update(kw)
	    return m
	quirks = {}
	folders = []
	exec(open(sys.argv[2]).read())
	sc = {"user": "quser", "separator": "/", "prefix": "",
	      "capabilities": ["IMAP4rev1", "LITERAL+", "AUTH=PLAIN", "UIDPLUS",
	                       "SPECIAL-USE", "NAMESPACE", "ENABLE", "UNSELECT"],
	      "folders": folders, "quirks": quirks}
	with open(os.path.join(qdir, "scenario.json"), "w") as f:
	    json.dump(sc, f)
	EOF
	port=$(rig_free_port)
	"$PY" "$T/quirkyimap.py" --port "$port" --scenario "$dir/scenario.json" \
		--log "$dir/log" --pidfile "$dir/pid" --daemon || rig_die "quirky $name"
	rig_on_exit "kill \$(cat '$dir/pid') 2>/dev/null"
	QPORT[$name]=$port
}

inbox5='folders = [{"name": "INBOX", "uidvalidity": 5,
            "messages": [msg(i, body("hostile %d" % i)) for i in range(1, 6)]}]'

quirky normal <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 1,
            "messages": [msg(i, body("normal %d" % i)) for i in range(1, 6)] +
                        [msg(6, body("normal large", size=700 * 1024))]},
           {"name": "Sent", "uidvalidity": 2, "special_use": "\\Sent",
            "messages": [msg(7, body("sent 7"))]}]
EOF
quirky listline <<EOF
$inbox5
quirks = {"list_endless_line": True}
EOF
quirky listlit <<EOF
$inbox5
quirks = {"list_literal_4g": True}
EOF
quirky fetchlit <<EOF
$inbox5
quirks = {"fetch_literal_4g": True}
EOF
quirky pieces <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 6,
            "messages": [msg(1, body("small 1")), msg(2, body("small 2")),
                         msg(3, body("large 3", size=2500 * 1024))]}]
quirks = {"endless_pieces": True}
EOF
quirky toolarge <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 7,
            "messages": [msg(1, body("small 1")),
                         msg(2, body("two MB", size=2 * 1024 * 1024)),
                         msg(3, body("five MB", size=5 * 1024 * 1024))]}]
EOF
# a next folder's messages are asked for ahead while INBOX is copied: the
# one its copy will leave out is not
quirky ahead <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 12,
            "messages": [msg(1, body("small 1")), msg(2, body("small 2"))]},
           {"name": "Later", "uidvalidity": 13,
            "messages": [msg(1, body("later 1"), fid="l"),
                         msg(2, body("later five MB", size=5 * 1024 * 1024), fid="l")]}]
EOF
quirky drip <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 8,
            "messages": [msg(i, body("drip %d" % i)) for i in range(1, 7)]}]
quirks = {"drip_ms": 1000, "drip_from_uid": 4}
EOF
quirky dripw <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 9,
            "messages": [msg(i, body("dripw %d" % i)) for i in range(1, 151)]},
           {"name": "Other", "uidvalidity": 10,
            "messages": [msg(i, body("other %d" % i), fid="o") for i in range(1, 4)]}]
quirks = {"drip_ms": 1000, "drip_from_uid": 60}
EOF
quirky slow <<EOF
$inbox5
quirks = {"drip_ms": 50}
EOF
quirky folders <<EOF
$inbox5
quirks = {"extra_folders": 100000}
EOF

# one destination account per scenario; the template's rows name them
NAMES="normal listline listlit fetchlit pieces toolarge drip slow folders"
TEMPLATE=$RIG/template.csv
rig_users_defer
rig_add_user dest normal@example.com "$DEST_PW"
rig_add_user dest listline@example.com "$DEST_PW"
rig_add_user dest listlit@example.com "$DEST_PW"
rig_add_user dest fetchlit@example.com "$DEST_PW"
rig_add_user dest pieces@example.com "$DEST_PW"
rig_add_user dest toolarge@example.com "$DEST_PW"
# one message per FETCH: what came before the drip is saved; the deadline
# is what ends it, not the rate
rig_add_user dest drip@example.com "$DEST_PW" userdb_migrate_prefetch=1 \
	userdb_migrate_min_rate=0
rig_add_user dest dripw@example.com "$DEST_PW" userdb_migrate_prefetch=1 \
	userdb_migrate_min_rate=0 userdb_migrate_workers=2 \
	"userdb_migrate_source_port=${QPORT[dripw]}" userdb_migrate_source_user=quser
# the rate over 3 s of waiting
rig_add_user dest slow@example.com "$DEST_PW" userdb_migrate_source_timeout=3s
rig_add_user dest folders@example.com "$DEST_PW"
rig_add_user dest tight@example.com "$DEST_PW" userdb_quota_rule=*:storage=1M \
	"userdb_migrate_source_port=${QPORT[toolarge]}" userdb_migrate_source_user=quser
rig_add_user dest ahead@example.com "$DEST_PW" \
	"userdb_migrate_source_port=${QPORT[ahead]}" userdb_migrate_source_user=quser
rig_users_settle
rig_dest_plugin_set dest migrate_source_host 127.0.0.1
rig_dest_plugin_set dest migrate_source_password_file "$(rig_password_file dest-source "$QPW")"
rig_secret 'Str0ng!dest' "template dest_password"
for n in $NAMES; do
	printf '127.0.0.1:%s;quser;"%s";mx.example.com;%s@example.com;Str0ng!dest\n' \
		"${QPORT[$n]}" "$QPW" "$n"
done >"$TEMPLATE"
rig_secret_input "$TEMPLATE"

# meanwhile, a worker copies a folder that drips (150 messages: handed to
# a worker) while its owner copies the other one
(
	rc=0
	start=$SECONDS
	rig_doveadm dest -f tab migrate -u dripw@example.com >"$RIG/dripw.out" 2>&1 || rc=$?
	echo "$rc $((SECONDS - start))" >"$RIG/dripw.rc"
) &
DRIPW=$!

# the batch, timed: %e wall seconds, %M the largest RSS (KB) of any
# process of the tree (each one waited for)
rc=0
mapfile -d '' -t doveadm_cmd < <(rig_doveadm_cmd dest)
/usr/bin/time -f '%e %M' -o "$RIG/batch.time" "${doveadm_cmd[@]}" \
	migrate batch -j 9 --retries 0 --json "$RIG/batch.json" "$TEMPLATE" \
	>"$RIG/batch.out" 2>"$RIG/batch.err" || rc=$?
# (a first line says when it exited non-zero)
read -r secs rss_kb < <(tail -n 1 "$RIG/batch.time")
J=$(cat "$RIG/batch.json")
acct() {   # acct NAME: its JSON object in the batch report
	grep -o "{\"user\":\"$1@example.com\"[^}]*}" <<<"$J"
}
tap_is "$rc" 75 "the batch fails with the class that matters most (temporary)"
tap_like "the normal account beside them ends ok" '"status":"ok".*"exit_code":0' "$(acct normal)"
tap_run "checker: the normal account is a mirror" "$PY" "$T/imap-compare.py" \
	--src-port "${QPORT[normal]}" --src-user quser --src-password-env QUIRKY_PASSWORD \
	--dest-port "$(rig_port dest)" --dest-user normal@example.com \
	--dest-password-env DEST_IMAP_PASSWORD
tap_like "a LIST line that never ends: 75, cut at the line limit" \
	'"exit_code":75.*"reason":"[^"]*(too large input|line too large|line too long)[^"]*migrate_source_max_line_length' "$(acct listline)"
tap_like "a LIST literal claiming 4 GB: 75, cut at the line limit" \
	'"exit_code":75.*"reason":"[^"]*(too large input|line too large|Literal)[^"]*migrate_source_max_line_length' "$(acct listlit)"
# (imapc reads a literal into memory as part of its line)
tap_like "a FETCH literal claiming 4 GB: 75, cut at the line limit" \
	'"exit_code":75.*"reason":"[^"]*too large input[^"]*migrate_source_max_line_length, 8388608 bytes' "$(acct fetchlit)"
tap_like "endless pieces: the message is left out (65), the rest copied" \
	'"class":"messages left out","exit_code":65.*"copied":2,.*"rejected":1' "$(acct pieces)"
tap_like "a message larger than migrate_max_message_size: left out (65)" \
	'"class":"messages left out","exit_code":65.*"copied":2,.*"rejected":1' "$(acct toolarge)"
tap_like "one byte a second: 75 at the account's deadline, saying so" \
	'"exit_code":75.*"reason":"Source: The account.s run took longer than migrate_account_timeout \(10 s\)' "$(acct drip)"
tap_like "20 bytes a second: 75, below the minimum rate" \
	'"exit_code":75.*"reason":"Source: It sent [0-9]+ bytes in [0-9]+ s of waiting, less than migrate_min_rate \(1024 bytes/s\)' "$(acct slow)"
tap_like "100,000 folders: 65, more than migrate_max_folders" \
	'"class":"source limit","exit_code":65.*"reason":"Source: It lists more than 10000 folders \(migrate_max_folders\)' "$(acct folders)"
tap_diag "batch: $secs s, largest RSS $((rss_kb / 1024)) MB"
# generous bounds: the deadline is 10 s; without the bounds the endless
# replies grow without end
tap_like "the whole batch ends in bounded time ($secs s < 90 s)" '^([0-9]|[1-8][0-9])\.' "$secs"
tap_like "... and memory ($((rss_kb / 1024)) MB < 200 MB)" '^([0-9]{1,5}|1[0-9]{5}|20[0-4][0-9]{3})$' "$rss_kb"

wait "$DRIPW"
read -r rc secs <"$RIG/dripw.rc"
tap_is "$rc" 75 "a worker's folder that drips: 75 too"
tap_like "... after the deadline and the workers' answers, not later (${secs} s < 40 s)" '^([0-9]|[1-3][0-9])$' "$secs"
tap_like "... saying why" "The account's run took longer than migrate_account_timeout" "$(cat "$RIG/dripw.out")"
tap_like "the worker copied it" 'migrate worker' "$(cat "$RIG/dripw.out")"
tap_is "$(rig_imap dest dripw@example.com "$DEST_PW" count INBOX)/$(rig_imap dest dripw@example.com "$DEST_PW" count Other)" \
	"59/3" "what the worker saved before the drip is kept (59), and the owner's folder (3)"

# what each one reported
report() { cat "$(rig_home dest "$1@example.com")/.migrate/report.json" 2>/dev/null; }
tap_like "report: the endless message, with why" \
	'"folder":"INBOX","uid":3,"size":25[0-9]{5},"reason":"the source refused to give it: it sent more than [0-9]+ bytes, twice its RFC822.SIZE' "$(report pieces)"
tap_like "report: the one too large, with the limit" \
	'"folder":"INBOX","uid":3,"size":5[0-9]{6},"reason":"larger than migrate_max_message_size \(4194304 bytes\)' "$(report toolarge)"
tap_is "$(grep -c ' body INBOX 3 ' "$RIG/q/toolarge/log")" 0 "... and it was never downloaded"
tap_like "its run logged it (event migrate_message_rejected)" \
	'"warnings":\[[^]]*"INBOX: Leaving out UID 3 \([0-9]+ bytes\): larger than migrate_max_message_size' "$(acct toolarge)"

# --- the deadline keeps what was copied; the next run goes on ---------------
tap_is "$(rig_imap dest drip@example.com "$DEST_PW" count INBOX)" 3 \
	"the 3 messages before the drip were kept"
sed -i 's/"drip_ms": 1000, "drip_from_uid": 4/"drip_ms": 0/' "$RIG/q/drip/scenario.json"
MIG_OUT=$RIG/drip2.out
MIG_RC=0
declare -A MIG
rig_doveadm dest -f tab migrate -u drip@example.com >"$MIG_OUT" 2>&1 || MIG_RC=$?
rig_summary "$MIG_OUT"
tap_is "$MIG_RC/${MIG[copied]}" "0/3" "without the drip the next run copies only the other 3"

# --- a message that does not fit into the quota left is not downloaded ----
before=$(grep -c ' body INBOX ' "$RIG/q/toolarge/log")
MIG_OUT=$RIG/tight.out
MIG_RC=0
rig_doveadm dest -f tab migrate -u tight@example.com >"$MIG_OUT" 2>&1 || MIG_RC=$?
rig_summary "$MIG_OUT"
tap_is "$MIG_RC/${MIG[copied]}" "73/1" "a 2 MB message and 1 MB of quota: exit 73 (over quota), the small one copied"
tap_like "the error says it does not fit" 'UID 2 \([0-9]+ bytes\) does not fit into the quota left' "$(cat "$MIG_OUT")"
tap_is "$(( $(grep -c ' body INBOX ' "$RIG/q/toolarge/log") - before ))" 1 \
	"only the small one was downloaded"

# --- nor is one of the next folder, asked for ahead ---------------------------
MIG_OUT=$RIG/ahead.out
MIG_RC=0
rig_doveadm dest -f tab migrate -w 1 -u ahead@example.com >"$MIG_OUT" 2>&1 || MIG_RC=$?
rig_summary "$MIG_OUT"
tap_is "$MIG_RC/${MIG[copied]}/${MIG[rejected]}" "65/3/1" \
	"INBOX, then Later with a message over migrate_max_message_size: 65, 3 copied, 1 left out"
tap_is "$(grep -c ' body Later 1 ' "$RIG/q/ahead/log")/$(grep -c ' body Later 2 ' "$RIG/q/ahead/log")" "1/0" \
	"Later's messages were asked for ahead, but not the one left out"

# --- a bad bound is a bad setting ------------------------------------------
MIG_RC=0
rig_doveadm dest -o plugin/migrate_max_folders=0 -f tab migrate -u normal@example.com \
	>"$RIG/bad.out" 2>&1 || MIG_RC=$?
tap_is "$MIG_RC" 78 "migrate_max_folders = 0: exit 78"
tap_like "... naming the setting" 'Invalid settings: migrate_max_folders' "$(cat "$RIG/bad.out")"

tap_done
