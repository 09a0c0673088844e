# tests/lib/rig-foreign.sh - Cyrus IMAP, GNU mailutils imap4d and Courier-IMAP
# as sources
#
# Sourced after tests/lib/rig.sh (and rig_init) by the tests that need a
# non-Dovecot source.  The servers conflict with dovecot-imapd as installed
# packages, so they run from Debian's packages unpacked with dpkg-deb -x
# (never installed) into a cache that survives runs ($RIG_FOREIGN_CACHE,
# default $MIGRATE_BUILDDIR/tests/.foreign, .gitignore'd, or
# /var/cache/dovecot-migrate-tests/foreign when the mail user cannot enter
# the build tree) and is only read by the tests.  Everything a server
# writes (config, spool, sockets, pid, log) lives in $RIG/NAME; each listens
# on 127.0.0.1 on a free port.
#
#   rig_foreign_fetch cyrus|mailutils|courier
#                            download (apt-get download, apt-get update
#                            first only when that fails) and unpack the
#                            packages once; prints why and returns 1 when
#                            the server cannot run here (a test skips)
#   rig_start_cyrus NAME     Cyrus IMAP 3.6 master + imapd: classic
#                            namespace (INBOX. prefix, '.' separator:
#                            altnamespace and unixhierarchysep off),
#                            sasldb auxprop at $RIG/NAME/sasldb2, plain
#                            text logins allowed, admin "cyrus"
#   rig_start_mailutils NAME GNU mailutils imap4d in daemon mode
#                            (--foreground, kept in the background by us),
#                            private config, maildir storage under
#                            $RIG/NAME/mail/USER, personal namespace ""
#                            with '/' separator; log in $RIG/NAME/server.log
#   rig_start_courier NAME   Courier-IMAP 5.0 (couriertcpd + imaplogin +
#                            imapd, authdaemond with authuserdb, gam_server
#                            for its folder watches) in a private mount
#                            namespace: its built-in /etc/courier and
#                            /run/courier are $RIG/NAME/etc and
#                            $RIG/NAME/run there (see RIG__COURIER_NS), the
#                            host's are never written.  Debian's imapd
#                            config with IMAP_EMPTYTRASH off; INBOX. prefix,
#                            '.' separator, Maildir++ at
#                            $RIG/NAME/mail/USER/Maildir; no TLS; LOGIN
#                            with a password; log (logins, LOGIN FAILED)
#                            in $RIG/NAME/server.log; couriertcpd's pid
#                            in $RIG/NAME/run/couriertcpd.pid
#   rig_foreign_add_user NAME USER PASSWORD
#                            Cyrus: saslpasswd2 (password on stdin) and
#                            the admin's CREATE user.USER;
#                            mailutils: a line in the private passwd file
#                            of its virtdomain authorization (crypt hash
#                            made by openssl passwd -6 -stdin); the login
#                            name is then USER@rig.test (mailutils'
#                            virtual domains need one), printed here;
#                            Courier: a line in $RIG/NAME/etc/userdb
#                            (systempw, the same crypt hash) compiled by
#                            its makeuserdb, and the user's maildir; the
#                            login name is USER;
#                            the password is registered (rig_secret)
#   rig_courier_pop3 NAME    Courier's POP3 server too (courier-pop:
#                            couriertcpd + courierpop3login +
#                            courierpop3d, Debian's etc/pop3d) on a free
#                            port of its own, which it prints
#   rig_courier_add_folder NAME USER FOLDER
#                            a folder made on disk in USER's Maildir++
#                            (FOLDER as Courier lists it, "INBOX.a.b", in
#                            UTF-8: the directory ".a.b"), without IMAP:
#                            any name a file name can hold ('/' cannot);
#                            Courier lists them as they are
#                            ("INBOX.~tilde", "INBOX.a%b", a tab)
#
# The instances are registered with the rig: rig_port NAME, rig_imap,
# rig_log NAME ($RIG/NAME/server.log; Cyrus logs only to syslog, which is
# not there, so its log holds our own notes), rig_stop NAME, and
# rig_cleanup stops them; stopping waits until every process of the
# instance (found by its $RIG/NAME path on its command line, Courier's by
# RIG_COURIER=$RIG/NAME/ in its environment) has exited.
#
# Knobs: RIG_FOREIGN_CACHE (cache dir); RIG_FOREIGN_OFFLINE=1 never
# downloads (rig_foreign_fetch fails when the cache lacks a package);
# RIG_FOREIGN_TRANSCRIPT=1 logs mailutils' IMAP sessions to its server.log;
# RIG_FOREIGN_MU_TYPE=mbox gives mailutils mbox storage (default maildir).

RIG_FOREIGN_CACHE=${RIG_FOREIGN_CACHE:-${MIGRATE_BUILDDIR:-$RIG_SRCDIR}/tests/.foreign}
# the servers run as the mail user, from the cache: in a tree it cannot
# enter (a clone in a mktemp -d directory is 0700) they cannot start, so
# the cache moves to a directory of its own under /var/cache
if ! runuser -u "${RIG_MAIL_USER:-nobody}" -- test -x "${RIG_FOREIGN_CACHE%/*}" 2>/dev/null; then
	RIG_FOREIGN_CACHE=/var/cache/dovecot-migrate-tests/foreign
	mkdir -p "$RIG_FOREIGN_CACHE" && chmod 755 "${RIG_FOREIGN_CACHE%/*}" "$RIG_FOREIGN_CACHE"
fi
RIG_FOREIGN_TRIPLET=$(gcc -print-multiarch 2>/dev/null)
RIG_FOREIGN_TRIPLET=${RIG_FOREIGN_TRIPLET:-x86_64-linux-gnu}

# what each server needs unpacked: the servers, and the libraries a Debian
# 12 with this project's DEB_PACKAGES lacks (checked with ldd after
# unpacking, so a host missing more gets a clear message)
RIG_FOREIGN_PKGS_cyrus="cyrus-imapd cyrus-common libical3 libzephyr4 sasl2-bin"
RIG_FOREIGN_PKGS_mailutils="mailutils-imap4d libmailutils9 mailutils-common libgsasl18 libmariadb3 libgssglue1 libidn12 libntlm0"
RIG_FOREIGN_PKGS_courier="courier-imap courier-pop courier-base courier-authlib courier-authdaemon courier-authlib-userdb libcourier-unicode4 gamin libgamin0 libltdl7 libidn12 libglib2.0-0"
RIG_FOREIGN_BINS_cyrus="usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/lib/cyrus/bin/ctl_cyrusdb usr/sbin/saslpasswd2"
RIG_FOREIGN_BINS_mailutils="usr/sbin/imap4d"
RIG_FOREIGN_BINS_courier="usr/sbin/couriertcpd usr/lib/courier/courier/imaplogin usr/bin/imapd usr/lib/courier/courier/courierpop3login usr/lib/courier/courier/courierpop3d usr/lib/courier/courier-authlib/authdaemond usr/lib/courier/courier-authlib/makedatprog usr/libexec/gam_server"
RIG_FOREIGN_MU_DOMAIN=rig.test
RIG_FOREIGN_MU_TYPE=${RIG_FOREIGN_MU_TYPE:-maildir}

rig_foreign_root() { echo "$RIG_FOREIGN_CACHE/$1"; }

rig__foreign_download() {
	# apt-get download writes into the current directory; as root it
	# warns that _apt cannot write there, which is harmless
	local debs=$1
	shift
	(cd "$debs" && apt-get download -q "$@" >"$debs/download.log" 2>&1)
}

rig_foreign_fetch() {
	local what=$1 pkgs bins root debs p f missing
	case $what in
	cyrus) pkgs=$RIG_FOREIGN_PKGS_cyrus bins=$RIG_FOREIGN_BINS_cyrus ;;
	mailutils) pkgs=$RIG_FOREIGN_PKGS_mailutils bins=$RIG_FOREIGN_BINS_mailutils ;;
	courier) pkgs=$RIG_FOREIGN_PKGS_courier bins=$RIG_FOREIGN_BINS_courier ;;
	*) rig_die "rig_foreign_fetch: unknown server $what" ;;
	esac
	root=$RIG_FOREIGN_CACHE/$what
	debs=$RIG_FOREIGN_CACHE/debs
	if [ "$what" = cyrus ] && [ ! -e "/usr/lib/$RIG_FOREIGN_TRIPLET/sasl2/libsasldb.so.2" ]; then
		# Cyrus' SASL plugins (PLAIN, LOGIN, sasldb) do not conflict with
		# Dovecot: installed for real (GNUmakefile's DEB_PACKAGES)
		echo "Cyrus needs the SASL plugins: apt-get install libsasl2-modules libsasl2-modules-db"
		return 1
	fi
	if [ "$what" = courier ]; then
		rig__courier_can_run || return 1
	fi
	mkdir -p "$debs" || return 1
	(
		# one fetch at a time (tests may run in parallel)
		flock 9
		if [ "$(cat "$root/.complete" 2>/dev/null)" = "$pkgs" ]; then
			exit 0
		fi
		missing=()
		for p in $pkgs; do
			compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
		done
		if [ ${#missing[@]} -gt 0 ]; then
			if [ "${RIG_FOREIGN_OFFLINE:-0}" = 1 ]; then
				echo "not in the cache $debs (RIG_FOREIGN_OFFLINE=1): ${missing[*]}"
				exit 1
			fi
			if ! rig__foreign_download "$debs" "${missing[@]}"; then
				# a fresh container may have no package lists yet
				apt-get update -qq >"$debs/update.log" 2>&1 &&
					rig__foreign_download "$debs" "${missing[@]}" || {
					echo "apt-get download ${missing[*]} failed: $(tail -n 3 "$debs/download.log")"
					exit 1
				}
			fi
		fi
		rm -rf "$root.new"
		mkdir -p "$root.new"
		for p in $pkgs; do
			# the newest file of the package, should several versions
			# have been downloaded over time
			f=$(ls -v "$debs/${p}_"*.deb | tail -n 1)
			dpkg-deb -x "$f" "$root.new" || { echo "dpkg-deb -x $f failed"; exit 1; }
		done
		for f in $bins; do
			if [ ! -x "$root.new/$f" ]; then
				echo "$f is missing from the unpacked packages"
				exit 1
			fi
			missing=$(LD_LIBRARY_PATH=$root.new/usr/lib/$RIG_FOREIGN_TRIPLET:$root.new/usr/lib \
				ldd "$root.new/$f" 2>&1 | grep 'not found')
			if [ -n "$missing" ]; then
				echo "$f needs libraries that are neither installed nor unpacked: $missing"
				exit 1
			fi
		done
		echo "$pkgs" >"$root.new/.complete"
		rm -rf "$root"
		mv "$root.new" "$root"
		chmod -R go+rX "$root"
	) 9>"$RIG_FOREIGN_CACHE/.lock"
}

rig__foreign_register() {
	local name=$1 kind=$2 port=$3 v
	RIG_KIND[$name]=$kind
	RIG_PORTS[$name]=$port
	RIG_INSTANCES+=("$name")
	v=$(rig__var "$name")
	printf -v "RIG_PORT_$v" %s "$port"
	export "RIG_PORT_$v"
}

rig__foreign_register_port() {
	local v
	RIG_PORTS[$1]=$2
	v=$(rig__var "$1")
	printf -v "RIG_PORT_$v" %s "$2"
}

rig__foreign_new() {
	local name=$1
	[ -n "$RIG" ] || rig_die "call rig_init first"
	[ -z "${RIG_KIND[$name]:-}" ] || rig_die "instance $name exists"
	[[ $name =~ ^[A-Za-z0-9_-]+$ ]] || rig_die "bad instance name $name"
	mkdir -p "$RIG/$name"
	: >"$RIG/$name/server.log"
}

# wait until PORT greets with "* OK" (and PIDFILE names a live process)
rig__foreign_wait_up() {
	"$RIG_PY" - "$1" "$2" <<-'EOF'
	import os, socket, sys, time
	port, pidfile = int(sys.argv[1]), sys.argv[2]
	deadline = time.time() + 20
	while time.time() < deadline:
	    try:
	        os.kill(int(open(pidfile).read().split()[0]), 0)
	        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
	            s.settimeout(5)
	            if s.recv(200).startswith((b"* OK", b"+OK")):
	                sys.exit(0)
	    except (OSError, ValueError, IndexError):
	        pass
	    time.sleep(0.05)
	sys.exit(1)
	EOF
}

# PIDs of the processes of instance NAME: its command line names a file in
# $RIG/NAME/ (both servers get their config path as an argument, and
# cyrus.conf gives each command -C: master does not hand it on); Courier's
# (whose sessions and helpers name nothing of ours) carry RIG_COURIER in
# their environment, which every one of them inherits from what we started
rig__foreign_pids() {
	local dir=$RIG/$1/ p
	if [ "${RIG_KIND[$1]:-}" = courier ]; then
		for p in /proc/[0-9]*; do
			tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF -- "RIG_COURIER=$dir" &&
				echo "${p#/proc/}"
		done
		return 0
	fi
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$dir" && echo "${p#/proc/}"
	done
}

# any of the PIDs still running (a zombie has exited: what the servers
# leave to init is reaped only some time later)
rig__foreign_alive() {
	local pid state
	for pid in "$@"; do
		state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
		[ -n "$state" ] && [ "$state" != Z ] && return 0
	done
	return 1
}

rig__foreign_stop() {
	local name=$1 pid i
	local -a pids
	pid=$(head -n1 "$RIG/$name/run/server.pid" 2>/dev/null)
	pids=($(rig__foreign_pids "$name"))
	[ ${#pids[@]} -gt 0 ] || return 0
	# the master first: it stops its children itself
	if [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "${pids[@]}" | grep -qx "$pid"; then
		kill -TERM "$pid" 2>/dev/null
	else
		kill -TERM "${pids[@]}" 2>/dev/null
	fi
	for ((i = 0; i < 100; i++)); do
		rig__foreign_alive "${pids[@]}" || return 0
		# children a master left behind
		[ $i = 30 ] && kill -TERM "${pids[@]}" 2>/dev/null
		sleep 0.1
	done
	echo "# rig: $name ignored SIGTERM, killing ${pids[*]}" >&2
	kill -KILL "${pids[@]}" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		rig__foreign_alive "${pids[@]}" || return 0
		sleep 0.1
	done
}

rig__foreign_stop_all() {
	local n
	for n in "${!RIG_KIND[@]}"; do
		case ${RIG_KIND[$n]} in
		cyrus|mailutils|courier) rig__foreign_stop "$n" ;;
		esac
	done
}

# rig.sh's instance functions, taught about the foreign kinds
eval "$(declare -f rig_stop | sed '1s/^rig_stop/rig__dovecot_stop/')"
rig_stop() {
	case ${RIG_KIND[$1]:-} in
	cyrus|mailutils|courier) rig__foreign_stop "$1" ;;
	*) rig__dovecot_stop "$1" ;;
	esac
}
eval "$(declare -f rig_log | sed '1s/^rig_log/rig__dovecot_log/')"
rig_log() {
	case ${RIG_KIND[$1]:-} in
	cyrus|mailutils|courier) echo "$RIG/$1/server.log" ;;
	*) rig__dovecot_log "$1" ;;
	esac
}
rig_on_exit rig__foreign_stop_all

# --- Cyrus IMAP ------------------------------------------------------------------

rig__cyrus_env() {
	local root=$RIG_FOREIGN_CACHE/cyrus
	env LD_LIBRARY_PATH="$root/usr/lib/$RIG_FOREIGN_TRIPLET" "$@"
}

rig_start_cyrus() {
	local name=$1 root=$RIG_FOREIGN_CACHE/cyrus port dir
	rig__foreign_new "$name"
	dir=$RIG/$name
	[ -e "$root/.complete" ] || rig_die "call rig_foreign_fetch cyrus first"
	mkdir -p "$dir"/{conf,spool,socket,lock,proc,run,sieve}
	# the sasldb holds the users' passwords in clear (auxprop); the
	# admin's password file is ours
	rig_secret_input "$name/sasldb2" "$name/admin.pw"
	chown -R "${RIG_MAIL_USER:-nobody}:${RIG_MAIL_GROUP:-nogroup}" "$dir"
	for _ in 1 2 3; do
		port=$(rig_free_port) || rig_die "no free port"
		cat >"$dir/imapd.conf" <<-EOF
		# generated by tests/lib/rig-foreign.sh
		configdirectory: $dir/conf
		defaultpartition: default
		partition-default: $dir/spool
		sievedir: $dir/sieve
		idlesocket: $dir/socket/idle
		notifysocket: $dir/socket/notify
		lmtpsocket: $dir/socket/lmtp
		mboxname_lockpath: $dir/lock
		proc_path: $dir/proc
		cyrus_user: ${RIG_MAIL_USER:-nobody}
		servername: rigcyrus
		admins: cyrus
		allowplaintext: yes
		sasl_pwcheck_method: auxprop
		sasl_auxprop_plugin: sasldb
		sasl_sasldb_path: $dir/sasldb2
		sasl_mech_list: PLAIN LOGIN
		altnamespace: no
		unixhierarchysep: no
		virtdomains: off
		hashimapspool: true
		EOF
		cat >"$dir/cyrus.conf" <<-EOF
		# generated by tests/lib/rig-foreign.sh
		START {
		  recover cmd="$root/usr/lib/cyrus/bin/ctl_cyrusdb -C $dir/imapd.conf -r"
		}
		SERVICES {
		  imap cmd="$root/usr/lib/cyrus/bin/imapd -C $dir/imapd.conf" listen="127.0.0.1:$port" prefork=1
		}
		EVENTS {
		}
		DAEMON {
		}
		EOF
		rm -f "$dir/run/server.pid"
		rig__cyrus_env "$root/usr/lib/cyrus/bin/master" -C "$dir/imapd.conf" \
			-M "$dir/cyrus.conf" -p "$dir/run/server.pid" -d \
			>>"$dir/server.log" 2>&1 </dev/null
		rig__foreign_register "$name" cyrus "$port"
		if rig__foreign_wait_up "$port" "$dir/run/server.pid"; then
			return 0
		fi
		rig__foreign_stop "$name"
		echo "# rig: Cyrus $name did not come up on port $port" >&2
	done
	return 1
}

rig__cyrus_add_user() {
	local name=$1 user=$2 pass=$3 dir=$RIG/$1 root=$RIG_FOREIGN_CACHE/cyrus
	# -p: the password is read from stdin, never on a command line
	printf '%s' "$pass" | rig__cyrus_env "$root/usr/sbin/saslpasswd2" -p -c \
		-f "$dir/sasldb2" -u rigcyrus "$user" || return 1
	if [ ! -e "$dir/admin.pw" ]; then
		# the admin, to create mailboxes; a random password
		"$RIG_PY" -c 'import secrets; print(secrets.token_hex(12))' >"$dir/admin.pw"
		chmod 600 "$dir/admin.pw"
		rig_secret "$(cat "$dir/admin.pw")" "Cyrus admin of $name"
		rig__cyrus_env "$root/usr/sbin/saslpasswd2" -p -c -f "$dir/sasldb2" \
			-u rigcyrus cyrus <"$dir/admin.pw" || return 1
	fi
	# imapd runs as the mail user and reads it
	chown "${RIG_MAIL_USER:-nobody}" "$dir/sasldb2"
	chmod 600 "$dir/sasldb2"
	[ "$user" = cyrus ] && return 0
	rig_imap "$name" cyrus "$(cat "$dir/admin.pw")" create "user.$user" >/dev/null
}

# --- GNU mailutils imap4d ------------------------------------------------------------

rig_start_mailutils() {
	local name=$1 root=$RIG_FOREIGN_CACHE/mailutils port dir
	rig__foreign_new "$name"
	dir=$RIG/$name
	[ -e "$root/.complete" ] || rig_die "call rig_foreign_fetch mailutils first"
	mkdir -p "$dir/run" "$dir/mail" "$dir/passwd"
	: >"$dir/passwd/$RIG_FOREIGN_MU_DOMAIN"
	chmod 600 "$dir/passwd/$RIG_FOREIGN_MU_DOMAIN"
	chown "${RIG_MAIL_USER:-nobody}:${RIG_MAIL_GROUP:-nogroup}" "$dir/mail"
	for _ in 1 2 3; do
		port=$(rig_free_port) || rig_die "no free port"
		cat >"$dir/imap4d.conf" <<-EOF
		# generated by tests/lib/rig-foreign.sh
		logging {
		  syslog false;
		  print-severity true;
		};
		auth {
		  authorization virtdomain;
		  authentication generic;
		};
		virtdomain {
		  passwd-dir "$dir/passwd";
		};
		mailbox {
		  mailbox-type $RIG_FOREIGN_MU_TYPE;
		  mailbox-pattern "$RIG_FOREIGN_MU_TYPE://$dir/mail/\${user}/INBOX";
		};
		namespace personal {
		  prefix "" {
		    directory "\$home";
		    delimiter "/";
		    mailbox-type $RIG_FOREIGN_MU_TYPE;
		  };
		};
		tcp-wrappers {
		  enable false;
		};
		gsasl {
		  enable false;
		};
		mode daemon;
		foreground true;
		pidfile "$dir/run/server.pid";
		server 127.0.0.1:$port {
		  transcript ${RIG_FOREIGN_TRANSCRIPT:-0};
		};
		EOF
		rm -f "$dir/run/server.pid"
		setsid env LD_LIBRARY_PATH="$root/usr/lib/$RIG_FOREIGN_TRIPLET" \
			"$root/usr/sbin/imap4d" --config-file="$dir/imap4d.conf" \
			>>"$dir/server.log" 2>&1 </dev/null &
		rig__foreign_register "$name" mailutils "$port"
		if rig__foreign_wait_up "$port" "$dir/run/server.pid"; then
			return 0
		fi
		rig__foreign_stop "$name"
		echo "# rig: imap4d $name did not come up on port $port:" >&2
		tail -n 5 "$dir/server.log" >&2
		grep -q "Address already in use" "$dir/server.log" || break
	done
	return 1
}

rig__mailutils_add_user() {
	local name=$1 user=$2 pass=$3 dir=$RIG/$1 hash uid gid
	local f=$dir/passwd/$RIG_FOREIGN_MU_DOMAIN
	case "$user$pass" in *:*|*$'\n'*) rig_die "':' or newline in user or password" ;; esac
	hash=$(printf '%s\n' "$pass" | openssl passwd -6 -stdin) || return 1
	uid=$(id -u "${RIG_MAIL_USER:-nobody}") gid=$(getent group "${RIG_MAIL_GROUP:-nogroup}" | cut -d: -f3)
	# imap4d would make the INBOX maildir itself, as root (root:mail
	# 0700), before switching to the user, who then cannot append to it
	if [ "$RIG_FOREIGN_MU_TYPE" = maildir ]; then
		mkdir -p "$dir/mail/$user/INBOX/"{cur,new,tmp}
	else
		mkdir -p "$dir/mail/$user"
		: >"$dir/mail/$user/INBOX"
	fi
	chown -R "$uid:$gid" "$dir/mail/$user"
	awk -F: -v u="$user" '$1 != u' "$f" >"$f.new"
	echo "$user:$hash:$uid:$gid::$dir/mail/$user:/bin/false" >>"$f.new"
	chmod 600 "$f.new"
	mv "$f.new" "$f"
	echo "$user@$RIG_FOREIGN_MU_DOMAIN"
}

# --- Courier-IMAP ----------------------------------------------------------------

# the namespace the Courier processes run in: the paths its binaries and
# scripts have built in (/etc/courier, /run/courier, /usr/lib/courier*,
# authdaemond's modules in /usr/lib/courier-authlib, libgamin's
# /usr/libexec/gam_server, makeuserdb's /usr/lib/courier/...) come from
# the instance and the unpacked packages.  /usr gets a read-only overlay
# with the packages' usr/ over the host's, so every program is where
# Debian puts it; /etc/courier and /run/courier are the instance's etc/
# and run/ bound there, on a read-only overlay of /etc or /run that only
# adds the mount point when the host has none.  Nothing of the host is
# written.  Arguments: DIR ROOT COMMAND...
RIG__COURIER_NS='
dir=$1 root=$2
shift 2
mount -t overlay rig-courier -o "lowerdir=$root/usr:/usr" /usr || exit 97
for d in etc run; do
	if [ ! -d "/$d/courier" ]; then
		mount -t overlay rig-courier -o "lowerdir=$dir/ns/$d:/$d" "/$d" || exit 97
	fi
	mount --bind "$dir/$d" "/$d/courier" || exit 97
done
exec "$@"'

# whether this kernel gives the mounts above (overlayfs in a private mount
# namespace); prints why not
rig__courier_can_run() {
	local t rc=0
	t=$(mktemp -d) || return 1
	mkdir "$t/a" "$t/m"
	unshare -m --propagation private -- mount -t overlay rig-courier \
		-o "lowerdir=$t/a:/etc" "$t/m" 2>"$t/err" || rc=$?
	[ $rc = 0 ] || echo "Courier runs in a private mount namespace with overlayfs: $(cat "$t/err")"
	rm -rf "$t"
	return $rc
}

# run COMMAND... as root in the namespace of Courier instance NAME
# (authdaemond's), with the environment mark of its processes
rig__courier_enter() {
	local name=$1 dir=$RIG/$1
	shift
	nsenter -t "$(cat "$dir/run/authdaemond.pid")" -m -- env -i \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin "RIG_COURIER=$dir/" "$@"
}

# Debian's config with the rig's changes appended: the auth module, no
# Trash expiry (Debian's IMAP_EMPTYTRASH=Trash:7 deletes, at every login
# and logout, what has been in Trash for 7 days: a source changes only by
# what its test does), a gam_server of the instance's own
# (libgamin finds it by an abstract socket named after the user and
# GAM_CLIENT_ID, shared by every namespace otherwise)
rig__courier_write_conf() {
	local name=$1 dir=$RIG/$1 root=$RIG_FOREIGN_CACHE/courier
	{
		cat "$root/etc/courier/authdaemonrc"
		echo '# rig-foreign.sh'
		echo 'authmodulelist="authuserdb"'
	} >"$dir/etc/authdaemonrc"
	{
		cat "$root/etc/courier/imapd"
		echo '# rig-foreign.sh'
		echo 'IMAP_EMPTYTRASH='
		echo "GAM_CLIENT_ID=${RIG##*/}-$name"
	} >"$dir/etc/imapd"
	if [ -e "$root/etc/courier/pop3d" ]; then
		{
			cat "$root/etc/courier/pop3d"
			echo '# rig-foreign.sh'
			echo "GAM_CLIENT_ID=${RIG##*/}-$name"
		} >"$dir/etc/pop3d"
	fi
	: >"$dir/etc/userdb"
	chmod 600 "$dir/etc/userdb"
}

# couriertcpd on PORT, as Debian's /usr/sbin/imapd starts it (its
# settings from etc/imapd); it goes into the background itself
rig__courier_listen() {
	local name=$1 port=$2 dir=$RIG/$1
	rm -f "$dir/run/couriertcpd.pid"
	rig__courier_enter "$name" sh -c 'set -a; . /etc/courier/imapd
		exec /usr/sbin/couriertcpd -pid="$1" -address=127.0.0.1 \
			-maxprocs="$MAXDAEMONS" -maxperip="$MAXPERIP" $TCPDOPTS \
			-stderr="$2" "$3" /usr/lib/courier/courier/imaplogin \
			/usr/bin/imapd "$MAILDIRPATH"' sh \
		"$dir/run/couriertcpd.pid" "$dir/server.log" "$port" \
		>>"$dir/server.log" 2>&1 </dev/null
}

# rig_courier_pop3 NAME: Courier's POP3 server too (courierpop3login +
# courierpop3d, Debian's etc/pop3d), on a free port of its own, printed
rig_courier_pop3() {
	local name=$1 dir=$RIG/$1 port
	[ "${RIG_KIND[$name]:-}" = courier ] || rig_die "rig_courier_pop3: $name is not a Courier instance"
	[ -e "$dir/etc/pop3d" ] || rig_die "rig_courier_pop3: courier-pop is not unpacked"
	port=$(rig_free_port) || rig_die "no free port"
	rig__courier_enter "$name" sh -c 'set -a; . /etc/courier/pop3d
		exec /usr/sbin/couriertcpd -pid="$1" -address=127.0.0.1 \
			-maxprocs="$MAXDAEMONS" -maxperip="$MAXPERIP" $TCPDOPTS \
			-stderr="$2" "$3" /usr/lib/courier/courier/courierpop3login \
			/usr/lib/courier/courier/courierpop3d "$MAILDIRPATH"' sh \
		"$dir/run/pop3d.pid" "$dir/server.log" "$port" \
		>>"$dir/server.log" 2>&1 </dev/null
	rig__foreign_wait_up "$port" "$dir/run/pop3d.pid" ||
		rig_die "Courier's POP3 server $name did not come up on port $port"
	echo "$port"
}

rig_start_courier() {
	local name=$1 root=$RIG_FOREIGN_CACHE/courier dir port pid i
	rig__foreign_new "$name"
	dir=$RIG/$name
	[ -e "$root/.complete" ] || rig_die "call rig_foreign_fetch courier first"
	case "$dir$root" in *[,:]*) rig_die "overlayfs takes no ',' or ':' in $dir, $root" ;; esac
	mkdir -p "$dir"/{etc,run/authdaemon,mail,ns/etc/courier,ns/run/courier}
	chmod 750 "$dir/run/authdaemon"
	rig__courier_write_conf "$name"
	rig__foreign_register "$name" courier 0
	# authdaemond makes the namespace, the others enter it
	setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "RIG_COURIER=$dir/" \
		unshare -m --propagation private -- sh -c "$RIG__COURIER_NS" sh "$dir" "$root" \
		/usr/lib/courier/courier-authlib/authdaemond >>"$dir/server.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/run/authdaemond.pid"
	for ((i = 0; i < 100; i++)); do
		[ -S "$dir/run/authdaemon/socket" ] && break
		rig__foreign_alive "$pid" || break
		sleep 0.1
	done
	if [ ! -S "$dir/run/authdaemon/socket" ]; then
		echo "# rig: Courier's authdaemond $name did not start:" >&2
		tail -n 5 "$dir/server.log" >&2
		rig__foreign_stop "$name"
		return 1
	fi
	for _ in 1 2 3; do
		port=$(rig_free_port) || rig_die "no free port"
		rig__courier_listen "$name" "$port"
		rig__foreign_register_port "$name" "$port"
		if rig__foreign_wait_up "$port" "$dir/run/couriertcpd.pid"; then
			return 0
		fi
		kill -TERM "$(head -n1 "$dir/run/couriertcpd.pid" 2>/dev/null)" 2>/dev/null
		echo "# rig: Courier $name did not come up on port $port:" >&2
		tail -n 5 "$dir/server.log" >&2
	done
	rig__foreign_stop "$name"
	return 1
}

rig__courier_add_user() {
	local name=$1 user=$2 pass=$3 dir=$RIG/$1
	local f=$RIG/$1/etc/userdb hash uid gid home
	case "$user" in *[$'\t\n|=/']*|'') rig_die "bad Courier user name '$user'" ;; esac
	case "$pass" in *$'\n'*) rig_die "newline in a password" ;; esac
	hash=$(printf '%s\n' "$pass" | openssl passwd -6 -stdin) || return 1
	uid=$(id -u "${RIG_MAIL_USER:-nobody}") gid=$(getent group "${RIG_MAIL_GROUP:-nogroup}" | cut -d: -f3)
	home=$dir/mail/$user
	# imapd runs as the user and checks that it owns the maildir
	# (IMAP_MAILBOX_SANITY_CHECK)
	mkdir -p "$home/Maildir/"{cur,new,tmp}
	chown -R "$uid:$gid" "$home"
	chmod 700 "$home/Maildir" "$home/Maildir/"{cur,new,tmp}
	awk -F '\t' -v u="$user" '$1 != u' "$f" >"$f.new"
	printf '%s\tuid=%s|gid=%s|home=%s|systempw=%s\n' "$user" "$uid" "$gid" "$home" "$hash" >>"$f.new"
	chmod 600 "$f.new"
	mv "$f.new" "$f"
	# authuserdb reads userdb.dat, which its tool compiles from userdb
	rig__courier_enter "$name" /usr/sbin/makeuserdb
}

rig_courier_add_folder() {
	local name=$1 user=$2 folder=$3 d
	[ "${RIG_KIND[$name]:-}" = courier ] || rig_die "rig_courier_add_folder: $name is not a Courier instance"
	case $folder in
	INBOX.*/*) rig_die "rig_courier_add_folder: '/' cannot be in a maildir folder" ;;
	INBOX.?*) ;;
	*) rig_die "rig_courier_add_folder: $folder is not under INBOX." ;;
	esac
	d=$RIG/$name/mail/$user/Maildir/.${folder#INBOX.}
	[ -d "${d%/*}" ] || rig_die "rig_courier_add_folder: no user $user in $name"
	mkdir -p "$d/cur" "$d/new" "$d/tmp" && : >"$d/maildirfolder" &&
		chown -R "${RIG_MAIL_USER:-nobody}:${RIG_MAIL_GROUP:-nogroup}" "$d" &&
		chmod 700 "$d" "$d/cur" "$d/new" "$d/tmp"
}

rig_foreign_add_user() {
	rig_secret "$3" "rig_foreign_add_user $1 $2"
	case ${RIG_KIND[$1]:-} in
	cyrus) rig__cyrus_add_user "$@" ;;
	mailutils) rig__mailutils_add_user "$@" ;;
	courier) rig__courier_add_user "$@" ;;
	*) rig_die "rig_foreign_add_user: $1 is not a Cyrus, mailutils or Courier instance" ;;
	esac
}
