#!/bin/bash
# t-batch.sh - doveadm migrate batch runs a sync template: 20 accounts on two
# source servers, passwords with every awkward character; a file with bad
# lines changes nothing; failures of single accounts (wrong password, over
# quota, unreachable) do not stop the others and are reported with their
# reasons; no password leaks into output, reports, logs or state.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-batch

PY=$RIG_PY
T=$RIG_TOOLS
DEST_PW='Dest!pass1'

rig_start_source src1 || exit 1
rig_start_source src2 || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
# the event of batch's -j, as the stats process exports it
rig_conf_add dest 'event_exporter log {
  format = json
  format_args = time-rfc3339
  transport = log
}
metric migrate_batch_jobs {
  filter = event=migrate_batch_jobs
  exporter = log
  exporter_include = name fields
}' || tap_fail "the event exporter is configured"
# the template names the source host, user and password; TLS off here
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_retries 0   # the batch's own retries are tested here

# user N: source password with the characters imapsync templates break
# on, a quote, a comma and non-ASCII
src_pw() { printf 'P%02d;,[=+(){}"çã x' "$1"; }
dest_user() { printf 'u%02d@example.com' "$1"; }
src_inst() { if [ "$1" -le 10 ]; then echo src1; else echo src2; fi; }

# one CSV field, quoted
q() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }

TEMPLATE=$RIG/template.csv
rig_users_defer
{
	printf '# customer sync template\r\n'
	for i in $(seq 1 20); do
		inst=$(src_inst "$i")
		rig_add_user "$inst" "old$i" "$(src_pw "$i")"
		rig_add_user dest "$(dest_user "$i")" "$DEST_PW"
		printf '127.0.0.1:%s;old%d;%s;mx.example.com;%s;%s\r\n' \
			"$(rig_port "$inst")" "$i" "$(q "$(src_pw "$i")")" \
			"$(dest_user "$i")" "$(q 'Str0ng!dest')"
	done
} >"$TEMPLATE"
rig_users_settle
# the customer's files and our password files hold them on purpose
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$TEMPLATE"

for i in $(seq 1 20); do
	inst=$(src_inst "$i")
	printf '%s' "$(src_pw "$i")" >"$RIG/pw.$i"
	rig_secret_input "$RIG/pw.$i"
	chmod 600 "$RIG/pw.$i"
	"$PY" "$T/gen-corpus.py" --port "$(rig_port "$inst")" --user "old$i" \
		--password-file "$RIG/pw.$i" --seed "$((100 + i))" \
		--messages 40 --max-size 40K --connections 1 >/dev/null ||
		rig_die "gen-corpus for old$i failed"
done

STORE=$RIG/dest/state/migrate/credentials

# run doveadm migrate batch ARGS...; output in $RIG/batch.N.{out,err},
# exit code in BATCH_RC
BATCH_RUN=0
batch() {
	BATCH_RUN=$((BATCH_RUN + 1))
	BATCH_OUT=$RIG/batch.$BATCH_RUN.out
	BATCH_ERR=$RIG/batch.$BATCH_RUN.err
	BATCH_RC=0
	rig_doveadm dest migrate batch "$@" >"$BATCH_OUT" 2>"$BATCH_ERR" ||
		BATCH_RC=$?
}

compare_all() {
	local i inst bad=0
	for i in $(seq 1 20); do
		inst=$(src_inst "$i")
		"$PY" "$T/imap-compare.py" -q --src-port "$(rig_port "$inst")" \
			--src-user "old$i" --src-password-file "$RIG/pw.$i" \
			--dest-port "$(rig_port dest)" --dest-user "$(dest_user "$i")" \
			--dest-password-env DEST_IMAP_PASSWORD >"$RIG/cmp.$i" 2>&1 ||
			{ bad=$((bad + 1)); tap_diag "u$i: $(tail -n1 "$RIG/cmp.$i")"; }
	done
	[ "$bad" = 0 ]
}
export DEST_IMAP_PASSWORD=$DEST_PW

# --- a bad file changes nothing ----------------------------------------------
BAD=$RIG/bad.txt
rig_add_user dest weak@example.com "$DEST_PW"
{
	printf '127.0.0.1:%s;old1;pw;mx;u01@example.com\n' "$(rig_port src1)"
	printf '127.0.0.1:%s;old2;pw;mx;u02@other.example;Str0ng!dest\n' "$(rig_port src1)"
	printf '127.0.0.1:%s;old3;pw;mx;nobody-here@example.com;Str0ng!dest\n' "$(rig_port src1)"
	printf '127.0.0.1:%s;old4;pw;mx;weak@example.com;weakpass\n' "$(rig_port src1)"
	printf '127.0.0.1:%s;old5;pw;mx;u05@example.com;Str0ng!dest\n' "$(rig_port src1)"
	printf '127.0.0.1:%s;old5;pw;mx;u06@example.com;Str0ng!dest\n' "$(rig_port src1)"
} >"$BAD"
rig_secret 'weakpass' "bad.txt dest_password"
rig_secret_input "$BAD"
batch "$BAD"
tap_is "$BATCH_RC" 65 "a template with bad lines is refused (exit 65)"
err=$(cat "$BATCH_ERR")
# one problem shown as the user sees it; every rule is a must-fail row of
# plugin/core/test-migrate-template.c
tap_like "line 1: wrong column count" "bad.txt:1: 5 columns" "$err"
tap_like "nothing was changed, it says" "problems?; nothing was changed" "$err"
# the unknown user is found once the file itself is clean
sed -i '1d;2d;4d;6d' "$BAD"
batch "$BAD"
tap_is "$BATCH_RC" 65 "an unknown destination user is refused too"
tap_like "... naming its line and column" "bad.txt:1: column 5 \(dest_user\): nobody-here@example.com does not exist in the userdb" "$(cat "$BATCH_ERR")"
if [ ! -e "$(rig_home dest u05@example.com)" ] && [ ! -e "$STORE" ]; then
	tap_ok "a refused file created no mailbox and stored no credentials"
else
	tap_fail "a refused file changed something"
fi

# --- a dry run says what would happen and changes nothing -------------------------
batch -n --json "$RIG/dry.json" "$TEMPLATE"
tap_is "$BATCH_RC" 0 "batch -n exits 0"
tap_like "... reports the messages each account would copy" '"user":"u07@example.com"[^}]*"copied":40,' "$(cat "$RIG/dry.json")"
if [ ! -e "$(rig_home dest u07@example.com)/Maildir/.Sent" ] && [ ! -e "$STORE" ]; then
	tap_ok "... and created no folder and stored no credentials"
else
	tap_fail "batch -n changed something"
fi

# --- the 20 accounts -----------------------------------------------------------
batch -j 4 --json "$RIG/report.json" --csv "$RIG/report.csv" "$TEMPLATE"
tap_is "$BATCH_RC" 0 "batch of 20 accounts on two sources exits 0"
[ "$BATCH_RC" = 0 ] || tap_diag "$(tail -n 5 "$BATCH_ERR")"
tap_run "checker: all 20 accounts equal to their sources" compare_all
tap_like "the JSON report carries each account's warnings" '"warnings":\[' "$(cat "$RIG/report.json")"
n=$(grep -c '"status":"ok"' "$RIG/report.json")
tap_is "$n" 20 "the JSON report has 20 accounts ok"
tap_like "the CSV report has a header and 20 rows" "^21$" "$(wc -l <"$RIG/report.csv")"
tap_like "the table shows every account" "u20@example.com +old20@127.0.0.1 +ok" "$(cat "$BATCH_OUT")"
tap_is "$(stat -c '%a %U' "$RIG/report.json" "$RIG/report.csv" | sort -u)" "600 root" \
	"the JSON and CSV reports are 0600, root's"
mode=$(stat -c '%a %U' "$STORE")
tap_is "$mode" "700 root" "the credential store is a root-only directory"
tap_is "$(find "$STORE" -type f ! -perm 0600 | wc -l)" 0 "... and its files are 0600"
tap_is "$(find "$STORE" -type f | wc -l)" 20 "... one file per account"

tap_like "-j given: batch runs that many and says so" \
	"migrate batch: 4 accounts at a time \(-j 4: given\)" "$(cat "$BATCH_ERR")"
tap_like "... also as the event migrate_batch_jobs" \
	'"event":"migrate_batch_jobs","fields":\{[^}]*"jobs":4,[^}]*"reason":"given"' \
	"$(cat "$(rig_log dest)")"

# a second run: incremental, nothing to copy; without -j batch chooses,
# from the CPUs and the round trip to the first row's source (loopback:
# twice the CPUs, at most 16), never more than the accounts
batch "$TEMPLATE"
tap_is "$BATCH_RC" 0 "the re-run exits 0"
copied=$(awk 'NR > 1 { s += $6 } END { print s + 0 }' "$BATCH_OUT")
tap_is "$copied" 0 "... and copies nothing"
cpus=$(nproc)
# the round trip it measured to 127.0.0.1: 0-1 ms, unless the machine is
# busy (other tests beside this one); the jobs are migrate_jobs_default()'s
# for it (migrate-jobs.h)
rtt=$(sed -n 's/.*source round trip \([0-9]*\) ms.*/\1/p' "$BATCH_ERR" | head -n1)
if [ "${rtt:-0}" -lt 2 ]; then
	want=$((cpus * 2 > 16 ? 16 : cpus * 2)) why="twice the CPUs" reason=cpus
else
	tap_diag "the loopback round trip measured $rtt ms: the machine is busy"
	want=$((cpus * (2 + rtt / 2))) why="raised for the source's round trip" reason=rtt
	[ "$want" -ge 32 ] && want=32 why="the default's maximum" reason=max
fi
[ "$want" -gt 20 ] && want=20 why="no more than the accounts" reason=accounts
tap_like "without -j, batch says what it chose and why" \
	"migrate batch: $want accounts at a time \(-j $want: $why; $cpus CPUs, source round trip ${rtt:-?} ms, 20 accounts\)" \
	"$(cat "$BATCH_ERR")"
tap_like "... also as the event, with the round trip it measured" \
	'"event":"migrate_batch_jobs","fields":\{[^}]*"rtt_msecs":'"${rtt:-?}"',[^}]*"jobs":'"$want"',[^}]*"reason":"'"$reason"'"' \
	"$(cat "$(rig_log dest)")"

# the first row's source 50 ms away (tools/delayproxy.py): more accounts
# in flight fill the line, here as many as there are
DELAY_PORT=$(rig_free_port)
"$PY" "$T/delayproxy.py" --port "$DELAY_PORT" --target-port "$(rig_port src1)" \
	--rtt-ms 50 --log "$RIG/delayproxy.log" --pidfile "$RIG/delayproxy.pid" --daemon ||
	tap_fail "the delay proxy starts"
# shellcheck disable=SC2016 # expanded at exit
rig_on_exit 'kill "$(cat "$RIG/delayproxy.pid")" 2>/dev/null'
FAR=$RIG/far.csv
sed "2s/^127\.0\.0\.1:[0-9]*;/127.0.0.1:$DELAY_PORT;/" "$TEMPLATE" >"$FAR"
rig_secret_input "$FAR"
batch -n "$FAR"
tap_is "$BATCH_RC" 0 "batch -n with the first source 50 ms away exits 0"
tap_like "... measures that round trip and runs more at a time: all 20" \
	"migrate batch: 20 accounts at a time \(-j 20: no more than the accounts; $cpus CPUs, source round trip (4[6-9]|[5-9][0-9]) ms, 20 accounts\)" \
	"$(cat "$BATCH_ERR")"
# the measurement's connection is the one that sent only "R NOOP" and
# "R LOGOUT" (18 bytes): it never logged in
tap_is "$(grep -c '"c2s": *18,.*"event": *"close"' "$RIG/delayproxy.log")" 1 \
	"... on one connection that never logs in"

# a single account later, from the stored credentials alone
"$PY" "$T/imaptool.py" --port "$(rig_port src2)" --user old15 \
	--password-file "$RIG/pw.15" append INBOX - >/dev/null <<'EOF'
From: late@example.org
Subject: late

after the batch
EOF
rc=0
rig_doveadm dest migrate -u u15@example.com >"$RIG/single.out" 2>&1 || rc=$?
tap_is "$rc" 0 "doveadm migrate -u USER uses the stored credentials"
tap_like "... and copies the new message" "u15@example.com	ok	([0-9]+	){5}1	" "$(cat "$RIG/single.out")"

# --- reports that are safe to open ---------------------------------------------
# A source folder may be named like a spreadsheet formula: its name reaches
# the CSV report (the warning about a message the destination refused), as
# text.
FORMULA='=HYPERLINK("x")'
printf 'From: formula@example.org\r\nSubject: formula\r\n\r\nformula\r\n' >"$RIG/formula.eml"
rig_imap_append src1 old1 "$(src_pw 1)" "$FORMULA" "$RIG/formula.eml" >/dev/null
ONE=$RIG/one.txt
grep ';old1;' "$TEMPLATE" >"$ONE"
rig_secret_input "$ONE"
batch "$ONE"
tap_is "$BATCH_RC" 0 "the formula folder is copied (exit 0)"
tap_like "one account: one at a time (its process has its own workers)" \
	"migrate batch: 1 account at a time \(-j 1: no more than the accounts;" \
	"$(cat "$BATCH_ERR")"
{
	printf 'From: big@example.org\r\nSubject: big\r\n\r\n'
	for _ in $(seq 1 400); do printf '%076d\r\n' 0; done
} >"$RIG/big.eml"
rig_imap_append src1 old1 "$(src_pw 1)" "$FORMULA" "$RIG/big.eml" >/dev/null
rc=0
rig_doveadm dest -o plugin/quota_max_mail_size=10k migrate batch --csv "$RIG/formula.csv" \
	"$ONE" >"$RIG/formula.out" 2>&1 || rc=$?
tap_is "$rc" 65 "a message over the destination's size limit is left out (65)"
# every cell as a spreadsheet reads it: none starts a formula, and the
# warning keeps the name behind a quote
cells=$("$PY" -c 'import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
print("\n".join(c for r in rows[1:] for c in r))' "$RIG/formula.csv")
tap_is "$(grep -c '^[-=+@]' <<<"$cells")" 0 "no CSV cell starts with = + - @"
# (the warnings cell starts with the one about the source's missing TLS;
# a cell that starts with the name is neutralised: the user below)
tap_like "the folder's name is in the warnings, as text" \
	"; =HYPERLINK\(\"x\"\): Leaving out UID [0-9]+ " \
	"$(grep 'Leaving out' <<<"$cells")"
# a source user named like a formula, in a row that fails
FORMULA_ROW=$RIG/formula-user.txt
printf '127.0.0.1:%s;=1+2;Wrong!pw;mx;u01@example.com;Str0ng!dest\n' \
	"$(rig_port src1)" >"$FORMULA_ROW"
rig_secret_input "$FORMULA_ROW"
batch -n --retries 0 --csv "$RIG/formula-user.csv" "$FORMULA_ROW"
tap_like "... and a source user named =1+2 is written '=1+2" \
	"^u01@example.com,1,127.0.0.1,\"'=1\+2\"," "$(sed -n 2p "$RIG/formula-user.csv")"

# --- failures of single accounts -------------------------------------------------
MIXED=$RIG/mixed.txt
rig_add_user src1 qa "Quota!pw1"
rig_add_user dest qa@example.com "$DEST_PW" userdb_quota_rule=*:storage=100k
QA_PW='Quota!pw1' "$PY" "$T/gen-corpus.py" --port "$(rig_port src1)" --user qa \
	--password-env QA_PW --seed 7 --messages 30 --max-size 40K --connections 1 >/dev/null
rig_add_user dest down@example.com "$DEST_PW"
{
	sed -n '2,4p' "$TEMPLATE"
	printf '127.0.0.1:%s;old4;Wrong!pw;mx;u04@example.com;Str0ng!dest\n' "$(rig_port src1)"
	printf '127.0.0.1:%s;qa;Quota!pw1;mx;qa@example.com;Str0ng!dest\n' "$(rig_port src1)"
	printf '127.0.0.1:%s;nobody;Down!pw1;mx;down@example.com;Str0ng!dest\n' "$(rig_free_port)"
} >"$MIXED"
rig_secret 'Wrong!pw' "mixed.txt wrong source password"
rig_secret 'Down!pw1' "mixed.txt unreachable source"
rig_secret_input "$MIXED"
# the pre-flight check finds the problems before any mail moves
rc=0
rig_doveadm dest migrate check --json "$RIG/check.json" "$MIXED" \
	>"$RIG/check.out" 2>"$RIG/check.err" || rc=$?
# a temporary failure comes first in the exit code: a re-run may be all it
# takes (the order of migrate -A, documented in the README)
tap_is "$rc" 75 "check exits with the failure that matters most: the temporary one (75)"
tap_like "check: the wrong source password" '"user":"u04@example.com"[^}]*"class":"login refused"' "$(cat "$RIG/check.json")"
tap_like "check: the account that will not fit, with what it needs" '"user":"qa@example.com"[^}]*"class":"over quota"[^}]*"reason":"will not fit: needs [0-9.]+ MB, [0-9.]+ MB free of the 0.1 MB quota' "$(cat "$RIG/check.json")"
tap_like "check: the unreachable source" '"user":"down@example.com"[^}]*"class":"temporary failure"' "$(cat "$RIG/check.json")"
tap_like "check: totals with a time estimate at the rate the batch measured" "6 accounts, 3 ok, 3 failing; [0-9]+ messages, [0-9.]+ GB to copy; about [0-9]+ s at [0-9.]+ MB/s \\(measured by this domain's syncs so far\\)" "$(cat "$RIG/check.err")"
tap_like "check: a table row per account" "qa@example.com +qa@127.0.0.1 +over quota" "$(cat "$RIG/check.out")"
n=$(find "$(rig_maildir dest qa@example.com)" -path '*/cur/*' -o -path '*/new/*' 2>/dev/null | wc -l)
tap_is "$n" 0 "check copied no mail"
# the same accounts with a reachable source: the refused login before the quota
REACHABLE=$RIG/mixed2.txt
grep -v ';nobody;' "$MIXED" >"$REACHABLE"
rig_secret_input "$REACHABLE"
rc=0
rig_doveadm dest migrate check "$REACHABLE" >"$RIG/check2.out" 2>"$RIG/check2.err" || rc=$?
tap_is "$rc" 77 "check exits with the most serious problem (77)"

batch --retries 1 --retry-delay 0 --json "$RIG/mixed.json" "$MIXED"
tap_like "one bad account makes the batch fail (exit $BATCH_RC)" "^(77|73|75)$" "$BATCH_RC"
tap_is "$BATCH_RC" 75 "... with the class that matters most: the temporary failure"
tap_is "$(grep -c '"status":"ok"' "$RIG/mixed.json")" 3 "the three good accounts completed"
tap_like "the wrong source password is named" '"user":"u04@example.com"[^}]*"class":"login refused"' "$(cat "$RIG/mixed.json")"
tap_like "the account over quota is named" '"user":"qa@example.com"[^}]*"class":"over quota"' "$(cat "$RIG/mixed.json")"
tap_like "the unreachable source was retried, then reported" '"user":"down@example.com"[^}]*"class":"temporary failure","exit_code":75,"attempts":2' "$(cat "$RIG/mixed.json")"
tap_like "... with the reason" '"user":"down@example.com"[^}]*"reason":"[^"]*[Cc]onnect' "$(cat "$RIG/mixed.json")"
batch --retries 0 "$REACHABLE"
tap_is "$BATCH_RC" 77 "... with the most serious class: the refused login"

# --- the processes that hold passwords dump no core -----------------------------
# a source that accepts and never greets holds the account's process
STALL_PORT=$(rig_free_port)
"$PY" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
held = []
while True:
    held.append(s.accept()[0])' "$STALL_PORT" &
STALL_PID=$!
STALL=$RIG/stall.txt
printf '127.0.0.1:%s;stall;Stall!pw1;mx;u02@example.com;Str0ng!dest\n' \
	"$STALL_PORT" >"$STALL"
rig_secret 'Stall!pw1' "stall.txt source password"
rig_secret_input "$STALL"
rig_doveadm dest migrate batch -n --retries 0 "$STALL" >"$RIG/stall.out" 2>&1 &
# the job is a subshell; doveadm (batch) its child, the account's its
# grandchild, once both are doveadm (not the sh and mount before it)
doveadm_child_of() {
	local p
	for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		case $(readlink "/proc/$p/exe" 2>/dev/null) in
		*/doveadm) echo "$p"; return ;;
		esac
	done
}
bpid="" cpid=""
for _ in $(seq 1 100); do
	bpid=$(doveadm_child_of $!)
	[ -n "$bpid" ] && cpid=$(doveadm_child_of "$bpid")
	[ -n "$cpid" ] && break
	sleep 0.1
done
core_limit() { awk '/^Max core file size/ { print $5 " " $6 }' "/proc/$1/limits" 2>/dev/null; }
tap_is "$(core_limit "$bpid")" "0 0" "batch runs with no core dump allowed (RLIMIT_CORE 0, hard 0)"
tap_is "$(core_limit "$cpid")" "0 0" "... and so does its account's process"
[ -n "$cpid" ] && kill "$cpid" 2>/dev/null
[ -n "$bpid" ] && kill "$bpid" 2>/dev/null
kill "$STALL_PID" 2>/dev/null
wait

# --- no password anywhere but the credential store -------------------------------
leaks=0
for i in $(seq 1 20) Wrong Quota Down; do
	case $i in
	Wrong) pw='Wrong!pw' ;;
	Quota) pw='Quota!pw1' ;;
	Down) pw='Down!pw1' ;;
	*) pw=$(src_pw "$i") ;;
	esac
	# (the password on grep's stdin, not its command line)
	hits=$(grep -rlF --exclude-dir=credentials --exclude='pw.*' \
		--exclude='template.csv' --exclude='mixed.txt' --exclude='mixed2.txt' \
		--exclude='bad.txt' --exclude='one.txt' --exclude='formula-user.txt' \
		--exclude='stall.txt' --exclude='far.csv' --exclude=users -f <(printf '%s\n' "$pw") "$RIG" 2>/dev/null)
	[ -z "$hits" ] || { leaks=$((leaks + 1)); tap_diag "password of $i in: $hits"; }
done
tap_is "$leaks" 0 "no source password in output, reports, logs or state"
tap_like "the credential store does hold them" "." "$(grep -rlFf <(src_pw 3; echo) "$STORE")"

tap_done
