#!/bin/bash
# t-settings.sh - a bad migrate setting never breaks mail: with an invalid
# migrate_source_port and migrate_retries and a source password file only
# root can read, IMAP and POP3 logins, LMTP delivery and dovecot-lda
# delivery of every user go on, while the doveadm verbs refuse to run
# (exit 78, naming the setting).  The password file is read only when a
# sync runs; dovecot-lda checks only the setting its check reads
# (migrate_domain_dict).  The rig loads the plugins as the shipped
# conf.d/90-migrate.conf does, which is checked too.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-settings

SRC_PW='Src!pass1'
DEST_PW='Dest!pass1'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_pop3_enable dest || exit 1
rig_add_user src alice "$SRC_PW"
rig_add_user dest alice@example.com "$DEST_PW" userdb_migrate_source_user=alice
rig_add_user dest bob@example.com "$DEST_PW"
rig_add_user dest carol@migrating.example "$DEST_PW"

msg() {
	printf 'From: %s@example.org\r\nSubject: %s\r\nMessage-ID: <%s@t-settings>\r\n\r\n%s\r\n' \
		"$1" "$1" "$1" "$1"
}
msg srcmail >"$RIG/src.eml"
rig_imap_append src alice "$SRC_PW" INBOX "$RIG/src.eml" >/dev/null ||
	rig_die "seeding alice failed"
lda() {
	/usr/lib/dovecot/dovecot-lda -c "$(rig_conf dest)" -d "$1" \
		-f sender@example.org <"$2" >"$RIG/lda.out" 2>&1
}
in_maildir() {
	# messages of USER holding WORD
	grep -l "$2" "$(rig_maildir dest "$1")"/{new,cur}/* 2>/dev/null | wc -l
}
# doveadm migrate ARGS: exit code in MIG_RC, stdout and stderr in mig.out
mig() {
	MIG_RC=0
	rig_doveadm dest migrate "$@" >"$RIG/mig.out" 2>&1 || MIG_RC=$?
}

# --- the shipped layout --------------------------------------------------------
# conf.d/90-migrate.conf loads the engine for doveadm and the delivery
# module for dovecot-lda, nothing for IMAP, POP3 or LMTP; the rig loads
# them the same way
cat >"$RIG/shipped.conf" <<EOF
mail_plugins = quota
!include $RIG_SRCDIR/conf.d/90-migrate.conf
EOF
for proto in imap pop3 lmtp; do
	tap_is "$(doveconf -c "$RIG/shipped.conf" -f protocol=$proto -h mail_plugins 2>&1)" \
		quota "conf.d/90-migrate.conf loads no migrate plugin for $proto"
	tap_is "$(doveconf -c "$(rig_conf dest)" -f protocol=$proto -h mail_plugins 2>&1 |
		grep -c migrate)" 0 "... nor does the rig"
done
tap_is "$(doveconf -c "$RIG/shipped.conf" -f protocol=doveadm -h mail_plugins 2>&1)" \
	"quota migrate" "... the engine for doveadm, after the global plugins"
tap_is "$(doveconf -c "$RIG/shipped.conf" -f protocol=lda -h mail_plugins 2>&1)" \
	"quota migrate_lda" "... the delivery module for dovecot-lda alone"
tap_like "the rig loads them the same way (doveadm)" " migrate$" \
	"$(doveconf -c "$(rig_conf dest)" -f protocol=doveadm -h mail_plugins 2>&1)"
tap_like "... (lda)" " migrate_lda$" \
	"$(doveconf -c "$(rig_conf dest)" -f protocol=lda -h mail_plugins 2>&1)"

# --- broken settings -----------------------------------------------------------
MX_PORT=$(rig_free_port)
tap_run "domain start migrating.example" \
	rig_doveadm dest migrate domain start --old-mx "127.0.0.1:$MX_PORT" migrating.example
printf '%s\n' "$SRC_PW" >"$RIG/root.pw"
chown root:root "$RIG/root.pw"
chmod 600 "$RIG/root.pw"
rig_secret_input "$RIG/root.pw"
rig_dest_plugin_set dest migrate_source_host 127.0.0.1
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_source_port abc
rig_dest_plugin_set dest migrate_retries many
rig_dest_plugin_set dest migrate_source_password_file "$RIG/root.pw"

tap_is "$(rig_imap dest bob@example.com "$DEST_PW" count INBOX 2>&1)" 0 \
	"bad migrate settings: IMAP login works"
tap_is "$(rig_pop3 dest bob@example.com "$DEST_PW" 2>&1)" 0 "... POP3 login works"
msg lmtpmail >"$RIG/lmtp.eml"
rc=0; rig_deliver dest bob@example.com "$RIG/lmtp.eml" >"$RIG/lmtp.out" 2>&1 || rc=$?
tap_is "$rc" 0 "... LMTP delivers"
tap_is "$(in_maildir bob@example.com lmtpmail)" 1 "... into the mailbox"
msg ldamail >"$RIG/lda.eml"
rc=0; lda bob@example.com "$RIG/lda.eml" || rc=$?
tap_is "$rc" 0 "... dovecot-lda delivers"
tap_is "$(in_maildir bob@example.com ldamail)" 1 "... into the mailbox"
tap_is "$(rig_pop3 dest bob@example.com "$DEST_PW" 2>&1)" 2 \
	"... and POP3 shows both messages"
rc=0; lda carol@migrating.example "$RIG/lda.eml" || rc=$?
tap_is "$rc" 75 "... dovecot-lda still defers a migrating domain (exit 75)"
tap_like "... as the domain's deferral" \
	"migrate: Delivery deferred: migrating.example is migrating" \
	"$(cat "$(rig_log dest)")"

mig -u alice@example.com
tap_is "$MIG_RC" 78 "doveadm migrate refuses the bad settings (exit 78)"
tap_like "... naming the setting" "migrate_source_port: Invalid number 'abc'" \
	"$(cat "$RIG/mig.out")"
mig archive -u alice@example.com
tap_is "$MIG_RC" 78 "doveadm migrate archive refuses them too (exit 78)"
tap_like "... naming the setting" "migrate_source_port: Invalid number 'abc'" \
	"$(cat "$RIG/mig.out")"

# --- the password file is read only by a sync ---------------------------------
rig_dest_plugin_set dest migrate_source_port "$(rig_port src)"
rig_dest_plugin_set dest migrate_retries 0
mig archive -u alice@example.com
tap_is "$MIG_RC" 0 "archive never reads the root-only password file"
mig -u alice@example.com
tap_is "$MIG_RC" 78 "a sync reads it, as the mail user: exit 78"
tap_like "... naming the setting" \
	"migrate_source_password_file: open\(.*root.pw\) failed: Permission denied" \
	"$(cat "$RIG/mig.out")"
chown "${RIG_MAIL_USER:-nobody}" "$RIG/root.pw"
chmod 400 "$RIG/root.pw"
mig -u alice@example.com
tap_is "$MIG_RC" 0 "readable by the mail user: the sync runs"
tap_is "$(in_maildir alice@example.com srcmail)" 1 "... and copies the message"
# batch hands its processes the template's password: the file, root-only
# again, is never opened
chown root:root "$RIG/root.pw"
chmod 600 "$RIG/root.pw"
printf '127.0.0.1:%s;alice;%s;mx.example.com;alice@example.com;Str0ng!dest\n' \
	"$(rig_port src)" "$SRC_PW" >"$RIG/template.txt"
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$RIG/template.txt"
mig batch -j 1 "$RIG/template.txt"
tap_is "$MIG_RC" 0 "batch syncs with the template's password, the file unread"

# --- dovecot-lda checks what its check reads ----------------------------------
rig_dest_plugin_set dest migrate_domain_dict "nosuchdriver:x"
rc=0; lda bob@example.com "$RIG/lda.eml" || rc=$?
tap_is "$rc" 75 "a bad migrate_domain_dict: dovecot-lda defers (exit 75)"
tap_like "... naming the setting" "migrate: Invalid settings: migrate_domain_dict=nosuchdriver:x" \
	"$(cat "$(rig_log dest)")"
tap_is "$(rig_imap dest bob@example.com "$DEST_PW" count INBOX 2>&1)" 2 \
	"... while IMAP logins go on"
rc=0; rig_deliver dest bob@example.com "$RIG/lmtp.eml" >"$RIG/lmtp.out" 2>&1 || rc=$?
tap_is "$rc" 0 "... and LMTP delivers"

tap_done
