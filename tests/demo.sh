#!/bin/bash
# demo.sh BUILDDIR - a whole migration of one account, for a person to watch:
# a private "old provider" Dovecot with generated mail (Portuguese folder
# names included), a private destination Dovecot with our plugin, the
# account created from an accounts template (`doveadm migrate accounts`),
# a real `doveadm migrate`, run twice, and `doveadm migrate prepare`
# (per-year archive folders, full-text index).  Everything stays in a temp dir it names;
# DEMO_CLEAN=1 removes it at the end.  DEMO_MESSAGES sets the corpus size.

set -u
export MIGRATE_BUILDDIR=$(cd "${1:-.}" && pwd)
. "$(dirname "$0")/lib/rig.sh"

[ "${DEMO_CLEAN:-0}" = 1 ] || RIG_KEEP=1
rig_init demo

N=${DEMO_MESSAGES:-2000}
SRC_PW='Old;Provider=1'
DEST_PW='New!Provider2'
USER=joao@cliente.example

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting the old provider's IMAP server and our destination (private, 127.0.0.1)"
rig_start_source old || exit 1
[ -e /usr/lib/dovecot/modules/lib21_fts_xapian_plugin.so ] &&
	RIG_EXTRA_MAIL_PLUGINS=(fts fts_xapian)
rig_start_dest new || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "build first: the migrate modules are missing in $MIGRATE_BUILDDIR"
rig_add_user old joao "$SRC_PW"
echo "old provider: 127.0.0.1:$(rig_port old)   destination: 127.0.0.1:$(rig_port new)"

say "doveadm migrate accounts contas.csv   (the customer's accounts template)"
printf 'usuario;dominio;senha;cota;tipo;nome completo;idioma;fuso horario;formato de data\n' >"$RIG/contas.csv"
printf 'joao;cliente.example;"%s";2,5;1;Jo\xc3\xa3o da Silva;pt-br;America/Sao_Paulo;dd/mm/aaaa\n' \
	"$DEST_PW" >>"$RIG/contas.csv"
sed -e "s/\"[^\"]*\"/\"********\"/" -e "s/^/  /" "$RIG/contas.csv"
rig_doveadm new -o "plugin/migrate_accounts_passwd_file=$(rig_users_file new)" \
	migrate accounts "$RIG/contas.csv"
# which source account it is (the sync template gives it too)
sed -i "s|^$USER:\(.*\)\$|$USER:\1 userdb_migrate_source_user=joao|" "$(rig_users_file new)"
sleep 1.1
rig_doveadm new user "$USER" | sed 's/^/  /'

# the source password lives in a file only the mail user can read
rig_migrate_source new old "$SRC_PW"
if [ "${#RIG_EXTRA_MAIL_PLUGINS[@]}" -gt 0 ]; then
	rig_dest_plugin_set new fts xapian
	rig_dest_plugin_set new fts_xapian "partial=3 full=20 verbose=0"
fi

say "Filling the old mailbox: $N generated messages, and folders named the Brazilian way"
SRC_IMAP_PASSWORD=$SRC_PW "$RIG_PY" "$RIG_TOOLS/gen-corpus.py" \
	--port "$(rig_port old)" --user joao --password-env SRC_IMAP_PASSWORD \
	--seed 2026 --messages "$N" --max-size 2M || exit 1
rig_imap old joao "$SRC_PW" rename-folder Sent 'Itens Enviados' >/dev/null
rig_imap old joao "$SRC_PW" rename-folder Trash Lixeira >/dev/null
rig_imap old joao "$SRC_PW" rename-folder Drafts Rascunhos >/dev/null
rig_imap old joao "$SRC_PW" list | sed 's/^/  old: /'

say "doveadm migrate -u $USER   (the first full copy)"
rig_doveadm new migrate -u "$USER"
echo "exit code: $?"

say "Folders at the destination (Itens Enviados -> Sent, Lixeira -> Trash, Rascunhos -> Drafts)"
rig_imap new "$USER" "$DEST_PW" list --long | sed 's/^/  new: /'

say "Checking both sides independently over IMAP (content hash, flags, dates)"
SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW "$RIG_PY" \
	"$RIG_TOOLS/imap-compare.py" --src-port "$(rig_port old)" --src-user joao \
	--dest-port "$(rig_port new)" --dest-user "$USER" \
	--map 'Itens Enviados=Sent' --map 'Lixeira=Trash' --map 'Rascunhos=Drafts' \
	| tail -n 1

say "Meanwhile at the old provider: 3 new messages, one deleted, one re-flagged"
for i in 1 2 3; do
	printf 'From: cliente@example.org\r\nSubject: nova %s\r\n\r\nMensagem nova %s\r\n' "$i" "$i" >"$RIG/new$i.eml"
done
rig_imap old joao "$SRC_PW" append INBOX "$RIG"/new{1..3}.eml >/dev/null
rig_imap old joao "$SRC_PW" expunge Work --first 1 >/dev/null
rig_imap old joao "$SRC_PW" set-flags INBOX --first 1 --flags '\Flagged \Seen' >/dev/null

say "doveadm migrate -n -u $USER   (dry run: what would change)"
rig_doveadm new -f table migrate -n -u "$USER"

say "doveadm migrate -u $USER   (the re-run: only the changes move)"
rig_doveadm new -f table migrate -u "$USER"

say "doveadm -f json migrate -u $USER   (nothing changed: nothing is read or written)"
rig_doveadm new -f json migrate -u "$USER"
echo

say "doveadm migrate prepare -u $USER   (INBOX/Sent above a threshold of 300 for the demo: per-year ARCHIVE folders, then the full-text index)"
if [ "${#RIG_EXTRA_MAIL_PLUGINS[@]}" -gt 0 ]; then
	rig_doveadm new -o plugin/migrate_archive_threshold=300 -f table \
		migrate prepare -u "$USER"
	rig_imap new "$USER" "$DEST_PW" list | grep ARCHIVE | sed 's/^/  new: /'
	say "doveadm search -u $USER body nova   (through the fts index)"
	rig_doveadm new search -u "$USER" body nova | sed 's/^/  /'
	say "doveadm migrate -u $USER   (the archived messages stay where they are)"
	rig_doveadm new -f table migrate -u "$USER"
else
	echo "(dovecot-fts-xapian is not installed: skipped)"
fi

say "Done"
if [ "${DEMO_CLEAN:-0}" = 1 ]; then
	echo "Everything is removed on exit (DEMO_CLEAN=1)."
else
	cat <<EOF
Everything is in $RIG (servers stopped on exit). To look around:
  state:        $(rig_home new "$USER")/.migrate/
  dest config:  $(rig_conf new)
  restart:      dovecot -c $(rig_conf old); dovecot -c $(rig_conf new)
Remove it with: rm -rf $RIG
EOF
fi
