#!/bin/bash
# run-tests.sh BUILDDIR - the project's test runner (make check-local)
#
# 1. BUILDDIR/plugin/core/test-migrate and plugin/test-migrate-sync
#    (Dovecot lib-test: "name ...: ok" /
#    ": FAILED" lines and a closing "N / M tests failed");
# 2. every tests/integration/t-*.sh (TAP-like "ok N - text" /
#    "not ok N - text"), each under a timeout, its output in
#    BUILDDIR/tests/out/<name>.log.  The scripts are independent (each has
#    its own temporary directory, free ports and processes it alone
#    signals), and mostly wait on servers and timers, so RUN_JOBS of them
#    (default 4) run at once, the longest first (by their times in the
#    last run, BUILDDIR/tests/out/durations, else by the estimates
#    below); a line per script as it finishes.
# 3. the secrets checks ("secrets", log in BUILDDIR/tests/out/secrets.log):
#    every password the scripts registered (tests/lib/rig.sh rig_secret)
#    must be absent from each test's files (scanned by rig_cleanup before
#    $RIG goes, by reap() after a killed script), from the command lines of
#    all processes (/proc/*/cmdline, sampled every SECRETS_INTERVAL s,
#    default 0.1, while the scripts run), from the scripts' outputs and
#    from core files; see tests/tools/secret-scan.py.  Registry, samples
#    and findings stay in a 0700 directory (in TMPDIR, default /tmp)
#    removed at exit; findings name the file and the secret
#    ("t-name#N (label)"), never the password.
# Ends with the line "N passed, N failed in S s" (individual assertions;
# the runner's wall time) and exits non-zero when anything failed.
#
# Environment: TESTS="pattern ..." runs only the integration scripts whose
# name contains one of the (glob) patterns ("unit" selects the unit tests;
# without "unit" in TESTS they are skipped); RUN_JOBS (scripts at once,
# default 4; 1 runs them one after the other); TEST_TIMEOUT (seconds per
# script, default 900); RIG_KEEP / RIG_KEEP_ON_FAIL are passed on;
# TESTS_DIR runs the t-*.sh of another directory (default
# tests/integration; for testing this runner).

set -u

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-$srcdir}
builddir=$(cd "$builddir" && pwd) || {
	echo "run-tests: no build directory $1" >&2
	exit 2
}
out=$builddir/tests/out
mkdir -p "$out"
timeout_s=${TEST_TIMEOUT:-900}
export MIGRATE_BUILDDIR=$builddir MIGRATE_SRCDIR=$srcdir

passed=0
failed=0
skipped=0
failures=()

selected() {
	local name=$1 p
	[ -z "${TESTS:-}" ] && return 0
	for p in $TESTS; do
		# shellcheck disable=SC2053
		[[ $name == *$p* ]] && return 0
	done
	return 1
}

show_tail() {
	local log=$1
	echo "--- last 40 lines of $log"
	tail -n 40 "$log" | sed 's/^/  | /'
	echo "---"
}

# --- unit tests -------------------------------------------------------------
# plugin/core/test-migrate (the library without lib-storage) and
# plugin/test-migrate-sync (the engine on real storage)
for unit in "$builddir/plugin/core/test-migrate" "$builddir/plugin/test-migrate-sync"; do
	if ! selected unit && [ -n "${TESTS:-}" ]; then
		break
	fi
	uname=$(basename "$unit")
	if [ -x "$unit" ]; then
		log=$out/unit-$uname.log
		rc=0
		(cd "$(dirname "$unit")" && timeout --kill-after=10 "$timeout_s" "./$uname") >"$log" 2>&1 || rc=$?
		ok=$(grep -c ': ok$' "$log")
		bad=$(grep -c ': FAILED' "$log")
		summary=$(grep -E '^[0-9]+ / [0-9]+ tests failed' "$log" | tail -n 1)
		if [ -n "$summary" ]; then
			# the closing line is authoritative (assertions outside
			# test_begin/test_end are only counted there)
			sf=${summary%% /*}
			st=${summary#* / }
			st=${st%% *}
			bad=$sf
			ok=$((st - sf))
		fi
		if [ $rc != 0 ] && [ "$bad" = 0 ]; then
			bad=1
			echo "unit: $uname exited with status $rc" >>"$log"
		fi
		passed=$((passed + ok))
		failed=$((failed + bad))
		printf '%-32s %4d passed, %d failed\n' "unit ($uname)" "$ok" "$bad"
		if [ "$bad" != 0 ]; then
			failures+=("unit ($uname)")
			grep -E ': FAILED|tests failed' "$log" | head -n 20
			show_tail "$log"
		fi
	else
		echo "unit ($uname): not built at $unit (run make check)"
		if [ "${TESTS:-}" = unit ]; then
			failed=$((failed + 1))
			failures+=("unit ($uname, not built)")
		fi
	fi
done

# --- integration scripts -------------------------------------------------------
# the secrets: registry, cmdline samples, findings, and per script the rig
# dirs it made (reap) (mktemp -d: mode 0700)
secrets=$(mktemp -d "${TMPDIR:-/tmp}/rig-secrets.XXXXXX")
: >"$secrets/registry" >"$secrets/findings" >"$secrets/scanned" >"$secrets/rigs"
chmod 600 "$secrets/registry" "$secrets/findings"
mkdir "$secrets/reap" "$secrets/status"
sampler= sampler_cpu=
stop_sampler() {
	[ -n "$sampler" ] || return 0
	sampler_cpu=$(ps -o times= -p "$sampler" 2>/dev/null | tr -d ' ')
	kill -TERM "$sampler" 2>/dev/null
	wait "$sampler" 2>/dev/null
	sampler=
}
declare -A job_name=()
# a stopped runner (Ctrl-C, make killed) stops its scripts: their own
# cleanup stops their servers
stop_jobs() {
	local pid
	for pid in "${!job_name[@]}"; do
		pkill -TERM -P "$pid" 2>/dev/null
	done
	for pid in "${!job_name[@]}"; do
		wait "$pid" 2>/dev/null
	done
}
trap 'stop_jobs; stop_sampler; rm -rf "$secrets"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
scan=(/usr/bin/python3 "$srcdir/tests/tools/secret-scan.py")
run_start=$(date +%s)
ran_scripts=0
outlogs=()

# reap REGISTRY NAME: stop the instances a killed script left running (its
# rig_cleanup did not run); the registry lists that script's rig dirs only
reap() {
	local registry=$1 name=$2 dir pid pidf
	while read -r dir; do
		[ -d "$dir" ] || continue
		for pidf in "$dir"/*/run/master.pid; do
			[ -s "$pidf" ] || continue
			pid=$(head -n1 "$pidf")
			# only a master running this rig's config
			if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/"; then
				echo "run-tests: stopping leftover Dovecot $pid ($pidf)"
				kill -TERM "$pid" 2>/dev/null
				for _ in $(seq 50); do
					kill -0 "$pid" 2>/dev/null || break
					sleep 0.1
				done
				kill -KILL "$pid" 2>/dev/null
			fi
		done
		# the script's own rig_cleanup did not scan it
		if [ ! -e "$dir/.secret-scanned" ]; then
			"${scan[@]}" files "$dir" --registry "$secrets/registry" \
				--findings "$secrets/findings" --stats "$secrets/scanned" \
				--test "$name" >/dev/null
		fi
		[ "${RIG_KEEP:-0}" = 1 ] || [ "${RIG_KEEP_ON_FAIL:-0}" = 1 ] || rm -rf "$dir"
	done <"$registry"
}

# run_script PATH NAME (in the background): the script under its timeout,
# then the reap of what it left; "RC SECONDS" in $secrets/status/NAME
run_script() {
	local t=$1 name=$2 rc=0 start=$SECONDS
	local registry=$secrets/reap/$name
	: >"$registry"
	RIG_REGISTRY=$registry RIG_SECRETS=$secrets/registry timeout --kill-after=15 "$timeout_s" \
		bash "$t" >"$out/$name.log" 2>&1 </dev/null || rc=$?
	reap "$registry" "$name" >>"$out/$name.log" 2>&1
	echo "$rc $((SECONDS - start))" >"$secrets/status/$name"
}

# report NAME: count a finished script's assertions, print its line
report() {
	local name=$1 log=$out/$1.log rc secs ok todo bad skip note plan
	read -r rc secs <"$secrets/status/$name" || { rc=1 secs=0; }
	durations+=("$name $secs")
	ok=$(grep -cE '^ok [0-9]+' "$log")
	# a "not ok ... # TODO" is a known failure (TAP): reported, not counted
	todo=$(grep -cE '^not ok [0-9]+.*# *TODO' "$log")
	bad=$(($(grep -cE '^not ok [0-9]+' "$log") - todo))
	skip=$(grep -cE '^ok [0-9]+.*# *(SKIP|skip)' "$log")
	note=
	plan=$(grep -E '^1\.\.[0-9]+' "$log" | tail -n 1)
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		bad=$((bad + 1))
		note=" (timed out after ${timeout_s}s)"
	elif [ -n "$plan" ] && [ "${plan#1..}" -gt $((ok + bad + todo)) ]; then
		# planned assertions that never ran
		bad=$((${plan#1..} - ok - todo))
		note=" (stopped early)"
	elif [ "$rc" != 0 ] && [ "$bad" = 0 ]; then
		bad=1
		note=" (exit status $rc)"
	fi
	ok=$((ok - skip))
	passed=$((passed + ok))
	failed=$((failed + bad))
	skipped=$((skipped + skip))
	[ "$todo" != 0 ] && note="$note ($todo known failures, TODO)"
	printf '%-32s %4d passed, %d failed%s (%ds)\n' "$name" "$ok" "$bad" "$note" "$secs"
	[ "$todo" != 0 ] && grep -E '^not ok [0-9]+.*# *TODO' "$log" | head -n 20
	if [ "$bad" != 0 ]; then
		failures+=("$name")
		grep -E '^not ok' "$log" | head -n 20
		show_tail "$log"
	fi
}

# wait for one script to finish and report it
reap_job() {
	local pid=
	wait -n -p pid
	[ -n "$pid" ] && [ -n "${job_name[$pid]:-}" ] || return 0
	report "${job_name[$pid]}"
	unset "job_name[$pid]"
}

# seconds each script took in make check on a 2-core machine (RUN_JOBS=4,
# a fresh clone's ./.ci/run of 2026-12-05),
# for the order when the build directory has no durations file yet; a
# script not listed counts as long (it may be new)
declare -A expect=(
	[t-pop3]=73 [t-accounts]=70 [t-connlimit]=63 [t-killpoints]=55
	[t-archive]=49 [t-crash]=48 [t-accounts-sql]=48 [t-batch]=47
	[t-rig]=46 [t-workers]=44 [t-oauth2-grants]=41 [t-faults]=39
	[t-sources]=36 [t-quirks]=35 [t-continuity]=32 [t-cluster]=30
	[t-tls]=30 [t-sync]=28 [t-oauth2]=27 [t-edge]=26 [t-tokenserver]=25
	[t-large]=23 [t-faultkit]=19 [t-courier]=19 [t-hostile]=18
	[t-limitproxy]=18 [t-throttle]=16 [t-domain]=14 [t-names]=12
	[t-settings]=10 [t-changes]=9 [t-exitcodes]=9 [t-secretscan]=1
)
if [ -s "$out/durations" ]; then
	while read -r n secs; do
		[[ $secs =~ ^[0-9]+$ ]] && expect[$n]=$secs
	done <"$out/durations"
fi
scripts=()
for t in "${TESTS_DIR:-$srcdir/tests/integration}"/t-*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	selected "$name" || continue
	scripts+=("$(printf '%06d %s' "${expect[$name]:-100}" "$t")")
done
mapfile -t scripts < <(printf '%s\n' "${scripts[@]}" | sort -k1,1nr -k2 | cut -d' ' -f2- | grep .)

njobs=${RUN_JOBS:-4}
[[ $njobs =~ ^[1-9][0-9]*$ ]] || njobs=4
durations=()
for t in "${scripts[@]}"; do
	name=$(basename "$t" .sh)
	if [ -z "$sampler" ]; then
		"${scan[@]}" sample "$secrets/cmdlines" --interval "${SECRETS_INTERVAL:-0.1}" \
			--runner $$ --rigs "$secrets/rigs" &
		sampler=$!
	fi
	while [ ${#job_name[@]} -ge "$njobs" ]; do
		reap_job
	done
	ran_scripts=$((ran_scripts + 1))
	outlogs+=("$out/$name.log")
	run_script "$t" "$name" &
	job_name[$!]=$name
done
while [ ${#job_name[@]} -gt 0 ]; do
	reap_job
done
# the next run's order (only a whole run's: a partial one would lose the rest)
[ -z "${TESTS:-}" ] && [ -z "${TESTS_DIR:-}" ] && printf '%s\n' "${durations[@]}" >"$out/durations"

# --- secrets -----------------------------------------------------------------------
stop_sampler
if [ "$ran_scripts" != 0 ]; then
	start=$SECONDS
	log=$out/secrets.log
	read -r nsec nshort < <("${scan[@]}" registry --registry "$secrets/registry")
	n=0 sbad=0
	# check TEXT KIND: ok when the findings file has no line of KIND
	check() {
		n=$((n + 1))
		if grep -q "^$2"$'\t' "$secrets/findings"; then
			sbad=$((sbad + 1))
			echo "not ok $n - $1"
			grep "^$2"$'\t' "$secrets/findings" | awk -F '\t' \
				'{ printf "#   %s holds %s (%s)\n", $2, $3, $4 }' | head -n 40
		else
			echo "ok $n - $1"
		fi
	}
	{
		echo "# $nsec passwords registered by the scripts ($nshort shorter than 6 bytes not looked for)"
		# the whole suite registers some: else registering is broken
		if [ "$nsec" = 0 ] && [ -z "${TESTS:-}" ]; then
			n=$((n + 1))
			sbad=$((sbad + 1))
			echo "not ok $n - the scripts registered passwords"
		fi
		# a test dir is counted once (a killed script's dir by reap)
		read -r nfiles ndirs nsecs < <(awk '$1 == "files" { f += $3; d++; t += $5 } END { printf "%d %d %.1f\n", f, d, t }' "$secrets/scanned")
		echo "# the scans of the test dirs took ${nsecs}s"
		check "no password in $nfiles files of $ndirs test dirs (logs, reports, state, rawlogs, cores)" file
		read -r nlines nticks nforeign < <("${scan[@]}" cmdlines "$secrets/cmdlines" \
			--registry "$secrets/registry" --findings "$secrets/findings")
		# processes neither of this runner nor of its rigs' daemons:
		# another run of the suite on this host, same passwords
		[ "${nforeign:-0}" = 0 ] ||
			echo "# $nforeign command lines of other processes (not this run's) held a password: not counted"
		n=$((n + 1))
		if [ "${nticks:-0}" -lt 2 ]; then
			sbad=$((sbad + 1))
			echo "not ok $n - the command line sampler ran (${nticks:-0} samples)"
		else
			echo "ok $n - the command line sampler ran ($nticks samples, every ${SECRETS_INTERVAL:-0.1}s)"
		fi
		echo "# the sampler used ${sampler_cpu:-?}s of CPU"
		check "no password in $nlines distinct sampled command lines" cmdline
		nout=$("${scan[@]}" paths --registry "$secrets/registry" --findings "$secrets/findings" \
			--kind output "${outlogs[@]}")
		check "no password in the scripts' outputs ($nout logs in $out)" output
		# cores: core_pattern "core[.PID]" lands in the crashing process'
		# cwd (Dovecot: its base_dir, under \$RIG, scanned above; doveadm
		# and the tools: the build or the source tree); systemd-coredump
		# and apport keep theirs in /var
		mapfile -t cores < <(find "$builddir" "$srcdir/tests" /tmp -maxdepth 4 -type f \
			\( -name core -o -name 'core.[0-9]*' \) -newermt "@$run_start" 2>/dev/null
			find /var/crash /var/lib/systemd/coredump /var/lib/apport/coredump -type f \
				-newermt "@$run_start" 2>/dev/null)
		ncores=$("${scan[@]}" paths --registry "$secrets/registry" --findings "$secrets/findings" \
			--kind core "${cores[@]}")
		if command -v coredumpctl >/dev/null; then
			echo "# coredumpctl: $(coredumpctl list --no-pager --since "@$run_start" 2>/dev/null | grep -c .) dumps since the start (their files are in /var/lib/systemd/coredump)"
		fi
		check "no password in the $ncores core files written since the start" core
		echo "1..$n"
	} >"$log" 2>&1
	ok=$(grep -cE '^ok [0-9]+' "$log")
	bad=$(grep -cE '^not ok [0-9]+' "$log")
	passed=$((passed + ok))
	failed=$((failed + bad))
	printf '%-32s %4d passed, %d failed (%ds)\n' "secrets" "$ok" "$bad" $((SECONDS - start))
	grep -E '^(ok|not ok) ' "$log" | sed 's/^/  /'
	if [ "$bad" != 0 ]; then
		failures+=("secrets")
		grep -E '^#   ' "$log" | head -n 40
	fi
fi

[ "$skipped" != 0 ] && echo "($skipped skipped)"
[ ${#failures[@]} != 0 ] && echo "failed: ${failures[*]} (logs in $out)"
echo "$passed passed, $failed failed in $SECONDS s"
[ "$failed" = 0 ]
