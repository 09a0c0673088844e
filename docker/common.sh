# docker/common.sh - shared by docker/build.sh and docker/demo.sh (bash)
#
# Nothing here needs a container registry: the base image is made from
# Debian's packages (debootstrap from the mirror the host's apt uses, then
# `docker import`), and every image is built from it.
#
#   dk_init                   DK_SRCDIR, DK_BASE_IMAGE, DK_IMAGE; DOCKER_BUILDKIT=0
#   dk_need_root WHY COMMAND  exits with what is missing when not root
#   dk_need_packages PKG...   apt-get install what is not installed
#   dk_daemon_start           use the Docker engine that answers, else start
#                             a private dockerd (DK_PRIVATE=1)
#   dk_daemon_stop            stop the private dockerd, remove its data root
#   dk_image_exists IMAGE
#   dk_base_image WORKDIR     make DK_BASE_IMAGE unless it exists
#   dk_source_tarball BUILDDIR OUT   the source tree, no build products
#   dk_build_image WORKDIR BUILDDIR  docker/Dockerfile -> DK_IMAGE
#
# Knobs: DOCKER_DEBIAN_MIRROR (instead of the host's apt mirror),
# DOCKER_PRIVATE_DIR (the private dockerd's sockets and pid file, default
# /run/dovecot-migrate-docker) and DOCKER_PRIVATE_DATA (its data root,
# default /var/lib/dovecot-migrate-docker).

DK_SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DK_BASE_IMAGE=dovecot-migrate/debian12-base:local
DK_IMAGE=dovecot-migrate/dovecot:local
DK_SUITE=bookworm
DK_PRIVATE=0
DK_MADE_IMAGES=()

dk_say() { printf '\033[1m== %s\033[0m\n' "$*"; }
dk_die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

dk_init() {
	# the legacy builder: the same with Debian's docker.io client and a
	# newer client without buildx; it does multi-stage builds
	export DOCKER_BUILDKIT=0
	DK_PRIVATE_DIR=${DOCKER_PRIVATE_DIR:-/run/dovecot-migrate-docker}
	DK_PRIVATE_DATA=${DOCKER_PRIVATE_DATA:-/var/lib/dovecot-migrate-docker}
}

dk_need_root() {
	[ "$(id -u)" = 0 ] && return 0
	local p missing=()
	for p in docker.io debootstrap python3 openssl; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	{
		echo "${0##*/} needs root: $1."
		[ ${#missing[@]} -eq 0 ] ||
			echo "  missing Debian packages: ${missing[*]} (apt-get install them as root)"
		docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
			echo "  no Docker engine answers (as root the script starts a private dockerd)"
		echo "  debootstrap of the Debian 12 base image and the mounts of the private dockerd need root as well"
		echo "Run it as root: sudo $2"
	} >&2
	exit 1
}

dk_need_packages() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	dk_say "Installing Debian packages: ${missing[*]}"
	apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >/dev/null ||
		dk_die "apt-get install ${missing[*]} failed"
}

dk_docker_answers() {
	docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# the engine that answers (DOCKER_HOST or the default socket), else a
# private dockerd: its own data root, exec root, pid file and socket; no
# bridge, no iptables rules, no IP forwarding (the containers use the
# host's network); overlay2, or vfs where overlay cannot be mounted
dk_daemon_start() {
	if [ -z "${DK_FORCE_PRIVATE:-}" ] && dk_docker_answers; then
		echo "using the Docker engine at ${DOCKER_HOST:-the default socket} ($(docker version --format '{{.Server.Version}}'))"
		return 0
	fi
	export DOCKER_HOST=unix://$DK_PRIVATE_DIR/docker.sock
	DK_PRIVATE=1
	if dk_docker_answers; then
		echo "using the private dockerd at $DOCKER_HOST (left by an earlier run)"
		return 0
	fi
	command -v dockerd >/dev/null || dk_die "dockerd is missing (apt-get install docker.io)"
	mkdir -p "$DK_PRIVATE_DIR" "$DK_PRIVATE_DATA"
	chmod 700 "$DK_PRIVATE_DIR" "$DK_PRIVATE_DATA"
	local driver i
	for driver in overlay2 vfs; do
		dockerd --data-root "$DK_PRIVATE_DATA" --exec-root "$DK_PRIVATE_DIR/exec" \
			--pidfile "$DK_PRIVATE_DIR/dockerd.pid" -H "$DOCKER_HOST" \
			--iptables=false --ip-forward=false --ip-masq=false --bridge=none \
			--storage-driver "$driver" >"$DK_PRIVATE_DIR/dockerd.log" 2>&1 </dev/null &
		DK_DOCKERD_PID=$!
		for ((i = 0; i < 300; i++)); do
			dk_docker_answers && break
			kill -0 "$DK_DOCKERD_PID" 2>/dev/null || break
			sleep 0.1
		done
		if dk_docker_answers; then
			echo "started a private dockerd (pid $DK_DOCKERD_PID, storage driver $driver, data root $DK_PRIVATE_DATA)"
			return 0
		fi
		echo "dockerd with storage driver $driver did not come up; its log:" >&2
		tail -n 15 "$DK_PRIVATE_DIR/dockerd.log" | sed 's/^/  | /' >&2
		kill "$DK_DOCKERD_PID" 2>/dev/null
		wait "$DK_DOCKERD_PID" 2>/dev/null
		rm -rf "${DK_PRIVATE_DATA:?}"/*
	done
	dk_die "no Docker engine: the private dockerd failed with overlay2 and vfs (log: $DK_PRIVATE_DIR/dockerd.log)"
}

# the pid of the private dockerd, checked against its command line
dk__private_pid() {
	local pid
	pid=$(cat "$DK_PRIVATE_DIR/dockerd.pid" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		grep -qF -- "--exec-root $DK_PRIVATE_DIR/exec" || return 1
	echo "$pid"
}

# stop the private dockerd (it stops its containerd) after removing its
# containers, then remove what it left: mounts under its roots (the
# network namespace it keeps), the data root, the exec root
dk_daemon_stop() {
	[ "$DK_PRIVATE" = 1 ] || return 0
	local pid i m
	if pid=$(dk__private_pid); then
		DOCKER_HOST=unix://$DK_PRIVATE_DIR/docker.sock docker ps -aq |
			xargs -r env DOCKER_HOST="unix://$DK_PRIVATE_DIR/docker.sock" docker rm -f -v >/dev/null
		kill -TERM "$pid"
		for ((i = 0; i < 200; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "dockerd (pid $pid) ignored SIGTERM, killing it" >&2
			kill -KILL "$pid"
			sleep 0.5
		fi
	fi
	# deepest first
	awk '{ print $2 }' /proc/self/mounts |
		grep -E "^($DK_PRIVATE_DATA|$DK_PRIVATE_DIR)(/|\$)" | sort -r |
		while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m"
		done
	rm -rf "$DK_PRIVATE_DATA" "$DK_PRIVATE_DIR"
}

dk_image_exists() {
	docker image inspect "$1" >/dev/null 2>&1
}

# the host's apt sources for Debian 12 as one-line entries "URI SUITE
# COMPONENTS", from sources.list, *.list and deb822 *.sources files
dk__host_sources() {
	{
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed -e 's/#.*//' -e 's/\[[^]]*\]//' |
			awk '$1 == "deb" && NF >= 4 { c = ""; for (i = 4; i <= NF; i++) c = c " " $i; print $2, $3 c }'
		local f
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -e "$f" ] || continue
			# one paragraph per stanza: Types, URIs, Suites, Components
			awk 'function flush(  u, s, nu, ns, i, j) {
				if (types ~ /(^| )deb( |$)/ && enabled != "no") {
					nu = split(uris, u, " "); ns = split(suites, s, " ")
					for (i = 1; i <= nu; i++)
						for (j = 1; j <= ns; j++)
							print u[i], s[j], comps
				}
				types = uris = suites = comps = ""; enabled = "yes"
			}
			BEGIN { enabled = "yes" }
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
				if (key == "types") types = $0
				else if (key == "uris") uris = $0
				else if (key == "suites") suites = $0
				else if (key == "components") comps = $0
				else if (key == "enabled") enabled = tolower($0)
			}
			END { flush() }' "$f"
		done
	} | awk -v suite="$DK_SUITE" '$2 == suite || index($2, suite "-") == 1 || index($2, suite "/") == 1' |
		awk '!seen[$0]++'
}

# the Debian 12 base image: debootstrap (minbase) from the host's mirror,
# the same apt sources inside, services never started by package scripts
dk_base_image() {
	local work=$1 sources mirror rootfs=$1/rootfs include=
	if dk_image_exists "$DK_BASE_IMAGE"; then
		echo "base image $DK_BASE_IMAGE exists: reused"
		return 0
	fi
	command -v debootstrap >/dev/null || dk_die "debootstrap is missing (apt-get install debootstrap)"
	sources=$(dk__host_sources)
	if [ -n "${DOCKER_DEBIAN_MIRROR:-}" ]; then
		mirror=$DOCKER_DEBIAN_MIRROR
	else
		mirror=$(awk -v suite="$DK_SUITE" '$2 == suite { print $1; exit }' <<<"$sources")
	fi
	[ -n "$mirror" ] ||
		dk_die "no Debian $DK_SUITE entry in the host's apt sources; set DOCKER_DEBIAN_MIRROR=URL"
	# the image gets the host's entries (at least the mirror itself)
	grep -q . <<<"$sources" || sources="$mirror $DK_SUITE main"
	case $mirror in https:*) include=--include=ca-certificates ;; esac
	dk_say "Building the base image $DK_BASE_IMAGE: debootstrap $DK_SUITE from $mirror"
	debootstrap --variant=minbase $include "$DK_SUITE" "$rootfs" "$mirror" \
		>"$work/debootstrap.log" 2>&1 || {
		tail -n 20 "$work/debootstrap.log" >&2
		dk_die "debootstrap failed (log: $work/debootstrap.log)"
	}
	rm -f "$rootfs/etc/apt/sources.list"
	awk '{ printf "deb %s", $1; for (i = 2; i <= NF; i++) printf " %s", $i; print "" }' \
		<<<"$sources" >"$rootfs/etc/apt/sources.list"
	sed 's/^/  apt: /' "$rootfs/etc/apt/sources.list"
	# package scripts must not try to start services in a build
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 755 "$rootfs/usr/sbin/policy-rc.d"
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
		"$rootfs"/var/log/*.log "$rootfs"/etc/hostname
	tar --numeric-owner -C "$rootfs" -cf - . |
		docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' \
			-m "debootstrap --variant=minbase $DK_SUITE $mirror" - "$DK_BASE_IMAGE" >/dev/null ||
		dk_die "docker import failed"
	rm -rf "$rootfs"
	DK_MADE_IMAGES+=("$DK_BASE_IMAGE")
}

# the source tree as a tarball, without build products: from git (the
# working tree's tracked files, uncommitted changes included) or, in an
# unpacked release, `make dist` in BUILDDIR
dk_source_tarball() {
	local builddir=$1 out=$2 rev
	if git -C "$DK_SRCDIR" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		rev=$(git -C "$DK_SRCDIR" stash create 2>/dev/null)
		git -C "$DK_SRCDIR" archive --format=tar.gz --prefix=dovecot-migrate/ \
			-o "$out" "${rev:-HEAD}" || dk_die "git archive failed"
		echo "source: git archive of $DK_SRCDIR (${rev:+uncommitted changes of tracked files included, }untracked files left out)"
	elif [ -n "$builddir" ] && [ -e "$builddir/Makefile" ]; then
		make -s -C "$builddir" dist-gzip distdir=dovecot-migrate >/dev/null ||
			dk_die "make dist failed"
		mv "$builddir/dovecot-migrate.tar.gz" "$out"
		echo "source: make dist in $builddir"
	else
		dk_die "no git work tree and no configured build directory to make a source tarball from"
	fi
}

# docker/Dockerfile in a build context of its own: the Dockerfile and the
# source tarball, nothing else of the tree
dk_build_image() {
	local work=$1 builddir=$2 ctx=$1/context
	mkdir -p "$ctx"
	dk_source_tarball "$builddir" "$ctx/dovecot-migrate.tar.gz"
	cp "$DK_SRCDIR/docker/Dockerfile" "$ctx/Dockerfile"
	dk_image_exists "$DK_IMAGE" || DK_MADE_IMAGES+=("$DK_IMAGE")
	dk_say "Building $DK_IMAGE (docker/Dockerfile: build on Debian's dovecot-dev, runtime without it)"
	docker build --network host --force-rm --build-arg BASE="$DK_BASE_IMAGE" -t "$DK_IMAGE" "$ctx" \
		>"$work/build.log" 2>&1 || {
		tail -n 30 "$work/build.log" >&2
		dk_die "docker build failed (log: $work/build.log)"
	}
	grep -E '^(Step|Successfully)' "$work/build.log" | sed 's/^/  /'
}
