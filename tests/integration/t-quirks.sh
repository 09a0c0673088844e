#!/bin/bash
# t-quirks.sh - sources that misbehave in ways no real server does on
# demand, from tools/quirkyimap.py: a message the source will not give, a
# message the destination cannot store (NUL bytes, bare LF, a broken
# header, over the size limit), 40 keywords and keywords the destination
# refuses, throttling, BYE in the middle of a FETCH, a UIDVALIDITY that
# changes between runs, Exchange-style localised folders without
# SPECIAL-USE, CONDSTORE or UIDPLUS, Gmail (detected, forced, off), and a
# server whose sessions disagree (a worker's session misses messages; the
# owner's misses copied ones before the mirror deletes).

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-quirks

PY=$RIG_PY
T=$RIG_TOOLS
QPW='Quirks;src"9'
DEST_PW='Quirks!dest4'
export QUIRKY_PASSWORD=$QPW SRC_IMAP_PASSWORD=$QPW DEST_IMAP_PASSWORD=$DEST_PW

rig_start_dest dest || exit 1
Q=$RIG/quirky
mkdir -p "$Q"
chmod 755 "$Q"
QPORT=$(rig_free_port)
QLOG=$Q/quirky.log
# the dest's source password file holds the scripted server's password
rig_dest_plugin_set dest migrate_source_host 127.0.0.1
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_source_password_file "$(rig_password_file dest-source "$QPW")"
rig_dest_plugin_set dest migrate_retry_delay 1s

# scen NAME: write $Q/NAME.json from the Python recipe on stdin; the recipe
# sets `folders` (and may set `caps`, `quirks`, `sep`); helpers:
# msg(uid, body, **fields), body(subject, text=..., size=...)
scen() {
	cat >"$Q/$1.recipe"
	"$PY" - "$Q" "$1" "$Q/$1.recipe" <<-'EOF'
	import json, os, sys
	qdir, name = sys.argv[1], sys.argv[2]
	recipe = open(sys.argv[3]).read()
	def body(subject, text="Hello.", size=0, mid=None):
	    b = ("From: quirks@example.org\r\nTo: user@example.com\r\n"
	         "Subject: %s\r\nMessage-ID: <%s@quirks>\r\n\r\n%s\r\n"
	         % (subject, mid or subject.replace(" ", "."), text)).encode()
	    if size > len(b):
	        line = b"x" * 76 + b"\r\n"
	        b += line * ((size - len(b)) // len(line))
	    return b
	def msg(uid, data, **kw):
	    path = "%s.%d.%d.eml" % (name, kw.pop("fid", 0), uid)
	    with open(os.path.join(qdir, path), "wb") as f:
	        f.write(data)
	    m = {"uid": uid, "file": path,
	         "internaldate": kw.pop("date", "0%d-Jun-2021 10:00:00 +0000" % (uid % 9 + 1))}
	    m.update(kw)
	    return m
	caps = ["IMAP4rev1", "LITERAL+", "AUTH=PLAIN", "SPECIAL-USE", "UIDPLUS",
	        "CONDSTORE", "NAMESPACE", "ID", "ENABLE", "UNSELECT", "IDLE"]
	quirks = {}
	sep = "/"
	folders = []
	exec(recipe)
	sc = {"user": "quser", "capabilities": caps, "separator": sep, "prefix": "",
	      "folders": folders, "quirks": quirks}
	tmp = os.path.join(qdir, "scenario.json.tmp")
	with open(tmp, "w") as f:
	    json.dump(sc, f, indent=1)
	os.rename(tmp, os.path.join(qdir, "scenario.json"))
	EOF
	scen_touch
}
# the server re-reads the scenario when its mtime changes: each version
# gets an mtime of its own, even within the same second
SCEN_BASE=$(date +%s)
SCEN_N=0
scen_touch() {
	SCEN_N=$((SCEN_N + 1))
	touch -d "@$((SCEN_BASE + SCEN_N))" "$Q/scenario.json"
}

scen empty <<<'folders = [{"name": "INBOX", "uidvalidity": 1, "messages": []}]'
"$PY" "$T/quirkyimap.py" --port "$QPORT" --scenario "$Q/scenario.json" --log "$QLOG" \
	--pidfile "$Q/pid" --daemon || exit 1
rig_on_exit 'kill "$(cat "$Q/pid")" 2>/dev/null'

dimap() { local u=$1; shift; rig_imap dest "$u@example.com" "$DEST_PW" "$@"; }
compare() {
	"$PY" "$T/imap-compare.py" --src-port "$QPORT" --src-user quser \
		--dest-port "$(rig_port dest)" --dest-user "$1@example.com" "${@:2}"
}
user() {
	rig_add_user dest "$1@example.com" "$DEST_PW" userdb_migrate_source_user=quser \
		"userdb_migrate_source_port=$QPORT" "${@:2}"
}
# migrate U [doveadm args]: MIG_RC, MIG_OUT, and MIG[field] from the summary
declare -A MIG
migrate() { rig_migrate_user dest "$1@example.com" "${@:2}"; }
report() { cat "$(rig_home dest "$1@example.com")/.migrate/report.json" 2>/dev/null; }
json() {   # json FILE-CONTENT PYTHON-EXPR(r)
	"$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# --- 1. what either side refuses is left out and reported ---------------------------
# INBOX: 1 plain; 2 NUL bytes; 3 bare LF; 4 a broken header; 5 over the
# destination's size limit; 6 the source answers NO to its FETCH; 7 with 40
# keywords, \Indexed, $Forwarded and a non-ASCII keyword.
scen bad <<'EOF'
kws = ["Tag%02d" % i for i in range(40)]
inbox = [
    msg(1, body("plain"), flags=["\\Seen", "$Forwarded"]),
    msg(2, b"From: nul@example.org\r\nSubject: nul\r\n\r\nbefore\0after\r\n"),
    msg(3, b"From: lf@example.org\nSubject: bare LF\n\nline one\nline two\n"),
    msg(4, b"From: broken@example.org\r\nThis line is no header\r\nSubject: \xff\xfe raw 8-bit\r\n"
           b"X-Folded:\r\n\r\n\r\nbody after a broken header\r\n"),
    msg(5, body("too large", size=400 * 1024)),
    msg(6, body("unreadable"), fetch_no=True),
    msg(7, body("many keywords"), flags=["\\Seen", "\\Indexed", "$Forwarded", "Stra\u00dfe"] + kws),
]
tags = [msg(i, body("tags %d" % i), fid=1, flags=kws[i - 1:i + 1]) for i in range(1, 40)]
folders = [{"name": "INBOX", "uidvalidity": 1, "messages": inbox},
           {"name": "Tags", "uidvalidity": 2, "messages": tags}]
EOF
# every scenario's account at once (one wait for Dovecot to see them)
rig_users_defer
user bad userdb_quota_max_mail_size=300k
for u in big thr bye bye2 uv exch m365 gm split look; do
	user "$u"
done
user gmno userdb_migrate_gmail=no
user gmyes userdb_migrate_gmail=yes
rig_add_user dest uvf@final.test "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT"
rig_users_settle
migrate bad
tap_is "$MIG_RC" 65 "messages left out: exit 65 (the run finished, not perfect)"
tap_is "${MIG[result]}/${MIG[rejected]}/${MIG[copied]}" "partial/2/44" \
	"summary: result partial, 2 left out, the other 44 copied"
R=$(report bad)
tap_is "$(json "$R" '" ".join("%s:%d:%s" % (m["folder"], m["uid"], m["reason"].split(":")[0]) for m in r["rejected_messages"])')" \
	"INBOX:5:the destination refused it INBOX:6:the source refused to give it" \
	"the report lists both, each with folder, UID and who refused"
tap_like "the report gives the size and the reason of the too large one" \
	'"folder":"INBOX","uid":5,"size":4[0-9]{5},"reason":"the destination refused it: Mail size is larger than the maximum' "$R"
tap_like "the log names each one (event migrate_message_rejected)" \
	'INBOX: Leaving out UID 6 \([0-9]+ bytes\): the source refused to give it' "$(cat "$MIG_OUT")"
tap_like "the one the source refused is reported with its real size (asked for alone)" \
	"\"folder\":\"INBOX\",\"uid\":6,\"size\":$(stat -c %s "$Q/bad.0.6.eml")," "$R"
tap_is "$(dimap bad count INBOX)" 5 "INBOX has the other 5 messages"
tap_like "NUL bytes stored as Dovecot allows (served as 0x80)" \
	"$(printf 'before\x80after' | od -An -tx1 | tr -d ' \n')" \
	"$(dimap bad fetch INBOX 2 2>/dev/null | od -An -tx1 | tr -d ' \n')"
tap_like "the broken header is stored as it came" "This line is no header" \
	"$(dimap bad fetch INBOX 4 2>/dev/null)"
# keywords: the destination keeps all 40 and $Forwarded; the non-ASCII one
# is not a valid keyword: dropped and counted.  \Indexed never reaches us:
# Dovecot's IMAP client ignores system flags it does not know.
kw7=$(dimap bad fetch-hash INBOX | grep 'Tag39' | cut -d' ' -f5-)
tap_is "$(tr ' ' '\n' <<<"$kw7" | grep -c '^Tag[0-9][0-9]$')" 40 "the message with 40 keywords keeps all 40"
tap_like "... and \$Forwarded and \\Seen" '\$Forwarded.*\\Seen' "$kw7"
tap_is "$(json "$R" 'sorted(r["dropped_keywords"].items())')" \
	"[('Straße', 1)]" "the report counts the dropped keywords per keyword"
tap_is "$(tr ' ' '\n' <<<"$kw7" | grep -c -e Indexed -e Stra)" 0 "\\Indexed and Straße are not on it"
tap_is "$(dimap bad count Tags)" 39 "the folder listing 40 keywords: all 39 messages"
migrate bad
tap_is "$MIG_RC/${MIG[copied]}/${MIG[updated]}/${MIG[rejected]}" "65/0/0/2" \
	"re-run: the same 2 left out again, nothing copied twice, no flag 'difference' for the dropped keywords"
# the source gives the message now, and the limit is raised
sed -i 's/"fetch_no": true/"fetch_no": false/' "$Q/scenario.json"
scen_touch
user bad userdb_quota_max_mail_size=10M
migrate bad
tap_is "$MIG_RC/${MIG[copied]}/${MIG[rejected]}" "0/2/0" "once both sides accept them, the 2 are copied and the run exits 0"
tap_is "${MIG[uids_changed]}/$(json "$(report bad)" 'r["uids_changed"], r["rejected"]')" "2/(2, 0)" \
	"... below the folder's UIDNEXT now, they get new UIDs: the summary and the report say so"
migrate bad
tap_is "$MIG_RC/${MIG[copied]}" "0/0" "the next run copies nothing"
# a clean run removes what it reported; this source has no TLS, which is
# reported in every run (the report's removal by a clean run is asserted
# in t-tls.sh, whose source has TLS)
R=$(report bad)
tap_is "$(json "$R" '[k for k in ("rejected_messages", "dropped_keywords", "retries", "copied", "uids_changed") if k in r]')" \
	"[]" "a clean run removes what the report listed"
tap_is "$(json "$R" 'r["result"], r["tls"]["insecure"]')" "('ok', 'migrate_source_ssl = no')" \
	"... and keeps only that the source has no TLS"

# the same when a worker process copies the folder (150 messages: it is
# handed to a worker): its part of the report reaches the owner
scen big <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 29, "messages": []},
           {"name": "Big", "uidvalidity": 30,
            "messages": [msg(i, body("big %d" % i), fetch_no=(i == 77),
                             flags=["Stra\u00dfe", "ok"] if i == 5 else [])
                         for i in range(1, 151)]}]
EOF
migrate big -o plugin/migrate_workers=2
R=$(report big)
tap_is "$MIG_RC/${MIG[copied]}/${MIG[rejected]}" "65/149/1" "a worker's folder: 149 copied, 1 left out, exit 65"
tap_like "... reported by the owner with a readable reason" \
	"\"folder\":\"Big\",\"uid\":77,\"size\":$(stat -c %s "$Q/big.0.77.eml"),\"reason\":\"the source refused to give it: [^\"]*FETCH replied: Some messages could not be FETCHed" "$R"
tap_is "$(json "$R" 'r["dropped_keywords"]')" "{'Straße': 1}" "... and the keyword the worker dropped"
tap_like "the worker copied it" 'migrate worker' "$(cat "$MIG_OUT")"

# --- 2. throttling: NO [THROTTLED] is retried, not a refusal -----------------------
scen throttle <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 7,
            "messages": [msg(i, body("throttled %d" % i, size=2000)) for i in range(1, 61)]}]
quirks = {"throttle": {"every": 6, "commands": ["UID FETCH"], "max": 3}}
EOF
migrate thr -o plugin/migrate_prefetch=10
tap_is "$MIG_RC" 0 "a source that throttles every 6th FETCH, 3 times (imapc backs off itself): the run completes (exit 0)"
tap_like "throttling happened" '^[1-9]' "$(grep -c ' throttled ' "$QLOG")"
sed -i 's/"every": 6/"every": 1000000/' "$Q/scenario.json"
scen_touch
tap_run "checker: equal after throttling" compare thr
tap_is "${MIG[rejected]}" 0 "nothing was left out"

# --- 3. BYE in the middle of a FETCH: retried, resumed ------------------------------
scen bye <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 8,
            "messages": [msg(i, body("bye %d" % i, size=3000)) for i in range(1, 31)]}]
quirks = {"bye_after_body_responses": 10}
EOF
before=$(grep -c ' bye$' "$QLOG")
migrate bye -o plugin/migrate_prefetch=10 -o plugin/migrate_retries=10
byes=$(( $(grep -c ' bye$' "$QLOG") - before ))
tap_is "$MIG_RC" 0 "BYE after 10 bodies on every connection (ours, then imapc's when it takes over): the run completes"
tap_like "the server sent BYE several times ($byes)" '^([2-9]|[1-9][0-9])$' "$byes"
tap_like "the summary counts the retries (${MIG[retries]}; imapc reconnects by itself too)" '^[1-9][0-9]*$' "${MIG[retries]}"
tap_is "${MIG[copied]}" 30 "30 copied over the passes: none twice"
sed -i 's/"bye_after_body_responses": 10/"bye_after_body_responses": 1000000/' "$Q/scenario.json"
scen_touch
tap_run "checker: equal after the BYEs" compare bye
tap_is "$(json "$(report bye)" 'len(r["retries"])')" "${MIG[retries]}" \
	"the report lists every retry with its cause"

# retries exhausted: exit 75, what was copied is kept
scen bye2 <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 9,
            "messages": [msg(i, body("bye2 %d" % i, size=3000)) for i in range(1, 31)]}]
quirks = {"bye_after_body_responses": 10}
EOF
migrate bye2 -o plugin/migrate_prefetch=10 -o plugin/migrate_retries=0
tap_is "$MIG_RC" 75 "no retries left: exit 75"
kept=$(dimap bye2 count INBOX)
tap_like "what was copied is kept ($kept of 30)" '^([1-9]|1[0-9]|2[0-9])$' "$kept"
tap_like "the summary says failed" '^failed$' "${MIG[result]}"

# --- 4. UIDVALIDITY changes between runs ------------------------------------------------
uv_scen() {   # UIDVALIDITY FIRST_UID KEEP(list) NEW(count)
	scen uv <<-EOF
	keep = [$3]
	msgs = [msg($2 + n, body("uv %d" % k, mid="uv-%d" % k), fid=$1,
	            date="1%d-Jan-2020 10:00:00 +0000" % (k % 9)) for n, k in enumerate(keep)]
	msgs += [msg($2 + len(keep) + n, body("uv new %d" % n), fid=$1) for n in range($4)]
	folders = [{"name": "INBOX", "uidvalidity": $1, "messages": msgs},
	           {"name": "Other", "uidvalidity": $1 + 1,
	            "messages": [msg(1, body("other"), fid=$1 + 1)]}]
	EOF
}
uv_scen 100 1 "$(seq -s, 1 30)" 0
migrate uv
tap_is "$MIG_RC/${MIG[copied]}" "0/31" "UIDVALIDITY 100: 31 copied"
# the server renumbers everything under a new UIDVALIDITY; 2 are gone, 3 new
uv_scen 200 501 "$(seq -s, 3 30)" 3
migrate uv
tap_is "$MIG_RC" 0 "after the UIDVALIDITY change the run exits 0"
tap_is "${MIG[copied]}/${MIG[deleted]}" "3/2" \
	"matched by content: only the 3 new copied, the 2 gone deleted (Other, renumbered too: nothing)"
tap_like "the log says the UIDVALIDITY changed" 'UIDVALIDITY of INBOX changed \(100 -> 200\)' "$(cat "$MIG_OUT")"
tap_is "$(dimap uv count INBOX)" 31 "INBOX: 28 kept + 3 new, no folder copied twice"
tap_run "checker: equal after the UIDVALIDITY change" compare uv
migrate uv
tap_is "${MIG[copied]}/${MIG[updated]}/${MIG[deleted]}" "0/0/0" "the next run has nothing to do"

# the same after cutover: the final sync copies what is new and deletes
# nothing, even what is gone under the new UIDVALIDITY
uv_scen 300 901 "$(seq -s, 1 30)" 0
rig_doveadm dest migrate domain start --old-mx 127.0.0.1:25 final.test >/dev/null 2>&1 ||
	tap_fail "domain start final.test"
MIG_OUT=$RIG/mig.uvf.1
rc=0
rig_doveadm dest migrate -u uvf@final.test >"$MIG_OUT" 2>&1 || rc=$?
tap_is "$rc/$(rig_imap dest uvf@final.test "$DEST_PW" count INBOX)" "0/30" "final.test: the mirror copies 30"
rig_doveadm dest migrate domain cutover final.test >/dev/null 2>&1 || tap_fail "domain cutover final.test"
uv_scen 400 1201 "$(seq -s, 5 30)" 2
rc=0
rig_doveadm dest -f tab migrate -u uvf@final.test >"$MIG_OUT" 2>&1 || rc=$?
row=$(grep -A1 -m1 $'^user\tresult' "$MIG_OUT" | tail -n 1)
tap_is "$rc/$(cut -f8 <<<"$row")/$(cut -f10 <<<"$row")/$(cut -f18 <<<"$row")" "0/2/0/final" \
	"final sync after a UIDVALIDITY change: the 2 new copied, the 4 gone not deleted"
tap_is "$(rig_imap dest uvf@final.test "$DEST_PW" count INBOX)" 32 "final.test: INBOX has 30 + 2, no duplicate"

# --- 5. Exchange-style: localised folders, no SPECIAL-USE/CONDSTORE/UIDPLUS --------
scen exch <<'EOF'
caps = ["IMAP4rev1", "AUTH=PLAIN", "LITERAL+"]
names = ["INBOX", "Itens Enviados", "Itens Exclu\u00eddos", "Lixo Eletr\u00f4nico",
         "Rascunhos", "Calend\u00e1rio", "Contatos", "Projetos/2024"]
folders = [{"name": n, "uidvalidity": 10 + i,
            "messages": [msg(1, body("in %s" % n), fid=i)] if n not in ("Calend\u00e1rio", "Contatos") else []}
           for i, n in enumerate(names)]
EOF
migrate exch
tap_is "$MIG_RC" 0 "an Exchange-style source without SPECIAL-USE, CONDSTORE, UIDPLUS: exit 0"
tap_is "$(dimap exch list | LC_ALL=C sort | tr '\n' ,)" \
	"Calendário,Contatos,Drafts,INBOX,Junk,Projetos,Projetos/2024,Sent,Trash," \
	"localised special folders map to ours; calendar and contacts come as empty folders"
tap_run "checker: equal (with the name mapping)" compare exch \
	--map 'Itens Enviados=Sent' --map 'Itens Excluídos=Trash' \
	--map 'Lixo Eletrônico=Junk' --map 'Rascunhos=Drafts'

# --- 5b. Microsoft 365: its English folders, the non-mail folders it lists as
# mail folders (empty over IMAP), a message it will not serve, NO [THROTTLED]
# under load ----------------------------------------------------------------------------
scen m365 <<'EOF'
caps = ["IMAP4", "IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2", "SASL-IR", "UIDPLUS",
        "MOVE", "ID", "UNSELECT", "CHILDREN", "IDLE", "NAMESPACE", "LITERAL+"]
mail = ["INBOX", "Archive", "Deleted Items", "Drafts", "Junk Email", "Sent Items",
        "Clientes/2024"]
nonmail = ["Calendar", "Calendar/Birthdays", "Contacts", "Conversation History",
           "Journal", "Notes", "Outbox", "RSS Feeds", "Sync Issues",
           "Sync Issues/Conflicts", "Sync Issues/Local Failures",
           "Sync Issues/Server Failures", "Tasks"]
folders = [{"name": n, "uidvalidity": 30 + i,
            "messages": [msg(1, body("m365 %s" % n), fid=i),
                         msg(2, body("m365 two %s" % n), fid=i,
                             fetch_no=(n == "Archive"))]}
           for i, n in enumerate(mail)]
folders += [{"name": n, "uidvalidity": 60 + i, "messages": []}
            for i, n in enumerate(nonmail)]
quirks = {"throttle": {"every": 4, "commands": ["UID FETCH"], "max": 2,
                       "text": "Request is throttled. Suggested Backoff Time: 100 milliseconds"},
          "fetch_no_text": "The requested message could not be retrieved"}
EOF
thr0=$(grep -c ' throttled ' "$QLOG")
migrate m365 -o plugin/migrate_prefetch=10
tap_is "$MIG_RC/${MIG[rejected]}" "65/1" \
	"Microsoft 365: exit 65, the message it will not serve left out and reported"
tap_like "... named with the source's words" \
	'Archive: Leaving out UID 2 .*could not be retrieved' "$(cat "$MIG_OUT")"
tap_like "... its throttled FETCHes were asked again" '^[1-9]' \
	"$(( $(grep -c ' throttled ' "$QLOG") - thr0 ))"
tap_is "$(dimap m365 list | LC_ALL=C sort | tr '\n' ,)" \
	"Archive,Calendar,Calendar/Birthdays,Clientes,Clientes/2024,Contacts,Conversation History,Drafts,INBOX,Journal,Junk,Notes,Outbox,RSS Feeds,Sent,Sync Issues,Sync Issues/Conflicts,Sync Issues/Local Failures,Sync Issues/Server Failures,Tasks,Trash," \
	"... Sent Items, Deleted Items and Junk Email map to ours; its non-mail folders come as empty folders"
sed -i 's/"fetch_no": true/"fetch_no": false/; s/"every": 4/"every": 1000000/' "$Q/scenario.json"
scen_touch
migrate m365
tap_is "$MIG_RC/${MIG[copied]}" "0/1" "... once it serves the message, the re-run copies it alone"
tap_run "checker: equal (with the name mapping)" compare m365 \
	--map 'Sent Items=Sent' --map 'Deleted Items=Trash' --map 'Junk Email=Junk'

# --- 6. Gmail: labels are folders, All Mail/Important/Starred are views -----------------
# m1 is in INBOX, Work and Travel (and All Mail, Important); m5 only in All
# Mail (archived); m6 is sent; Trash and Spam are outside All Mail, as at
# Gmail.  Detected by the [Gmail]/ folders (migrate_gmail = auto).
scen gmail <<'EOF'
caps = caps + ["X-GM-EXT-1"]
B = {n: body("gmail message %d" % n, size=1500 * n) for n in range(1, 10)}
def g(uid, n, fid, **kw):
    return msg(uid, B[n], fid=fid, gm_msgid=1000 + n,
               date="0%d-Mar-2022 10:00:00 +0000" % n, **kw)
folders = [
    {"name": "INBOX", "uidvalidity": 11, "messages": [g(1, 1, 1, flags=["\\Seen"]), g(2, 2, 1), g(3, 3, 1)]},
    {"name": "Work", "uidvalidity": 12, "messages": [g(1, 1, 2, flags=["\\Seen"]), g(2, 4, 2)]},
    {"name": "Travel", "uidvalidity": 13, "messages": [g(5, 1, 3, flags=["\\Seen"]), g(6, 4, 3)]},
    {"name": "[Gmail]", "attributes": ["\\Noselect"]},
    {"name": "[Gmail]/All Mail", "uidvalidity": 14, "special_use": "\\All",
     "messages": [g(n, n, 4) for n in (1, 2, 3, 4, 5, 6, 9)]},
    {"name": "[Gmail]/Important", "uidvalidity": 15, "special_use": "\\Important",
     "messages": [g(1, 1, 5), g(2, 2, 5)]},
    {"name": "[Gmail]/Starred", "uidvalidity": 16, "special_use": "\\Flagged",
     "messages": [g(1, 3, 6, flags=["\\Flagged"])]},
    {"name": "[Gmail]/Sent Mail", "uidvalidity": 17, "special_use": "\\Sent", "messages": [g(1, 6, 7)]},
    {"name": "[Gmail]/Trash", "uidvalidity": 18, "special_use": "\\Trash", "messages": [g(1, 7, 8)]},
    {"name": "[Gmail]/Spam", "uidvalidity": 19, "special_use": "\\Junk", "messages": [g(1, 8, 9)]},
    {"name": "[Gmail]/Drafts", "uidvalidity": 20, "special_use": "\\Drafts",
     "messages": [g(1, 9, 10, flags=["\\Draft"])]},
]
EOF
start_line=$(($(wc -l <"$QLOG") + 1))
migrate gm
tap_is "$MIG_RC" 0 "Gmail: the run exits 0"
tap_is "$(dimap gm list | LC_ALL=C sort | tr '\n' ,)" "Archive,Drafts,INBOX,Junk,Sent,Trash,Travel,Work," \
	"Gmail: labels are folders; All Mail, Important and Starred are not; Sent/Trash/Drafts/Spam map to ours"
counts=""
for fo in INBOX Work Travel Archive Sent Trash Junk Drafts; do
	counts+="$fo=$(dimap gm count "$fo") "
done
tap_is "$counts" "INBOX=3 Work=2 Travel=2 Archive=1 Sent=1 Trash=1 Junk=1 Drafts=1 " \
	"Gmail: each label's folder has its messages; Archive has what only All Mail had"
tap_like "Gmail: the archived message (no label) is in Archive" 'gmail message 5' \
	"$(dimap gm fetch Archive "$(dimap gm uids Archive | head -n 1)")"
# downloads: the scripted server logs "conn N body FOLDER UID BYTES" for
# every body it sends
bodies=$(tail -n +"$start_line" "$QLOG" | grep -c '^conn [0-9]* body ')
tap_is "$bodies" 9 "Gmail: 9 distinct messages, 9 bodies downloaded (m1 is in 3 labels and 2 views)"
sha() { "$PY" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }
tap_is "$(dimap gm fetch-hash Work | cut -d' ' -f2 | sort | tr '\n' ' ')" \
	"$( { sha "$Q/gmail.2.1.eml"; sha "$Q/gmail.2.2.eml"; } | sort | tr '\n' ' ')" \
	"Gmail: the copies made from another label's folder are the same bytes"
tap_like "Gmail: each copy has its own folder's flags" '\\Seen' "$(dimap gm fetch-hash Travel --uids 5)"
migrate gm
tap_is "$MIG_RC/${MIG[copied]}/${MIG[updated]}/${MIG[deleted]}" "0/0/0/0" "Gmail: the next run has nothing to do"
# a label added after the message was copied: m2 gets Travel (a new UID
# there); the next run copies it from our INBOX, not from the source
cp "$Q/gmail.recipe" "$Q/gmail.in"
sed -i 's/g(6, 4, 3)\]}/g(6, 4, 3), g(7, 2, 3)]}/' "$Q/gmail.in"
scen gmail <"$Q/gmail.in"
start_line=$(($(wc -l <"$QLOG") + 1))
migrate gm
tap_is "$MIG_RC/${MIG[copied]}/$(dimap gm count Travel)" "0/1/3" "Gmail: a label added later: the message is copied into its folder"
tap_is "$(tail -n +"$start_line" "$QLOG" | grep -c '^conn [0-9]* body ')" 0 \
	"Gmail: ... from its copy here, not downloaded again"
# migrate_gmail = no: the same account copied as any server's, every folder
# as it is (All Mail too), each folder's messages downloaded from it
start_line=$(($(wc -l <"$QLOG") + 1))
migrate gmno
tap_is "$MIG_RC" 0 "migrate_gmail=no: the run exits 0"
tap_like "migrate_gmail=no: All Mail is copied as a folder" 'All Mail' "$(dimap gmno list)"
bodies=$(tail -n +"$start_line" "$QLOG" | grep -c '^conn [0-9]* body ')
tap_is "$bodies" 22 "migrate_gmail=no: each folder's messages downloaded from it (22 bodies for 22 folder entries)"
# migrate_gmail = yes: a Gmail account whose views have other names (no
# [Gmail]/ folder to detect it by): the preset goes by SPECIAL-USE
scen gmyes <<'EOF'
caps = caps + ["X-GM-EXT-1"]
B = {n: body("gmail-yes message %d" % n, size=1000 * n) for n in range(1, 5)}
def g(uid, n, fid, **kw):
    return msg(uid, B[n], fid=fid, gm_msgid=2000 + n,
               date="0%d-Apr-2022 10:00:00 +0000" % n, **kw)
folders = [
    {"name": "INBOX", "uidvalidity": 31, "messages": [g(1, 1, 1), g(2, 2, 1)]},
    {"name": "Arbeit", "uidvalidity": 32, "messages": [g(1, 1, 2), g(2, 3, 2)]},
    {"name": "Alle Nachrichten", "uidvalidity": 33, "special_use": "\\All",
     "messages": [g(n, n, 3) for n in (1, 2, 3, 4)]},
    {"name": "Wichtig", "uidvalidity": 34, "special_use": "\\Important",
     "messages": [g(1, 1, 4)]},
]
EOF
start_line=$(($(wc -l <"$QLOG") + 1))
migrate gmyes
tap_is "$MIG_RC" 0 "migrate_gmail=yes: the run exits 0"
counts=""
for fo in $(dimap gmyes list | LC_ALL=C sort); do counts+="$fo=$(dimap gmyes count "$fo") "; done
tap_is "$counts" "Arbeit=2 Archive=1 INBOX=2 " \
	"migrate_gmail=yes: by SPECIAL-USE, \\All gives only its unlabeled message to Archive and \\Important is not copied"
bodies=$(tail -n +"$start_line" "$QLOG" | grep -c '^conn [0-9]* body ')
tap_is "$bodies" 4 "migrate_gmail=yes: 4 distinct messages, 4 bodies downloaded"


# --- 7. a session that does not see every message --------------------------------------
# Some clustered servers give each session its own view for a while.  The
# owner sees 120 messages and hands them to a worker, whose session does not
# see UIDs 50 and 51: it copies 118 and says it is done.  The owner checks
# that every message it handed over is now copied, left out or gone: these
# two are none of that, so the run fails and the folder stays incomplete
# (its STATUS would otherwise match next time and they would never come).
first=$(( $(grep -c '^conn [0-9]* open ' "$QLOG") + 1 ))
split_scen() {   # the connections that do not see UIDs 50 and 51 (a Python list)
	scen split <<-EOF
	hide = $1
	folders = [{"name": "INBOX", "uidvalidity": 21,
	            "messages": [msg(i, body("split %d" % i, size=1200),
	                             **({"hidden_on_connections": hide} if i in (50, 51) else {}))
	                         for i in range(1, 121)]}]
	EOF
}
split_scen "list(range($first + 1, $first + 40))"
migrate split -o plugin/migrate_workers=2
tap_is "$MIG_RC" 75 "a worker's session missed 2 messages: the run fails (75), not silently"
tap_like "the error names the folder, the count and the UIDs" \
	'INBOX: 2 of 120 messages were neither copied, left out nor gone from the source \(UIDs 50:51' \
	"$(cat "$MIG_OUT")"
tap_is "$(dimap split count INBOX)" 118 "the 118 the worker copied are kept"
split_scen "[]"
migrate split -o plugin/migrate_workers=2
tap_is "$MIG_RC/${MIG[copied]}" "0/2" "once every session sees them, the next run copies the 2 (the folder was not marked complete)"
tap_run "checker: equal after the split view" compare split

# --- 8. a session that misses what it copied before: a second look ---------------------
# The mirror deletes a copy only when the source message is gone.  Here the
# owner's own session does not see UIDs 60 and 61 nor the folder Keep, all
# copied by the run before.  Before deleting, a connection of our own looks
# again, finds them, and nothing is deleted.
look_scen() {   # the connections that miss INBOX's 60, 61 and the folder Keep
	scen look <<-EOF
	hide = $1
	folders = [{"name": "INBOX", "uidvalidity": 22,
	            "messages": [msg(i, body("look %d" % i, size=900),
	                             **({"hidden_on_connections": hide} if i in (60, 61) else {}))
	                         for i in range(1, 81)]},
	           {"name": "Keep", "uidvalidity": 23, "hidden_on_connections": hide,
	            "messages": [msg(i, body("keep %d" % i), fid=1) for i in range(1, 4)]}]
	EOF
}
look_scen "[]"
migrate look
tap_is "$MIG_RC/${MIG[copied]}" "0/83" "a second look: the first run copies 83"
# a dry run says what a real run would delete: nothing
first=$(( $(grep -c '^conn [0-9]* open ' "$QLOG") + 1 ))
look_scen "[$first]"
rc=0
rig_doveadm dest -f tab migrate -n -u look@example.com >"$RIG/look-dry.out" 2>&1 || rc=$?
rig_summary "$RIG/look-dry.out"
tap_is "$rc/${MIG[deleted]}/${MIG[folders_deleted]}/${MIG[deletes_withheld]}" "0/0/0/5" \
	"a dry run takes the second look too: 0 deletions, 5 withheld"
first=$(( $(grep -c '^conn [0-9]* open ' "$QLOG") + 1 ))
look_scen "[$first]"
migrate look
tap_is "$MIG_RC/${MIG[deleted]}/${MIG[folders_deleted]}" "0/0/0" \
	"the owner's session misses 2 messages and a folder: nothing is deleted"
tap_is "${MIG[deletes_withheld]}" 5 "the summary counts the 5 withheld deletions (2 + Keep's 3)"
tap_like "the warning names the folder and the UIDs" \
	'INBOX: Not deleting 2 messages: the source still has them on a second look \(UIDs 60:61\)' \
	"$(cat "$MIG_OUT")"
tap_like "... and the folder the source still lists" \
	'Keep: Not deleting the folder: the source still lists Keep on a second look' "$(cat "$MIG_OUT")"
tap_is "$(dimap look count INBOX)/$(dimap look count Keep)" "80/3" "the copies are all still there"
look_scen "[]"
migrate look
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/0/0" "once the session sees them again: nothing copied twice, nothing deleted"
tap_run "checker: equal after the second look" compare look

# --- 9. a refused login is refused once ---------------------------------------------
# Courier answers a wrong password "NO Login failed." without a code; others
# with an RFC 5530 code.  Each is exit 77 at the first attempt, one login,
# never retried (old providers lock accounts after a few failures); a
# server that says it is unavailable stays temporary (75).
user refused
for lf in courier auth authorization expired; do
	scen "login-$lf" <<-EOF
	quirks = {"login_fail": "$lf"}
	folders = [{"name": "INBOX", "uidvalidity": 1, "messages": []}]
	EOF
	before=$(grep -c ' login quser failed$' "$QLOG")
	start=$SECONDS
	migrate refused -o plugin/migrate_retries=3
	tap_is "$MIG_RC" 77 "login refused ($lf): exit 77"
	tap_is "$(( $(grep -c ' login quser failed$' "$QLOG") - before ))" 1 \
		"... after one login, not retried ($((SECONDS - start)) s)"
done
scen login-unavailable <<'EOF'
quirks = {"login_fail": "unavailable"}
folders = [{"name": "INBOX", "uidvalidity": 1, "messages": []}]
EOF
migrate refused -o plugin/migrate_retries=0
tap_is "$MIG_RC" 75 "NO [UNAVAILABLE] to the login stays temporary (75)"

# Our own connection logs in while the storage lists the folders; a
# provider that lets one session in and refuses the next refuses ours:
# the storage copies everything on its connection, and ours never logs in
# again (each new command of lib-imap-client would).
user second
scen second-refused <<'EOF'
quirks = {"login_fail_after": 1}
inbox = [msg(i, body("second inbox %d" % i)) for i in range(1, 31)]
other = [msg(i, body("second other %d" % i), fid=1) for i in range(1, 11)]
folders = [{"name": "INBOX", "uidvalidity": 1, "messages": inbox},
           {"name": "Other", "uidvalidity": 2, "messages": other}]
EOF
failed=$(grep -c ' login quser failed$' "$QLOG")
ok=$(grep -c ' login quser ok$' "$QLOG")
migrate second -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[copied]}" "0/40" "second session refused: exit 0, the storage copies all 40"
tap_is "$(( $(grep -c ' login quser ok$' "$QLOG") - ok ))/$(( $(grep -c ' login quser failed$' "$QLOG") - failed ))" \
	"1/1" "... one login each: the storage's accepted, ours refused once, never again"
# the checker logs in too: the same folders, every login let in
sed -i '1s/^quirks = {"login_fail_after": 1}$/quirks = {}/' "$Q/second-refused.recipe"
scen second-let-in <"$Q/second-refused.recipe"
tap_run "checker: equal with the second session refused" compare second

# --- 10. deletions need proof ----------------------------------------------------------
# A folder gone and a new one with its UIDVALIDITY are one folder renamed
# only when the new one still holds what was copied: a server that reuses
# a UIDVALIDITY for another folder must not make Beta inherit Alpha's
# copies (and Beta's own messages never come).
user proof
proof_scen() {   # the folders (a Python list) besides INBOX
	scen proof <<-EOF
	inbox = [msg(i, body("proof inbox %d" % i)) for i in range(1, 41)]
	alpha = [msg(i, body("alpha %d" % i), fid=1) for i in range(1, 13)]
	beta = [msg(i, body("beta %d" % i), fid=2) for i in range(1, 13)]
	folders = [{"name": "INBOX", "uidvalidity": 60, "messages": inbox}] + $1
	EOF
}
proof_scen '[{"name": "Alpha", "uidvalidity": 61, "messages": alpha}]'
migrate proof
tap_is "$MIG_RC/${MIG[copied]}" "0/52" "proof: the first run copies 52"
proof_scen '[{"name": "Beta", "uidvalidity": 61, "messages": beta}]'
migrate proof
tap_is "$MIG_RC/${MIG[renamed]}/${MIG[copied]}/${MIG[deleted]}" "0/0/12/12" \
	"Beta has Alpha's UIDVALIDITY but other messages: not a rename, its 12 copied, Alpha's 12 deleted"
tap_like "the log says why it is no rename" \
	'Source folder Beta has the UIDVALIDITY Alpha had, but not its messages \(5 of 5 compared differ\)' \
	"$(cat "$MIG_OUT")"
tap_run "checker: equal after a reused UIDVALIDITY" compare proof
proof_scen '[{"name": "Gamma", "uidvalidity": 61, "messages": beta}]'
migrate proof
tap_is "$MIG_RC/${MIG[renamed]}/${MIG[copied]}/${MIG[deleted]}" "0/1/0/0" \
	"a real rename (same UIDVALIDITY, same messages) is still a rename: nothing copied or deleted"
tap_is "$(dimap proof count Gamma)" 12 "Gamma holds the 12"

# Two messages without a Message-ID, of the same date and size, differ only
# in their text.  After a UIDVALIDITY change the server numbers them the
# other way round: matching by content must not take one for the other.
user twins
twins_scen() {   # UIDVALIDITY, the twins' UIDs (a, b)
	scen twins <<-EOF
	def twin(uid, letter):
	    return msg(uid, ("From: twin@example.org\r\nSubject: twin\r\n\r\nbody %s\r\n"
	                     % letter).encode(), fid=$1, date="01-Mar-2022 10:00:00 +0000")
	msgs = [msg(10 + i, body("twins %d" % i), fid=$1, date="0%d-Feb-2022 10:00:00 +0000" % (i + 1))
	        for i in range(8)]
	msgs += [twin($2, "A"), twin($3, "B")]
	folders = [{"name": "INBOX", "uidvalidity": $1, "messages": sorted(msgs, key=lambda m: m["uid"])}]
	EOF
}
twins_scen 70 1 2
migrate twins
tap_is "$MIG_RC/${MIG[copied]}" "0/10" "twins: 10 copied"
twins_scen 71 2 1
migrate twins
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/2/2" \
	"after a UIDVALIDITY change the 2 twins are copied again and their old copies deleted, the 8 others matched"
tap_run "checker: the twins are not mixed up" compare twins

# The copies of the old UIDVALIDITY that match nothing go only when a second
# session sees the new UIDVALIDITY too; until then they are kept, and the
# state remembers them for the next run.
user orphans
orphans_scen() {   # UIDVALIDITY, first UID, count, connections that still see UIDVALIDITY 80
	scen orphans <<-EOF
	msgs = [msg($2 + n, body("orphan %d" % i), fid=$1, date="1%d-Jan-2020 10:00:00 +0000" % (i % 9))
	        for n, i in enumerate(range(1, $3 + 1))]
	folders = [{"name": "INBOX", "uidvalidity": $1, "messages": msgs,
	            "uidvalidity_on_connections": {str(c): 80 for c in $4}}]
	EOF
}
orphans_scen 80 1 30 "[]"
migrate orphans -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[copied]}" "0/30" "orphans: 30 copied"
first=$(( $(grep -c '^conn [0-9]* open ' "$QLOG") + 1 ))
orphans_scen 81 101 27 "list(range($first + 1, $first + 40))"
migrate orphans -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}/${MIG[deletes_withheld]}" "0/0/0/3" \
	"UIDVALIDITY 80 -> 81, 27 matched, but a second session still sees 80: the 3 others are kept"
tap_like "the warning says why" \
	'INBOX: Not deleting 3 messages: copies of an earlier UIDVALIDITY, and a second look sees UIDVALIDITY 80, not 81' \
	"$(cat "$MIG_OUT")"
tap_is "$(dimap orphans count INBOX)" 30 "the 30 copies are all there"
orphans_scen 81 101 27 "[]"
migrate orphans -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/0/3" \
	"once every session sees 81, the next run deletes the 3 (the state kept them)"
tap_run "checker: equal after the orphans went" compare orphans

# The deletion limit holds per folder as well: 15 of Small's 20 gone is
# refused even though the account loses only 15 of 90 (under 30%); a folder
# may always lose up to 10 (Tiny loses 8 of 10).
user budget
budget_scen() {   # messages left in Small, in Tiny
	scen budget <<-EOF
	folders = [{"name": "INBOX", "uidvalidity": 90,
	            "messages": [msg(i, body("budget inbox %d" % i)) for i in range(1, 61)]},
	           {"name": "Small", "uidvalidity": 91,
	            "messages": [msg(i, body("small %d" % i), fid=1) for i in range(1, $1 + 1)]},
	           {"name": "Tiny", "uidvalidity": 92,
	            "messages": [msg(i, body("tiny %d" % i), fid=2) for i in range(1, $2 + 1)]}]
	EOF
}
budget_scen 20 10
migrate budget
tap_is "$MIG_RC/${MIG[copied]}" "0/90" "budget: 90 copied"
budget_scen 5 2
migrate budget
tap_is "$MIG_RC/${MIG[deleted]}" "65/8" "Small would lose 15 of 20: exit 65, only Tiny's 8 deleted"
tap_like "the error names the folder and the limit" \
	'Small: Refusing to delete 15 of its 20 copies \(more than migrate_max_delete_percent=30% of the folder\)' \
	"$(cat "$MIG_OUT")"
tap_is "$(dimap budget count Small)/$(dimap budget count Tiny)" "20/2" "Small keeps its 20, Tiny has 2"
migrate budget
tap_is "$MIG_RC/${MIG[deleted]}" "65/0" "the next run refuses again"
MIG_OUT=$RIG/mig.budget.force
MIG_RC=0
rig_doveadm dest -f tab migrate -f -u budget@example.com >"$MIG_OUT" 2>&1 || MIG_RC=$?
rig_summary "$MIG_OUT"
tap_is "$MIG_RC/${MIG[deleted]}" "0/15" "with --force the 15 go"
tap_run "checker: equal after the forced deletion" compare budget

# --- 11. control characters in a source's names are escaped ---------------------------
# a folder whose name clears the screen, with a message the source will not
# give: the name reaches the log, the summary's error and report.json
user ctl
scen ctl <<'EOF'
folders = [{"name": "INBOX", "uidvalidity": 1, "messages": [msg(1, body("one"))]},
           {"name": "Ctl\x1b[2Jx", "uidvalidity": 2,
            "messages": [msg(1, body("ctl"), fetch_no=True)]}]
EOF
migrate ctl
tap_is "$(grep -c $'\x1b' "$MIG_OUT")" 0 "no control character of a folder's name reaches the output"
tap_like "... it is shown as \\x1b" 'Ctl\\x1b\[2Jx' "$(cat "$MIG_OUT")"
tap_is "$(report ctl | grep -c $'\x1b')" 0 "... nor report.json"

# --- 12. a large message's pieces answered out of order ---------------------------
# Dovecot runs pipelined FETCHes in parallel and may answer a window's
# pieces in any order: each piece goes where its offset says
user rev
scen rev <<'EOF'
msgs = [msg(i, body("rev %d" % i, size=3000)) for i in range(1, 11)]
msgs += [msg(11, body("rev big 1", size=2600000)), msg(12, body("rev big 2", size=2300000))]
msgs += [msg(i, body("rev %d" % i, size=3000)) for i in range(13, 21)]
folders = [{"name": "INBOX", "uidvalidity": 12, "messages": msgs}]
quirks = {"pieces_reversed": True}
EOF
before=$(grep -c ' pieces reversed ' "$QLOG")
migrate rev
tap_is "$MIG_RC/${MIG[copied]}/${MIG[retries]}" "0/20/0" \
	"pieces answered last first: exit 0, 20 copied, no retry"
tap_like "the server did answer pieces out of order" '^[1-9][0-9]*$' \
	"$(( $(grep -c ' pieces reversed ' "$QLOG") - before ))"
sed -i 's/"pieces_reversed": true/"pieces_reversed": false/' "$Q/scenario.json"
scen_touch
tap_run "checker: equal, the large messages whole" compare rev

# --- 13. a source whose UID SEARCH RETURN (ALL) says nothing ------------------------
# With CONDSTORE and ESEARCH a changed folder is listed from its
# HIGHESTMODSEQ, and the ESEARCH reply says which UIDs it still has.  A
# server that answers OK without that reply proves nothing gone: the
# storage lists the folder instead, and nothing is deleted.
user es
es_scen() {   # es_scen NEW-MESSAGES SILENT(True|False)
	scen es <<-EOF
	caps = caps + ["ESEARCH"]
	msgs = [msg(i, body("es %d" % i, size=1500), modseq=i) for i in range(1, 31)]
	msgs += [msg(30 + i, body("es new %d" % i, size=1500), modseq=30 + i) for i in range(1, $1 + 1)]
	folders = [{"name": "INBOX", "uidvalidity": 13, "messages": msgs}]
	quirks = {"esearch_silent": $2}
	EOF
}
es_scen 0 False
migrate es
tap_is "$MIG_RC/${MIG[copied]}" "0/30" "CONDSTORE and ESEARCH: the first run copies 30"
es_scen 2 True
before=$(grep -c ' esearch silent' "$QLOG")
migrate es -D
tap_is "$(( $(grep -c ' esearch silent' "$QLOG") - before ))" 1 \
	"the server answered the listing's UID SEARCH without its ESEARCH reply"
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}/$(dimap es count INBOX)" "0/2/0/32" \
	"... so the storage listed the folder: 2 new copied, nothing deleted, 32 here"
tap_is "$(grep -c 'listed the changes since' "$MIG_OUT")" 0 "... and no listing of changes was used"
es_scen 3 False
migrate es -D
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/1/0" \
	"with the ESEARCH reply: the new one copied, nothing deleted"
tap_like "... from the listing of changes" \
	"INBOX: listed the changes since HIGHESTMODSEQ [0-9]+: 0 messages' flags changed, 0 gone, 1 to copy" \
	"$(cat "$MIG_OUT")"
tap_run "checker: equal" compare es

# --- 14. a folder our own connection cannot EXAMINE ------------------------------------
# Our connection pipelines every EXAMINE with what follows it (the next
# folder's listing is asked for behind the current folder's bodies).  When
# a folder is gone for it (here: hidden on that connection only), its
# EXAMINE fails, the server answers the listing behind it with BAD (no
# folder selected), and the client drops the connection.  The folders
# before it are copied whole, the storage lists the lost one, a new
# connection of ours takes the rest: nothing lost, nothing twice.
user gone
gone_scen() {   # gone_scen HIDE: the connections that do not see Gone
	scen gone <<-EOF
	folders = [{"name": "INBOX", "uidvalidity": 31,
	            "messages": [msg(i, body("in %d" % i, size=2000)) for i in range(1, 31)]},
	           {"name": "Gone", "uidvalidity": 32, "hidden_on_connections": $1,
	            "messages": [msg(i, body("gone %d" % i, size=2000)) for i in range(1, 21)]},
	           {"name": "Zeta", "uidvalidity": 33,
	            "messages": [msg(i, body("zeta %d" % i, size=2000)) for i in range(1, 26)]}]
	EOF
}
first=$(( $(grep -c '^conn [0-9]* open ' "$QLOG") + 1 ))
gone_scen "[$((first + 1))]"
migrate gone -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[copied]}" "0/75" \
	"a folder our connection cannot EXAMINE: exit 0, all 75 copied"
tap_like "... its EXAMINE failed on our connection" \
	"conn $((first + 1)) > [^ ]+ NO .*" "$(grep "^conn $((first + 1)) > " "$QLOG" | grep -v ' OK ')"
tap_is "$(dimap gone count INBOX)/$(dimap gone count Gone)/$(dimap gone count Zeta)" "30/20/25" \
	"... every folder is whole here"
gone_scen "[]"
migrate gone -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/0/0" "the next run copies and deletes nothing"
tap_run "checker: equal after the lost EXAMINE" compare gone

# --- 15. a HIGHESTMODSEQ that does not grow ---------------------------------------------
# A folder synced completely is listed from its last HIGHESTMODSEQ only when
# the source's has grown since.  A server restored from a backup may keep
# (or lower) it while messages change, with modseqs that prove nothing:
# here message 5 gets \Flagged with an old modseq and two messages arrive,
# and the HIGHESTMODSEQ stays 30.  CHANGEDSINCE 30 would miss the flag:
# the storage lists the folder instead, and the flag comes.
user hms
hms_scen() {   # hms_scen CHANGED(True|False)
	scen hms <<-EOF
	caps = caps + ["ESEARCH"]
	changed = $1
	msgs = [msg(i, body("hms %d" % i, size=1500), modseq=i,
	            **({"flags": ["\\\\Flagged"]} if changed and i == 5 else {}))
	        for i in range(1, 31)]
	if changed:
	    msgs += [msg(30 + i, body("hms new %d" % i, size=1500), modseq=i) for i in range(1, 3)]
	folders = [{"name": "INBOX", "uidvalidity": 14, "highestmodseq": 30, "messages": msgs}]
	EOF
}
hms_scen False
migrate hms
tap_is "$MIG_RC/${MIG[copied]}" "0/30" "HIGHESTMODSEQ 30: the first run copies 30"
hms_scen True
migrate hms -D
tap_is "$MIG_RC/${MIG[copied]}/${MIG[deleted]}" "0/2/0" \
	"the HIGHESTMODSEQ did not grow: the 2 new copied, nothing deleted"
tap_is "$(grep -c 'listed the changes since' "$MIG_OUT")" 0 \
	"... and the folder was not listed from its HIGHESTMODSEQ"
tap_like "... so message 5's new flag came" '\\Flagged' "$(dimap hms fetch-hash INBOX --uids 5)"
tap_run "checker: equal after a HIGHESTMODSEQ that did not grow" compare hms

tap_done
