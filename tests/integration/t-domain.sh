#!/bin/bash
# t-domain.sh - a domain's migration through its phases: start (old MX
# resolved and kept), mirror syncs by batch, cutover, the final sync (new
# mail only, nothing deleted or re-flagged, nothing copied twice, local
# mail untouched, --maxage), a mirror refused after cutover, and finish
# (the stored source credentials removed, syncs refused, history kept).

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-domain

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Src!pass1'
DEST_PW='Dest!pass1'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_dest_plugin_set dest migrate_source_ssl no
rig_add_user src alice "$SRC_PW"
rig_add_user src carol "$SRC_PW"
rig_add_user dest alice@example.com "$DEST_PW"
rig_add_user dest carol@example.com "$DEST_PW"
rig_add_user dest bob@other.example "$DEST_PW"
export SRC_IMAP_PASSWORD=$SRC_PW
for u in alice carol; do
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user "$u" \
		--password-env SRC_IMAP_PASSWORD --seed 11 --messages 60 \
		--max-size 30K --connections 1 >/dev/null || rig_die "gen-corpus"
done
TEMPLATE=$RIG/template.txt
for u in alice carol; do
	printf '127.0.0.1:%s;%s;%s;mx.example.com;%s@example.com;Str0ng!dest\n' \
		"$(rig_port src)" "$u" "$SRC_PW" "$u"
done >"$TEMPLATE"
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$TEMPLATE"

dom() { rig_doveadm dest migrate domain "$@"; }
src() { rig_imap src "$1" "$SRC_PW" "${@:2}"; }
dst() { rig_imap dest "$1@example.com" "$DEST_PW" "${@:2}"; }
# doveadm migrate ARGS; the row's fields in MIG[name], exit code in MIG_RC
declare -A MIG
mig() {
	local out=$RIG/mig.out h v i
	MIG_RC=0
	rig_doveadm dest migrate "$@" >"$out" 2>"$RIG/mig.err" || MIG_RC=$?
	MIG=()
	read -r -a h < <(sed -n 1p "$out")
	read -r -a v < <(sed -n 2p "$out")
	for i in "${!h[@]}"; do MIG[${h[$i]}]=${v[$i]:-}; done
}
msg() {
	printf 'From: %s@example.org\r\nSubject: %s\r\nMessage-ID: <%s@t-domain>\r\n\r\n%s\r\n' \
		"$1" "$1" "$1" "$1"
}

# --- phases in the wrong order are refused --------------------------------------
rc=0; dom cutover example.com >/dev/null 2>&1 || rc=$?
tap_is "$rc" 64 "cutover of a domain that never started is refused"
rc=0; dom start example.com >/dev/null 2>&1 || rc=$?
tap_like "start without --old-mx is refused" "^(64|1)$" "$rc"

# --- start ------------------------------------------------------------------------
MX_PORT=$(rig_free_port)
tap_run "domain start example.com --old-mx 127.0.0.1:$MX_PORT" \
	dom start --old-mx "127.0.0.1:$MX_PORT" example.com
dom status >"$RIG/status.out" 2>&1
tap_like "status: migrating, with the resolved old MX" \
	"example.com +migrating .*127.0.0.1:$MX_PORT \(127.0.0.1\)" "$(cat "$RIG/status.out")"
# the accounts' results go in there too: root writes it, the mail processes'
# group (mail_gid, here nogroup; dovecot-lda reads it) reads it, no one else
tap_is "$(stat -c '%a %U %G' "$RIG/dest/state/migrate/domains")" "640 root nogroup" \
	"the domain dict file is 0640 root:<mail_gid>"
rc=0; dom start --old-mx 127.0.0.1:25 example.com >/dev/null 2>&1 || rc=$?
tap_is "$rc" 64 "a second start is refused"

# --- dovecot-lda while migrating -------------------------------------------------
lda() {
	/usr/lib/dovecot/dovecot-lda -c "$(rig_conf dest)" -d "$1" \
		-f sender@example.org <"$2" >"$RIG/lda.out" 2>&1
}
msg ldamail >"$RIG/lda.eml"
rc=0; lda alice@example.com "$RIG/lda.eml" || rc=$?
tap_is "$rc" 75 "dovecot-lda defers mail to the migrating domain (exit 75)"
tap_is "$(grep -rl ldamail "$(rig_home dest alice@example.com)" 2>/dev/null | wc -l)" 0 \
	"... and stores nothing"
tap_like "... logged as a named event" "migrate: Delivery deferred: example.com is migrating" \
	"$(cat "$(rig_log dest)")"
rc=0; lda bob@other.example "$RIG/lda.eml" || rc=$?
tap_is "$rc" 0 "another domain's mail is delivered as usual"

# a bad migrate setting of a user: IMAP never reads the migrate settings,
# dovecot-lda (migrate_lda) reads only migrate_domain_dict, and refuses to
# deliver as if a bad one were not there (more in t-settings)
rig_add_user dest dora@other.example "$DEST_PW" userdb_migrate_workers=lots
rig_add_user dest erin@other.example "$DEST_PW" userdb_migrate_domain_dict=nosuchdriver:x
tap_is "$(rig_imap dest dora@other.example "$DEST_PW" count INBOX)" 0 \
	"a user with a bad migrate setting still logs in over IMAP"
rc=0; lda dora@other.example "$RIG/lda.eml" || rc=$?
tap_is "$rc" 0 "... and dovecot-lda, which does not read it, delivers"
rc=0; lda erin@other.example "$RIG/lda.eml" || rc=$?
tap_is "$rc" 75 "a bad migrate_domain_dict: dovecot-lda defers the user's mail (exit 75)"
tap_like "... naming the setting" "migrate: Invalid settings: migrate_domain_dict=nosuchdriver:x: Unknown dict module" \
	"$(cat "$(rig_log dest)")"
# the lda module declares its binary: an IMAP process refuses to load it
rig_conf_add dest 'protocol imap {
  mail_plugins = $mail_plugins migrate_lda
}'
rc=0; rig_imap dest bob@other.example "$DEST_PW" count INBOX >/dev/null 2>&1 || rc=$?
tap_like "migrate_lda loaded by IMAP is refused" "intended to be used only by lda binary" \
	"$(cat "$(rig_log dest)")"
sed -i '/^protocol imap {$/,/^}$/d' "$RIG/dest/extra.conf"
rig_reload dest

# --- LMTP while migrating: relayed to the old MX by Dovecot's LMTP proxy --------
# the shipped relay passdb goes first, lmtp_proxy on
rig_lmtp_relay dest "file:$RIG/dest/state/migrate/domains" ||
	rig_die "reload with the relay passdb failed"
SINK=$RIG/sink
"$PY" "$T/smtp-sink.py" --port "$MX_PORT" --dir "$SINK" --pidfile "$RIG/sink.pid" &
for _ in $(seq 50); do [ -s "$RIG/sink.pid" ] && break; sleep 0.1; done
rig_on_exit 'kill $(cat "$RIG/sink.pid") 2>/dev/null'
msg relayed >"$RIG/relay.eml"
rc=0
rig_deliver dest alice@example.com "$RIG/relay.eml" --rcpt bob@other.example \
	>"$RIG/lmtp.out" 2>&1 || rc=$?
tap_is "$rc" 0 "LMTP accepts a transaction for a migrating and another domain"
tap_like "the migrating domain's recipient went to the old MX" \
	"rcpt <alice@example.com>" "$(cat "$SINK"/*.env 2>/dev/null)"
tap_is "$(grep -l relayed "$(rig_maildir dest alice@example.com)"/{new,cur}/* 2>/dev/null | wc -l)" 0 \
	"... and was not stored here"
tap_is "$(grep -l relayed "$(rig_maildir dest bob@other.example)"/{new,cur}/* 2>/dev/null | wc -l)" 1 \
	"the other domain's recipient was delivered here"
rc=0; dst alice count INBOX >/dev/null 2>&1 || rc=$?
tap_is "$rc" 0 "IMAP logins of the migrating domain are not relayed"
kill "$(cat "$RIG/sink.pid")"; sleep 0.3
rc=0
rig_deliver dest alice@example.com "$RIG/relay.eml" >"$RIG/lmtp.out" 2>&1 || rc=$?
tap_is "$rc" 75 "old MX down: a temporary failure for the sender to retry, not a bounce"
tap_like "... 451" "451" "$(cat "$RIG/lmtp.out")"
tap_is "$(grep -l relayed "$(rig_maildir dest alice@example.com)"/{new,cur}/* 2>/dev/null | wc -l)" 0 \
	"... and nothing was stored here"

# --- mirror syncs ------------------------------------------------------------------
rc=0
rig_doveadm dest migrate batch "$TEMPLATE" >"$RIG/batch.out" 2>&1 || rc=$?
tap_is "$rc" 0 "batch mirrors both accounts"
dom status example.com >"$RIG/status.out" 2>&1
tap_like "status lists the accounts with their last result" \
	"example.com +migrating +alice@example.com .* ok +[0-9]+" "$(cat "$RIG/status.out")"
mig -u alice@example.com
tap_is "${MIG[mode]}" mirror "before cutover a sync is a mirror"

# --- cutover, then changes on both sides -----------------------------------------
tap_run "domain cutover example.com" dom cutover example.com
msg lmtpafter >"$RIG/lmtp2.eml"
rc=0; rig_deliver dest carol@example.com "$RIG/lmtp2.eml" >"$RIG/lmtp.out" 2>&1 || rc=$?
tap_is "$rc" 0 "after cutover LMTP delivers the domain here again"
tap_is "$(grep -l lmtpafter "$(rig_maildir dest carol@example.com)"/{new,cur}/* 2>/dev/null | wc -l)" 1 "... into the mailbox"
msg ldaafter >"$RIG/lda2.eml"
rc=0; lda carol@example.com "$RIG/lda2.eml" || rc=$?
tap_is "$rc" 0 "after cutover dovecot-lda delivers to the domain again"
tap_is "$(grep -l ldaafter "$(rig_maildir dest carol@example.com)"/{new,cur}/* 2>/dev/null | wc -l)" 1 "... into the mailbox"
# at the source: 3 new in INBOX, 1 in a new folder, 2 expunged, 2 re-flagged
for i in 1 2 3; do msg "new$i" >"$RIG/new$i.eml"; done
msg newfolder >"$RIG/nf.eml"
msg olddated >"$RIG/od.eml"
src alice append INBOX "$RIG/new1.eml" "$RIG/new2.eml" "$RIG/new3.eml" >/dev/null
src alice append --create After "$RIG/nf.eml" >/dev/null
src alice append --date "14-Mar-2015 10:00:00 +0000" Work "$RIG/od.eml" >/dev/null
first_uids=$(src alice uids INBOX | head -n 4 | paste -sd, -)
exp_uids=$(echo "$first_uids" | cut -d, -f1,2)
flag_uids=$(echo "$first_uids" | cut -d, -f3,4)
src alice expunge INBOX --uids "$exp_uids" >/dev/null
src alice set-flags INBOX --uids "$flag_uids" --flags '\Flagged \Answered' >/dev/null
# at the destination: local delivery, and the user deletes one copied message
msg localmail >"$RIG/local.eml"
rig_deliver dest alice@example.com "$RIG/local.eml" >/dev/null 2>&1
before=$(dst alice count INBOX)
flags_before=$(dst alice fetch-hash INBOX --uids "$flag_uids" | awk '{print $5, $6, $7}')
dst alice expunge INBOX --uids "$(dst alice uids INBOX | sed -n 10p)" >/dev/null

mig -u alice@example.com
tap_is "$MIG_RC" 0 "the final sync exits 0"
tap_is "${MIG[mode]}" final "after cutover the sync is the final one"
tap_is "${MIG[copied]}" 5 "... copies the 5 new messages (3 in INBOX, 1 in a new folder, 1 dated 2015 in Work)"
tap_like "the old-dated one is there" "olddated" "$(for u in $(dst alice uids Work); do dst alice fetch Work "$u"; done 2>/dev/null | grep -a '^Subject: olddated')"
tap_is "${MIG[deleted]}" 0 "... deletes nothing"
tap_is "${MIG[updated]}" 0 "... changes no flags"
after=$(dst alice count INBOX)
# before: +1 local; then -1 deleted by the user; then +3 new
tap_is "$after" "$((before - 1 + 3))" "INBOX: messages expunged at the source stay, the user's deletion is not undone"
tap_like "the new folder arrived" "After" "$(dst alice list)"
tap_like "locally delivered mail is untouched" "localmail" \
	"$(for u in $(dst alice uids INBOX); do dst alice fetch INBOX "$u"; done 2>/dev/null | grep -a '^Subject: localmail')"
flags_after=$(dst alice fetch-hash INBOX --uids "$flag_uids" | awk '{print $5, $6, $7}')
tap_is "$flags_after" "$flags_before" "flags changed at the source were not copied"
tap_is "$(dst alice fetch-hash INBOX --uids "$flag_uids" | wc -l)" 2 "... (both messages checked)"

mig -u alice@example.com
tap_is "${MIG[copied]}" 0 "a second final sync copies nothing"

count_before=$(dst alice count INBOX)
mig --mirror -u alice@example.com
tap_is "$MIG_RC" 78 "a mirror sync after cutover is refused (78)"
tap_is "$(dst alice count INBOX)" "$count_before" "... and changes nothing"
tap_like "... saying why" "past cutover.*deletes nothing" "$(cat "$RIG/mig.err")"

# --maxage: only what was received in the window, still not twice
msg oldmail >"$RIG/old.eml"
src carol append --date "$(date -u -d '100 days ago' '+%d-%b-%Y %H:%M:%S +0000')" \
	INBOX "$RIG/old.eml" >/dev/null
mig --maxage 30 -u carol@example.com
tap_is "$MIG_RC" 0 "final sync with --maxage 30 exits 0"
tap_is "${MIG[copied]}" 0 "... and leaves out a new message received 100 days ago"
mig --maxage 3650 -u carol@example.com
tap_is "${MIG[copied]}" 1 "--maxage 3650 copies it, and only it (nothing twice)"
mig -u carol@example.com
tap_is "${MIG[copied]}" 0 "the plain final sync then has nothing left"

# --- finish -----------------------------------------------------------------------
STORE=$RIG/dest/state/migrate/credentials
tap_is "$(find "$STORE" -type f | wc -l)" 2 "before finish the store has the 2 accounts"
tap_run "domain finish example.com" dom finish example.com
tap_is "$(find "$STORE" -type f | wc -l)" 0 "finish deleted the stored source credentials"
mig -u alice@example.com
tap_is "$MIG_RC" 78 "after finish a sync is refused"
# no source password of the domain left on our side (the template is the
# customer's file, the source users file the old provider's)
hits=$(grep -rlF --exclude=template.txt --exclude-dir=src -f <(printf '%s\n' "$SRC_PW") "$RIG" 2>/dev/null)
tap_is "$hits" "" "after finish no source password of the domain is on disk"
dom status >"$RIG/status.out" 2>&1
tap_like "status keeps the history" "example.com +finished +[0-9-]+ [0-9:]+ +[0-9-]+ [0-9:]+ +[0-9-]+ [0-9:]+" "$(cat "$RIG/status.out")"

# --- a finished domain stays closed ------------------------------------------------
rc=0
rig_doveadm dest migrate batch "$TEMPLATE" >"$RIG/batch3.out" 2>"$RIG/batch3.err" || rc=$?
tap_is "$rc" 78 "batch refuses a finished domain (78)"
tap_like "... saying why and how to start again" \
	"example.com is finished.*domain start --force" "$(cat "$RIG/batch3.err")"
tap_is "$(find "$STORE" -type f | wc -l)" 0 "... and stores no credentials"
rc=0
rig_doveadm dest migrate batch -n "$TEMPLATE" >/dev/null 2>&1 || rc=$?
tap_is "$rc" 78 "... a dry run too"
rc=0; dom start --old-mx "127.0.0.1:$MX_PORT" example.com >/dev/null 2>"$RIG/start.err" || rc=$?
tap_is "$rc" 64 "domain start of a finished domain needs --force (64)"
tap_like "... and says so" "example.com is finished.*--force" "$(cat "$RIG/start.err")"
tap_run "domain start --force example.com migrates it again" \
	dom start --force --old-mx "127.0.0.1:$MX_PORT" example.com
dom status >"$RIG/status.out" 2>&1
tap_like "... in phase migrating" "example.com +migrating " "$(cat "$RIG/status.out")"

tap_done
