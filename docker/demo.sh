#!/bin/bash
# docker/demo.sh [BUILDDIR] - a whole migration in containers (make docker-demo)
#
# Three containers on the host's network, on free ports of 127.0.0.1:
#   old  the old provider: Debian's Dovecot, Courier-style (INBOX. prefix,
#        '.' separator), three accounts filled over IMAP APPEND from here
#   pg   PostgreSQL, the accounts store (the shipped schema)
#   new  our Dovecot: the image of docker/Dockerfile, the plugin loaded by
#        the image's conf.d/90-migrate.conf, passdb and userdb in SQL
# then, inside "new": doveadm migrate accounts (accounts template into
# PostgreSQL), migrate check and migrate batch (sync template); from here:
# tests/tools/imap-compare.py reads both servers and must find every
# account equal; then changes at the old server, batch again, compare again.
#
# Root only.  Installs what is missing (docker.io, debootstrap, python3,
# openssl), uses the Docker engine that answers or starts a private dockerd,
# builds the images (docker/common.sh), and at the end removes the
# containers, the images it made, the private dockerd with its data root,
# and its temporary directory; DOCKER_KEEP=1 keeps all of them running.
# Every password is made at random for the run and lives only in 0600
# files of a 0700 directory (mounted read-only where a container needs it),
# never in an argument, an environment variable or an image.
# Exit 0 only when every account was migrated and is equal to its source.
#
# Knobs: DOCKER_KEEP=1, DOCKER_DEMO_MESSAGES (messages of the largest
# account, default 1000), and those of docker/common.sh.

set -u
DEMO_T0=$SECONDS
. "$(dirname "$0")/common.sh"
# rig_free_port
. "$DK_SRCDIR/tests/lib/rig.sh"
dk_init

# docker/demo.sh --clean [DIR]: what a DOCKER_KEEP=1 run left with a
# private dockerd (the daemon, its data root, the demo's DIR)
if [ "${1:-}" = --clean ]; then
	dk_need_root "it stops the private dockerd" "$0 --clean"
	DK_PRIVATE=1
	dk_daemon_stop
	case ${2:-} in
	/tmp/docker-demo.*) rm -rf "$2" ;;
	'') ;;
	*) dk_die "not a directory of the demo: $2" ;;
	esac
	echo "removed: the private dockerd, $DK_PRIVATE_DATA, $DK_PRIVATE_DIR${2:+, $2}"
	exit 0
fi
BUILDDIR=${1:-}
KEEP=${DOCKER_KEEP:-0}
N=${DOCKER_DEMO_MESSAGES:-1000}
PG_IMAGE=dovecot-migrate/postgres-demo:local
DOMAIN=cliente.example
USERS=(ana bruno carla)
TOOLS=$DK_SRCDIR/tests/tools
PY=python3

dk_need_root "it installs docker.io and debootstrap when they are missing, starts a private dockerd when no Docker engine answers, and builds a Debian 12 base image with debootstrap" \
	"make docker-demo"

# --- what the host needs ------------------------------------------------------
pkgs=(debootstrap python3 openssl)
# Debian's docker.io only when no engine answers and none is installed: it
# would conflict with Docker's own packages
if ! command -v docker >/dev/null || { ! dk_docker_answers && ! command -v dockerd >/dev/null; }; then
	pkgs+=(docker.io)
fi
dk_need_packages "${pkgs[@]}"

T=$(mktemp -d /tmp/docker-demo.XXXXXX) || dk_die "mktemp failed"
chmod 700 "$T"
ID=${T##*.}
ID=${ID,,}
C_OLD=dmig-old-$ID
C_NEW=dmig-new-$ID
C_PG=dmig-pg-$ID
CONTAINERS=()
FAILED=0

cleanup() {
	local rc=$? c
	trap - EXIT HUP INT TERM
	if [ "$rc" != 0 ] && [ ${#CONTAINERS[@]} -gt 0 ]; then
		for c in "${CONTAINERS[@]}"; do
			echo "--- docker logs --tail 20 $c" >&2
			docker logs --tail 20 "$c" 2>&1 | sed 's/^/  | /' >&2
		done
	fi
	[ -n "${PG_BUILD_PID:-}" ] && kill "$PG_BUILD_PID" 2>/dev/null
	if [ "$KEEP" = 1 ]; then
		keep_notes
		exit "$rc"
	fi
	dk_say "Removing what the demo made"
	if [ ${#CONTAINERS[@]} -gt 0 ]; then
		docker rm -f -v "${CONTAINERS[@]}" >/dev/null 2>&1
		echo "containers removed: ${CONTAINERS[*]}"
	fi
	if [ "$DK_PRIVATE" = 1 ]; then
		dk_daemon_stop
		echo "private dockerd stopped; $DK_PRIVATE_DATA (its images) and $DK_PRIVATE_DIR removed"
	else
		if [ ${#DK_MADE_IMAGES[@]} -gt 0 ]; then
			docker rmi "${DK_MADE_IMAGES[@]}" >/dev/null
			echo "images removed: ${DK_MADE_IMAGES[*]}"
		fi
		docker image prune -f --filter label=dovecot-migrate.stage=build >/dev/null &&
			echo "build stage removed"
	fi
	rm -rf "$T"
	echo "$T removed; $((SECONDS - DEMO_T0)) s in all"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

keep_notes() {
	cat <<-EOF

	Kept (DOCKER_KEEP=1).  ${DOCKER_HOST:+export DOCKER_HOST=$DOCKER_HOST}
	  containers: ${CONTAINERS[*]}
	  old server: 127.0.0.1:${OLD_PORT:-}   ours: 127.0.0.1:${NEW_PORT:-}   PostgreSQL: 127.0.0.1:${PG_PORT:-}
	  passwords:  $T/secrets/ (root only); configs and mail: $T/
	  e.g.:       docker exec $C_NEW doveadm migrate domain status $DOMAIN
	Remove it all with:
	EOF
	if [ "$DK_PRIVATE" = 1 ]; then
		echo "  $DK_SRCDIR/docker/demo.sh --clean $T"
	else
		echo "  docker rm -f -v ${CONTAINERS[*]}"
		[ ${#DK_MADE_IMAGES[@]} -eq 0 ] || echo "  docker rmi ${DK_MADE_IMAGES[*]}"
		echo "  docker image prune -f --filter label=dovecot-migrate.stage=build; rm -rf $T"
	fi
}

step_t0=$SECONDS
took() {
	echo "($((SECONDS - step_t0)) s)"
	step_t0=$SECONDS
}

# --- engine and images --------------------------------------------------------
dk_say "Docker engine"
dk_daemon_start
dk_base_image "$T"
took
dk_image_exists "$PG_IMAGE" || DK_MADE_IMAGES+=("$PG_IMAGE")
# the database's image builds meanwhile (its apt-get against our compiler)
docker build --network host --force-rm --build-arg BASE="$DK_BASE_IMAGE" -t "$PG_IMAGE" \
	-f "$DK_SRCDIR/docker/Dockerfile.postgres" "$DK_SRCDIR/docker" >"$T/build-pg.log" 2>&1 &
PG_BUILD_PID=$!
dk_build_image "$T" "$BUILDDIR"
dk_say "Building $PG_IMAGE (docker/Dockerfile.postgres: Debian's postgresql-15), in parallel"
wait "$PG_BUILD_PID" || {
	tail -n 30 "$T/build-pg.log" >&2
	dk_die "docker build of $PG_IMAGE failed (log: $T/build-pg.log)"
}
PG_BUILD_PID=
grep -E '^Successfully' "$T/build-pg.log" | sed 's/^/  /'
took

# --- passwords, made for this run ---------------------------------------------
# a password that meets the accounts template's policy; $1 adds
# characters that a sync template must quote
password() {
	"$PY" -c 'import secrets, sys; print("Mx" + secrets.token_urlsafe(9) + "7!" + sys.argv[1])' "${1:-}"
}
secret() {
	# secret NAME VALUE: $T/secrets/NAME, 0600
	(umask 077 && printf '%s\n' "$2" >"$T/secrets/$1")
}
mkdir -m 700 "$T/secrets"
declare -A SRC_PW DEST_PW
for u in "${USERS[@]}"; do
	SRC_PW[$u]=$(password ';"x')
	DEST_PW[$u]=$(password)
	secret "src-$u" "${SRC_PW[$u]}"
	secret "dest-$u" "${DEST_PW[$u]}"
done
DB_PW=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')

# --- PostgreSQL ---------------------------------------------------------------
wait_for() {
	# wait_for CONTAINER WHAT COMMAND...: until COMMAND succeeds (30 s)
	local c=$1 what=$2 i
	shift 2
	for ((i = 0; i < 300; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] || break
		sleep 0.1
	done
	dk_die "$what did not come up"
}
imap_up() {
	"$PY" - "$1" <<-'EOF'
	import socket, sys
	with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
	    sys.exit(0 if s.recv(200).startswith(b"* OK") else 1)
	EOF
}
run_container() {
	# run_container NAME DOCKER-RUN-ARGS...: detached, host network
	local name=$1
	shift
	CONTAINERS+=("$name")
	docker run -d --name "$name" --network host "$@" >/dev/null ||
		dk_die "docker run $name failed"
}

# conf_common PROTOCOLS PORT: what the two Dovecot configs share
conf_common() {
	cat <<-EOF
	protocols = $1
	listen = 127.0.0.1
	ssl = no
	disable_plaintext_auth = no
	auth_mechanisms = plain login
	log_path = /dev/stderr
	mail_location = maildir:~/Maildir
	service imap-login {
	  inet_listener imap {
	    address = 127.0.0.1
	    port = $2
	  }
	  inet_listener imaps {
	    port = 0
	  }
	}
	EOF
}

dk_say "Starting the containers (host network, 127.0.0.1, free ports)"
PG_PORT=$(rig_free_port)
run_container "$C_PG" -e PGPORT="$PG_PORT" "$PG_IMAGE"
wait_for "$C_PG" "PostgreSQL" docker exec "$C_PG" pg_isready -q -h 127.0.0.1
psql_pg() { docker exec -i "$C_PG" psql -h /srv/pg -q -v ON_ERROR_STOP=1 "$@"; }
# the password reaches psql on its stdin
printf "CREATE USER dovecot PASSWORD '%s';\nCREATE DATABASE mail OWNER dovecot;\n" "$DB_PW" |
	psql_pg >/dev/null || dk_die "creating the database failed"
{ echo "SET ROLE dovecot;"; cat "$DK_SRCDIR/conf.d/dovecot-migrate-accounts.sql"; } |
	psql_pg -d mail >/dev/null || dk_die "loading conf.d/dovecot-migrate-accounts.sql failed"
echo "$C_PG: PostgreSQL on 127.0.0.1:$PG_PORT, database mail with conf.d/dovecot-migrate-accounts.sql"

# --- the old provider ---------------------------------------------------------
OLD_PORT=$(rig_free_port)
mkdir -p "$T/old/vmail"
{
	echo "# docker/demo.sh: the old provider, Debian's Dovecot without the plugin,"
	echo "# Courier-style namespace (INBOX. prefix, '.' separator)"
	conf_common imap "$OLD_PORT"
	cat <<-'EOF'
	passdb {
	  driver = passwd-file
	  args = /etc/dovecot/users
	}
	userdb {
	  driver = passwd-file
	  args = /etc/dovecot/users
	  default_fields = uid=vmail gid=vmail home=/var/vmail/%n
	}
	namespace inbox {
	  inbox = yes
	  separator = .
	  prefix = INBOX.
	}
	EOF
} >"$T/old/dovecot.conf"
# SHA512-CRYPT hashes, from openssl's stdin
(umask 077 && : >"$T/old/users")
for u in "${USERS[@]}"; do
	printf '%s:{SHA512-CRYPT}%s::::::\n' "$u" \
		"$(printf '%s\n' "${SRC_PW[$u]}" | openssl passwd -6 -stdin)" >>"$T/old/users"
done
# Dovecot's auth process reads the users file as user dovecot: a copy
# inside the container's own /etc/dovecot, root:dovecot 0640
run_container "$C_OLD" \
	-v "$T/old/dovecot.conf:/etc/dovecot/dovecot.conf:ro" \
	-v "$T/old/users:/run/demo-users:ro" -v "$T/old/vmail:/var/vmail" \
	"$DK_IMAGE" sh -c 'install -m 640 -g dovecot /run/demo-users /etc/dovecot/users &&
		chown vmail:vmail /var/vmail && exec dovecot -F'
wait_for "$C_OLD" "the old server" imap_up "$OLD_PORT"
echo "$C_OLD: the old provider's IMAP on 127.0.0.1:$OLD_PORT"

# --- our Dovecot ----------------------------------------------------------------
NEW_PORT=$(rig_free_port)
mkdir -p "$T/new/vmail" "$T/new/state" "$T/new/input"
chmod 700 "$T/new/state" "$T/new/input"
# the shipped queries, with this database and its password (written by
# the shell itself: the password is in no process's arguments)
(
	umask 077
	while IFS= read -r line; do
		case $line in
		"connect = "*) line="connect = host=127.0.0.1 port=$PG_PORT dbname=mail user=dovecot password=$DB_PW" ;;
		esac
		printf '%s\n' "$line"
	done <"$DK_SRCDIR/conf.d/dovecot-migrate-accounts-sql.conf.ext" >"$T/new/accounts-sql.conf.ext"
)
SQLCONF=/etc/dovecot/dovecot-migrate-accounts-sql.conf.ext
{
	echo "# docker/demo.sh: our Dovecot, image $DK_IMAGE; the plugin and its"
	echo "# settings come from the image's conf.d/90-migrate.conf (included below)"
	conf_common "imap lmtp" "$NEW_PORT"
	cat <<-EOF
	passdb {
	  driver = sql
	  args = $SQLCONF
	}
	userdb {
	  driver = sql
	  args = $SQLCONF
	  default_fields = uid=vmail gid=vmail home=/var/vmail/%d/%n
	}
	namespace inbox {
	  inbox = yes
	  separator = /
	EOF
	for box in Sent Trash Drafts Junk Archive; do
		printf '  mailbox %s {\n    special_use = \\%s\n    auto = no\n  }\n' "$box" "$box"
	done
	cat <<-EOF
	}
	mail_plugins = \$mail_plugins quota
	# after the global mail_plugins: its protocol blocks (doveadm, lda)
	# add our plugins to them
	!include /etc/dovecot/conf.d/90-migrate.conf
	protocol imap {
	  mail_plugins = \$mail_plugins imap_quota
	}
	plugin {
	  quota = maildir:User quota
	  migrate_accounts_sql = $SQLCONF
	  # the demo's old server has no TLS
	  migrate_source_ssl = no
	}
	EOF
} >"$T/new/dovecot.conf"
run_container "$C_NEW" \
	-v "$T/new/dovecot.conf:/etc/dovecot/dovecot.conf:ro" \
	-v "$T/new/accounts-sql.conf.ext:$SQLCONF:ro" \
	-v "$T/new/vmail:/var/vmail" -v "$T/new/state:/var/lib/dovecot" \
	-v "$T/new/input:/srv/migrate:ro" \
	"$DK_IMAGE" sh -c 'chown vmail:vmail /var/vmail && exec dovecot -F'
wait_for "$C_NEW" "our Dovecot" imap_up "$NEW_PORT"
echo "$C_NEW: our Dovecot with the plugin on 127.0.0.1:$NEW_PORT"
took

# --- mail at the old provider -------------------------------------------------
dk_say "Filling the old mailboxes over IMAP APPEND"
imap_old() {
	# imap_old USER ARGS...: tests/tools/imaptool.py against the old server
	local u=$1
	shift
	"$PY" "$TOOLS/imaptool.py" --port "$OLD_PORT" --user "$u" \
		--password-file "$T/secrets/src-$u" "$@"
}
"$PY" "$TOOLS/seed-account.py" --port "$OLD_PORT" --user ana \
	--password-file "$T/secrets/src-ana" seed >/dev/null || dk_die "seeding ana failed"
"$PY" "$TOOLS/gen-corpus.py" --port "$OLD_PORT" --user bruno \
	--password-file "$T/secrets/src-bruno" --seed 2026 --messages "$N" --max-size 2M \
	>/dev/null || dk_die "seeding bruno failed"
# folders named the Brazilian way (Dovecot's RENAME leaves the
# subscriptions behind: they move by hand)
rename_old() {
	imap_old "$1" rename-folder "$2" "$3" >/dev/null &&
		imap_old "$1" subscribe "$2" --unsubscribe >/dev/null &&
		imap_old "$1" subscribe "$3" >/dev/null ||
		dk_die "renaming $1's $2 failed"
}
rename_old bruno INBOX.Sent 'INBOX.Itens Enviados'
rename_old bruno INBOX.Trash INBOX.Lixeira
rename_old bruno INBOX.Drafts INBOX.Rascunhos
"$PY" "$TOOLS/gen-corpus.py" --port "$OLD_PORT" --user carla \
	--password-file "$T/secrets/src-carla" --seed 7 --messages 60 --max-size 300K \
	>/dev/null || dk_die "seeding carla failed"
for u in "${USERS[@]}"; do
	printf '  %-6s %s folders, %s messages\n' "$u" \
		"$(imap_old "$u" list | wc -l)" \
		"$(docker exec "$C_OLD" doveadm -f flow mailbox status -u "$u" messages INBOX 'INBOX.*' |
			awk -F= '{ n += $NF } END { print n }')"
done
imap_old bruno list | sed 's/^/  bruno: /'
took

# --- the migration --------------------------------------------------------------
q() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }
(umask 077 && {
	printf 'usuario;dominio;senha;cota;tipo;nome completo;idioma;fuso horario;formato de data\n'
	printf 'ana;%s;%s;2,5;1;Ana Lu\xc3\xadsa Pereira;pt-br;America/Sao_Paulo;dd/mm/aaaa\n' \
		"$DOMAIN" "$(q "${DEST_PW[ana]}")"
	printf 'bruno;%s;%s;5;1;Bruno Gon\xc3\xa7alves;pt-br;America/Sao_Paulo;dd/mm/aaaa\n' \
		"$DOMAIN" "$(q "${DEST_PW[bruno]}")"
	printf 'carla;%s;%s;1;0;Carla Souza;pt-br;America/Recife;dd/mm/aaaa\n' \
		"$DOMAIN" "$(q "${DEST_PW[carla]}")"
} >"$T/new/input/contas.csv")
(umask 077 && {
	printf '# the customer sync template: source_host;source_user;source_password;dest_host;dest_user;dest_password\n'
	for u in "${USERS[@]}"; do
		printf '127.0.0.1:%s;%s;%s;localhost;%s@%s;%s\n' "$OLD_PORT" "$u" \
			"$(q "${SRC_PW[$u]}")" "$u" "$DOMAIN" "$(q "${DEST_PW[$u]}")"
	done
} >"$T/new/input/sync.txt")

in_new() { docker exec "$C_NEW" "$@"; }

dk_say "doveadm migrate accounts contas.csv   (the accounts template, into PostgreSQL)"
sed -e 's/"\([^"]\|""\)*"/"********"/g' -e 's/^/  /' "$T/new/input/contas.csv"
in_new doveadm migrate accounts /srv/migrate/contas.csv 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || dk_die "doveadm migrate accounts failed"
psql_pg -d mail -c 'SELECT username, quota_mib, account_type, full_name FROM migrate_accounts ORDER BY username' |
	sed 's/^/  pg: /'
in_new doveadm user "ana@$DOMAIN" | sed 's/^/  /'

dk_say "doveadm migrate check sync.txt   (pre-flight: logins, sizes, quotas)"
in_new doveadm migrate check /srv/migrate/sync.txt 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || dk_die "doveadm migrate check failed"

# compare_all: every account, old server against ours, from the host
# (tests/tools/imap-compare.py: folders, message bytes, flags, dates,
# subscriptions); counts the accounts that differ in FAILED
compare_all() {
	local u out rc
	dk_say "Checking every account over IMAP from the host: old server against ours"
	for u in "${USERS[@]}"; do
		rc=0
		out=$("$PY" "$TOOLS/imap-compare.py" -q \
			--src-port "$OLD_PORT" --src-user "$u" --src-password-file "$T/secrets/src-$u" \
			--dest-port "$NEW_PORT" --dest-user "$u@$DOMAIN" \
			--dest-password-file "$T/secrets/dest-$u" \
			--map 'INBOX.Itens Enviados=Sent' --map 'INBOX.Lixeira=Trash' \
			--map 'INBOX.Rascunhos=Drafts' --subscriptions 2>&1) || rc=$?
		printf '  %-6s %s\n' "$u" "$(tail -n 1 <<<"$out")"
		if [ "$rc" != 0 ]; then
			head -n -1 <<<"$out" | head -n 20 | sed 's/^/    /'
			FAILED=$((FAILED + 1))
		fi
	done
}
batch() {
	in_new doveadm migrate batch -j 3 /srv/migrate/sync.txt 2>&1 | sed 's/^/  /'
	if [ "${PIPESTATUS[0]}" != 0 ]; then
		echo "doveadm migrate batch failed" >&2
		FAILED=$((FAILED + 1))
	fi
}
message() {
	# message FILE N: a small new message
	printf 'From: cliente@example.org\r\nTo: bruno@%s\r\nSubject: nova %s\r\nMessage-ID: <nova-%s@example.org>\r\n\r\nMensagem nova %s\r\n' \
		"$DOMAIN" "$2" "$2" "$2" >"$1"
}

dk_say "doveadm migrate domain start --old-mx 127.0.0.1 $DOMAIN   (the phase: migrating)"
in_new doveadm migrate domain start --old-mx 127.0.0.1 "$DOMAIN" 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || dk_die "doveadm migrate domain start failed"

dk_say "doveadm migrate batch sync.txt   (every account, the first full copy)"
batch
took
compare_all
took

dk_say "Meanwhile at the old provider: 3 new messages, one deleted, one re-flagged, a new folder"
for i in 1 2 3 4; do
	message "$T/new$i.eml" "$i"
done
imap_old bruno append INBOX "$T"/new{1..3}.eml >/dev/null &&
	imap_old bruno expunge INBOX.Work --first 1 >/dev/null &&
	imap_old bruno set-flags INBOX --first 1 --flags '\Flagged \Seen' >/dev/null &&
	imap_old carla append 'INBOX.Contratos 2025' "$T/new4.eml" --create >/dev/null ||
	dk_die "changing the old mailboxes failed"
dk_say "doveadm migrate batch sync.txt   (again: only the changes move)"
batch
compare_all
took

dk_say "The MX moves: doveadm migrate domain cutover $DOMAIN; a late message still reaches the old server"
in_new doveadm migrate domain cutover "$DOMAIN" 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || dk_die "doveadm migrate domain cutover failed"
message "$T/late.eml" 5
imap_old ana append INBOX "$T/late.eml" >/dev/null || dk_die "appending to ana's INBOX failed"
dk_say "doveadm migrate batch sync.txt   (the final sync: new mail only)"
batch
compare_all
dk_say "doveadm migrate domain finish $DOMAIN   (the stored source passwords are deleted)"
in_new doveadm migrate domain finish "$DOMAIN" 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || dk_die "doveadm migrate domain finish failed"
in_new doveadm migrate domain status "$DOMAIN" 2>&1 | sed 's/^/  /'
took

if [ "$FAILED" != 0 ]; then
	dk_say "FAILED: $FAILED check(s) did not hold (see above)"
	exit 1
fi
dk_say "Done: the ${#USERS[@]} migrated accounts equal their source ($((SECONDS - DEMO_T0)) s so far)"
exit 0
