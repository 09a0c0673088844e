#!/bin/bash
# t-leak.sh - not part of the suite: a script that leaks a registered
# password in every way the runner's secrets checks must catch; run by
# tests/integration/t-secretscan.sh as
#   TESTS_DIR=tests/selftest run-tests.sh BUILDDIR
# which must then fail with one finding of each kind, and print the
# password nowhere.  SELFTEST_PW is that password (default below).

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-leak

PW=${SELFTEST_PW:-'Plant"ed!leak7'}
rig_secret "$PW" "planted"
# a declared input: allowed to hold it
printf 'user;%s\n' "$PW" >"$RIG/template.csv"
rig_secret_input "$RIG/template.csv"
# a too short one: registered, not looked for
rig_secret 'abc' "short"

# 1. a log under $RIG, in clear
mkdir -p "$RIG/dest/home/.migrate"
printf 'Debug: login user=bob password=%s\n' "$PW" >"$RIG/dest/dovecot.log"
# 2. a rawlog's AUTHENTICATE PLAIN: base64 of "\0bob\0password" only
printf 'bob\0bob\0%s' "$PW" | base64 -w0 | sed 's/^/a AUTHENTICATE PLAIN /' >"$RIG/dest/home/.migrate/raw.in"
# 3. a JSON report, where it is escaped (\")
printf '{"user":"bob","reason":"%s"}\n' "${PW//\"/\\\"}" >"$RIG/report.json"
# 4. a command line, long enough for the sampler
"$RIG_PY" -c 'import time; time.sleep(0.6)' "--password=$PW"
# 5. the script's own output
echo "# the password is $PW"

tap_ok "leaked on purpose"
tap_done
