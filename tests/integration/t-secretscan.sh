#!/bin/bash
# t-secretscan.sh - the runner's secrets checks catch a planted leak: runs
# run-tests.sh on tests/selftest/t-leak.sh (a script leaking a registered
# password into a log, a rawlog-style base64 AUTHENTICATE PLAIN, a JSON
# report, a command line and its own output) and expects each finding,
# the declared input left alone, a failed run, and the password printed
# nowhere.  The planted password is not registered here: the outer
# checks must not see it (nor do they: another registry).

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-secretscan

B=$RIG/build
mkdir -p "$B"
SELFTEST_PW=$("$RIG_PY" -c 'import secrets; print("Pl\"nt!" + secrets.token_hex(6))')
export SELFTEST_PW
# its own TMPDIR: other runs of the suite on this host make and remove
# their secrets directories meanwhile
mkdir -m 700 "$RIG/tmp"
rc=0
TESTS=t-leak TESTS_DIR=$RIG_SRCDIR/tests/selftest MIGRATE_BUILDDIR= TMPDIR=$RIG/tmp \
	bash "$RIG_SRCDIR/tests/run-tests.sh" "$B" >"$RIG/run.out" 2>&1 || rc=$?
out=$(cat "$RIG/run.out")
tap_is "$rc" 1 "a leak makes the run fail"
tap_like "the closing line counts the failed checks" $'\n''[0-9]+ passed, 3 failed in [0-9]+ s$' "$out"
tap_like "the secrets line" 'secrets +2 passed, 3 failed' "$out"
tap_like "a log in clear" 't-leak: dest/dovecot.log holds t-leak#1 \(planted\) \(plain\)' "$out"
tap_like "a base64 AUTHENTICATE PLAIN in a state dir" 't-leak: dest/home/.migrate/raw.in holds t-leak#1 \(planted\) \(base64\)' "$out"
tap_like "an escaped one in a report" 't-leak: report.json holds t-leak#1 \(planted\) \(escaped\)' "$out"
tap_like "a command line, the password masked" 'time.sleep\(0.6\) --password=<t-leak#1> holds t-leak#1' "$out"
tap_like "the script's output" 'out/t-leak.log line 1 holds t-leak#1' "$out"
if grep -q template.csv <<<"$out"; then
	tap_fail "a declared input is reported"
else
	tap_ok "a declared input is not reported"
fi
tap_like "a short secret is not looked for" '1 shorter than 6 bytes' "$(cat "$B/tests/out/secrets.log")"
if grep -qF -- "$SELFTEST_PW" "$RIG/run.out" "$B/tests/out/secrets.log"; then
	tap_fail "the runner prints the password"
else
	tap_ok "the runner prints the password nowhere"
fi
tap_is "$(ls -A "$RIG/tmp")" "" "its secrets directory is gone"
[ "$TAP_FAILED" = 0 ] || tap_diag "$(tail -n 30 "$RIG/run.out")"
tap_done
