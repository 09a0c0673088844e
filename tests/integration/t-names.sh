#!/bin/bash
# t-names.sh - source folder names our Dovecot cannot take as they are.
# Each becomes a valid destination name (escaped as README "Folder names"
# says: migrate_escape_char 'x' and two hex digits per byte) or is left
# out and reported (exit 65, result partial, report.json, the event
# migrate_folder_rejected) while the rest of the account is mirrored.
#   1. a scripted Courier-style source (tools/quirkyimap.py): a name that
#      begins with '~', '*', '%', control characters (mUTF-7 and raw),
#      raw 8-bit bytes (Latin-1 and UTF-8), a '~' inside a name, our
#      separator inside a name, a name that looks like an escape, a
#      300-byte name, 40 levels (too long for Maildir++'s one directory
#      name);
#   2. re-runs change nothing, new mail in escaped folders is copied; a
#      worker copies an escaped folder; archive and the final sync work
#      with them;
#   3. a real Dovecot source (LAYOUT=fs, UTF-8 names) that holds '.',
#      '*' and '%' in names, a 200-byte UTF-8 name (268 bytes in our
#      modified UTF-7) and 40 levels;
#   4. a destination with the '.' separator, where '/' is escaped.
# (A state that recorded a name the destination never had is in
# plugin/test-migrate-sync.c.)

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-names

PY=$RIG_PY
T=$RIG_TOOLS
QPW='Names;src"9'
SRC_PW='Names+src7'
DEST_PW='Names!dest4'
export QUIRKY_PASSWORD=$QPW SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW

rig_start_dest dest || exit 1
rig_start_source src --layout fs || exit 1
# the event of a folder left out, as the stats process exports it
rig_conf_add dest 'event_exporter log {
  format = json
  format_args = time-rfc3339
  transport = log
}
metric migrate_folder_rejected {
  filter = event=migrate_folder_rejected
  exporter = log
  exporter_include = name fields
}' || tap_fail "the event exporter is configured"
Q=$RIG/quirky
mkdir -p "$Q"
chmod 755 "$Q"
QPORT=$(rig_free_port)
rig_dest_plugin_set dest migrate_source_host 127.0.0.1
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_source_password_file "$(rig_password_file dest-source "$QPW")"

# scen: write $Q/scenario.json from the Python recipe on stdin (sets
# `folders`; helper msgs(first, count, tag, year) gives messages)
SCEN_BASE=$(date +%s)
SCEN_N=0
scen() {
	cat >"$Q/recipe"
	"$PY" - "$Q" <<-'EOF' || tap_fail "scenario written"
	import json, os, sys
	qdir = sys.argv[1]
	def msgs(first, count, tag, year=2021):
	    return [{"uid": u,
	             "body": "From: names@example.org\r\nSubject: %s %d\r\n"
	                     "Message-ID: <%s.%d@names>\r\n\r\nBody %d.\r\n" % (tag, u, tag, u, u),
	             "internaldate": "0%d-Mar-%d 10:00:00 +0000" % (u % 9 + 1, year)}
	            for u in range(first, first + count)]
	folders = []
	exec(open(os.path.join(qdir, "recipe")).read())
	sc = {"user": "quser", "separator": ".", "prefix": "INBOX.",
	      "capabilities": ["IMAP4rev1", "LITERAL+", "AUTH=PLAIN", "SPECIAL-USE", "UIDPLUS",
	                       "CONDSTORE", "NAMESPACE", "ID", "ENABLE", "UNSELECT", "IDLE"],
	      "folders": folders}
	with open(os.path.join(qdir, "scenario.json.tmp"), "w") as f:
	    json.dump(sc, f, indent=1)
	os.rename(os.path.join(qdir, "scenario.json.tmp"), os.path.join(qdir, "scenario.json"))
	EOF
	# each version gets an mtime of its own: the server re-reads it
	SCEN_N=$((SCEN_N + 1))
	touch -d "@$((SCEN_BASE + SCEN_N))" "$Q/scenario.json"
}

# the folders of part 1; NEW=n adds n messages to "~tilde" and "star*s"
names_scen() {
	scen <<-EOF
	new = ${1:-0}
	import base64
	def raw(b):
	    return base64.b64encode(b).decode()
	deep = "INBOX." + ".".join("level%02d" % i for i in range(40))
	folders = [
	    {"name": "INBOX", "uidvalidity": 1, "messages": msgs(1, 3, "inbox", 2019)},
	    {"name": "INBOX.~tilde", "uidvalidity": 2, "messages": msgs(1, 120 + new, "tilde")},
	    {"name": "INBOX.a~b", "uidvalidity": 3, "messages": msgs(1, 1, "atb")},
	    {"name": "INBOX.Sub.~sub", "uidvalidity": 4, "messages": msgs(1, 1, "sub")},
	    {"name": "INBOX.star*s", "uidvalidity": 5, "messages": msgs(1, 2 + new, "star")},
	    {"name": "INBOX.star_x2as", "uidvalidity": 6, "messages": msgs(1, 3, "lookalike")},
	    {"name": "INBOX.100%", "uidvalidity": 7, "messages": msgs(1, 1, "pct")},
	    {"name": "INBOX.ctl\u0001x", "uidvalidity": 8, "messages": msgs(1, 1, "ctl")},
	    {"name": "INBOX.bell", "wire_b64": raw(b"INBOX.bell\x07"), "uidvalidity": 9,
	     "messages": msgs(1, 1, "bell")},
	    {"name": "INBOX.caf latin-1", "wire_b64": raw(b"INBOX.caf\xe9"), "uidvalidity": 10,
	     "messages": msgs(1, 1, "latin")},
	    {"name": "INBOX.naive raw", "wire_b64": raw("INBOX.na\u00efve".encode()), "uidvalidity": 11,
	     "messages": msgs(1, 1, "rawutf8")},
	    {"name": "INBOX.caf\u00e9", "uidvalidity": 12, "messages": msgs(1, 1, "cafe")},
	    {"name": "INBOX.a/b", "uidvalidity": 13, "messages": msgs(1, 1, "slash")},
	    {"name": "INBOX.a_b", "uidvalidity": 14, "messages": msgs(1, 2, "underscore")},
	    {"name": "INBOX.x_x41", "uidvalidity": 15, "messages": msgs(1, 1, "escape")},
	    {"name": "INBOX." + "L" * 300, "uidvalidity": 16, "messages": msgs(1, 1, "long")},
	    {"name": deep, "uidvalidity": 17, "messages": msgs(1, 1, "deep")},
	]
	EOF
}
names_scen 0
"$PY" "$T/quirkyimap.py" --port "$QPORT" --scenario "$Q/scenario.json" --log "$Q/log" \
	--pidfile "$Q/pid" --daemon || exit 1
rig_on_exit 'kill "$(cat "$Q/pid")" 2>/dev/null'

rig_users_defer
rig_add_user dest qn@names.test "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT" userdb_migrate_archive_threshold=2
rig_add_user dest dv@example.com "$DEST_PW" userdb_migrate_source_user=dv \
	"userdb_migrate_source_port=$(rig_port src)" \
	"userdb_migrate_source_password_file=$(rig_password_file dv-source "$SRC_PW")"
rig_add_user src dv "$SRC_PW" 'userdb_mail=maildir:~/Maildir:LAYOUT=fs:UTF-8'
rig_users_settle

# migrate USER [migrate options]; doveadm's own in DOVEADM_OPTS
declare -A MIG
migrate() {
	local u=$1
	shift
	MIG_OUT=$RIG/mig.${u%@*}.$RANDOM
	MIG_RC=0
	rig_doveadm dest -f tab ${DOVEADM_OPTS:-} migrate "$@" -u "$u" >"$MIG_OUT" 2>&1 || MIG_RC=$?
	rig_summary "$MIG_OUT"
}
dest_list() {
	rig_doveadm dest mailbox list -u "$1" | LC_ALL=C sort | tr '\n' '|'
}
report() { cat "$(rig_home dest "$1")/.migrate/report.json" 2>/dev/null; }
json() {   # json FILE-CONTENT PYTHON-EXPR(r)
	"$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
dimap() { local u=$1; shift; rig_imap dest "$u" "$DEST_PW" "$@"; }
# the PIDs in the names of a Maildir folder's files
writers() {
	find "$1/cur" "$1/new" -type f 2>/dev/null |
		sed -n 's/.*\.M[0-9]*P\([0-9]*\)\..*/\1/p' | sort -u
}

# --- 1. a scripted Courier-style source ------------------------------------------
QN=qn@names.test
rig_doveadm dest migrate domain start --old-mx 127.0.0.1:25 names.test >/dev/null 2>&1 ||
	tap_fail "domain start names.test"
DOVEADM_OPTS=-D migrate $QN -w 2
tap_is "$MIG_RC/${MIG[result]}/${MIG[rejected]}/${MIG[copied]}" "65/partial/2/140" \
	"2 folders left out, the other 140 messages copied: exit 65, partial"
[ "$MIG_RC" = 65 ] || tap_diag "$(grep -v Debug "$MIG_OUT" | tail -n 20)"
QN_LIST='100_x25|INBOX|Sub|Sub/~sub|_x7etilde|a_b|a_b_2|a~b|bell_x07|caf_xe9|café|ctl_x01x|naïve|star_x2as|star_x5fx2as|x_x5fx41|'
tap_is "$(dest_list $QN)" "$QN_LIST" "every other name is valid here, escaped reversibly"
tap_is "$(dimap $QN count _x7etilde)/$(dimap $QN count star_x2as)/$(dimap $QN count star_x5fx2as)" \
	"120/2/3" "~tilde, star*s and star_x2as keep their own messages (no collision)"
tap_is "$(( $(dimap $QN count a_b) + $(dimap $QN count a_b_2) ))/$(dimap $QN count a_b)$(dimap $QN count a_b_2)" \
	"3/12" "a/b and a_b (both a_b here) are kept apart, never merged"
R=$(report $QN)
tap_is "$(json "$R" '" ".join(sorted("%s:%d" % (x["folder"][:12], x["uid"]) for x in r["rejected_messages"]))')" \
	"INBOX.LLLLLL:0 INBOX.level0:0" "report.json lists both folders left out (uid 0)"
tap_like "... the 300-byte level: too long for Dovecot" \
	'"reason":"The destination refuses the name L{300}: Mailbox name too long"' "$R"
tap_like "... 40 levels: too long for Maildir++'s one directory name" \
	'"reason":"The destination refuses the name level00/[^"]*level39: Mailbox name too long for the file system: a directory name of 320 bytes \(at most 255\)"' "$R"
tap_like "... and the run's error says what was left out" \
	'"result":"partial","exit_code":65,"error":"2 folders left out' "$R"
tap_like "the event migrate_folder_rejected, with folder and reason" \
	'"event":"migrate_folder_rejected","fields":\{[^}]*"folder":"INBOX\.L{300}","reason":"The destination refuses' \
	"$(cat "$(rig_log dest)")"
md=$(rig_maildir dest $QN)
tilde_pids=$(writers "$md/._x7etilde")
inbox_pids=$(writers "$md")
if [ -n "$tilde_pids" ] && ! grep -qxFf <(echo "$inbox_pids") <<<"$tilde_pids"; then
	tap_ok "a worker process copied the escaped folder (_x7etilde)"
else
	tap_fail "a worker process copied the escaped folder (_x7etilde)"
	tap_diag "INBOX writers: $inbox_pids; _x7etilde writers: $tilde_pids"
fi
tap_run "checker: the rest of the account is a mirror" \
	"$PY" "$T/imap-compare.py" --src-port "$QPORT" --src-user quser \
	--src-password-env QUIRKY_PASSWORD \
	--dest-port "$(rig_port dest)" --dest-user $QN \
	--map 'INBOX.~tilde=_x7etilde' --map 'INBOX.star*s=star_x2as' \
	--map 'INBOX.star_x2as=star_x5fx2as' --map 'INBOX.100%=100_x25' \
	--map $'INBOX.ctl\x01x=ctl_x01x' --map 'INBOX.x_x41=x_x5fx41' \
	--map 'INBOX.a~b=a~b' --map 'INBOX.Sub.~sub=Sub/~sub' --map 'INBOX.café=café' \
	--ignore-src-folder 'INBOX.a/b' --ignore-src-folder 'INBOX.a_b' \
	--ignore-src-folder 'INBOX.L*' --ignore-src-folder 'INBOX.level*' \
	--ignore-src-folder 'INBOX.bell*' --ignore-src-folder 'INBOX.caf[!é]' \
	--ignore-src-folder 'INBOX.na*' --ignore-dest-folder 'a_b*' \
	--ignore-dest-folder 'bell_x07' --ignore-dest-folder 'caf_xe9' --ignore-dest-folder 'naïve'
tap_diag "$(tail -n 2 <<<"$TAP_OUT")"
tap_is "$(dimap $QN count bell_x07)/$(dimap $QN count caf_xe9)/$(dimap $QN count naïve)" "1/1/1" \
	"the raw names (a control character, Latin-1, UTF-8) each have their message"

# --- 2. re-runs, new mail, archive, the final sync ---------------------------------
migrate $QN
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}/${MIG[folders_deleted]}/${MIG[created]}" "65/0/0/0/0" \
	"a re-run: exit 65 again, nothing copied, deleted or created"
tap_is "$(dest_list $QN)" "$QN_LIST" "... and the names stay"
names_scen 1
migrate $QN
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "65/2/0" "a new message in ~tilde and in star*s: 2 copied"
tap_is "$(dimap $QN count _x7etilde)/$(dimap $QN count star_x2as)" "121/3" "... into their escaped folders"

rc=0
rig_doveadm dest migrate archive -u $QN >"$RIG/archive.out" 2>&1 || rc=$?
tap_is "$rc" 0 "archive with escaped folders around: exit 0"
tap_like "... INBOX's 3 messages of 2019 went to ARCHIVE/2019" \
	'(^|\|)ARCHIVE/2019\|' "$(dest_list $QN)"
migrate $QN
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "65/0/0" "after archive, a re-run copies and deletes nothing"

rig_doveadm dest migrate domain cutover names.test >/dev/null 2>&1 || tap_fail "domain cutover names.test"
names_scen 2
migrate $QN
tap_is "$MIG_RC/${MIG[mode]}/${MIG[copied]}/${MIG[deleted]}" "65/final/2/0" \
	"the final sync copies the new messages of the escaped folders"
tap_is "$(dimap $QN count _x7etilde)/$(dimap $QN count star_x2as)" "122/4" "... where they belong"

# --- 3. a real Dovecot source that holds such names ----------------------------
DV=dv@example.com
E100=$(printf 'é%.0s' $(seq 100))
for f in Normal v1.2 'a*b' 50% x/~y "$E100" \
	"$(printf 'level%02d/' $(seq 0 39) | sed 's,/$,,')"; do
	printf 'From: dv@example.org\r\nSubject: in %s\r\n\r\nHello.\r\n' "${f:0:40}" >"$RIG/dv.eml"
	rig_imap src dv "$SRC_PW" append --create "$f" "$RIG/dv.eml" >/dev/null ||
		tap_fail "source folder ${f:0:40} created"
done
rig_imap src dv "$SRC_PW" append INBOX "$RIG/dv.eml" >/dev/null
tap_is "$(rig_imap src dv "$SRC_PW" list | grep -cxF -e v1.2 -e 'a*b' -e 50% -e "$E100")" 4 \
	"the source holds v1.2, a*b, 50% and a 200-byte UTF-8 name"
migrate $DV
tap_is "$MIG_RC/${MIG[result]}/${MIG[rejected]}/${MIG[copied]}" "65/partial/2/6" \
	"a real Dovecot source: 2 folders left out, 6 messages copied"
[ "$MIG_RC" = 65 ] || tap_diag "$(tail -n 20 "$MIG_OUT")"
tap_is "$(dest_list $DV)" '50_x25|INBOX|Normal|a_x2ab|v1_x2e2|x|x/~y|' \
	"'.' (Maildir++'s separator here), '*' and '%' are escaped"
R=$(report $DV)
tap_like "the 200-byte UTF-8 name is too long here (modified UTF-7)" \
	'"folder":"(é){100}","uid":0,"size":0,"reason":"The destination refuses the name (é){100}: Mailbox name too long"' "$R"
tap_like "40 levels are too long for Maildir++" \
	'"folder":"level00/[^"]*/level39","uid":0,"size":0,"reason":"[^"]*a directory name of 320 bytes' "$R"
tap_run "checker: the rest of the account is a mirror" \
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user dv \
	--dest-port "$(rig_port dest)" --dest-user $DV \
	--map 'v1.2=v1_x2e2' --map 'a*b=a_x2ab' --map '50%=50_x25' \
	--ignore-src-folder 'é*' --ignore-src-folder 'level*'
tap_diag "$(tail -n 2 <<<"$TAP_OUT")"
migrate $DV
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}/${MIG[created]}" "65/0/0/0" \
	"a re-run: exit 65, nothing copied, deleted or created"

# --- 4. a destination whose namespace separates with '.' -----------------------
# ('/' is no separator there: Dovecot refuses it in a name)
rig_start_dest dot --sep . || exit 1
rig_dest_plugin_set dot migrate_source_host 127.0.0.1
rig_dest_plugin_set dot migrate_source_ssl no
rig_dest_plugin_set dot migrate_source_password_file "$(rig_password_file dot-source "$QPW")"
rig_add_user dot qd@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT"
rc=0
rig_doveadm dot -f tab migrate -u qd@example.com >"$RIG/dot.out" 2>&1 || rc=$?
tap_is "$rc" 65 "a '.' destination: the same 2 folders left out, exit 65"
tap_is "$(rig_doveadm dot mailbox list -u qd@example.com | LC_ALL=C sort | tr '\n' '|')" \
	'100_x25|INBOX|Sub|Sub.~sub|_x7etilde|a_b|a_x2fb|a~b|bell_x07|caf_xe9|café|ctl_x01x|naïve|star_x2as|star_x5fx2as|x_x5fx41|' \
	"... where '/' inside a name is escaped (a/b is a_x2fb, apart from a_b)"

tap_done
