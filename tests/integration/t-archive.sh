#!/bin/bash
# t-archive.sh - doveadm migrate archive / index / prepare: a big INBOX and
# Sent get per-year folders under ARCHIVE with nothing lost or changed,
# later syncs follow the moved copies, and the fts index (fts-xapian)
# answers body searches.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-archive

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Arch!src1'
DEST_PW='Arch!dst1'
YEAR=$(date +%Y)
FIRST=$((YEAR - 7))
NEEDLE=zebrafinchquux
# ann's INBOX and Sent are archived (more than the threshold), bob's INBOX
# is not; make check: above 2 commit batches of 1000 moves per folder
# (migrate-prepare.c); make soak (T_ARCHIVE_FULL=1): the default threshold
# and an account of 23,000 messages, then its full-text index
if [ "${T_ARCHIVE_FULL:-0}" = 1 ]; then
	ANN_INBOX=12000 ANN_SENT=11000 BOB_INBOX=5000 THRESHOLD=
else
	ANN_INBOX=2400 ANN_SENT=2200 BOB_INBOX=1000 THRESHOLD=2000
fi
ANN=$((ANN_INBOX + ANN_SENT))

have_xapian=0
[ -e /usr/lib/dovecot/modules/lib21_fts_xapian_plugin.so ] && have_xapian=1
if [ "$have_xapian" = 1 ]; then
	RIG_EXTRA_MAIL_PLUGINS=(fts fts_xapian)
fi
rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_add_user src ann "$SRC_PW"
rig_add_user src bob "$SRC_PW"
rig_add_user src cat "$SRC_PW"
rig_add_user dest ann@example.com "$DEST_PW" userdb_migrate_source_user=ann
rig_add_user dest bob@example.com "$DEST_PW" userdb_migrate_source_user=bob
rig_add_user dest cat@example.net "$DEST_PW" userdb_migrate_source_user=cat
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"
if [ "$have_xapian" = 1 ]; then
	rig_dest_plugin_set dest fts xapian
	rig_dest_plugin_set dest fts_xapian "partial=3 full=20 verbose=0"
	rig_dest_plugin_set dest fts_autoindex no
	# a body search must go through the index, never a scan
	rig_dest_plugin_set dest fts_enforced yes
fi
[ -z "$THRESHOLD" ] || rig_dest_plugin_set dest migrate_archive_threshold "$THRESHOLD"

simap() { rig_imap src "$1" "$SRC_PW" "${@:2}"; }
dimap() { rig_imap dest "$1" "$DEST_PW" "${@:2}"; }
dadm() { rig_doveadm dest "$@"; }

# every message of USER at the destination: content hash, size, date and
# flags, one line each, sorted (no folder, no UID)
snapshot() {
	local user=$1 folder
	dimap "$user" list | while IFS= read -r folder; do
		dimap "$user" fetch-hash "$folder" | cut -d' ' -f2-
	done | sort
}

# the INTERNALDATE years of FOLDER, "year count" lines
years_of() {
	dimap "$1" fetch-hash "$2" | awk '{ print substr($4, 1, 4) }' | sort | uniq -c |
		awk '{ print $2, $1 }'
}

count_of() { dimap "$1" count "$2" 2>/dev/null || echo missing; }

# column NAME of USER's row in FILE (doveadm -f tab output, log lines
# mixed in; with -d doveadm puts its own Username column first)
col() {
	awk -F '\t' -v want="$2" -v u="$3" '!c["user"] { for (i = 1; i <= NF; i++) c[$i] = i; next }
		$c["user"] == u && c[want] { print $c[want]; exit }' "$1"
}

tap_run "gen-years: INBOX $ANN_INBOX and Sent $ANN_SENT messages over 8 years" \
	"$PY" "$T/gen-years.py" --port "$(rig_port src)" --user ann \
	--password-env SRC_IMAP_PASSWORD --first-year "$FIRST" --last-year "$YEAR" \
	--folder "INBOX:$ANN_INBOX" --folder "Sent:$ANN_SENT" --needle "$NEEDLE" --needle-index 3
tap_run "gen-years: a small account for the index, the word in an old message" \
	"$PY" "$T/gen-years.py" --port "$(rig_port src)" --user cat \
	--password-env SRC_IMAP_PASSWORD --first-year "$FIRST" --last-year "$YEAR" \
	--folder INBOX:300 --folder Sent:50 --needle "$NEEDLE" --needle-index 3 --seed 3
tap_run "gen-years: INBOX $BOB_INBOX messages" \
	"$PY" "$T/gen-years.py" --port "$(rig_port src)" --user bob \
	--password-env SRC_IMAP_PASSWORD --first-year "$FIRST" --last-year "$YEAR" \
	--folder "INBOX:$BOB_INBOX" --seed 2
tap_is "$(dadm migrate -q -u ann@example.com >/dev/null 2>&1; echo $?)" 0 "the first sync of ann exits 0"
tap_is "$(dadm migrate -q -u bob@example.com >/dev/null 2>&1; echo $?)" 0 "the first sync of bob exits 0"
tap_is "$(dadm migrate -q -u cat@example.net >/dev/null 2>&1; echo $?)" 0 "the first sync of cat exits 0"
snapshot ann@example.com >"$RIG/before.txt"
tap_is "$(wc -l <"$RIG/before.txt")" "$ANN" "ann has $ANN messages before the archive"

# --- archive ------------------------------------------------------------------
rc=0
dadm -f tab migrate archive -n -u ann@example.com >"$RIG/dry.out" 2>&1 || rc=$?
dry_moved=$(col "$RIG/dry.out" moved ann@example.com)
# every message of the 7 years before this one: 7/8 of them or more
tap_like "archive -n exits 0 and reports the moves ($dry_moved)" "^0 yes$" \
	"$rc $( [[ $dry_moved =~ ^[0-9]+$ ]] && [ "$dry_moved" -ge $((ANN * 85 / 100)) ] &&
		[ "$dry_moved" -le "$ANN" ] && echo yes)"
if dimap ann@example.com list | grep -q ARCHIVE || [ "$(count_of ann@example.com INBOX)" != "$ANN_INBOX" ]; then
	tap_fail "archive -n changed something"
else
	tap_ok "archive -n creates no folder and moves nothing"
fi
rc=0
mapfile -d '' -t doveadm_cmd < <(rig_doveadm_cmd dest)
"$PY" -c '
import resource, subprocess, sys
with open(sys.argv[1], "w") as out, open(sys.argv[2], "w") as err:
    rc = subprocess.call(sys.argv[3:], stdout=out, stderr=err)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)' "$RIG/archive.out" "$RIG/archive.err" "${doveadm_cmd[@]}" \
	migrate archive -u ann@example.com >"$RIG/archive.rss" || rc=$?
tap_is "$rc" 0 "archive -u ann exits 0"
tap_diag "$(cat "$RIG/archive.out")"
tap_is "$(awk '$1 == "ann@example.com" { print $5 }' "$RIG/archive.out")" "$dry_moved" \
	"it moves what -n said it would"
rss_kb=$(cat "$RIG/archive.rss")
if [ "$rss_kb" -lt 40960 ]; then
	tap_ok "archive of $ANN messages peaks at $((rss_kb / 1024)) MB (< 40 MB)"
else
	tap_fail "archive peaked at $((rss_kb / 1024)) MB"
fi
tap_like "archive reports progress per folder" \
	"migrate archive: INBOX: $ANN_INBOX/$ANN_INBOX messages" "$(cat "$RIG/archive.err")"
tap_is "$(years_of ann@example.com INBOX | awk '{ print $1 }' | tr '\n' ' ')" "$YEAR " \
	"INBOX keeps only the current year"
tap_is "$(years_of ann@example.com Sent | awk '{ print $1 }' | tr '\n' ' ')" "$YEAR " \
	"Sent keeps only the current year"
ok=1
for y in $(seq "$FIRST" $((YEAR - 1))); do
	got=$(years_of ann@example.com "ARCHIVE/$y" | tr '\n' ' ')
	[[ $got == "$y "[0-9]*" " ]] || { ok=0; tap_diag "ARCHIVE/$y: $got"; }
	got=$(years_of ann@example.com "ARCHIVE/Sent/$y" | tr '\n' ' ')
	[[ $got == "$y "[0-9]*" " ]] || { ok=0; tap_diag "ARCHIVE/Sent/$y: $got"; }
done
if [ "$ok" = 1 ]; then
	tap_ok "ARCHIVE/<year> and ARCHIVE/Sent/<year> hold exactly their year, $FIRST-$((YEAR - 1))"
else
	tap_fail "year folders hold other years"
fi
snapshot ann@example.com >"$RIG/after.txt"
if cmp -s "$RIG/before.txt" "$RIG/after.txt"; then
	tap_ok "all $ANN messages kept: content hashes, sizes, dates and flags unchanged"
else
	tap_fail "the archive changed messages: $(diff "$RIG/before.txt" "$RIG/after.txt" | head -4 | tr '\n' ' ')"
fi
subs=$(dimap ann@example.com list --subscribed)
if grep -qx "ARCHIVE/$FIRST" <<<"$subs" && grep -qx "ARCHIVE/Sent/$FIRST" <<<"$subs" &&
   grep -qx ARCHIVE <<<"$subs"; then
	tap_ok "the year folders and their parents are subscribed"
else
	tap_fail "not subscribed: $(tr '\n' ' ' <<<"$subs")"
fi

# a small INBOX is left alone
dadm migrate archive -u bob@example.com >"$RIG/bob.out" 2>"$RIG/bob.err"
tap_is "$(count_of bob@example.com INBOX)" "$BOB_INBOX" "an INBOX of $BOB_INBOX messages is left alone"
if dimap bob@example.com list | grep -q ARCHIVE; then
	tap_fail "an ARCHIVE folder was created for bob"
else
	tap_ok "no ARCHIVE folder for bob"
fi
tap_like "the log says why" "INBOX: $BOB_INBOX messages, not more than migrate_archive_threshold \\(${THRESHOLD:-10000}\\)" \
	"$(cat "$RIG/bob.err")"

# twice: nothing changes
dadm -f tab migrate archive -u ann@example.com >"$RIG/archive2.out" 2>&1
tap_is "$(col "$RIG/archive2.out" moved ann@example.com) $(col "$RIG/archive2.out" created ann@example.com)" \
	"0 0" "archive again moves and creates nothing"
snapshot ann@example.com >"$RIG/after2.txt"
if cmp -s "$RIG/before.txt" "$RIG/after2.txt"; then
	tap_ok "... and changes nothing"
else
	tap_fail "the second archive changed something"
fi

# --- later syncs follow the moved copies ----------------------------------
dadm -f tab migrate -u ann@example.com >"$RIG/sync1.out" 2>&1
tap_is "$(col "$RIG/sync1.out" copied ann@example.com) $(col "$RIG/sync1.out" deleted ann@example.com) $(col "$RIG/sync1.out" updated ann@example.com)" \
	"0 0 0" "a mirror sync right after the archive copies, deletes and updates nothing"
# make the sync open INBOX: a flag on an archived message, at the source
uid_old=$(simap ann fetch-hash INBOX | sed -n 11p | cut -d' ' -f1)
simap ann set-flags INBOX --uids "$uid_old" --flags '\Answered \Seen' >/dev/null
dadm -f tab migrate -u ann@example.com >"$RIG/sync2.out" 2>&1
tap_is "$(col "$RIG/sync2.out" copied ann@example.com) $(col "$RIG/sync2.out" updated ann@example.com) $(col "$RIG/sync2.out" deleted ann@example.com)" \
	"0 1 0" "a flag changed on an archived message: 1 update, nothing copied back"
if dimap ann@example.com fetch-hash "ARCHIVE/$FIRST" | grep -q 'Answered'; then
	tap_ok "the flag reached the copy in ARCHIVE/$FIRST"
else
	tap_fail "the flag is not in ARCHIVE/$FIRST"
fi
n_before=$(count_of ann@example.com "ARCHIVE/$FIRST")
uid_del=$(simap ann fetch-hash INBOX | sed -n 21p | cut -d' ' -f1)
hash_del=$(simap ann fetch-hash INBOX --uids "$uid_del" | cut -d' ' -f2)
simap ann expunge INBOX --uids "$uid_del" >/dev/null
dadm -f tab migrate -u ann@example.com >"$RIG/sync3.out" 2>&1
tap_is "$(col "$RIG/sync3.out" deleted ann@example.com) $(col "$RIG/sync3.out" copied ann@example.com)" \
	"1 0" "one archived message deleted at the source: the mirror deletes one"
tap_is "$(count_of ann@example.com "ARCHIVE/$FIRST")" $((n_before - 1)) \
	"... from its year folder"
if dimap ann@example.com fetch-hash "ARCHIVE/$FIRST" | grep -q "$hash_del"; then
	tap_fail "the deleted message is still in ARCHIVE/$FIRST"
else
	tap_ok "... and it is that message"
fi
# new mail at the source goes to INBOX, even with an old date
printf 'From: x@example.org\r\nSubject: new\r\nMessage-ID: <new1@example.org>\r\n\r\nnew\r\n' >"$RIG/new1.eml"
printf 'From: x@example.org\r\nSubject: old\r\nMessage-ID: <old1@example.org>\r\n\r\nold\r\n' >"$RIG/old1.eml"
simap ann append INBOX "$RIG/new1.eml" >/dev/null
simap ann append --date "01-Jun-$((YEAR - 3)) 10:00:00 +0000" INBOX "$RIG/old1.eml" >/dev/null
inbox_before=$(count_of ann@example.com INBOX)
dadm -f tab migrate -u ann@example.com >"$RIG/sync4.out" 2>&1
tap_is "$(col "$RIG/sync4.out" copied ann@example.com)" 2 "two new messages at the source are copied"
tap_is "$(count_of ann@example.com INBOX)" $((inbox_before + 2)) "... into INBOX, the old-dated one too"
total=0
while IFS= read -r f; do
	total=$((total + $(count_of ann@example.com "$f")))
done < <(dimap ann@example.com list)
tap_is "$total" $((ANN - 1 + 2)) "no message is duplicated anywhere ($((ANN + 1)) in all)"

# --- prepare: archive, then index, for a whole domain --------------------------
# cat@example.net: 350 messages, archived with a lower threshold; the word
# is in an old INBOX message, so it ends up in ARCHIVE/<first year>
if [ "$have_xapian" = 1 ]; then
	rc=0
	dadm -f tab -o plugin/migrate_archive_threshold=100 migrate prepare -d example.net \
		>"$RIG/prepare.out" 2>"$RIG/prepare.err" || rc=$?
	tap_is "$rc" 0 "prepare -d example.net exits 0"
	tap_is "$(grep -c $'\tok\t' "$RIG/prepare.out")" 1 "one ok row for the domain's one user"
	tap_is "$(col "$RIG/prepare.out" indexed cat@example.net)" 350 \
		"prepare indexed all 350 messages, after archiving $(col "$RIG/prepare.out" moved cat@example.net)"
	tap_is "$(years_of cat@example.net INBOX | awk '{ print $1 }' | tr '\n' ' ')" "$YEAR " \
		"prepare archived cat's INBOX"
	tap_like "prepare shows the progress of both steps" \
		"migrate archive: INBOX: 300/300 messages.*migrate index: INBOX: [0-9]+/[0-9]+ messages" \
		"$(tr '\n' ' ' <"$RIG/prepare.err")"
	xdir=$(rig_maildir dest cat@example.net)/xapian-indexes
	if [ -n "$(find "$xdir" -type f 2>/dev/null | head -1)" ]; then
		tap_ok "fts-xapian wrote its index ($(du -sh "$xdir" | cut -f1))"
	else
		tap_fail "no fts-xapian index files in $xdir"
	fi
	res=$(dadm search -u cat@example.net body "$NEEDLE" 2>&1)
	tap_is "$(wc -l <<<"$res")" 1 "doveadm search body finds the one message with the word"
	mb_guid=$(awk '{ print $1 }' <<<"$res")
	tap_is "$(dadm mailbox status -u cat@example.net guid "ARCHIVE/$FIRST" 2>&1)" \
		"ARCHIVE/$FIRST guid=$mb_guid" "... in ARCHIVE/$FIRST"
	tap_is "$(dadm search -u cat@example.net body nosuchwordanywhere 2>&1 | wc -l)" 0 \
		"a word in no message finds nothing"
	rc=0
	dadm -f tab migrate index -u cat@example.net >"$RIG/index2.out" 2>&1 || rc=$?
	tap_is "$rc $(col "$RIG/index2.out" indexed cat@example.net)" "0 0" \
		"index again has nothing left to index"
	# tens of thousands of messages (fts-xapian indexes about 200 a
	# second here): make soak
	if [ "${T_ARCHIVE_FULL:-0}" = 1 ]; then
		rss_kb=$(rig_doveadm_rss "$RIG/index-big.log" dest \
			migrate index -u ann@example.com)
		tap_diag "$(grep -v Info "$RIG/index-big.log" | tail -3)"
		# most of it fts-xapian's own buffers
		if [ "$rss_kb" -lt 81920 ]; then
			tap_ok "index of $ANN messages peaks at $((rss_kb / 1024)) MB (< 80 MB)"
		else
			tap_fail "index peaked at $((rss_kb / 1024)) MB"
		fi
		tap_like "index reports progress" "migrate index: INBOX: [0-9]+/[0-9]+ messages, [0-9]+ s" \
			"$(cat "$RIG/index-big.log")"
	fi
else
	tap_fail "dovecot-fts-xapian is not installed (make installs it as root)"
fi

# --- bad settings ------------------------------------------------------------------
rig_dest_plugin_set dest migrate_archive_inbox "ARCHIVE/old"
rc=0
dadm migrate archive -u ann@example.com >"$RIG/bad.out" 2>&1 || rc=$?
tap_is "$rc" 78 "a pattern without %{year} exits 78"
tap_like "the error names the setting" "migrate_archive_inbox: 'ARCHIVE/old' has no %\\{year\\}" \
	"$(cat "$RIG/bad.out")"

tap_done
