#!/bin/bash
# t-accounts-sql.sh - doveadm migrate accounts into PostgreSQL: a private
# PostgreSQL server with the shipped schema, a private Dovecot whose sql
# passdb and userdb use the shipped queries; the template's 40 accounts log in
# with their passwords and quotas; a second run changes nothing.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-accounts-sql

PY=$RIG_PY
T=$RIG_TOOLS
if ! rig_start_postgres; then
	tap_fail "postgresql and dovecot-pgsql are not installed (make installs them as root)"
	tap_done
	exit
fi
psql() { rig_psql "$@"; }
PGPORT=$RIG_PG_PORT
psql -U dovecot -d mail -f "$MIGRATE_SRCDIR/conf.d/dovecot-migrate-accounts.sql" ||
	rig_die "loading the schema failed"
tap_ok "a private PostgreSQL on port $PGPORT with the shipped schema"

# --- a private Dovecot with the shipped queries ----------------------------------
rig_start_dest dest || exit 1
SQLCONF=$RIG/accounts-sql.conf.ext
rig_pg_conf "$MIGRATE_SRCDIR/conf.d/dovecot-migrate-accounts-sql.conf.ext" "$SQLCONF"
rig_conf_add dest "passdb {
  driver = sql
  args = $SQLCONF
}
userdb {
  driver = sql
  args = $SQLCONF
  default_fields = home=$RIG/dest/mail/%u
}" || rig_die "the sql passdb/userdb config was refused"

acc() { rig_doveadm dest -o "plugin/migrate_accounts_sql=$SQLCONF" migrate accounts "$@"; }
dump() { psql -U dovecot -d mail -c "SELECT * FROM migrate_accounts ORDER BY username"; }

pw() { printf 'Senha,%02d;Forte!x' "$1"; }
TEMPLATE=$RIG/contas.csv
{
	printf 'usuario;dominio;senha;cota;tipo;nome completo;idioma;fuso horario;formato de data\r\n'
	for i in $(seq 1 40); do
		case $((i % 2)) in
		0) quota=2,5 ;;
		1) quota=5 ;;
		esac
		printf 'sql%02d;cliente.example;"%s";%s;%d;Maria %02d;pt-br;America/Sao_Paulo;dd/mm/aaaa\r\n' \
			"$i" "$(pw "$i")" "$quota" $((i % 2)) "$i"
	done
} >"$TEMPLATE"
for i in $(seq 1 40); do
	rig_secret "$(pw "$i")" "contas.csv row $i"
done
rig_secret_input "$TEMPLATE"

rc=0
acc "$TEMPLATE" >"$RIG/run1.out" 2>"$RIG/run1.err" || rc=$?
tap_is "$rc" 0 "accounts into PostgreSQL exits 0"
tap_is "$(grep -c ' created ' "$RIG/run1.out")" 40 "40 accounts created"
tap_is "$(psql -U dovecot -d mail -c "SELECT count(*) FROM migrate_accounts WHERE password LIKE '{ARGON2ID}\$argon2id\$%'")" 40 \
	"40 rows with ARGON2ID hashes"
ok=0
for i in $(seq 1 40); do
	if IMAP_PASSWORD=$(pw "$i") "$PY" "$T/imaptool.py" --port "$(rig_port dest)" \
		--user "$(printf 'sql%02d@cliente.example' "$i")" capability >/dev/null 2>&1; then
		ok=$((ok + 1))
	else
		break
	fi
done
tap_is "$ok" 40 "each logs in over IMAP through the sql passdb"
q=$(rig_doveadm dest quota get -u sql02@cliente.example 2>&1 | awk '$3 == "STORAGE" { print $5 }')
tap_is "$q" 2621440 "\"2,5\" GB: doveadm quota get shows 2621440 kB (2560 MiB)"
tap_like "the userdb fields come from the table" "account_type[[:space:]]+1.*language[[:space:]]+pt-br" \
	"$(rig_doveadm dest user sql01@cliente.example 2>&1 | tr '\n' ' ')"

before=$(dump | sha256sum)
rc=0
acc "$TEMPLATE" >"$RIG/run2.out" 2>&1 || rc=$?
tap_is "$rc $(grep -c ' unchanged ' "$RIG/run2.out")" "0 40" "the same file again: 40 unchanged"
tap_is "$(dump | sha256sum)" "$before" "the table is unchanged"

sed 's/^sql03;\(.*\);5;1;/sql03;\1;8;1;/' "$TEMPLATE" >"$RIG/changed.csv"
rig_secret_input "$RIG/changed.csv"
acc --update "$RIG/changed.csv" >"$RIG/run3.out" 2>&1
tap_like "--update rewrites a changed quota" "sql03@cliente.example +4 +updated +differs: quota_rule" \
	"$(cat "$RIG/run3.out")"
tap_is "$(psql -U dovecot -d mail -c "SELECT quota_mib FROM migrate_accounts WHERE username = 'sql03@cliente.example'")" 8192 \
	"... in the table"

# --- a date format with %, and addresses tried before their accounts existed --
# The sql userdb hands the table's values over as they are; the mail
# process then expands % in them as plugin settings: the shipped
# user_query doubles each %.  The auth cache (recommended with ARGON2ID)
# holds "unknown user" for an address tried before its account existed:
# migrate accounts flushes the entries of what it wrote.
rig_conf_add dest "auth_cache_size = 1M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 1 hour" || rig_die "auth cache settings refused"
{
	printf 'usuario;dominio;senha;cota;tipo;nome completo;idioma;fuso horario;formato de data\n'
	printf 'sqlpct01;cliente.example;Pct!pass01;1;1;Ana;pt-br;America/Sao_Paulo;%%d/%%m/%%Y\n'
	printf 'sqlpct02;cliente.example;Pct!pass02;1;0;Rui;pt-br;America/Sao_Paulo;%%w\n'
} >"$RIG/pct.csv"
rig_secret 'Pct!pass01' "pct.csv row 1"
rig_secret 'Pct!pass02' "pct.csv row 2"
rig_secret_input "$RIG/pct.csv"
rig_doveadm dest user sqlpct01@cliente.example >/dev/null 2>&1
if rig_imap dest sqlpct01@cliente.example 'Pct!pass01' capability >/dev/null 2>&1; then
	tap_fail "sqlpct01 logs in before it exists"
fi
rc=0
acc "$RIG/pct.csv" >"$RIG/pct.out" 2>&1 || rc=$?
tap_is "$rc" 0 "a date format with %, addresses tried before: exit 0"
tap_like "... both created and looked up" "sqlpct01@cliente.example +2 +created.*sqlpct02@cliente.example +3 +created" \
	"$(tr '\n' ' ' <"$RIG/pct.out")"
tap_is "$(psql -U dovecot -d mail -c "SELECT date_format FROM migrate_accounts WHERE username = 'sqlpct01@cliente.example'")" \
	'%d/%m/%Y' "the table holds the template's value"
tap_login "the account logs in at once (the cached failure was flushed)" dest sqlpct01@cliente.example 'Pct!pass01'
printf 'Subject: welcome\n\nhello\n' >"$RIG/welcome.eml"
tap_run "... and receives mail over LMTP" rig_deliver dest sqlpct01@cliente.example "$RIG/welcome.eml"
tap_like "doveadm user shows it as the userdb carries it to the mail process (each % doubled)" \
	"date_format[[:space:]]+%%d/%%m/%%Y" "$(rig_doveadm dest user sqlpct01@cliente.example 2>&1)"
tap_like "%w stays %w" "date_format[[:space:]]+%%w" "$(rig_doveadm dest user sqlpct02@cliente.example 2>&1)"

leaks=0
for i in $(seq 1 40); do
	if dump | grep -qFf <(pw "$i"; echo) ||
	   grep -qFf <(pw "$i"; echo) "$RIG"/run*.out "$RIG"/run*.err "$(rig_log dest)" "$PG/log"; then
		leaks=$((leaks + 1))
	fi
done
tap_is "$leaks" 0 "no template password in the table, the output or the logs"

tap_done
