#!/bin/bash
# t-sources.sh - the same seeded account (tools/seed-account.py) migrated
# from five kinds of source: Dovecot with '/' separator, Dovecot
# Courier-style ('.' separator, INBOX. prefix), Cyrus IMAP 3.6 (classic
# INBOX. / '.'), GNU mailutils imap4d ('/', maildir storage) and
# Courier-IMAP 5.0 (INBOX. / '.', Maildir++), the last three run from
# Debian's packages (tests/lib/rig-foreign.sh; Courier is skipped, with the
# reason, when its packages cannot be had).  Each is checked against its own
# source (imap-compare.py: content hash, flags, dates, folder names), the
# destinations against each other, a re-run copies nothing, and two source
# folders that map to one destination name are both kept (one renamed, with
# a warning), never merged.
#
# The seed has folder names with spaces, nesting, Latin and CJK non-ASCII
# characters, and a folder named "a_b" (our escape character).  Folders only
# some servers allow are added per source (seed-account.py --extra):
#   Courier Dovecot (listescape plugin): "INBOX.a/b", our separator inside a
#     name: it becomes "a_b" and collides with "INBOX.a_b"; and "INBOX.Inbox",
#     which becomes "INBOX" and collides with the real INBOX;
#   Cyrus: "INBOX.Inbox" (Cyrus refuses '/' in names, so no "a/b" there);
#   Courier: "INBOX.Inbox" (it refuses '/' too), and its Trash,
#     "INBOX.Trash" (the rig turns Debian's IMAP_EMPTYTRASH=Trash:7 off:
#     what a test leaves there stays);
#   mailutils: "INBOX/Receipts" and "inbox/Receipts", two folders to it,
#     both "INBOX/Receipts" to us ('/' is its separator: no "a/b");
#   Dovecot '/': none (it refuses '/' in a name and folds "inbox" to INBOX).
#
# What the servers keep differs, and the cross-source check says so:
#   - mailutils 3.15 keeps no keywords (PERMANENTFLAGS has no \*; APPEND with
#     one answers BAD): it is seeded with the system flags only;
#   - its maildir drops APPEND's flags (the seeder sets them with STORE) and
#     its date: INTERNALDATE is the message's Date: header (the time of the
#     APPEND without one), so its dates are its own.  (Its mbox storage keeps
#     flags and dates but serves BODY[] with X-IMAPbase/X-UID/Status headers
#     added, and cannot hold a folder with both messages and children.)
# So mailutils' destination is compared with the others on folder, content
# hash and system flags; the others are equal on everything.  Against
# its own source every destination is compared on everything.
#
# mailutils answers STATUS with a name that has a space unquoted ("* STATUS
# Old Projects (MESSAGES 2 ...)"): the engine falls back to EXAMINE.  It
# also keeps inbox/Receipts apart from INBOX/Receipts, which Dovecot's IMAP
# client (INBOX is case-insensitive to it) cannot: the migration leaves
# inbox/Receipts out, reports it, and exits 65 instead of merging them.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-sources
. "$(dirname "$0")/../lib/rig-foreign.sh"

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Src;pass 7'
DEST_PW='Dest!pw 8'
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
SOURCES="dslash dcour cyrus mu courier"
has() { [[ " $SOURCES " == *" $1 "* ]]; }

for s in cyrus mailutils; do
	if why=$(rig_foreign_fetch $s); then
		tap_ok "$s packages unpacked in $RIG_FOREIGN_CACHE"
	else
		tap_fail "$s packages unpacked in $RIG_FOREIGN_CACHE"
		tap_diag "$why"
		tap_done
	fi
done
if why=$(rig_foreign_fetch courier); then
	tap_ok "courier packages unpacked in $RIG_FOREIGN_CACHE"
else
	tap_ok "# SKIP Courier-IMAP as a source: ${why//$'\n'/ }"
	SOURCES=${SOURCES% courier}
fi

rig_start_source dslash || exit 1
rig_start_source dcour --sep . --prefix INBOX. || exit 1
rig_conf_add dcour "mail_plugins = \$mail_plugins listescape" || exit 1
rig_start_cyrus cyrus || exit 1
rig_start_mailutils mu || exit 1
if has courier; then
	rig_start_courier courier || exit 1
fi
rig_start_dest dest || exit 1
tap_ok "sources up: Dovecot '/' :$(rig_port dslash), Courier-style :$(rig_port dcour)," \
	"Cyrus :$(rig_port cyrus), mailutils :$(rig_port mu)$(has courier &&
		echo ", Courier-IMAP :$(rig_port courier)")"

declare -A SRC_USER=([dslash]=carol [dcour]=carol [cyrus]=carol [courier]=carol)
rig_add_user dslash carol "$SRC_PW"
rig_add_user dcour carol "$SRC_PW"
rig_foreign_add_user cyrus carol "$SRC_PW" || exit 1
SRC_USER[mu]=$(rig_foreign_add_user mu carol "$SRC_PW") || exit 1
if has courier; then
	rig_foreign_add_user courier carol "$SRC_PW" || exit 1
fi

# the destination: host, TLS and the password globally, port and login name
# per user
rig_migrate_source dest dslash "$SRC_PW"
for s in $SOURCES; do
	rig_add_user dest "$s@example.com" "$DEST_PW" \
		"userdb_migrate_source_user=${SRC_USER[$s]}" \
		"userdb_migrate_source_port=$(rig_port "$s")"
done

seed() {
	local s=$1
	shift
	"$PY" "$T/seed-account.py" --port "$(rig_port "$s")" --user "${SRC_USER[$s]}" \
		--password-env SRC_IMAP_PASSWORD seed "$@"
}
declare -A EXTRAS=(
	[dslash]=""
	[dcour]="INBOX.a/b INBOX.Inbox"
	[cyrus]="INBOX.Inbox"
	[mu]="INBOX/Receipts inbox/Receipts"
	[courier]="INBOX.Inbox INBOX.Trash"
)
tap_run "seed Dovecot '/'" seed dslash
tap_run "seed Courier-style Dovecot, with INBOX.a/b and INBOX.Inbox" \
	seed dcour --extra 'slash=INBOX.a/b' --extra 'inbox=INBOX.Inbox'
tap_run "seed Cyrus, with INBOX.Inbox" seed cyrus --extra 'inbox=INBOX.Inbox'
tap_run "seed mailutils, with INBOX/Receipts and inbox/Receipts" \
	seed mu --extra 'rcpt=INBOX/Receipts' --extra 'rcpt2=inbox/Receipts'
tap_like "mailutils takes no keywords (seeded with system flags only)" \
	'keeps no keywords' "$TAP_OUT"
if has courier; then
	tap_run "seed Courier, with INBOX.Inbox and INBOX.Trash" \
		seed courier --extra 'inbox=INBOX.Inbox' --extra 'trash=INBOX.Trash'
	tap_like "Courier's imapd runs with IMAP_EMPTYTRASH off" $'(^|\n)IMAP_EMPTYTRASH=(\n|$)' \
		"$(tr '\0' '\n' <"/proc/$(cat "$RIG/courier/run/couriertcpd.pid")/environ")"
	tap_is "$(rig_imap courier carol "$SRC_PW" count INBOX.Trash)" 2 \
		"... and its Trash keeps what was put there"
	tap_like "Courier lists INBOX.Inbox apart from INBOX, with INBOX. and '.'" \
		$'(^|\n)INBOX\\.Inbox(\n|$)(.|\n)*INBOX\\.Old Projects\\.Q1 2024|INBOX\\.Old Projects\\.Q1 2024(.|\n)*(^|\n)INBOX\\.Inbox(\n|$)' \
		"$(rig_imap courier carol "$SRC_PW" list)"
fi
tap_like "Cyrus lists the classic namespace, INBOX.Inbox apart from INBOX" \
	$'(^|\n)INBOX\\.Inbox(\n|$)(.|\n)*INBOX\\.Old Projects\\.Q1 2024|INBOX\\.Old Projects\\.Q1 2024(.|\n)*(^|\n)INBOX\\.Inbox(\n|$)' \
	"$(rig_imap cyrus carol "$SRC_PW" list)"
tap_like "mailutils lists inbox/Receipts apart from INBOX/Receipts" \
	$'(^|\n)inbox/Receipts(\n|$)' "$(rig_imap mu "${SRC_USER[mu]}" "$SRC_PW" list)"

migrate() {
	MIG_OUT=$RIG/out.$1.$RANDOM
	MIG_RC=0
	rig_doveadm dest -f tab migrate -u "$1@example.com" >"$MIG_OUT" 2>&1 || MIG_RC=$?
	MIG_ROW=$(grep -A1 -m1 $'^user\tresult' "$MIG_OUT" | tail -n 1)
}
field() { cut -f"$1" <<<"$MIG_ROW"; }   # 8 copied
# the collision warnings of source S's runs (doveadm's output):
# "Source folders X and Y both map to Z: copying Y to W" -> X<TAB>Y<TAB>Z<TAB>W
warnings() {
	cat "$RIG"/out."$1".* 2>/dev/null |
		sed -n 's/.*Source folders \(.*\) and \(.*\) both map to \(.*\): copying .* to \(.*\)$/\1\t\2\t\3\t\4/p' |
		sort -u
}

declare -A EXPECT_COLLISIONS=([dslash]=0 [dcour]=2 [cyrus]=1 [mu]=0 [courier]=1)
declare -A EXPECT_RC=([dslash]=0 [dcour]=0 [cyrus]=0 [mu]=65 [courier]=0)
declare -A IGNORE=([mu]="--ignore-src-folder inbox/Receipts")
for s in $SOURCES; do
	migrate "$s"
	tap_is "$MIG_RC" "${EXPECT_RC[$s]}" "$s: migration exits ${EXPECT_RC[$s]}"
	[ "$MIG_RC" = "${EXPECT_RC[$s]}" ] || tap_diag "$(tail -n 20 "$MIG_OUT")"
	if [ "$s" = mu ]; then
		tap_like "mu: inbox/Receipts is left out and reported, not merged into INBOX/Receipts" \
			'"folder":"inbox/Receipts","uid":0,"size":0,"reason":"Dovecot.s IMAP client cannot tell it from INBOX/Receipts' \
			"$(cat "$(rig_home dest mu@example.com)/.migrate/report.json")"
	fi
	W=$(warnings "$s")
	tap_is "$(grep -c . <<<"$W")" "${EXPECT_COLLISIONS[$s]}" \
		"$s: ${EXPECT_COLLISIONS[$s]} collision(s) reported"
	[ -n "$W" ] && tap_diag "$W"
	# imap-compare: each renamed folder where the warning says it went
	maps=()
	while IFS=$'\t' read -r x y z w; do
		[ -n "$y" ] && maps+=(--map "$y=$w")
	done <<<"$W"
	tap_run "$s: checker: destination equals the source (hash, flags, dates, names)" \
		"$PY" "$T/imap-compare.py" --src-port "$(rig_port "$s")" \
		--src-user "${SRC_USER[$s]}" --src-password-env SRC_IMAP_PASSWORD \
		--dest-port "$(rig_port dest)" --dest-user "$s@example.com" \
		--dest-password-env DEST_IMAP_PASSWORD --escape-char _ "${maps[@]}" ${IGNORE[$s]:-}
	tap_diag "$(tail -n 1 <<<"$TAP_OUT")"
	# both folders of a collision exist, each with its own messages
	while IFS=$'\t' read -r x y z w; do
		[ -n "$y" ] || continue
		nz=$(rig_imap dest "$s@example.com" "$DEST_PW" count "$z")
		nw=$(rig_imap dest "$s@example.com" "$DEST_PW" count "$w")
		nx=$(rig_imap "$s" "${SRC_USER[$s]}" "$SRC_PW" count "$x")
		ny=$(rig_imap "$s" "${SRC_USER[$s]}" "$SRC_PW" count "$y")
		tap_is "$nz/$nw" "$nx/$ny" "$s: $x -> $z ($nx) and $y -> $w ($ny) kept apart"
	done <<<"$W"
	migrate "$s"
	tap_is "$MIG_RC/$(field 8)" "${EXPECT_RC[$s]}/0" "$s: a re-run exits ${EXPECT_RC[$s]} and copies 0"
done

# --- the destinations against each other -----------------------------------------
# Only the seed's common folders are compared (the per-source extras are
# checked above).  A common folder a collision renamed (Y common, X an
# extra: "copying Y to W") is compared under its mapped name Z.
COMMON=$'INBOX\nOld Projects\nOld Projects/Q1 2024\nRelatórios\nÁrea de Trabalho\nÁrea de Trabalho/Notas\n日本語の資料\na_b'
snapshot() {
	local s=$1
	shift
	local -a ren=()
	local x y z w e common
	while IFS=$'\t' read -r x y z w; do
		[ -n "$y" ] || continue
		common=1
		for e in ${EXTRAS[$s]}; do
			[ "$e" = "$y" ] && common=0
		done
		# the extra X took Z: drop it, and show W as Z
		[ $common = 1 ] && ren+=(--rename "$z=extra:$z" --rename "$w=$z")
	done <<<"$(warnings "$s")"
	"$PY" "$T/seed-account.py" --port "$(rig_port dest)" --user "$s@example.com" \
		--password-env DEST_IMAP_PASSWORD snapshot "${ren[@]}" "$@" |
		awk -F '\t' -v common="$COMMON" '
			BEGIN { n = split(common, c, "\n"); for (i = 1; i <= n; i++) keep[c[i]] = 1 }
			$1 in keep'
}
for s in $SOURCES; do
	snapshot "$s" >"$RIG/snap.$s"
	snapshot "$s" --system-flags --no-dates >"$RIG/snap-sys.$s"
done
tap_is "$(cut -f1 "$RIG/snap.dslash" | sort -u)" "$(sort -u <<<"$COMMON")" \
	"Dovecot '/' destination has every common folder"
tap_is "$(wc -l <"$RIG/snap.dslash")" 20 "... and the 20 common messages"
for s in dcour cyrus courier; do
	has "$s" || continue
	if d=$(diff "$RIG/snap.dslash" "$RIG/snap.$s"); then
		tap_ok "$s and Dovecot '/' destinations equal (folders, hash, flags, dates)"
	else
		tap_fail "$s and Dovecot '/' destinations equal (folders, hash, flags, dates)"
		tap_diag "$d"
	fi
done
if d=$(diff "$RIG/snap-sys.dslash" "$RIG/snap-sys.mu"); then
	tap_ok "mailutils and Dovecot '/' destinations equal (folders, hash, system flags)"
else
	tap_fail "mailutils and Dovecot '/' destinations equal (folders, hash, system flags)"
	tap_diag "$d"
fi

tap_done
