#!/bin/bash
# docker/build.sh [--save FILE] [BUILDDIR] - the deployable image
#
# Builds dovecot-migrate/dovecot:local (docker/Dockerfile) on the Debian 12
# base image dovecot-migrate/debian12-base:local, which it first makes
# from Debian's packages when it does not exist (debootstrap, docker
# import: no registry is needed).  Both stay in the Docker engine that
# answers.  With --save FILE the image is also written to FILE
# (docker save, gzip) for `docker load` on another machine; when no engine
# answers, a private dockerd is started for the build and removed after,
# so --save is then required.
#
# Root only when it has to install docker.io or debootstrap, start a
# dockerd or debootstrap the base image.

set -u
. "$(dirname "$0")/common.sh"
dk_init

SAVE=
while [ $# -gt 0 ]; do
	case $1 in
	--save) SAVE=$2; shift 2 ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	-*) dk_die "unknown option $1" ;;
	*) break ;;
	esac
done
BUILDDIR=${1:-}
case $SAVE in ''|/*) ;; *) SAVE=$PWD/$SAVE ;; esac

if ! dk_docker_answers || ! dk_image_exists "$DK_BASE_IMAGE"; then
	dk_need_root "no Docker engine answers or the base image $DK_BASE_IMAGE is missing: it installs docker.io and debootstrap when missing, starts a private dockerd and debootstraps the base image" \
	"docker/build.sh"
	pkgs=(debootstrap)
	command -v docker >/dev/null && { dk_docker_answers || command -v dockerd >/dev/null; } ||
		pkgs+=(docker.io)
	dk_need_packages "${pkgs[@]}"
fi
if ! dk_docker_answers && [ -z "$SAVE" ]; then
	dk_die "no Docker engine answers: start one (systemctl start docker), or use --save FILE to build in a private dockerd and keep only the saved image"
fi

W=$(mktemp -d /tmp/docker-build.XXXXXX) || dk_die "mktemp failed"
trap 'rc=$?; dk_daemon_stop; rm -rf "$W"; exit $rc' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

dk_daemon_start
dk_base_image "$W"
dk_build_image "$W" "$BUILDDIR"
if [ -n "$SAVE" ]; then
	dk_say "Saving $DK_IMAGE to $SAVE"
	docker save "$DK_IMAGE" | gzip >"$SAVE" || dk_die "docker save failed"
	ls -l "$SAVE"
	echo "load it with: docker load -i $SAVE"
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^dovecot-migrate/'
