#!/bin/bash
# tests/deb/check-deb.sh BUILDDIR VERSION - what `make check-deb` runs (root)
#
# The Debian package installed into a clean Debian 12 root, and a real
# migration with it:
#
#   1. make deb in BUILDDIR (CHECK_DEB=FILE tests that .deb instead)
#   2. a clean bookworm root: a fresh copy of a cached `debootstrap
#      --variant=minbase bookworm` from the mirror of the host's apt
#      sources, with the host's Debian 12 entries as its sources
#   3. `apt-get install --no-install-recommends ./dovecot-migrate_*.deb`
#      there: dovecot-core and the libraries come from the archive through
#      the package's Depends alone
#   4. the files where they belong, nothing in /etc/dovecot/conf.d
#   5. a private source Dovecot on the host (127.0.0.1, a free port, its
#      own config in a temporary directory; a test user with messages in
#      INBOX and Sent), a private destination Dovecot inside the root that
#      includes the packaged /usr/share/dovecot-migrate/conf.d/90-migrate.conf
#      (doveadm loads the packaged engine from /usr/lib/dovecot/modules),
#      then `chroot ROOT doveadm -c CONF migrate -u USER`: exit 0, the
#      messages and folders at the destination (same Message-IDs), a
#      second run that copies nothing, and a dovecot-lda delivery through
#      the packaged migrate_lda plugin
#
# Everything runs in a private mount namespace (unshare -m): the root's
# /proc and /dev mounts are never visible to the host, and are unmounted
# before the temporary directory is removed (at exit, on any signal).
# Neither the system Dovecot nor /etc/dovecot of the host is touched: the
# source runs from the host's dovecot binaries with its own config.
#
# Knobs: CHECK_DEB=FILE (the .deb to test; default: make deb, then
# BUILDDIR's), CHECK_DEB_CACHE (default /var/cache/dovecot-migrate-deb-root:
# the debootstrap tarball and apt's downloaded .debs, kept between runs),
# CHECK_DEB_REFRESH=1 (debootstrap again), CHECK_DEB_MIRROR=URL (instead of
# the host's mirror), CHECK_DEB_KEEP=1 (keep the temporary directory and
# print its path; the mounts go with the namespace), TMPDIR.

set -u
SUITE=bookworm
USER_NAME=alice
N_INBOX=4
N_SENT=2

builddir=$(cd "${1:?usage: check-deb.sh BUILDDIR VERSION}" && pwd)
version=${2:?usage: check-deb.sh BUILDDIR VERSION}

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
die() {
	echo "check-deb: $*" >&2
	exit 1
}

if [ "$(id -u)" != 0 ]; then
	{
		echo "check-deb needs root: debootstrap, chroot, the /proc and /dev mounts"
		echo "of the root, apt-get install inside it, and the private Dovecot servers."
		echo "Run it as root: sudo make check-deb"
	} >&2
	exit 1
fi

# a private mount namespace for everything below
if [ "${CHECK_DEB_UNSHARED:-}" != 1 ]; then
	command -v unshare >/dev/null || die "unshare (util-linux) is missing"
	CHECK_DEB_UNSHARED=1 exec unshare --mount --propagation private \
		bash "${BASH_SOURCE[0]}" "$@"
	die "unshare --mount failed"
fi

T0=$SECONDS
phase_start=$SECONDS
phase() {
	printf '   (%d s)\n' $((SECONDS - phase_start))
	phase_start=$SECONDS
}

# --- the checks ----------------------------------------------------------------
PASSED=()
FAILED=()
ok() {
	PASSED+=("$1")
	echo "ok - $1"
}
fail() {
	FAILED+=("$1")
	echo "FAIL - $1"
	shift
	local l
	for l in "$@"; do
		echo "  | $l"
	done
}
check() { # check TEXT COMMAND...: ok when COMMAND exits 0
	local text=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$text"
	else
		fail "$text" "$(printf '%s' "$out" | tail -n 15)"
	fi
}

# --- cleanup -------------------------------------------------------------------
WORK=
ROOT=
# the master of a Dovecot we started: its pid file, checked against its
# command line (a stale pid file never makes us signal another process)
master_pid() { # PIDFILE CONF [ROOT]
	local pid
	pid=$(head -n1 "$1" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
	[ -z "${3:-}" ] || [ "$(readlink "/proc/$pid/root")" = "$3" ] || return 1
	echo "$pid"
}
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	sleep 0.2
}
cleanup() {
	local rc=$? pid p m left
	trap - EXIT HUP INT TERM
	if [ -n "$WORK" ]; then
		pid=$(master_pid "$ROOT/srv/check-deb/run/master.pid" /srv/check-deb/dovecot.conf "$ROOT") &&
			stop_pid "$pid"
		pid=$(master_pid "$WORK/source/run/master.pid" "$WORK/source/dovecot.conf") &&
			stop_pid "$pid"
	fi
	if [ -n "$ROOT" ] && [ -d "$ROOT" ]; then
		# what is still running inside the root started there from here
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] || continue
			kill -KILL "${p#/proc/}" 2>/dev/null
		done
		# deepest first
		awk '{ print $2 }' /proc/self/mounts | grep -E "^$ROOT(/|\$)" | sort -r |
			while read -r m; do
				umount "$m" 2>/dev/null || umount -l "$m"
			done
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		left=$(awk '{ print $2 }' /proc/self/mounts | grep -E "^$WORK(/|\$)")
		if [ -n "$left" ]; then
			echo "check-deb: still mounted, $WORK left in place: $left" >&2
		elif [ "${CHECK_DEB_KEEP:-0}" = 1 ]; then
			echo "check-deb: kept $WORK (the root: $ROOT)" >&2
		else
			rm -rf --one-file-system "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# dk_need_packages (installs what is missing) and dk__host_sources (the
# host's apt entries for Debian 12): docker/common.sh, which the image's
# debootstrap uses too
. "$(dirname "$0")/../../docker/common.sh"
DK_SUITE=$SUITE

# --- 1. the package ------------------------------------------------------------
arch=$(dpkg --print-architecture)
if [ -n "${CHECK_DEB:-}" ]; then
	deb=$(cd "$(dirname "$CHECK_DEB")" && pwd)/$(basename "$CHECK_DEB")
	[ -f "$deb" ] || die "CHECK_DEB=$CHECK_DEB: no such file"
	say "testing $deb (CHECK_DEB)"
else
	say "make deb"
	"${MAKE:-make}" -s -C "$builddir" deb || die "make deb failed"
	deb=$builddir/dovecot-migrate_${version}_${arch}.deb
	[ -f "$deb" ] || die "make deb made no $deb"
fi
phase

# the host's source server, debootstrap
dk_need_packages debootstrap dovecot-core dovecot-imapd

# --- 2. the clean root ---------------------------------------------------------
# the host's apt entries for Debian 12 as "URI SUITE COMPONENTS" lines
sources=$(dk__host_sources)
mirror=${CHECK_DEB_MIRROR:-$(awk -v suite="$SUITE" '$2 == suite { print $1; exit }' <<<"$sources")}
[ -n "$mirror" ] || die "no Debian $SUITE entry in the host's apt sources; set CHECK_DEB_MIRROR=URL"
grep -q . <<<"$sources" || sources="$mirror $SUITE main"

CACHE=${CHECK_DEB_CACHE:-/var/cache/dovecot-migrate-deb-root}
mkdir -p "$CACHE/archives/partial"
chmod 700 "$CACHE"
base=$CACHE/$SUITE-minbase.tar
exec 9>"$CACHE/lock"
flock 9 || die "cannot lock $CACHE/lock"
if [ "${CHECK_DEB_REFRESH:-0}" = 1 ] || [ ! -s "$base" ] ||
	[ "$(cat "$base.mirror" 2>/dev/null)" != "$mirror" ]; then
	say "debootstrap --variant=minbase $SUITE from $mirror (cached in $base)"
	include=
	case $mirror in https:*) include=--include=ca-certificates ;; esac
	tree=$CACHE/debootstrap.$$
	rm -rf --one-file-system "$tree"
	if ! debootstrap --variant=minbase $include "$SUITE" "$tree" "$mirror" \
		>"$CACHE/debootstrap.log" 2>&1; then
		tail -n 20 "$CACHE/debootstrap.log" >&2
		rm -rf --one-file-system "$tree"
		die "debootstrap failed (log: $CACHE/debootstrap.log)"
	fi
	rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/* "$tree"/etc/hostname
	tar --numeric-owner -C "$tree" -cf "$base.new" . || die "tar of the root failed"
	mv "$base.new" "$base"
	echo "$mirror" >"$base.mirror"
	rm -rf --one-file-system "$tree"
else
	say "clean root: a fresh copy of $base ($(date -r "$base" '+debootstrapped %F %T'))"
fi
flock -u 9

WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-deb.XXXXXX") || die "mktemp failed"
chmod 755 "$WORK"
ROOT=$WORK/root
mkdir "$ROOT"
tar --numeric-owner -C "$ROOT" -xf "$base" || die "cannot unpack $base"
awk '{ printf "deb %s", $1; for (i = 2; i <= NF; i++) printf " %s", $i; print "" }' \
	<<<"$sources" >"$ROOT/etc/apt/sources.list"
sed 's/^/  apt: /' "$ROOT/etc/apt/sources.list"
# package scripts must not start services
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc" || die "mount proc failed"
mount --bind /dev "$ROOT/dev" || die "bind mount of /dev failed"
# apt's downloads are kept between runs (apt checks them against the lists)
mount --bind "$CACHE/archives" "$ROOT/var/cache/apt/archives" || die "bind mount of the apt cache failed"
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
phase

# --- 3. apt-get install ./dovecot-migrate_*.deb --------------------------------
say "apt-get install --no-install-recommends ./${deb##*/} in the clean root"
cp "$deb" "$ROOT/tmp/"
if ! in_root apt-get update -qq >"$WORK/apt-update.log" 2>&1; then
	cat "$WORK/apt-update.log" >&2
	die "apt-get update in the root failed"
fi
if in_root sh -c "cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./${deb##*/}" \
	>"$WORK/apt-install.log" 2>&1; then
	ok "apt-get install ./${deb##*/} (dependencies from the archive)"
	echo "  installed: $(awk '/^The following NEW packages will be installed:/ { on = 1; next }
		on && /^[^ ]/ { on = 0 } on { printf "%s", $0 }' "$WORK/apt-install.log" | tr -s ' ')"
else
	fail "apt-get install ./${deb##*/}" "$(tail -n 25 "$WORK/apt-install.log")"
	die "the package did not install; nothing more to check"
fi
phase

# --- 4. the files --------------------------------------------------------------
say "the installed files"
in_root dpkg -L dovecot-migrate | grep -E '\.(so|conf|ext|sql|1\.gz)$' | sed 's/^/  /'
for f in /usr/lib/dovecot/modules/lib20_migrate_plugin.so \
	/usr/lib/dovecot/modules/lib21_migrate_lda_plugin.so \
	/usr/lib/dovecot/modules/doveadm/lib20_doveadm_migrate_plugin.so \
	/usr/share/dovecot-migrate/conf.d/90-migrate.conf \
	/usr/share/dovecot-migrate/conf.d/dovecot-migrate-relay.conf.ext \
	/usr/share/dovecot-migrate/conf.d/dovecot-migrate-accounts-sql.conf.ext \
	/usr/share/dovecot-migrate/dovecot-migrate-accounts.sql \
	/usr/share/man/man1/doveadm-migrate.1.gz \
	/usr/share/doc/dovecot-migrate/copyright; do
	check "installed: $f" test -s "$ROOT$f"
done
check "no libtool archives (.la)" sh -c "! chroot '$ROOT' dpkg -L dovecot-migrate | grep -q '\\.la\$'"
check "nothing of ours in /etc/dovecot (the example is not enabled)" \
	sh -c "! ls '$ROOT'/etc/dovecot/conf.d/ | grep -qi migrate && ! chroot '$ROOT' dpkg -L dovecot-migrate | grep -q '^/etc'"
abi=$(in_root dpkg-query -W -f='${Provides}' dovecot-core | tr ',' '\n' | sed -n 's/^ *\(dovecot-abi-[^ ]*\).*/\1/p')
depends=$(in_root dpkg-query -W -f='${Depends}' dovecot-migrate)
echo "  Depends: $depends"
echo "  dovecot-core $(in_root dpkg-query -W -f='${Version}' dovecot-core) provides $abi"
check "the package depends on the installed dovecot-core's ABI ($abi)" \
	grep -qE "(^|, )$abi(,|\$)" <<<"$depends"
check "man doveadm-migrate is readable" sh -c "zcat '$ROOT/usr/share/man/man1/doveadm-migrate.1.gz' | grep -q 'doveadm'"
phase

# --- 5. a real migration -------------------------------------------------------
PASSWORD=check-deb-$RANDOM$RANDOM
free_port() { # a port nobody answers on right now
	local p i
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % 12000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
			echo "$p"
			return 0
		}
	done
	return 1
}
wait_imap() { # PORT: the greeting within 15 s
	local i line
	for ((i = 0; i < 150; i++)); do
		if exec 3<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null; then
			line=
			read -r -t 2 line <&3
			exec 3<&- 3>&-
			[[ $line == "* OK"* ]] && return 0
		fi
		sleep 0.1
	done
	return 1
}
message() { # N FOLDER
	printf 'From: Old Provider <sender@old.example>\nTo: %s@new.example\n' "$USER_NAME"
	printf 'Subject: check-deb %s %d\nMessage-ID: <check-deb-%s-%d@old.example>\n' "$2" "$1" "$2" "$1"
	printf 'Date: Mon, 1 Jan 2024 10:%02d:00 +0000\n\nmessage %d of %s\n' "$1" "$1" "$2"
}

say "the source: a private Dovecot on the host, $USER_NAME with $N_INBOX messages in INBOX and $N_SENT in Sent"
src=$WORK/source
mkdir -p "$src/run" "$src/state" "$src/mail/$USER_NAME/Maildir"/{cur,new,tmp} \
	"$src/mail/$USER_NAME/Maildir/.Sent"/{cur,new,tmp}
for ((i = 1; i <= N_INBOX; i++)); do
	message "$i" INBOX >"$src/mail/$USER_NAME/Maildir/new/100000$i.M$i.check-deb"
done
for ((i = 1; i <= N_SENT; i++)); do
	message "$i" Sent >"$src/mail/$USER_NAME/Maildir/.Sent/cur/100000$i.M$i.check-deb:2,S"
done
echo Sent >"$src/mail/$USER_NAME/Maildir/subscriptions"
chown -R nobody:nogroup "$src/mail"
printf '%s:{PLAIN}%s::::::\n' "$USER_NAME" "$PASSWORD" >"$src/users"
chgrp dovecot "$src/users" && chmod 640 "$src/users"
src_started=0
for _ in 1 2 3; do
	SRC_PORT=$(free_port) || die "no free port"
	cat >"$src/dovecot.conf" <<-EOF
	# check-deb's source; no /etc/dovecot includes
	instance_name = check-deb-source-${WORK##*.}
	base_dir = $src/run
	state_dir = $src/state
	log_path = $src/dovecot.log
	protocols = imap
	listen = 127.0.0.1
	ssl = no
	disable_plaintext_auth = no
	auth_mechanisms = plain login
	first_valid_uid = 1
	mail_uid = nobody
	mail_gid = nogroup
	mail_location = maildir:~/Maildir
	passdb {
	  driver = passwd-file
	  args = $src/users
	}
	userdb {
	  driver = passwd-file
	  args = $src/users
	  default_fields = home=$src/mail/%u
	}
	namespace inbox {
	  inbox = yes
	  separator = /
	}
	service imap-login {
	  inet_listener imap {
	    address = 127.0.0.1
	    port = $SRC_PORT
	  }
	  inet_listener imaps {
	    port = 0
	  }
	}
	EOF
	if dovecot -c "$src/dovecot.conf" >"$src/start.out" 2>&1 </dev/null && wait_imap "$SRC_PORT"; then
		src_started=1
		break
	fi
	grep -q 'Address already in use' "$src/start.out" "$src/dovecot.log" 2>/dev/null || break
	pid=$(master_pid "$src/run/master.pid" "$src/dovecot.conf") && stop_pid "$pid"
done
if [ $src_started != 1 ]; then
	cat "$src/start.out" >&2
	tail -n 20 "$src/dovecot.log" >&2
	die "the source Dovecot did not start"
fi
echo "  source: 127.0.0.1:$SRC_PORT (dovecot -c $src/dovecot.conf, the host's $(dovecot --version | cut -d' ' -f1))"
src_ids=$(doveadm -c "$src/dovecot.conf" fetch -u "$USER_NAME" hdr.message-id ALL 2>&1 |
	sed -n 's/^hdr.message-id: //p' | sort)
check "the source holds $((N_INBOX + N_SENT)) messages" test "$(grep -c . <<<"$src_ids")" = $((N_INBOX + N_SENT))

say "the destination: a private Dovecot inside the root, with the packaged 90-migrate.conf"
dst=/srv/check-deb
mkdir -p "$ROOT$dst/run" "$ROOT$dst/state" "$ROOT$dst/mail"
chown "$(in_root id -u nobody):$(in_root id -g nobody)" "$ROOT$dst/mail"
printf '%s:{PLAIN}%s::::::\n' "$USER_NAME" "$PASSWORD" >"$ROOT$dst/users"
in_root chgrp dovecot "$dst/users" && chmod 640 "$ROOT$dst/users"
# the source password, read by the sync as the mail user
printf '%s\n' "$PASSWORD" >"$ROOT$dst/source.password"
in_root chown nobody "$dst/source.password" && chmod 400 "$ROOT$dst/source.password"
cat >"$ROOT$dst/dovecot.conf" <<-EOF
# check-deb's destination (inside the root); no /etc/dovecot includes
instance_name = check-deb-dest-${WORK##*.}
base_dir = $dst/run
state_dir = $dst/state
log_path = $dst/dovecot.log
protocols = none
ssl = no
first_valid_uid = 1
mail_uid = nobody
mail_gid = nogroup
mail_location = maildir:~/Maildir
mail_plugin_dir = /usr/lib/dovecot/modules
postmaster_address = postmaster@new.example
passdb {
  driver = passwd-file
  args = $dst/users
}
userdb {
  driver = passwd-file
  args = $dst/users
  default_fields = home=$dst/mail/%u
}
namespace inbox {
  inbox = yes
  separator = /
}
# as the package's README.Debian says: the example, unchanged
!include /usr/share/dovecot-migrate/conf.d/90-migrate.conf
plugin {
  migrate_source_host = 127.0.0.1
  migrate_source_port = $SRC_PORT
  migrate_source_ssl = no
  migrate_source_password_file = $dst/source.password
}
EOF
conf=$dst/dovecot.conf
if ! in_root dovecot -c "$conf" >"$WORK/dest-start.out" 2>&1 </dev/null; then
	cat "$WORK/dest-start.out" >&2
	tail -n 20 "$ROOT$dst/dovecot.log" >&2
	die "the destination Dovecot did not start in the root"
fi
for ((i = 0; i < 100; i++)); do
	[ -S "$ROOT$dst/run/auth-userdb" ] && break
	sleep 0.1
done
echo "  destination: chroot $ROOT dovecot -c $conf ($(in_root dovecot --version | cut -d' ' -f1))"
check "doveadm in the root loads the packaged plugin (doveconf: protocol doveadm mail_plugins has migrate)" \
	sh -c "chroot '$ROOT' doveconf -c '$conf' -f protocol=doveadm -h mail_plugins | grep -qw migrate"

say "chroot ROOT doveadm -c $conf migrate -u $USER_NAME"
rc=0
in_root doveadm -c "$conf" migrate -u "$USER_NAME" >"$WORK/migrate1.out" 2>&1 || rc=$?
sed 's/^/  | /' "$WORK/migrate1.out"
if [ $rc = 0 ]; then
	ok "doveadm migrate -u $USER_NAME exits 0"
else
	fail "doveadm migrate -u $USER_NAME exits 0 (got $rc)" "$(tail -n 20 "$ROOT$dst/dovecot.log")"
fi
dst_ids=$(in_root doveadm -c "$conf" fetch -u "$USER_NAME" hdr.message-id ALL 2>&1 |
	sed -n 's/^hdr.message-id: //p' | sort)
check "the destination holds the $((N_INBOX + N_SENT)) messages, the same Message-IDs" \
	test "$dst_ids" = "$src_ids"
status=$(in_root doveadm -c "$conf" -f tab mailbox status -u "$USER_NAME" messages INBOX Sent 2>&1)
echo "  mailbox status: $(tr '\n\t' '; ' <<<"$status")"
check "INBOX has $N_INBOX messages and Sent $N_SENT" \
	test "$(awk -F'\t' '$1 == "INBOX" { i = $2 } $1 == "Sent" { s = $2 } END { print i, s }' <<<"$status")" = "$N_INBOX $N_SENT"
seen=$(in_root doveadm -c "$conf" search -u "$USER_NAME" mailbox Sent SEEN 2>&1 | grep -c .)
check "the flags came too (Sent's $N_SENT messages \\Seen)" test "$seen" = $N_SENT

rc=0
in_root doveadm -c "$conf" -f tab migrate -u "$USER_NAME" >"$WORK/migrate2.out" 2>"$WORK/migrate2.err" || rc=$?
# the summary: a "user<TAB>result<TAB>..." header and the user's row
copied=$(awk -F'\t' '$1 == "user" && $2 == "result" {
		for (i = 1; i <= NF; i++) if ($i == "copied") c = i
		if (c && (getline) > 0) print $c
		exit
	}' "$WORK/migrate2.out")
if [ $rc = 0 ] && [ "$copied" = 0 ]; then
	ok "a second doveadm migrate exits 0 and copies nothing"
else
	fail "a second doveadm migrate exits 0 and copies nothing (exit $rc, copied '${copied}')" \
		"$(cat "$WORK/migrate2.out" "$WORK/migrate2.err")"
fi

# the other mail module: dovecot-lda with migrate_lda (90-migrate.conf)
message 99 lda >"$ROOT/tmp/lda.eml"
rc=0
in_root sh -c "/usr/lib/dovecot/dovecot-lda -c '$conf' -d '$USER_NAME' -f sender@old.example </tmp/lda.eml" \
	>"$WORK/lda.out" 2>&1 || rc=$?
inbox=$(in_root doveadm -c "$conf" search -u "$USER_NAME" mailbox INBOX ALL 2>&1 | grep -c .)
if [ $rc = 0 ] && [ "$inbox" = $((N_INBOX + 1)) ]; then
	ok "dovecot-lda with the packaged migrate_lda plugin delivers (exit 0, INBOX $inbox)"
else
	fail "dovecot-lda with the packaged migrate_lda plugin delivers (exit $rc, INBOX $inbox)" \
		"$(cat "$WORK/lda.out")" "$(tail -n 10 "$ROOT$dst/dovecot.log")"
fi
check "the destination log has no error or panic" \
	sh -c "! grep -E '(Error|Panic|Fatal):' '$ROOT$dst/dovecot.log'"
phase

# --- summary -------------------------------------------------------------------
echo
if [ ${#FAILED[@]} -eq 0 ]; then
	printf '\033[1mcheck-deb: PASS\033[0m: %d checks, %s in a clean Debian 12 root, %d s\n' \
		${#PASSED[@]} "${deb##*/}" $((SECONDS - T0))
	exit 0
fi
printf '\033[1mcheck-deb: FAIL\033[0m: %d of %d checks failed (%d s):\n' \
	${#FAILED[@]} $((${#PASSED[@]} + ${#FAILED[@]})) $((SECONDS - T0))
printf '  - %s\n' "${FAILED[@]}"
exit 1
