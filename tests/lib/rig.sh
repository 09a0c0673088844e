# tests/lib/rig.sh - private Dovecot instances for the integration tests
#
# Sourced by tests/integration/t-*.sh (bash, as root).  Everything lives in
# one temporary directory ($RIG) and is stopped and removed on exit; the
# system Dovecot and /etc/dovecot are never touched.
#
#   rig_init [name]          temp dir, module dirs (system modules linked,
#                            ours copied: a snapshot of the build), cleanup
#                            trap (EXIT; HUP/INT/TERM turned into exits)
#   rig_start_source NAME [--sep /|.] [--prefix P] [--layout maildir++|fs]
#                    [--format maildir|sdbox|mdbox] [--oauth2]
#                    [--oauth2-app]
#                            IMAP server; --sep . --prefix INBOX. is the
#                            Courier-style namespace; --oauth2: XOAUTH2 and
#                            OAUTHBEARER too, Dovecot's oauth2 passdb
#                            validating HS256 tokens locally (its key in
#                            $RIG/NAME/oauth2.key, rig_oauth2_token);
#                            --oauth2-app: --oauth2 and a second oauth2
#                            passdb that takes an app token (one token
#                            for every user, with scope IMAP.AccessAsApp:
#                            what tools/tokenserver.py's
#                            client-credentials grant issues; see
#                            rig__oauth2_conf)
#   rig_start_dest NAME [--layout maildir++|fs] [--format F] [--no-migrate]
#                            the destination: our plugins (when built)
#                            where conf.d/90-migrate.conf loads them
#                            (doveadm, lda), quota, IMAP port, LMTP socket
#        (either) [--listen 127.x.y.z]   another loopback address
#        [--doveadm-port PORT]   a doveadm server (inet listener, our
#                            module), as a cluster's backend has
#        [--doveadm-proxy PORT]  doveadm_port: mail commands go to the
#                            backend the passdb names (proxy=y host=IP)
#   rig_doveadm_password     the file of the nodes' doveadm_password
#   rig_listen NAME          the address NAME listens on
#   rig_start_postgres       a private PostgreSQL: database mail, user
#                            dovecot ($RIG_PG_PASSWORD), $RIG_PG_PORT;
#                            rig_psql ARGS; rig_pg_conf SRC DEST writes a
#                            shipped .conf.ext with its connect line
#   rig_test_certs DIR [SAN]  a test CA (DIR/ca.pem) and a server
#                            certificate it signed (DIR/server.pem, .key)
#   rig_lmtp_relay NAME DICT_URI   the shipped relay passdb first, on the
#                            domain dict DICT_URI (lmtp_proxy), reloaded
#   rig_add_user NAME USER PASSWORD [userdb_KEY=VALUE ...]
#                            passwd-file entry ({PLAIN}); replaces USER's
#                            old entry; Dovecot re-reads the file (a
#                            running instance: returns once it will, up
#                            to a second later)
#   rig_users_defer / rig_users_settle   between the two, rig_add_user
#                            does not wait: rig_users_settle waits once
#                            for all of them (many users at once)
#   rig_dest_plugin_set NAME KEY VALUE   plugin { KEY = VALUE }, last wins
#   rig_conf_add NAME TEXT   more config lines (any section)
#                            (both check the config and reload a running
#                            instance, returning once it reloaded)
#   rig_dotlocks_with_pid NAME   dotlock_use_excl = no, for the tests that
#                            kill -9 Dovecot processes (see the function;
#                            RIG_DOTLOCK_EXCL=yes keeps Dovecot's default)
#   rig_reload NAME / rig_stop NAME / rig_restart NAME (same port)
#   rig_oauth2_token NAME USER [TTL [ARGS]]
#                            an access token the --oauth2 source NAME
#                            accepts for USER (tools/oauth2-token.py)
#   rig_oauth2_login NAME MECH USER
#                            logs in to NAME as USER with XOAUTH2 or
#                            OAUTHBEARER and the token in $TOKEN (never an
#                            argument); prints "OK <folders>" or "NO <why>"
#   rig_doveadm NAME ARGS... doveadm -c <NAME's config> ARGS; for a
#                            destination inside a private mount namespace
#                            where our doveadm module is visible
#   rig_deliver NAME USER FILE [--from ADDR]   LMTP delivery; prints the
#                            RCPT/DATA replies; 0 delivered, 75 tempfail,
#                            1 rejected, 2 error
#   rig_imap NAME USER PASSWORD SUBCOMMAND ARGS...   tools/imaptool.py
#   rig_imap_append NAME USER PASSWORD FOLDER FILE [FLAGS]
#   rig_pop3_enable NAME     POP3 too (Debian's dovecot-pop3d, installed
#                            when missing), on a port of its own
#   rig_pop3 NAME USER PASSWORD   POP3 login and STAT; prints the count
#   rig_pop3_uidls PORT USER PASSWORD   the "N UIDL" lines of a POP3 server
#   rig_pop3_order_differs SRC_LINES DEST_LINES   of the UIDLs both lists
#                            of "N UIDL" lines have, those DEST lists out
#                            of SRC's order (all but the longest run in
#                            order)
#   rig_free_port [ADDR...]  a free TCP port on 127.0.0.1 (or on each ADDR)
#   rig_start_limitproxy NAME TARGET_PORT [tools/limitproxy.py args]
#                            a provider's limits in front of a server;
#                            its port in PPORT, $RIG/NAME.log, .stats and
#                            .pid; stopped at exit
#   rig_port / rig_conf / rig_dir / rig_log / rig_base_dir / rig_lmtp_socket
#   rig_users_file NAME / rig_home NAME USER / rig_maildir NAME USER
#   rig_log_tail NAME [N] / rig_diag_logs [N]   log tails (diagnostics)
#   rig_migrate_user DEST USER [ARGS]
#                            doveadm migrate -u USER: MIG_RC, MIG_OUT, MIG[]
#   rig_summary FILE         the doveadm -f tab summary row in FILE into the
#                            associative array MIG (MIG[copied], ...; the
#                            caller declares it with declare -A MIG)
#   rig_on_exit 'COMMAND'    run at exit, before the instances stop (use
#                            it instead of your own EXIT trap)
#   rig_secret PASSWORD [LABEL]   a password the test uses: under
#                            run-tests.sh (RIG_SECRETS, the registry) it
#                            must then appear nowhere but in the declared
#                            inputs (rig_add_user, rig_password_file and
#                            rig_foreign_add_user register theirs)
#   rig_secret_input PATH... files (or directories) under $RIG that hold a
#                            password on purpose: the test's templates and
#                            password files (the rig declares its own)
#
# TAP helpers (print "ok N - text" / "not ok N - text"):
#   tap_ok TEXT / tap_fail TEXT / tap_diag LINE...
#   tap_run TEXT CMD ARGS...        ok when CMD exits 0; output in $TAP_OUT;
#                                   on failure shows it and the log tails
#   tap_run_fails TEXT CMD ARGS...  ok when CMD fails (TAP_EXPECT_RC=N to
#                                   require a status)
#   tap_login TEXT NAME USER PASSWORD   ok when USER logs in over IMAP
#                                   (the password is never shown)
#   tap_is GOT EXPECTED TEXT / tap_like TEXT REGEX STRING
#   tap_done                        prints the plan, exits 1 if any failed
#   TAP_TODO=REASON tap_...         a known failure (TAP's "# TODO REASON"
#                                   on the line): run-tests.sh reports it
#                                   and does not count it as failed
#
# Start instances in the script's own shell, not inside $(...) or
# tap_run: the port and config bookkeeping would stay in the subshell
# (cleanup still stops such instances).
#
# Variables: RIG (temp dir), RIG_SRCDIR (repo), RIG_TOOLS (tests/tools),
# MIGRATE_BUILDDIR, RIG_HAVE_PLUGIN / RIG_HAVE_DOVEADM_MODULE (1 when our
# modules were found), RIG_PY (python3) and, per started instance NAME
# (upper-cased, non-alphanumerics as _): RIG_PORT_NAME, RIG_CONF_NAME.
# Layout of an instance: $RIG/NAME/{dovecot.conf,dovecot.log,users,run/
# (base_dir: master.pid, lmtp),state/,mail/USER/Maildir}.
# Knobs: RIG_KEEP=1 keeps $RIG; RIG_KEEP_ON_FAIL=1 keeps it when a tap_*
# assertion failed; RIG_DEBUG=1 turns on Dovecot's auth/mail debug logging;
# RIG_MAIL_USER / RIG_MAIL_GROUP (default nobody / nogroup); RIG_TMPDIR
# (default /tmp) is where $RIG is made, e.g. a tmpfs for benchmarks.
#
# Secrets scan: with RIG_SECRETS set (tests/run-tests.sh does), rig_cleanup
# runs tools/secret-scan.py over every file under $RIG but the declared
# inputs before removing it (also when it is kept); findings go to the
# runner's root-only directory and make the run fail, naming the file and
# the secret ("t-name#N (label)"), never the password.

RIG_SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RIG_TOOLS=$RIG_SRCDIR/tests/tools
RIG_PY=${RIG_PY:-/usr/bin/python3}
RIG_SYS_MODULES=/usr/lib/dovecot/modules

declare -A RIG_KIND=() RIG_PORTS=() RIG_POP3_PORTS=()
RIG_INSTANCES=()
RIG=
TAP_N=0
TAP_FAILED=0

rig_die() {
	echo "rig: $*" >&2
	exit 2
}

rig_init() {
	local name=${1:-$(basename "$0" .sh)}
	[ "$(id -u)" = 0 ] || rig_die "the rig needs root (private Dovecot, unshare)"
	command -v dovecot >/dev/null || rig_die "dovecot is not installed"
	name=${name//[^A-Za-z0-9_-]/_}
	# short: socket paths under base_dir must stay well below 108 chars
	RIG=$(mktemp -d "${RIG_TMPDIR:-/tmp}/rig-${name:0:12}.XXXXXX") || rig_die "mktemp failed"
	chmod 755 "$RIG"
	trap rig_cleanup EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
	if [ -n "${RIG_REGISTRY:-}" ]; then
		# run-tests.sh stops what a killed script left behind
		echo "$RIG" >>"$RIG_REGISTRY"
	fi
	# the secrets sampler counts the processes naming it as this run's
	[ -n "${RIG_SECRETS:-}" ] && echo "$RIG" >>"${RIG_SECRETS%/*}/rigs"

	MIGRATE_BUILDDIR=${MIGRATE_BUILDDIR:-$RIG_SRCDIR}
	RIG_PLUGIN_SO=$MIGRATE_BUILDDIR/plugin/.libs/lib20_migrate_plugin.so
	RIG_DOVEADM_SO=$MIGRATE_BUILDDIR/doveadm-cmd/.libs/lib20_doveadm_migrate_plugin.so
	RIG_HAVE_PLUGIN=0
	RIG_HAVE_DOVEADM_MODULE=0
	RIG_EXTRA_MAIL_PLUGINS=()

	mkdir -p "$RIG/mods/mail" "$RIG/mods/doveadm"
	local f
	for f in "$RIG_SYS_MODULES"/*.so; do
		ln -s "$f" "$RIG/mods/mail/"
	done
	# every module our plugin/ directory built (lib20_migrate_plugin.so
	# and any companion such as an lmtp-only module); copied, so that a
	# rebuild while the test runs cannot hand a half-written file to a
	# process that starts later
	for f in "$MIGRATE_BUILDDIR"/plugin/.libs/lib*_plugin.so; do
		[ -e "$f" ] || continue
		rm -f "$RIG/mods/mail/${f##*/}"
		cp "$f" "$RIG/mods/mail/"
		if [ "$f" = "$RIG_PLUGIN_SO" ]; then
			RIG_HAVE_PLUGIN=1
		else
			RIG_EXTRA_MAIL_PLUGINS+=("$(rig__module_name "$f")")
		fi
	done
	# copies, not symlinks: this directory is bind-mounted over the system
	# one, where a link back to the system path would point at itself
	for f in "$RIG_SYS_MODULES"/doveadm/*.so; do
		[ -e "$f" ] && cp -p "$f" "$RIG/mods/doveadm/"
	done
	if [ -e "$RIG_DOVEADM_SO" ]; then
		cp "$RIG_DOVEADM_SO" "$RIG/mods/doveadm/"
		RIG_HAVE_DOVEADM_MODULE=1
	fi
	export RIG MIGRATE_BUILDDIR RIG_HAVE_PLUGIN RIG_HAVE_DOVEADM_MODULE
}

# lib21_migrate_lmtp_plugin.so -> migrate_lmtp
rig__module_name() {
	local b
	b=$(basename "$1" .so)
	b=${b#lib}
	b=${b#*_}
	echo "${b%_plugin}"
}

rig_cleanup() {
	local rc=$?
	local i
	trap - EXIT HUP INT TERM
	rig__run_exit_hooks
	rig__stop_all
	rig__secret_scan
	if [ -n "$RIG" ] && [ -d "$RIG" ]; then
		if [ "${RIG_KEEP:-0}" = 1 ] ||
			{ [ "${RIG_KEEP_ON_FAIL:-0}" = 1 ] && [ "$TAP_FAILED" -gt 0 ]; }; then
			echo "# rig kept in $RIG" >&2
		else
			rm -rf "$RIG"
		fi
	fi
	exit "$rc"
}

# rig_test_certs DIR [SAN]: DIR/ca.pem (and .key), a test CA, and
# DIR/server.pem and .key, a server certificate it signed for SAN
# (default IP:127.0.0.1,DNS:localhost)
rig_test_certs() {
	local dir=$1 san=${2:-IP:127.0.0.1,DNS:localhost} err=$1/openssl.err
	(
		set -e
		cd "$dir"
		umask 077
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-days 30 -subj "/CN=rig test CA ${dir##*/} ${RIG##*.}" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" \
			-keyout ca.key -out ca.pem
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-subj "/CN=127.0.0.1" -keyout server.key -out server.csr
		printf '%s\n' "subjectAltName=$san" \
			"basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature,keyEncipherment" \
			"extendedKeyUsage=serverAuth" \
			"subjectKeyIdentifier=hash" \
			"authorityKeyIdentifier=keyid" >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
			-set_serial "0x$(openssl rand -hex 8)" -days 30 \
			-extfile server.ext -out server.pem
		rm -f server.csr server.ext
		chmod 644 ca.pem server.pem
	) >"$err" 2>&1 || {
		cat "$err" >&2
		return 1
	}
	rm -f "$err"
}

# rig_lmtp_relay NAME DICT_URI: the shipped relay passdb
# (conf.d/dovecot-migrate-relay.conf.ext, reading the domain dict at
# DICT_URI) as NAME's first passdb, lmtp_proxy on, as 90-migrate.conf
# says; reloads NAME
rig_lmtp_relay() {
	local name=$1 uri=$2
	local ext=$RIG/$name/relay.conf.ext
	sed -e "s|^uri = .*|uri = $uri|" \
		"$RIG_SRCDIR/conf.d/dovecot-migrate-relay.conf.ext" >"$ext"
	"$RIG_PY" - "$(rig_conf "$name")" "$ext" <<-'EOF'
	import sys
	path, ext = sys.argv[1], sys.argv[2]
	conf = open(path).read()
	block = ("lmtp_proxy = yes\npassdb {\n  driver = dict\n  args = %s\n"
	         "  result_success = return-ok\n  result_failure = continue\n"
	         "  result_internalfail = continue\n}\n" % ext)
	i = conf.index("passdb {")
	open(path, "w").write(conf[:i] + block + conf[i:])
	EOF
	rig_reload "$name"
}

# rig_start_postgres: a private PostgreSQL (Debian's postgresql), as the
# postgres user, in $RIG/pg, on 127.0.0.1:$RIG_PG_PORT, with the database
# "mail" owned by user "dovecot" whose password is $RIG_PG_PASSWORD
# (registered as a secret); stopped at exit.  Returns 2 (nothing started)
# when postgresql or dovecot-pgsql are not installed.
rig_start_postgres() {
	RIG_PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ ! -x "$RIG_PGBIN/initdb" ] || [ ! -e /usr/lib/dovecot/modules/libdriver_pgsql.so ]; then
		return 2
	fi
	local pg=$RIG/pg
	RIG_PG_PORT=$(rig_free_port) || rig_die "no free port"
	mkdir -p "$pg"
	chown postgres "$pg"
	runuser -u postgres -- "$RIG_PGBIN/initdb" -D "$pg/data" -A trust -U postgres \
		-E UTF8 --no-sync >"$RIG/initdb.log" 2>&1 || rig_die "initdb failed"
	runuser -u postgres -- "$RIG_PGBIN/pg_ctl" -D "$pg/data" -l "$pg/log" -w \
		-o "-p $RIG_PG_PORT -k $pg -c listen_addresses=127.0.0.1 -c fsync=off" \
		start >/dev/null || rig_die "PostgreSQL did not start"
	rig_on_exit "runuser -u postgres -- $RIG_PGBIN/pg_ctl -D $pg/data -m immediate stop >/dev/null 2>&1"
	# never on a command line: psql reads the statement on stdin
	RIG_PG_PASSWORD='Db!pass1'
	rig_secret "$RIG_PG_PASSWORD" "PostgreSQL user dovecot"
	printf "CREATE USER dovecot PASSWORD '%s'\n" "$RIG_PG_PASSWORD" | rig_psql -U postgres &&
		rig_psql -U postgres -c "CREATE DATABASE mail OWNER dovecot" ||
		rig_die "creating the database failed"
}

# psql ARGS... against rig_start_postgres's server
rig_psql() {
	"$RIG_PGBIN/psql" -h 127.0.0.1 -p "$RIG_PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@"
}

# rig_pg_conf SRC DEST: SRC (a shipped .conf.ext) with its connect line
# for rig_start_postgres's database (written by awk from the environment:
# the password never on a command line), registered, 0644
rig_pg_conf() {
	RIG_PG_PASSWORD=$RIG_PG_PASSWORD awk -v port="$RIG_PG_PORT" \
		'/^connect = / { $0 = "connect = host=127.0.0.1 port=" port " dbname=mail user=dovecot password=" ENVIRON["RIG_PG_PASSWORD"] } 1' \
		"$1" >"$2"
	rig_secret_input "$2"
	chmod 644 "$2"
}

# --- secrets -------------------------------------------------------------------
# registry line: TEST <TAB> LABEL <TAB> hex of the password (od reads it on
# stdin: a password never goes on a command line)
declare -A RIG_SECRETS_SEEN=()
rig_secret() {
	local pw=$1 label=${2:-rig_secret} hex
	[ -n "${RIG_SECRETS:-}" ] || return 0
	[ -n "$pw" ] || return 0
	[ -z "${RIG_SECRETS_SEEN[$pw]:-}" ] || return 0
	RIG_SECRETS_SEEN[$pw]=1
	hex=$(printf '%s' "$pw" | od -An -v -tx1 | tr -d ' \n')
	printf '%s\t%s\t%s\n' "$(basename "$0" .sh)" "${label//$'\t'/ }" "$hex" >>"$RIG_SECRETS"
}

# paths under $RIG (absolute or relative to it) that hold a password on
# purpose; recorded in $RIG/.secret-inputs for the scan
rig_secret_input() {
	local p
	[ -n "$RIG" ] || rig_die "call rig_init first"
	for p in "$@"; do
		p=${p#"$RIG"/}
		case $p in /*) rig_die "rig_secret_input: $p is not under \$RIG" ;; esac
		printf '%s\n' "$p" >>"$RIG/.secret-inputs"
	done
}

rig__secret_scan() {
	[ -n "${RIG_SECRETS:-}" ] && [ -n "$RIG" ] && [ -d "$RIG" ] || return 0
	"$RIG_PY" "$RIG_TOOLS/secret-scan.py" files "$RIG" --registry "$RIG_SECRETS" \
		--findings "${RIG_SECRETS%/*}/findings" --stats "${RIG_SECRETS%/*}/scanned" \
		--test "$(basename "$0" .sh)" >/dev/null &&
		: >"$RIG/.secret-scanned" ||
		echo "# rig: the secrets scan of $RIG failed" >&2
}

# user callbacks run before the instances are stopped
rig_on_exit() {
	RIG_EXIT_HOOKS+=("$*")
}
RIG_EXIT_HOOKS=()
rig__run_exit_hooks() {
	local h
	for h in "${RIG_EXIT_HOOKS[@]}"; do
		eval "$h" || true
	done
}

rig__var() {
	local n=${1^^}
	echo "${n//[^A-Z0-9]/_}"
}

rig_dir() { echo "$RIG/$1"; }
rig_conf() { echo "$RIG/$1/dovecot.conf"; }
rig_log() { echo "$RIG/$1/dovecot.log"; }
rig_base_dir() { echo "$RIG/$1/run"; }
rig_lmtp_socket() { echo "$RIG/$1/run/lmtp"; }
rig_users_file() { echo "$RIG/$1/users"; }
rig_home() { echo "$RIG/$1/mail/$2"; }
rig_maildir() { echo "$RIG/$1/mail/$2/Maildir"; }
rig_port() {
	[ -n "${RIG_PORTS[$1]:-}" ] || rig_die "no instance $1"
	echo "${RIG_PORTS[$1]}"
}

# the address NAME listens on (--listen; 127.0.0.1)
rig_listen() {
	cat "$RIG/$1/listen" 2>/dev/null || echo 127.0.0.1
}

# rig_free_port [ADDR...]: a TCP port that nobody listens on right now on
# any of the addresses (default 127.0.0.1; any 127.x.y.z is loopback);
# picked at random below the ephemeral range, so concurrent rigs rarely
# collide (and a collision is retried at start)
rig_free_port() {
	"$RIG_PY" - "${@:-127.0.0.1}" <<-'EOF'
	import random, socket, sys
	rng = random.SystemRandom()
	for _ in range(200):
	    port = rng.randrange(20000, 32000)
	    ok = True
	    for addr in sys.argv[1:]:
	        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	        try:
	            s.bind((addr, port))
	        except OSError:
	            ok = False
	        finally:
	            s.close()
	    if ok:
	        print(port)
	        sys.exit(0)
	sys.exit("no free port found")
	EOF
}

rig_start_limitproxy() {
	local name=$1 target=$2
	shift 2
	PPORT=$(rig_free_port) || rig_die "no free port"
	"$RIG_PY" "$RIG_TOOLS/limitproxy.py" --port "$PPORT" --target-port "$target" \
		--log "$RIG/$name.log" --stats "$RIG/$name.stats" \
		--pidfile "$RIG/$name.pid" --daemon "$@" || rig_die "limitproxy $name did not start"
	rig_on_exit "rig__stop_limitproxy $name"
}

# the proxy's pid only while it is still that proxy (a pid may be reused)
rig__stop_limitproxy() {
	local pid
	pid=$(cat "$RIG/$1.pid" 2>/dev/null) || return 0
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "limitproxy.py --port" &&
		kill "$pid" 2>/dev/null
	return 0
}

rig__parse_opts() {
	# sets _sep _prefix _layout _format _oauth2 _oauth2_app _migrate
	# _listen _doveadm_port _doveadm_proxy from the option list
	_sep=/ _prefix='' _layout=maildir++ _format=maildir _oauth2=0 _oauth2_app=0 _migrate=1
	_listen=127.0.0.1 _doveadm_port='' _doveadm_proxy=
	while [ $# -gt 0 ]; do
		case $1 in
		--sep) _sep=$2; shift 2 ;;
		--prefix) _prefix=$2; shift 2 ;;
		--layout) _layout=$2; shift 2 ;;
		--format) _format=$2; shift 2 ;;
		--oauth2) _oauth2=1; shift ;;
		--oauth2-app) _oauth2=1 _oauth2_app=1; shift ;;
		--no-migrate) _migrate=0; shift ;;
		# another loopback address (127.0.0.2...): a second backend
		# on the same ports, as a cluster's nodes have them
		--listen) _listen=$2; shift 2 ;;
		# a doveadm server on PORT (service doveadm's inet listener,
		# doveadm_password from rig_doveadm_password)
		--doveadm-port) _doveadm_port=$2; shift 2 ;;
		# doveadm sends mail commands to the backend the passdb names
		# (proxy=y host=...), on that backend's doveadm PORT
		--doveadm-proxy) _doveadm_proxy=$2; shift 2 ;;
		*) rig_die "unknown option $1" ;;
		esac
	done
	case $_sep in /|.) ;; *) rig_die "--sep must be / or ." ;; esac
	case $_layout in fs|maildir++) ;; *) rig_die "--layout must be fs or maildir++" ;; esac
	case $_format in maildir|sdbox|mdbox) ;; *) rig_die "--format must be maildir, sdbox or mdbox" ;; esac
	[[ $_listen =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || rig_die "--listen must be a 127.x.y.z address"
	case $_doveadm_port$_doveadm_proxy in ''|*[!0-9]*) [ -z "$_doveadm_port$_doveadm_proxy" ] ||
		rig_die "--doveadm-port and --doveadm-proxy take a port" ;; esac
}

# the password of the doveadm protocol between the rig's nodes, in a file
# Dovecot reads as root (doveadm_password = <FILE); prints the path
rig_doveadm_password() {
	local f=$RIG/doveadm.pw
	if [ ! -e "$f" ]; then
		local pw
		pw=rig-doveadm-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
		rig_secret "$pw" "doveadm_password"
		rig_secret_input "doveadm.pw"
		(umask 077 && printf '%s' "$pw" >"$f")
	fi
	echo "$f"
}

# rig__oauth2_conf DIR [app]: the oauth2 passdb of a --oauth2 source (on
# stdout), its HMAC key in DIR/oauth2.key and, base64, where Dovecot's fs
# dict finds shared/default/HS256/default (the dict drops "shared/"; a
# token must not carry an "azp" claim, which would name another key
# directory).
# With "app" (--oauth2-app), a second oauth2 passdb after it, same key,
# for app-only tokens (Microsoft's client-credentials grant: the token
# names the app, not a mailbox; tools/tokenserver.py issues them with the
# claims aud https://outlook.office365.com and scope IMAP.AccessAsApp):
# db-oauth2.c db_oauth2_validate_username() expands username_format once
# for the login user and once for the token's username_attribute value
# and wants the two equal, so a constant format (no %) matches every
# user; what tells an app token apart is its scope: in 2.3.19.1
# db_oauth2_token_in_scope() wants a word of the scope setting in the
# token's "scope" claim (without one, its "aud"); Debian's 2.3.19.1
# (+deb12u7, the backported fix of CVE-2026-73208 and the JWT checks of
# 2.3.21's oauth2-jwt.c) wants the "scope" claim itself, and the
# client_id setting in "aud".  A user token for another user fails the
# first passdb (user unknown: the chain goes on) and this one (no or
# another scope: USER_DISABLED or a failed validation), so the login
# fails.
rig__oauth2_conf() {
	local dir=$1 app=${2:-}
	mkdir -p "$dir/oauth2-keys/default/HS256"
	head -c 32 /dev/urandom >"$dir/oauth2.key"
	base64 -w0 "$dir/oauth2.key" >"$dir/oauth2-keys/default/HS256/default"
	chgrp -R dovecot "$dir/oauth2-keys" 2>/dev/null
	chmod -R g+rX,o-rwx "$dir/oauth2-keys"
	chmod 600 "$dir/oauth2.key"
	cat >"$dir/oauth2.conf.ext" <<-EOF
	introspection_mode = local
	local_validation_key_dict = fs:posix:prefix=$dir/oauth2-keys/
	username_attribute = sub
	EOF
	cat <<-EOF
	passdb {
	  driver = oauth2
	  mechanisms = xoauth2 oauthbearer
	  args = $dir/oauth2.conf.ext
	}
	EOF
	[ "$app" = app ] || return 0
	cat >"$dir/oauth2-app.conf.ext" <<-EOF
	introspection_mode = local
	local_validation_key_dict = fs:posix:prefix=$dir/oauth2-keys/
	username_attribute = sub
	username_format = any-user
	scope = IMAP.AccessAsApp
	client_id = https://outlook.office365.com
	EOF
	cat <<-EOF
	passdb {
	  driver = oauth2
	  mechanisms = xoauth2 oauthbearer
	  args = $dir/oauth2-app.conf.ext
	}
	EOF
}

rig__write_conf() {
	local name=$1 kind=$2 port=$3
	local dir=$RIG/$name
	local muser=${RIG_MAIL_USER:-nobody} mgroup=${RIG_MAIL_GROUP:-nogroup}
	local location="maildir:~/Maildir"
	[ "$_layout" = fs ] && location="maildir:~/Maildir:LAYOUT=fs"
	# dbox has no Maildir++ layout: its folders are directories
	[ "$_format" = maildir ] || location="$_format:~/$_format"
	local plugins=""
	{
		echo "# generated by tests/lib/rig.sh ($kind); no /etc/dovecot includes"
		echo "instance_name = rig-${RIG##*.}-$name"
		echo "base_dir = $dir/run"
		echo "state_dir = $dir/state"
		echo "log_path = $dir/dovecot.log"
		echo "info_log_path = $dir/dovecot.log"
		echo "debug_log_path = $dir/dovecot.log"
		if [ "$kind" = dest ]; then
			echo "protocols = imap lmtp"
		else
			echo "protocols = imap"
		fi
		echo "listen = $_listen"
		echo "ssl = no"
		echo "disable_plaintext_auth = no"
		if [ "$_oauth2" = 1 ]; then
			echo "auth_mechanisms = plain login xoauth2 oauthbearer"
		else
			echo "auth_mechanisms = plain login"
		fi
		echo "first_valid_uid = 1"
		echo "mail_uid = $muser"
		echo "mail_gid = $mgroup"
		echo "mail_location = $location"
		echo "mail_fsync = never"
		echo "mail_max_userip_connections = 200"
		echo "auth_failure_delay = 0"
		echo "postmaster_address = postmaster@rig.test"
		if [ "${RIG_DEBUG:-0}" = 1 ]; then
			echo "auth_debug = yes"
			echo "auth_verbose = yes"
			echo "mail_debug = yes"
		fi
		local passwd_mechs=""
		if [ "$_oauth2" = 1 ]; then
			rig__oauth2_conf "$dir" "$([ "$_oauth2_app" = 1 ] && echo app)"
			passwd_mechs="mechanisms = plain login"
		fi
		cat <<-EOF
		passdb {
		  driver = passwd-file
		  args = $dir/users
		  $passwd_mechs
		}
		userdb {
		  driver = passwd-file
		  args = $dir/users
		  default_fields = home=$dir/mail/%u
		}
		namespace inbox {
		  inbox = yes
		  separator = $_sep
		  prefix = $_prefix
		  mailbox Sent {
		    special_use = \\Sent
		    auto = no
		  }
		  mailbox Trash {
		    special_use = \\Trash
		    auto = no
		  }
		  mailbox Drafts {
		    special_use = \\Drafts
		    auto = no
		  }
		  mailbox Junk {
		    special_use = \\Junk
		    auto = no
		  }
		  mailbox Archive {
		    special_use = \\Archive
		    auto = no
		  }
		}
		service imap-login {
		  inet_listener imap {
		    address = $_listen
		    port = $port
		  }
		  inet_listener imaps {
		    port = 0
		  }
		}
		EOF
		if [ "$kind" = dest ]; then
			# as conf.d/90-migrate.conf loads them: the engine for
			# doveadm only, the delivery module for lda only
			plugins="quota"
			local doveadm_plugins=""
			if [ "$_migrate" = 1 ] && [ "$RIG_HAVE_PLUGIN" = 1 ]; then
				doveadm_plugins=" migrate"
			fi
			local lmtp_plugins="" lda_plugins="" imap_plugins="imap_quota" p
			if [ "$_migrate" = 1 ]; then
				for p in "${RIG_EXTRA_MAIL_PLUGINS[@]}"; do
					case $p in
					*lmtp*) lmtp_plugins="$lmtp_plugins $p" ;;
					*lda*) lda_plugins="$lda_plugins $p" ;;
					*imap*) imap_plugins="$imap_plugins $p" ;;
					*) plugins="$plugins $p" ;;
					esac
				done
			fi
			cat <<-EOF
			mail_plugin_dir = $RIG/mods/mail
			mail_plugins = \$mail_plugins $plugins
			protocol imap {
			  mail_plugins = \$mail_plugins $imap_plugins
			}
			protocol lmtp {
			  mail_plugins = \$mail_plugins$lmtp_plugins
			}
			protocol doveadm {
			  mail_plugins = \$mail_plugins$doveadm_plugins
			}
			protocol lda {
			  mail_plugins = \$mail_plugins$lda_plugins
			}
			service lmtp {
			  unix_listener lmtp {
			    mode = 0666
			  }
			}
			plugin {
			  quota = maildir:User quota
			}
			EOF
		fi
		if [ -n "$_doveadm_port" ]; then
			cat <<-EOF
			service doveadm {
			  inet_listener doveadm {
			    address = $_listen
			    port = $_doveadm_port
			  }
			}
			EOF
		fi
		if [ -n "$_doveadm_proxy" ]; then
			echo "doveadm_port = $_doveadm_proxy"
		fi
		if [ -n "$_doveadm_port$_doveadm_proxy" ]; then
			echo "doveadm_password = <$(rig_doveadm_password)"
		fi
		echo "!include_try $dir/extra.conf"
		echo "!include_try $dir/plugin.conf"
	} >"$dir/dovecot.conf"
}

rig__start() {
	local name=$1 kind=$2
	shift 2
	[ -n "$RIG" ] || rig_die "call rig_init first"
	[ -z "${RIG_KIND[$name]:-}" ] || rig_die "instance $name exists"
	[[ $name =~ ^[A-Za-z0-9_-]+$ ]] || rig_die "bad instance name $name"
	local _sep _prefix _layout _format _oauth2 _oauth2_app _migrate
	local _listen _doveadm_port _doveadm_proxy
	rig__parse_opts "$@"
	local dir=$RIG/$name
	mkdir -p "$dir/run" "$dir/state" "$dir/mail"
	chown "${RIG_MAIL_USER:-nobody}:${RIG_MAIL_GROUP:-nogroup}" "$dir/mail"
	# the auth process (user dovecot) reads it; test passwords only
	: >"$dir/users"
	chgrp dovecot "$dir/users" 2>/dev/null
	chmod 640 "$dir/users"
	rig_secret_input "$name/users"
	# the documented credential store of doveadm migrate batch (source
	# passwords until finish); 0600 files
	[ "$kind" = dest ] && rig_secret_input "$name/state/migrate/credentials"
	touch "$dir/extra.conf" "$dir/plugin.settings"
	: >"$dir/plugin.conf"
	RIG_KIND[$name]=$kind
	echo "$_sep" >"$dir/sep"
	echo "$_prefix" >"$dir/prefix"
	echo "$_listen" >"$dir/listen"
	rm -f "$dir/doveadm-server"
	[ -n "$_doveadm_port" ] && [ "$kind" = dest ] && touch "$dir/doveadm-server"
	local port
	for _ in 1 2 3; do
		port=$(rig_free_port "$_listen") || rig_die "no free port"
		rig__write_conf "$name" "$kind" "$port"
		RIG_PORTS[$name]=$port
		if rig__launch "$name"; then
			local v
			v=$(rig__var "$name")
			printf -v "RIG_PORT_$v" %s "$port"
			printf -v "RIG_CONF_$v" %s "$dir/dovecot.conf"
			export "RIG_PORT_$v" "RIG_CONF_$v"
			return 0
		fi
		cat "$dir/start.out" "$dir/dovecot.log" 2>/dev/null | grep -q "Address already in use" || break
		echo "# rig: port $port of $name was taken, retrying" >&2
	done
	echo "# rig: could not start $name; log tail:" >&2
	rig_log_tail "$name" 30 >&2
	return 1
}

# start the master and wait until it answers on its IMAP port
rig__launch() {
	local name=$1
	local dir=$RIG/$name conf=$RIG/$name/dovecot.conf
	# not through a pipe: the daemon keeps its stdout, and $(...) would
	# wait for it to exit.  A destination's doveadm server loads our
	# doveadm module from the system path, as rig_doveadm does: the
	# master lives in a mount namespace of its own that has it there
	local -a launch=(dovecot -c "$conf")
	if [ -e "$dir/doveadm-server" ]; then
		launch=(unshare -m -- sh -c 'mount --bind "$1" /usr/lib/dovecot/modules/doveadm || exit 97
			exec dovecot -c "$2"' sh "$RIG/mods/doveadm" "$conf")
	fi
	if ! "${launch[@]}" >"$dir/start.out" 2>&1 </dev/null; then
		echo "# rig: dovecot -c $conf failed: $(cat "$dir/start.out")" >&2
		return 1
	fi
	local found=0 i
	for i in "${RIG_INSTANCES[@]}"; do
		[ "$i" = "$name" ] && found=1
	done
	[ $found = 1 ] || RIG_INSTANCES+=("$name")
	if ! "$RIG_PY" - "${RIG_PORTS[$name]}" "$dir/run/master.pid" "$(rig_listen "$name")" <<-'EOF'; then
	import os, socket, sys, time
	port, pidfile, addr = int(sys.argv[1]), sys.argv[2], sys.argv[3]
	deadline = time.time() + 15
	while time.time() < deadline:
	    try:
	        pid = int(open(pidfile).read().split()[0])
	        os.kill(pid, 0)
	    except (OSError, ValueError, IndexError):
	        pid = None
	    if pid is not None:
	        try:
	            with socket.create_connection((addr, port), timeout=2) as s:
	                if s.recv(200).startswith(b"* OK"):
	                    sys.exit(0)
	        except OSError:
	            pass
	    time.sleep(0.05)
	sys.exit(1)
	EOF
		echo "# rig: $name did not come up on port ${RIG_PORTS[$name]}" >&2
		rig__stop_quiet "$name"
		return 1
	fi
	return 0
}

rig_start_source() {
	local name=$1
	shift
	rig__start "$name" source "$@"
}

rig_start_dest() {
	local name=$1
	shift
	rig__start "$name" dest "$@"
}

# the PID of NAME's running master, checked against its command line (a
# stale pid file must never make us signal an unrelated process)
rig__master_pid() {
	local f=$RIG/$1/run/master.pid pid
	[ -s "$f" ] || return 1
	pid=$(head -n1 "$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RIG/$1/dovecot.conf" || return 1
	echo "$pid"
}

rig__stop_quiet() {
	local name=$1 pid i
	pid=$(rig__master_pid "$name") || pid=
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 150; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "# rig: $name (pid $pid) ignored SIGTERM, killing" >&2
			kill -KILL "$pid" 2>/dev/null
			sleep 0.2
		fi
	fi
	return 0
}

# SIGTERM to every master under $RIG (also those started in a subshell,
# which the arrays here do not know about), then wait for all of them: a
# master takes a couple of seconds to shut down, in parallel paid once
rig__stop_all() {
	local f name pid i alive
	local -a pids=()
	for f in "$RIG"/*/run/master.pid; do
		[ -e "$f" ] || continue
		name=${f#"$RIG"/}
		name=${name%%/*}
		pid=$(rig__master_pid "$name") || continue
		kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
	done
	for ((i = 0; i < 150; i++)); do
		alive=0
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && return 0
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			echo "# rig: Dovecot master $pid ignored SIGTERM, killing" >&2
			kill -KILL "$pid" 2>/dev/null
		fi
	done
}

rig_stop() {
	[ -n "${RIG_KIND[$1]:-}" ] || rig_die "no instance $1"
	rig__stop_quiet "$1"
}

# start a stopped instance again, same port and config
rig_restart() {
	local name=$1
	[ -n "${RIG_KIND[$name]:-}" ] || rig_die "no instance $name"
	rig__stop_quiet "$name"
	rig__launch "$name" || {
		rig_log_tail "$name" 30 >&2
		return 1
	}
}

# make the running master re-read its config; returns once it logged so
rig_reload() {
	local name=$1 before i
	rig__check_conf "$name" || return 1
	rig__master_pid "$name" >/dev/null || return 0
	before=$(grep -c "SIGHUP received" "$(rig_log "$name")" 2>/dev/null)
	doveadm -c "$(rig_conf "$name")" reload || return 1
	for ((i = 0; i < 100; i++)); do
		[ "$(grep -c "SIGHUP received" "$(rig_log "$name")" 2>/dev/null)" -gt "$before" ] && return 0
		sleep 0.05
	done
	echo "# rig: reload of $name not confirmed in its log" >&2
	return 1
}

rig__check_conf() {
	local err
	if ! err=$(doveconf -c "$(rig_conf "$1")" -n 2>&1 >/dev/null); then
		echo "# rig: config of $1 is broken: $err" >&2
		return 1
	fi
}

# append free-form config (e.g. a service or protocol block); refused
# (and not kept) when doveconf finds it broken
rig_conf_add() {
	local name=$1
	shift
	[ -n "${RIG_KIND[$name]:-}" ] || rig_die "no instance $name"
	local f=$RIG/$name/extra.conf
	cp -p "$f" "$f.bak"
	printf '%s\n' "$*" >>"$f"
	if ! rig__check_conf "$name"; then
		mv "$f.bak" "$f"
		return 1
	fi
	rm -f "$f.bak"
	rig_reload "$name"
}

# kill -9 between Dovecot creating a dotlock with O_EXCL (dotlock_use_excl =
# yes, the default) and writing its PID into it leaves the lock empty: with
# no PID to check, the next process overrides it only after its stale
# timeout, 120 s for dovecot-uidlist.lock and dovecot-keywords.lock (seen
# as "dovecot.list.index.log was locked for 123 seconds", held meanwhile).
# Linked into place instead, a lock always holds the PID, and a stale one
# is overridden after 2 s.
rig_dotlocks_with_pid() {
	rig_conf_add "$1" "dotlock_use_excl = ${RIG_DOTLOCK_EXCL:-no}"
}

# plugin { KEY = VALUE }, last value of a key wins
rig_dest_plugin_set() {
	local name=$1 key=$2 value=$3
	local dir=$RIG/$name
	[ -n "${RIG_KIND[$name]:-}" ] || rig_die "no instance $name"
	[[ $key =~ ^[A-Za-z0-9_/.-]+$ ]] || rig_die "bad plugin key $key"
	case $value in *$'\n'*) rig_die "newline in value of $key" ;; esac
	cp -p "$dir/plugin.settings" "$dir/plugin.settings.bak"
	cp -p "$dir/plugin.conf" "$dir/plugin.conf.bak"
	printf '%s\t%s\n' "$key" "$value" >>"$dir/plugin.settings"
	awk -F '\t' '{ v[$1] = substr($0, length($1) + 2); if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } }
		END { print "plugin {"; for (i = 0; i < n; i++) print "  " order[i] " = " v[order[i]]; print "}" }' \
		"$dir/plugin.settings" >"$dir/plugin.conf.new"
	mv "$dir/plugin.conf.new" "$dir/plugin.conf"
	if ! rig__check_conf "$name"; then
		mv "$dir/plugin.settings.bak" "$dir/plugin.settings"
		mv "$dir/plugin.conf.bak" "$dir/plugin.conf"
		return 1
	fi
	rm -f "$dir/plugin.settings.bak" "$dir/plugin.conf.bak"
	rig_reload "$name"
}

# USER:{PLAIN}PASSWORD:::::: extra fields (userdb_KEY=VALUE for the userdb);
# Dovecot re-reads the file when its mtime or size changes
rig_add_user() {
	local name=$1 user=$2 pass=$3
	shift 3
	local f=$RIG/$name/users
	[ -e "$f" ] || rig_die "no instance $name"
	case "$user$pass" in *:*|*$'\n'*) rig_die "':' or newline in user or password" ;; esac
	case "$*" in *$'\n'*) rig_die "newline in extra fields" ;; esac
	rig_secret "$pass" "rig_add_user $name $user"
	local line="$user:{PLAIN}$pass::::::"
	[ $# -gt 0 ] && line="$line$*"
	# replace an existing entry of this user
	awk -F: -v u="$user" '$1 != u' "$f" >"$f.new"
	echo "$line" >>"$f.new"
	chgrp dovecot "$f.new" 2>/dev/null
	chmod 640 "$f.new"
	# Dovecot re-reads the file when mtime or size change: make sure the
	# mtime moves even for a same-size change within one second
	local old now
	old=$(stat -c %Y "$f")
	now=$(date +%s)
	[ "$now" -gt "$old" ] || touch -d "@$((old + 1))" "$f.new"
	mv "$f.new" "$f"
	if rig__master_pid "$name" >/dev/null; then
		if [ "$RIG_USERS_DEFER" = 1 ]; then
			RIG_USERS_PENDING=1
		else
			rig__users_wait
		fi
	fi
	mkdir -p "$RIG/$name/mail"
}

# ... and it stats the file at most once a second: a running instance
# sees the change from the next second on
rig__users_wait() {
	local us=${EPOCHREALTIME#*.}
	sleep "$(printf '%d.%06d' $(((1000000 - 10#$us) / 1000000)) $(((1000000 - 10#$us) % 1000000)))"
	sleep 0.01
}

RIG_USERS_DEFER=0
RIG_USERS_PENDING=0
rig_users_defer() {
	RIG_USERS_DEFER=1
}

rig_users_settle() {
	RIG_USERS_DEFER=0
	[ "$RIG_USERS_PENDING" = 1 ] && rig__users_wait
	RIG_USERS_PENDING=0
}

# a source password in a file only the mail user can read (doveadm migrate
# reads it after dropping to the mail uid); prints the file's path
rig_password_file() {
	local name=$1 password=$2
	local f=$RIG/$name.pw
	rig_secret "$password" "rig_password_file $name"
	rig_secret_input "$f"
	printf '%s\n' "$password" >"$f"
	chown "${RIG_MAIL_USER:-nobody}" "$f"
	chmod 400 "$f"
	echo "$f"
}

# point DEST's migrate plugin at source instance SRC on 127.0.0.1, with
# PASSWORD in a file; TLS off unless SSL (imaps/starttls) is given
rig_migrate_source() {
	local dest=$1 src=$2 password=$3 ssl=${4:-no}
	rig_dest_plugin_set "$dest" migrate_source_host 127.0.0.1
	rig_dest_plugin_set "$dest" migrate_source_port "$(rig_port "$src")"
	rig_dest_plugin_set "$dest" migrate_source_ssl "$ssl"
	rig_dest_plugin_set "$dest" migrate_source_password_file \
		"$(rig_password_file "$dest-source" "$password")"
}

# rig_oauth2_token NAME USER [TTL [extra oauth2-token.py args]]: a token
# that the --oauth2 source NAME accepts for USER (TTL seconds, default
# 300; negative: expired), on stdout
rig_oauth2_token() {
	local name=$1 user=$2 ttl=${3:-300}
	shift 2
	[ $# -gt 0 ] && shift
	"$RIG_PY" "$RIG_TOOLS/oauth2-token.py" --key-file "$RIG/$name/oauth2.key" \
		--sub "$user" --ttl "$ttl" "$@"
}

rig_oauth2_login() {
	"$RIG_PY" - "$(rig_port "$1")" "$2" "$3" <<-'EOF'
	import imaplib, os, sys
	port, mech, user = int(sys.argv[1]), sys.argv[2], sys.argv[3]
	tok = os.environ["TOKEN"]
	if mech == "XOAUTH2":
	    ir = "user=%s\x01auth=Bearer %s\x01\x01" % (user, tok)
	else:
	    ir = "n,a=%s,\x01host=127.0.0.1\x01port=%d\x01auth=Bearer %s\x01\x01" % (user, port, tok)
	c = imaplib.IMAP4("127.0.0.1", port)
	try:
	    c.authenticate(mech, lambda _: ir.encode())
	    print("OK", c.list()[1])
	except imaplib.IMAP4.error as e:
	    print("NO", e)
	EOF
}

# The mount namespace a doveadm runs in (unshare -m): $1 the doveadm
# modules bound over the compiled-in directory (empty: none), $2 the
# instance's base_dir, $3 its dovecot.conf, or "socket" for no -c: a tmpfs
# on /run holds base_dir at /run/dovecot, where doveadm looks for the
# config socket (the host's /run is not touched); the rest are doveadm's
# arguments.  doveadm runs under $RIG_NS_EXEC (a command prefix: a timer,
# valgrind) when that is set.
# shellcheck disable=SC2016 # $1.. belong to the inner sh
RIG__DOVEADM_NS='mods=$1 run=$2 conf=$3; shift 3
	if [ -n "$mods" ]; then
		mount --bind "$mods" /usr/lib/dovecot/modules/doveadm || exit 97
	fi
	if [ "$conf" != socket ]; then
		exec ${RIG_NS_EXEC:-} doveadm -c "$conf" "$@"
	fi
	mount -t tmpfs -o size=1m,mode=0755 rig-run /run &&
		mkdir /run/dovecot && mount --bind "$run" /run/dovecot || exit 97
	exec ${RIG_NS_EXEC:-} doveadm "$@"'

# rig_doveadm_cmd NAME [file|socket [MODS]]: the command line (NUL
# separated, for mapfile -d '') of a doveadm for instance NAME in such a
# namespace: its settings from its dovecot.conf (file, the default) or,
# as an admin runs doveadm where Dovecot runs, from its config socket;
# MODS the doveadm modules to see (default: a destination's, with ours;
# "-": the system's)
rig_doveadm_cmd() {
	local name=$1 config=${2:-file} mods=${3:-} conf=socket
	[ -n "${RIG_KIND[$name]:-}" ] || rig_die "no instance $name"
	if [ -z "$mods" ] && [ "${RIG_KIND[$name]}" = dest ]; then
		mods=$RIG/mods/doveadm
	fi
	[ "$mods" = - ] && mods=
	[ "$config" = socket ] || conf=$(rig_conf "$name")
	printf '%s\0' unshare -m -- sh -c "$RIG__DOVEADM_NS" sh "$mods" \
		"$(rig_base_dir "$name")" "$conf"
}

# doveadm against instance NAME's config; a destination also sees our
# doveadm module (only loaded from the compiled-in directory, so that is
# bind-mounted in a private mount namespace).  RIG_DOVEADM_WRAP="valgrind
# ..." runs a destination's doveadm under that command.
rig_doveadm() {
	local name=$1 cmd
	shift
	[ -n "${RIG_KIND[$name]:-}" ] || rig_die "no instance $name"
	if [ "${RIG_KIND[$name]}" = dest ]; then
		mapfile -d '' -t cmd < <(rig_doveadm_cmd "$name")
		RIG_NS_EXEC=${RIG_DOVEADM_WRAP:-} "${cmd[@]}" "$@"
	else
		doveadm -c "$RIG/$name/dovecot.conf" "$@"
	fi
}

# rig_doveadm_socket NAME ARGS...: doveadm for destination NAME as an
# admin runs it where Dovecot runs: no -c, its settings from the running
# instance's config socket (rig_doveadm_cmd)
rig_doveadm_socket() {
	local name=$1 cmd
	shift
	[ "${RIG_KIND[$name]:-}" = dest ] || rig_die "no destination $name"
	mapfile -d '' -t cmd < <(rig_doveadm_cmd "$name" socket)
	RIG_NS_EXEC=${RIG_DOVEADM_WRAP:-} "${cmd[@]}" "$@"
}

# rig_doveadm_rss LOG NAME ARGS...: doveadm for destination NAME as
# rig_doveadm runs it, its stdout and stderr into LOG; prints the peak RSS
# (kB) of the whole run, from the kernel's accounting, and exits as
# doveadm did
rig_doveadm_rss() {
	local log=$1 name=$2 cmd
	shift 2
	mapfile -d '' -t cmd < <(rig_doveadm_cmd "$name")
	"$RIG_PY" -c '
import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    rc = subprocess.call(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)' "$log" "${cmd[@]}" "$@"
}

# deliver FILE to USER through NAME's LMTP socket; prints the server's
# reply to RCPT/DATA, exits 0 delivered, 75 tempfail (4xx), 1 rejected
rig_deliver() {
	local name=$1 user=$2 file=$3
	shift 3
	"$RIG_PY" "$RIG_TOOLS/lmtp-deliver.py" --socket "$(rig_lmtp_socket "$name")" \
		--rcpt "$user" "$@" <"$file"
}

# tools/imaptool.py against instance NAME as USER
rig_imap() {
	local name=$1 user=$2 pass=$3
	shift 3
	IMAP_PASSWORD=$pass "$RIG_PY" "$RIG_TOOLS/imaptool.py" --host "$(rig_listen "$name")" \
		--port "$(rig_port "$name")" --user "$user" "$@"
}

rig_pop3_enable() {
	local name=$1 port
	[ -n "${RIG_KIND[$name]:-}" ] || rig_die "no instance $name"
	if [ ! -x /usr/lib/dovecot/pop3 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends dovecot-pop3d >/dev/null 2>&1 ||
			rig_die "POP3 needs Debian's dovecot-pop3d"
	fi
	port=$(rig_free_port) || rig_die "no free port"
	rig_conf_add "$name" "protocols = \$protocols pop3
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $port
  }
  inet_listener pop3s {
    port = 0
  }
}" || return 1
	RIG_POP3_PORTS[$name]=$port
}

# rig__pop3_run PORT USER PASSWORD WHAT: log in at the POP3 server on
# 127.0.0.1:PORT; WHAT "stat" prints the message count, "uidl" the
# "N UIDL" lines
rig__pop3_run() {
	POP3_PASSWORD=$3 "$RIG_PY" - "$1" "$2" "$4" <<-'EOF'
	import os, poplib, sys
	pop = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
	pop.user(sys.argv[2])
	pop.pass_(os.environ["POP3_PASSWORD"])
	if sys.argv[3] == "uidl":
	    for line in pop.uidl()[1]:
	        print(line.decode())
	else:
	    print(pop.stat()[0])
	pop.quit()
	EOF
}

rig_pop3() {
	local name=$1 user=$2 pass=$3
	[ -n "${RIG_POP3_PORTS[$name]:-}" ] || rig_die "no POP3 on $name"
	rig__pop3_run "${RIG_POP3_PORTS[$name]}" "$user" "$pass" stat
}

# rig_pop3_uidls PORT USER PASSWORD: the "N UIDL" lines of any POP3
# server on 127.0.0.1:PORT (a rig instance's: ${RIG_POP3_PORTS[NAME]})
rig_pop3_uidls() {
	rig__pop3_run "$1" "$2" "$3" uidl
}

rig_pop3_order_differs() {
	SRC_LINES=$1 DEST_LINES=$2 "$RIG_PY" - <<-'EOF'
	import bisect, os
	def uidls(var):
	    return [l.split(" ", 1)[1] for l in os.environ[var].splitlines() if " " in l]
	pos = {u: i for i, u in enumerate(uidls("DEST_LINES"))}
	tails = []
	seq = [pos[u] for u in uidls("SRC_LINES") if u in pos]
	for x in seq:
	    i = bisect.bisect_left(tails, x)
	    tails[i:i + 1] = [x]
	print(len(seq) - len(tails))
	EOF
}

rig_imap_append() {
	local name=$1 user=$2 pass=$3 folder=$4 file=$5 flags=${6:-}
	rig_imap "$name" "$user" "$pass" append --create --flags "$flags" "$folder" "$file"
}

# rig_migrate_user DEST USER [doveadm args]: doveadm migrate -u USER on
# DEST (the args go before "migrate": -o ...); MIG_RC, MIG_OUT (its
# output) and MIG[field] from the summary (declare -A MIG first)
rig_migrate_user() {
	local dest=$1 u=$2
	shift 2
	MIG_OUT=$RIG/mig.${u%%@*}.$RANDOM
	MIG_RC=0
	rig_doveadm "$dest" -f tab "$@" migrate -u "$u" >"$MIG_OUT" 2>&1 || MIG_RC=$?
	rig_summary "$MIG_OUT"
}

rig_summary() {
	local file=$1 header row i
	local -a h r
	header=$(grep -m1 $'^user\tresult' "$file")
	row=$(grep -A1 -m1 $'^user\tresult' "$file" | tail -n 1)
	MIG=()
	IFS=$'\t' read -r -a h <<<"$header"
	IFS=$'\t' read -r -a r <<<"$row"
	for i in "${!h[@]}"; do MIG[${h[$i]}]=${r[$i]:-}; done
}

rig_log_tail() {
	local name=$1 n=${2:-20}
	local log
	log=$(rig_log "$name")
	echo "--- $name: $log (last $n lines)"
	[ -e "$log" ] && tail -n "$n" "$log"
}

# log tails of every instance, as TAP comments
rig_diag_logs() {
	local n=${1:-15} i
	for i in "${RIG_INSTANCES[@]}"; do
		rig_log_tail "$i" "$n" | sed 's/^/# /'
	done
}

# ---------------------------------------------------------------------------
# TAP-like output: "ok N - text" / "not ok N - text"

tap_ok() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $*${TAP_TODO:+ # TODO $TAP_TODO}"
}

tap_fail() {
	TAP_N=$((TAP_N + 1))
	if [ -n "${TAP_TODO:-}" ]; then
		echo "not ok $TAP_N - $* # TODO $TAP_TODO"
		return
	fi
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $*"
}

tap_diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

# tap_run TEXT CMD ARGS...: ok when CMD succeeds; else its output and the
# instance logs as diagnostics.  Output of a passing command is kept in
# $TAP_OUT for further checks.
tap_run() {
	local text=$1
	shift
	local rc=0
	TAP_OUT=$("$@" 2>&1) || rc=$?
	if [ $rc = 0 ]; then
		tap_ok "$text"
		return 0
	fi
	tap_fail "$text"
	tap_diag "command: $*" "exit status: $rc"
	printf '%s\n' "$TAP_OUT" | tail -n 40 | sed 's/^/#   /'
	rig_diag_logs 15
	return 1
}

# tap_login TEXT NAME USER PASSWORD: ok when USER logs in over IMAP to
# instance NAME (unlike tap_run, never shows the password on failure)
tap_login() {
	local text=$1 name=$2 user=$3 pass=$4
	if rig_imap "$name" "$user" "$pass" capability >/dev/null 2>&1; then
		tap_ok "$text"
		return 0
	fi
	tap_fail "$text"
	rig_diag_logs 15
	return 1
}

# tap_run_fails TEXT CMD ARGS...: ok when CMD fails (with any status, or
# the one in TAP_EXPECT_RC)
tap_run_fails() {
	local text=$1
	shift
	local rc=0
	TAP_OUT=$("$@" 2>&1) || rc=$?
	if [ $rc != 0 ] && { [ -z "${TAP_EXPECT_RC:-}" ] || [ "$rc" = "$TAP_EXPECT_RC" ]; }; then
		tap_ok "$text"
		return 0
	fi
	tap_fail "$text"
	tap_diag "command: $*" "exit status: $rc (expected ${TAP_EXPECT_RC:-non-zero})"
	printf '%s\n' "$TAP_OUT" | tail -n 40 | sed 's/^/#   /'
	return 1
}

tap_is() {
	local got=$1 expected=$2 text=$3
	if [ "$got" = "$expected" ]; then
		tap_ok "$text"
		return 0
	fi
	tap_fail "$text"
	tap_diag "got:      $got" "expected: $expected"
	return 1
}

# tap_like TEXT REGEX STRING
tap_like() {
	local text=$1 re=$2 s=$3
	if [[ $s =~ $re ]]; then
		tap_ok "$text"
		return 0
	fi
	tap_fail "$text"
	tap_diag "expected to match: $re"
	printf '%s\n' "$s" | tail -n 20 | sed 's/^/#   /'
	return 1
}

# print the plan and exit non-zero when anything failed
tap_done() {
	echo "1..$TAP_N"
	[ "$TAP_FAILED" = 0 ]
	exit $?
}
