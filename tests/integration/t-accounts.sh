#!/bin/bash
# t-accounts.sh - doveadm migrate accounts: the customer's accounts template
# becomes passwd-file entries that a running Dovecot authenticates at once
# (ARGON2ID), with the template's quota; bad rows create nothing; a second
# run changes nothing; no clear-text password anywhere.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-accounts

PY=$RIG_PY
T=$RIG_TOOLS
rig_start_dest dest || exit 1
STORE=$(rig_users_file dest)
# a line of someone else, which must stay as it is
rig_add_user dest other@example.org 'Other!pw1'

acc() { rig_doveadm dest -o "plugin/migrate_accounts_passwd_file=$STORE" migrate accounts "$@"; }
sum() { sha256sum "$1" | cut -d' ' -f1; }

# 40 rows, the way a pt-BR spreadsheet saves them: BOM, CRLF, ';', the
# guide's Portuguese header, quoted fields (a password with a comma and a
# semicolon), accented names, "2,5" and "2.5" GB
pw() { printf 'Senha,%02d;Forte!x' "$1"; }
TEMPLATE=$RIG/contas.csv
{
	printf '\xef\xbb\xbf'
	printf 'usuario;dominio;senha;cota;tipo;nome completo;idioma;fuso horario;formato de data\r\n'
	for i in $(seq 1 40); do
		case $((i % 4)) in
		0) quota=2,5 ;;
		1) quota=5 ;;
		2) quota=2.5 ;;
		3) quota=0.5 ;;
		esac
		printf 'user%02d;cliente.example;"%s";%s;%d;"Jo\xc3\xa3o d'"'"'\xc3\x81vila %02d";pt-br;America/Sao_Paulo;dd/mm/aaaa\r\n' \
			"$i" "$(pw "$i")" "$quota" $((i % 2)) "$i"
	done
} >"$TEMPLATE"
for i in $(seq 1 40); do
	rig_secret "$(pw "$i")" "contas.csv row $i"
done
rig_secret_input "$TEMPLATE"

rc=0
acc --json "$RIG/report.json" --csv "$RIG/report.csv" "$TEMPLATE" >"$RIG/run1.out" 2>"$RIG/run1.err" || rc=$?
tap_is "$rc" 0 "accounts: 40 rows exit 0"
tap_is "$(grep -c ' created ' "$RIG/run1.out")" 40 "40 accounts created"
tap_is "$(grep -c '^user[0-9][0-9]@cliente.example:{ARGON2ID}\$argon2id\$' "$STORE")" 40 \
	"40 passwd-file entries, ARGON2ID"
tap_is "$(grep -c '^other@example.org:' "$STORE")" 1 "the other line is still there"
tap_like "the summary counts them" "40 created, 0 unchanged, 0 updated, 0 skipped" "$(cat "$RIG/run1.err")"

# Dovecot looks at the file at most once a second
sleep 1.1
ok=0
for i in $(seq 1 40); do
	if IMAP_PASSWORD=$(pw "$i") "$PY" "$T/imaptool.py" --port "$(rig_port dest)" \
		--user "$(printf 'user%02d@cliente.example' "$i")" capability >/dev/null 2>&1; then
		ok=$((ok + 1))
	else
		# a failed login costs the auth penalty: stop at the first
		break
	fi
done
tap_is "$ok" 40 "each of the 40 logs in over IMAP with its template password"
if IMAP_PASSWORD='Wrong!pw1' "$PY" "$T/imaptool.py" --port "$(rig_port dest)" \
	--user user01@cliente.example capability >/dev/null 2>&1; then
	tap_fail "a wrong password logs in"
else
	tap_ok "a wrong password does not"
fi
q=$(rig_doveadm dest quota get -u user02@cliente.example 2>&1 | awk '$3 == "STORAGE" { print $5 }')
tap_is "$q" 2621440 "2.5 GB became a quota of 2560 MiB (doveadm quota get: 2621440 kB)"
q=$(rig_doveadm dest quota get -u user03@cliente.example 2>&1 | awk '$3 == "STORAGE" { print $5 }')
tap_is "$q" 524288 "0.5 GB: 512 MiB"
q=$(rig_doveadm dest quota get -u user04@cliente.example 2>&1 | awk '$3 == "STORAGE" { print $5 }')
tap_is "$q" 2621440 "\"2,5\" (decimal comma) GB: 2560 MiB"
fields=$(rig_doveadm dest user user01@cliente.example 2>&1)
tap_like "type, language, time zone and date format are userdb fields" \
	"account_type[[:space:]]+1.*language[[:space:]]+pt-br.*time_zone[[:space:]]+America/Sao_Paulo.*date_format[[:space:]]+dd/mm/aaaa" \
	"$(tr '\n' ' ' <<<"$fields")"
tap_like "the full name is kept (GECOS)" "^user01@cliente.example:[^:]*:::Jo.o d'.vila 01:" \
	"$(grep '^user01@' "$STORE")"
tap_like "the JSON report has every row" '"user":"user40@cliente.example","line":41,"result":"created"' \
	"$(cat "$RIG/report.json")"
tap_is "$(grep -c ',created,' "$RIG/report.csv")" 40 "the CSV report too"
tap_is "$(stat -c '%a %U' "$RIG/report.json" "$RIG/report.csv" | sort -u)" "600 root" \
	"the reports (the customer's user names) are 0600, root's"

# --- twice: nothing changes -----------------------------------------------------
before=$(sum "$STORE")
mtime=$(stat -c %Y.%y "$STORE")
rc=0
acc "$TEMPLATE" >"$RIG/run2.out" 2>"$RIG/run2.err" || rc=$?
tap_is "$rc" 0 "the same file again exits 0"
tap_is "$(grep -c ' unchanged ' "$RIG/run2.out")" 40 "every row is reported unchanged"
tap_is "$(sum "$STORE") $(stat -c %Y.%y "$STORE")" "$before $mtime" \
	"the store is byte-identical and was not rewritten"

# --- an existing account with other values: skipped, or updated -------------------
sed 's/^user05;\(.*\);5;1;/user05;\1;7;1;/' "$TEMPLATE" >"$RIG/changed.csv"
rig_secret_input "$RIG/changed.csv"
acc "$RIG/changed.csv" >"$RIG/run3.out" 2>&1
tap_like "a changed quota is skipped without --update" \
	"user05@cliente.example +6 +skipped +differs: quota_rule" "$(cat "$RIG/run3.out")"
tap_is "$(sum "$STORE")" "$before" "... and the store is unchanged"
acc --update "$RIG/changed.csv" >"$RIG/run4.out" 2>&1
tap_like "--update rewrites it" "user05@cliente.example +6 +updated" "$(cat "$RIG/run4.out")"
tap_like "... with the new quota and the same hash" "storage=7168M" "$(grep '^user05@' "$STORE")"
sleep 1.1
if IMAP_PASSWORD=$(pw 5) "$PY" "$T/imaptool.py" --port "$(rig_port dest)" \
	--user user05@cliente.example capability >/dev/null 2>&1; then
	tap_ok "the updated account still logs in"
else
	tap_fail "the updated account cannot log in"
fi

# a new password: reported, and with --update rehashed
# (the new password from the environment: not on a command line)
NEWPW='Nova!Senha6' awk '{ sub(/^user06;cliente.example;"[^"]*"/, "user06;cliente.example;\"" ENVIRON["NEWPW"] "\"") } 1' \
	"$RIG/changed.csv" >"$RIG/newpw.csv"
rig_secret 'Nova!Senha6' "newpw.csv user06"
rig_secret_input "$RIG/newpw.csv"
acc "$RIG/newpw.csv" >"$RIG/run5.out" 2>&1
tap_like "a changed password is reported" "user06@cliente.example +7 +skipped +differs: password" \
	"$(cat "$RIG/run5.out")"
acc --update "$RIG/newpw.csv" >"$RIG/run6.out" 2>&1
tap_like "--update rehashes it" "user06@cliente.example +7 +updated +differs: password" "$(cat "$RIG/run6.out")"
sleep 1.1
if IMAP_PASSWORD='Nova!Senha6' "$PY" "$T/imaptool.py" --port "$(rig_port dest)" \
	--user user06@cliente.example capability >/dev/null 2>&1; then
	tap_ok "the new password logs in"
else
	tap_fail "the new password does not log in"
fi
before=$(sum "$STORE")

# --- values Dovecot would expand, and a row Dovecot cannot look up ------------
# A date format with % is kept as the template has it: the passwd-file userdb
# and then the mail process's plugin settings both expand %, so it is stored
# with each % doubled twice.  %w would otherwise expand to the login password.
# "ana+x" passes the template's rules, but Dovecot's default
# auth_username_chars has no "+": the lookup after writing finds it failed.
PCT=$RIG/pct.csv
{
	echo 'username;domain;password;quota;type;full name;language;time zone;date format'
	echo 'pct01;cliente.example;Pct!pass01;1;1;Ana Lima;pt-br;America/Sao_Paulo;%d/%m/%Y'
	echo 'pct02;cliente.example;Pct!pass02;1;0;Rui Lima;pt-br;America/Sao_Paulo;%w'
	echo 'ana+x;cliente.example;Pct!pass03;1;0;Ana Xavier;pt-br;America/Sao_Paulo;dd/mm/aaaa'
} >"$PCT"
for i in 1 2 3; do
	rig_secret "Pct!pass0$i" "pct.csv row $i"
done
rig_secret_input "$PCT"
# the mail processes log the userdb fields they are given: a password that
# reached one (%w) would be in the log
rig_conf_add dest "mail_debug = yes" || rig_die "mail_debug refused"
rc=0
acc --json "$RIG/pct.json" --csv "$RIG/pct.csv.report" "$PCT" >"$RIG/pct.out" 2>"$RIG/pct.err" || rc=$?
tap_is "$rc" 65 "a row that Dovecot cannot look up after writing: exit 65"
tap_like "the % rows are created" "pct01@cliente.example +2 +created.*pct02@cliente.example +3 +created" \
	"$(tr '\n' ' ' <"$RIG/pct.out")"
tap_like "the row Dovecot refuses is failed, with the reason" \
	"ana\+x@cliente.example +4 +failed +created, but Dovecot cannot look it up: unknown user \(does the userdb read" \
	"$(cat "$RIG/pct.out")"
tap_like "... in the JSON report" '"user":"ana\+x@cliente.example","line":4,"result":"failed","reason":"created, but' \
	"$(cat "$RIG/pct.json")"
tap_like "... and the CSV report" "ana\\+x@cliente.example,4,failed,\"created, but Dovecot cannot look it up" "$(cat "$RIG/pct.csv.report")"
tap_like "the summary counts it" "2 created, .* 1 failed" "$(cat "$RIG/pct.err")"
tap_login "a date format %d/%m/%Y: the account logs in over IMAP" dest pct01@cliente.example 'Pct!pass01'
printf 'Subject: welcome\n\nhello\n' >"$RIG/welcome.eml"
tap_run "... and receives mail over LMTP" rig_deliver dest pct01@cliente.example "$RIG/welcome.eml"
fields=$(rig_doveadm dest user pct01@cliente.example 2>&1)
tap_like "doveadm user shows it as the userdb carries it to the mail process (each % doubled)" \
	"date_format[[:space:]]+%%d/%%m/%%Y" "$fields"
tap_login "a date format %w: the account logs in" dest pct02@cliente.example 'Pct!pass02'
fields=$(rig_doveadm dest user pct02@cliente.example 2>&1)
tap_like "... and %w stays %w, never the password" "date_format[[:space:]]+%%w" "$fields"
if grep -qFf <(printf '%s\n' 'Pct!pass02') <<<"$fields" ||
   grep -qFf <(printf '%s\n' 'Pct!pass02') "$(rig_log dest)"; then
	tap_fail "the password of the %w row is in doveadm user or the mail process's settings (log)"
else
	tap_ok "the password of the %w row is in neither doveadm user nor the mail process's settings (log)"
fi
rc=0
acc "$PCT" >"$RIG/pct2.out" 2>&1 || rc=$?
tap_is "$rc" 65 "the same file again: the refused row still fails (every row is looked up)"
tap_like "... the others are unchanged" "pct01@cliente.example +2 +unchanged" "$(cat "$RIG/pct2.out")"

# --- Dovecot's auth not running: written, but not looked up -------------------
printf 'username;domain;password;quota;type;full name;language;time zone\nlate01;cliente.example;Late!pass1;1;0;Late;en;UTC\n' >"$RIG/late.csv"
rig_secret 'Late!pass1' "late.csv"
rig_secret_input "$RIG/late.csv"
rig_stop dest
rc=0
acc "$RIG/late.csv" >"$RIG/late.out" 2>"$RIG/late.err" || rc=$?
tap_is "$rc" 75 "auth not running: exit 75"
tap_like "the row is unverified, not created" "late01@cliente.example +2 +unverified +created, not looked up: Dovecot's auth is not running" \
	"$(cat "$RIG/late.out")"
tap_is "$(grep -c "auth is not running" "$RIG/late.err")" 1 "one warning says why"
tap_is "$(grep -c '^late01@cliente.example:' "$STORE")" 1 "... and the account was written"
rig_restart dest || rig_die "dest did not start again"
rc=0
acc "$RIG/late.csv" >"$RIG/late2.out" 2>&1 || rc=$?
tap_is "$rc" 0 "auth running again, the same file: exit 0"
tap_like "... the row is looked up and unchanged" "late01@cliente.example +2 +unchanged" "$(cat "$RIG/late2.out")"

# --- the mail process cannot set the user up: failed, with its reason ---------
# (a plugin setting it cannot expand, given to this doveadm only: the
# lookup goes as far as the mail user's settings, as doveadm user does)
rc=0
rig_doveadm dest -o "plugin/migrate_accounts_passwd_file=$STORE" -o 'plugin/broken_x=%Y' \
	migrate accounts "$RIG/late.csv" >"$RIG/broken.out" 2>&1 || rc=$?
tap_is "$rc" 65 "a mail user that cannot be set up: exit 65"
tap_like "... the unchanged row is failed, with the mail process's reason" \
	"late01@cliente.example +2 +failed +unchanged, but Dovecot cannot look it up: Failed to expand plugin setting broken_x = '%Y'" \
	"$(cat "$RIG/broken.out")"

# --- a store that Dovecot does not read: every row fails ----------------------
printf 'username;domain;password;quota;type;full name;language;time zone\nelse01;cliente.example;Else!pass1;1;0;Else;en;UTC\n' >"$RIG/else.csv"
rig_secret 'Else!pass1' "else.csv"
rig_secret_input "$RIG/else.csv"
rc=0
rig_doveadm dest -o "plugin/migrate_accounts_passwd_file=$RIG/else.users" migrate accounts \
	"$RIG/else.csv" >"$RIG/else.out" 2>&1 || rc=$?
tap_is "$rc" 65 "a passwd-file the userdb does not read: exit 65"
tap_like "... the row failed, naming the setting to check" \
	"else01@cliente.example +2 +failed +created, but Dovecot cannot look it up: unknown user \(does the userdb read migrate_accounts_passwd_file = $RIG/else.users" \
	"$(cat "$RIG/else.out")"

# --- every rule broken at least once: nothing is created ----------------------
BAD=$RIG/bad.csv
{
	echo 'username,domain,password,quota,type,full name,language,time zone,date format'
	echo 'ok01,cliente.example,Good!pass1,1,0,Ana Lima,pt-br,America/Sao_Paulo,dd/mm/aaaa'
	echo 'bad02,cliente.example,Sh!1,1,0,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad03,cliente.example,nouppercase!1,1,0,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad04,cliente.example,Good!pass1,1,0,Ana <boss>,pt-br,America/Sao_Paulo,x'
	echo 'bad05,outro.example,Good!pass1,1,0,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad 06,cliente.example,Good!pass1,1,0,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad07,cliente.example,Good!pass1,-2,0,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad08,cliente.example,Good!pass1,0,0,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad09,cliente.example,Good!pass1,1,2,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad10,cliente.example,Good!pass1,1,0,Ana,portugues do brasil,America/Sao_Paulo,x'
	echo 'bad11,cliente.example,Good!pass1,1,0,Ana,pt-br,America/Atlantis,x'
	echo 'ok01,cliente.example,Good!pass1,1,0,Ana,pt-br,America/Sao_Paulo,x'
	echo 'bad13,cliente.example,Good!pass1,1,0'
	echo 'bad14,cliente.example,"Good!pass1,1,0,Ana,pt-br,America/Sao_Paulo,x'
} >"$BAD"
rig_secret 'Good!pass1' "bad.csv"
rig_secret 'nouppercase!1' "bad.csv"
rig_secret_input "$BAD"
before=$(sum "$STORE")
rc=0
acc --json "$RIG/bad.json" --csv "$RIG/bad.csv.report" "$BAD" >"$RIG/bad.out" 2>"$RIG/bad.err" || rc=$?
tap_is "$rc" 65 "a template with bad rows exits 65"
tap_like "the JSON report lists the invalid rows" '"line":10,"result":"invalid","reason":"column 5 \(type\)' \
	"$(cat "$RIG/bad.json")"
tap_is "$(grep -c ',invalid,' "$RIG/bad.csv.report")" 13 "the CSV report has the 13 problems"
tap_is "$(sum "$STORE")" "$before" "... and changes nothing"
tap_like "nothing was created" "nothing was created" "$(cat "$RIG/bad.err")"
errs=$(cat "$RIG/bad.err")
# one problem shown as the user sees it; every rule is a must-fail row of
# plugin/core/test-migrate-accounts.c
tap_like "reported: bad.csv:3: column 3 (password): the password has fewer than 8 characters" \
	'bad.csv:3: column 3 \(password\): the password has fewer than 8 characters' "$errs"
# the patterns come on a file descriptor: a password on grep's command
# line would be in the process list (the secrets sampler finds it there)
if grep -qFf <(printf '%s\n' 'Good!pass1' 'Sh!1' 'nouppercase!1') <<<"$errs"; then
	tap_fail "an error message quotes a password"
else
	tap_ok "no error message quotes a password"
fi

# --- no problem shows a value that may be a password ---------------------------
# no header row: the first account is no header, and its password no column
# name; columns in another order than the header's: a password under quota
printf 'ana,cliente.example,Sem!header9,1,0,Ana,pt-br,UTC\n' >"$RIG/noheader.csv"
printf 'username,domain,quota,password,type,full name,language,time zone\nana,cliente.example,Mis!align9,1,0,Ana,pt-br,UTC\n' \
	>"$RIG/misaligned.csv"
rig_secret 'Sem!header9' "noheader.csv"
rig_secret 'Mis!align9' "misaligned.csv"
rig_secret_input "$RIG/noheader.csv"
rig_secret_input "$RIG/misaligned.csv"
rc=0
acc --csv "$RIG/noheader.report" "$RIG/noheader.csv" >"$RIG/noheader.out" 2>&1 || rc=$?
tap_is "$rc" 65 "a template without its header row exits 65"
tap_like "... saying the first row is no header" "noheader.csv:1: .*not a header" "$(cat "$RIG/noheader.out")"
rc=0
acc --csv "$RIG/misaligned.report" "$RIG/misaligned.csv" >"$RIG/misaligned.out" 2>&1 || rc=$?
tap_is "$rc" 65 "a row whose values are under other columns exits 65"
tap_like "... naming the column" "misaligned.csv:2: column 3 \(quota\)" "$(cat "$RIG/misaligned.out")"
if grep -qFf <(printf '%s\n' 'Sem!header9' 'Mis!align9') "$RIG/noheader.out" \
	"$RIG/noheader.report" "$RIG/misaligned.out" "$RIG/misaligned.report"; then
	tap_fail "a problem quotes a password that is in the wrong column"
else
	tap_ok "no problem quotes a password that is in the wrong column"
fi

# --- few rows: a warning, not an error; -n writes nothing ----------------------
printf 'username;domain;password;quota;type;full name;language;time zone\nsolo;cliente.example;Solo!pass1;1;0;Solo;en;UTC\n' >"$RIG/few.csv"
rig_secret 'Solo!pass1' "few.csv"
rig_secret_input "$RIG/few.csv"
before=$(sum "$STORE")
rc=0
acc -n "$RIG/few.csv" >"$RIG/few.out" 2>&1 || rc=$?
tap_is "$rc" 0 "-n on a one-row file exits 0"
tap_like "fewer than 15 rows is a warning" "1 accounts: the template is meant for 15 or more" "$(cat "$RIG/few.out")"
tap_like "-n reports what it would create" "solo@cliente.example +2 +created" "$(cat "$RIG/few.out")"
tap_is "$(sum "$STORE")" "$before" "-n writes nothing"

# --- the other exit codes of the accounts table in the README ---------------
rc=0
acc "$RIG/nonexistent.csv" >"$RIG/noinput.out" 2>&1 || rc=$?
tap_is "$rc" 66 "a template that cannot be read: exit 66"
rc=0
acc -n --json "$RIG/no/such/dir/report.json" "$RIG/few.csv" >"$RIG/cantcreat.out" 2>&1 || rc=$?
tap_is "$rc" 73 "a report that cannot be written: exit 73"

# --- no clear-text password anywhere --------------------------------------------
leaks=0
for i in $(seq 1 40); do
	p=$(pw "$i")
	if grep -rqFf <(printf '%s\n' "$p") "$STORE" "$RIG"/run*.out "$RIG"/run*.err "$RIG/report.json" \
		"$RIG/report.csv" "$(rig_log dest)" 2>/dev/null; then
		leaks=$((leaks + 1))
	fi
done
tap_is "$leaks" 0 "no template password in the store, the output, the reports or the log"
tap_like "the store is readable by root and the dovecot group only" "^(600|640) " \
	"$(stat -c '%a %U:%G' "$STORE")"

tap_done
