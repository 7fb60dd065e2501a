# hooklib.sh — what the platform hooks of scripts/<profile>/ share.
#
# Sourced (never run) by a hook file, which defines what differs between the
# profiles (a function or two for some hooks) and calls hook_<name> PROFILE
# "$@". Holds the helpers of the contract (progress, die, name checks, atomic
# writes, space checks, temporary files removed on exit) and the bodies of
# the hooks. Contract: scripts/HOOKS.md.
# shellcheck shell=bash
set -u -o pipefail
export LC_ALL=C

progress() { printf 'progress %d %s\n' "$1" "$2"; }
# The last stderr line is the reason COM shows, so it goes last.
die() { local code=$1; shift; printf '%s\n' "$*" >&2; exit "$code"; }

# One path component: no '/', no '..', nothing tar could read as an option.
valid_name() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]]; }
# A relative path without '..' components (stays under the root).
valid_rel() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ && /$1/ != */../* ]]; }

# ---- temporary files, cancellation, rollback ---------------------------------
# Paths given to tmp_add are removed when the hook exits, however it exits
# (SIGTERM from a cancel included). HOOK_ON_FAIL names a function that runs
# first when the exit status is not 0: the rollback of a hook that was
# changing the system when it failed.
HOOK_TMPS=()
HOOK_ON_FAIL=
tmp_add() { HOOK_TMPS+=("$@"); }
hook_exit() {
	local rc=$?
	trap '' TERM INT	# a second signal must not cut the rollback short
	if [ "$rc" -ne 0 ] && [ -n "$HOOK_ON_FAIL" ]; then
		"$HOOK_ON_FAIL"
	fi
	[ ${#HOOK_TMPS[@]} -eq 0 ] || rm -rf -- "${HOOK_TMPS[@]}"
	exit "$rc"
}
trap hook_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# hook_env PROFILE: checks what every hook needs from the agent's environment
# (HOOKS.md §2); PROFILE is the hook's own. Sets HOOK_PROFILE, and R: the
# root without trailing slashes ("" for "/"), so "$R/etc/x" is always right.
hook_env() {
	HOOK_PROFILE=$1
	[ -n "${COMAGENT_ROOT:-}" ] || die 2 "COMAGENT_ROOT is not set"
	[[ $COMAGENT_ROOT == /* ]] ||
		die 2 "COMAGENT_ROOT is not an absolute path: $COMAGENT_ROOT"
	[ "${COMAGENT_PROFILE:-}" = "$HOOK_PROFILE" ] ||
		die 2 "this is the $HOOK_PROFILE hook, COMAGENT_PROFILE is '${COMAGENT_PROFILE:-}'"
	R=$COMAGENT_ROOT
	while [[ $R == */ ]]; do R=${R%/}; done
	[ -d "$R/" ] || die 1 "root directory $COMAGENT_ROOT does not exist"
}

# The state directory, absolute; created when missing.
state_dir() {
	local s=${COMAGENT_STATE_DIR:-}
	[[ $s == /* ]] || die 2 "COMAGENT_STATE_DIR is not set or not absolute: '$s'"
	mkdir -p -- "$s" || die 1 "cannot create the state directory $s"
	printf '%s\n' "$s"
}

# The nearest existing directory at or above PATH.
existing_dir() {
	local p=$1
	while [ ! -d "$p" ]; do p=$(dirname -- "$p"); done
	printf '%s\n' "$p"
}

# The topmost missing directory of PATH ("" when PATH exists): what
# mkdir -p PATH makes.
first_missing() {
	local p=$1 top=
	while [ ! -e "$p" ] && [ ! -L "$p" ]; do
		top=$p
		p=$(dirname -- "$p")
	done
	printf '%s\n' "$top"
}

# free_kib PATH: the free KiB (df -Pk) of the file system that holds PATH, or
# would hold it (its nearest existing ancestor).
free_kib() {
	local p have
	p=$(existing_dir "$1")
	have=$(df -Pk -- "$p" | awk 'NR == 2 { print $4 }')
	[[ $have =~ ^[0-9]+$ ]] || die 1 "cannot read the free space of $p"
	printf '%s\n' "$have"
}

# need_space NEED_KIB PATH [TEXT]: exit 3 unless the file system of PATH has
# NEED_KIB free. TEXT goes after "not enough space" (e.g. " in /x").
need_space() {
	local need=$1 have
	have=$(free_kib "$2") || exit
	[ "$have" -ge "$need" ] ||
		die 3 "not enough space${3-}: need $need KiB, have $have KiB"
}

# write_atomic FILE LINE...: FILE holds the LINEs, written to FILE.tmp,
# synced and renamed, so a reader (or a power cut) sees the old or the new.
write_atomic() {
	local f=$1; shift
	tmp_add "$f.tmp"
	printf '%s\n' "$@" >"$f.tmp" || die 1 "cannot write $f.tmp"
	sync -- "$f.tmp" 2>/dev/null
	mv -f -- "$f.tmp" "$f" || die 1 "cannot rename $f.tmp to $f"
}

# A request file: one line, the UTC time and the job id (when there is one).
write_request() {
	local f=$1 now
	mkdir -p -- "$(dirname -- "$f")" || die 1 "cannot create $(dirname -- "$f")"
	now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	write_atomic "$f" "$now${COMAGENT_JOB:+ $COMAGENT_JOB}"
}

# ---- restore --------------------------------------------------------------------
# The profile's restore defines restore_allowed NAME (may a member of that
# name be in a backup?), calls hook_restore_start and restore_list, picks its
# units from M_NAME and calls restore_apply. A unit is a path relative to
# the root that is replaced as a whole: a directory when it ends in '/', else
# a file.

# restore_list ARCHIVE WHAT: the archive's members in M_NAME, M_TYPE (tar -tv's
# type letter: '-' or 'd') and M_KIB (the space each takes once extracted);
# dies on anything a backup of ours never holds.
# WHAT says what a backup may hold, for the reason.
restore_list() {
	local archive=$1 what=$2 scratch i n t size long
	scratch=$(mktemp -d) || die 1 "cannot create a temporary directory"
	tmp_add "$scratch"
	# -P: names as stored (tar would strip a leading '/' and hide it).
	if ! tar -P -t -z -f "$archive" >"$scratch/names" 2>"$scratch/err" ||
		! tar -P -t -v -z --numeric-owner -f "$archive" \
			>"$scratch/long" 2>"$scratch/err"; then
		cat -- "$scratch/err" >&2
		die 1 "cannot read the backup $archive: $(sed -n '/./{p;q;}' "$scratch/err")"
	fi
	mapfile -t M_NAME <"$scratch/names"
	mapfile -t M_LONG <"$scratch/long"
	[ ${#M_NAME[@]} -eq ${#M_LONG[@]} ] ||
		die 1 "cannot read the listing of the backup $archive"
	[ ${#M_NAME[@]} -gt 0 ] || die 1 "the backup $archive is empty"
	M_TYPE=() M_KIB=()
	for i in "${!M_NAME[@]}"; do
		n=${M_NAME[i]}
		long=${M_LONG[i]}
		t=${long:0:1}
		case $n in
		/*) die 1 "unsafe backup: absolute member name $n" ;;
		esac
		[[ /$n/ != */../* ]] || die 1 "unsafe backup: '..' in member name $n"
		case $t in
		-|d) ;;
		l) die 1 "unsafe backup: symbolic link $n" ;;
		h) die 1 "unsafe backup: hard link $n" ;;
		c|b|p) die 1 "unsafe backup: device or fifo $n" ;;
		*) die 1 "unsafe backup: member $n of unsupported type '$t'" ;;
		esac
		restore_allowed "$n" ||
			die 1 "unsafe backup: member outside $what: $n"
		# Space on disk: whole 4 KiB blocks. An absurd size (over 1 PB) is
		# capped so the sum stays in bash's 64-bit arithmetic.
		read -r _ _ size _ <<<"$long"
		[[ $size =~ ^[0-9]{1,15}$ ]] || size=999999999999999
		[ "$t" = d ] && size=0
		# shellcheck disable=SC2034 # used by the profile's restore
		M_TYPE[i]=$t
		M_KIB[i]=$(( ((10#$size + 4095) / 4096) * 4 + 4 ))
	done
}

# in_unit NAME UNIT: is member NAME the unit or inside it?
in_unit() {
	local n=${1%/} u=${2%/}
	[[ $n == "$u" || $n == "$u"/* ]]
}

# restore_apply ARCHIVE UNIT...: extracts each unit next to its place and
# swaps it in; on any failure the units already swapped are put back.
restore_apply() {
	local archive=$1 u t i j n k need have scratch
	local -a devs=() needs=()
	shift
	RESTORE_UNITS=("$@")
	RESTORE_DONE=()
	scratch=$(mktemp -d) || die 1 "cannot create a temporary directory"
	tmp_add "$scratch"
	# What an interrupted run left: the half-extracted copy goes; an old
	# copy moved aside goes back where it was if nothing replaced it.
	for u in "${RESTORE_UNITS[@]}"; do
		t=$R/${u%/}
		rm -rf -- "$t.restore-new"
		if [ -e "$t.restore-old" ] || [ -L "$t.restore-old" ]; then
			if [ -e "$t" ] || [ -L "$t" ]; then
				rm -rf -- "$t.restore-old"
			else
				mv -T -- "$t.restore-old" "$t" ||
					die 1 "cannot put back $t.restore-old"
			fi
		fi
	done

	# Space per file system: the old copies stay until the new ones are in.
	for i in "${!RESTORE_UNITS[@]}"; do
		u=${RESTORE_UNITS[i]}
		need=0
		for j in "${!M_NAME[@]}"; do
			in_unit "${M_NAME[j]}" "$u" && need=$((need + M_KIB[j]))
		done
		needs[i]=$need
		devs[i]=$(stat -c %d -- "$(existing_dir "$(dirname -- "$R/${u%/}")")") ||
			die 1 "cannot stat the directory of $R/${u%/}"
	done
	for i in "${!RESTORE_UNITS[@]}"; do
		need=64
		for j in "${!RESTORE_UNITS[@]}"; do
			[ "${devs[j]}" = "${devs[i]}" ] && need=$((need + needs[j]))
		done
		have=$(free_kib "$R/${RESTORE_UNITS[i]%/}") || exit
		[ "$have" -ge "$need" ] ||
			die 3 "not enough space: need $need KiB, have $have KiB"
	done

	progress 40 extracting
	for u in "${RESTORE_UNITS[@]}"; do
		t=$R/${u%/}
		n=${u%/}
		k=${n//[^\/]/}	# the unit lands in $t.restore-new/<its base name>
		if ! mkdir -p -- "$(dirname -- "$t")" || ! mkdir -- "$t.restore-new"; then
			die 1 "cannot create $t.restore-new"
		fi
		tmp_add "$t.restore-new"
		if ! tar -x -z -f "$archive" -C "$t.restore-new" --touch \
			--no-wildcards --strip-components=${#k} -- "$n" \
			2>"$scratch/err"; then
			cat -- "$scratch/err" >&2
			die 1 "cannot extract $n: $(tail -n 1 -- "$scratch/err")"
		fi
		if [[ $u == */ ]]; then
			[ -d "$t.restore-new/${n##*/}" ] ||
				die 1 "not a directory in the backup: $n"
		else
			[ -f "$t.restore-new/${n##*/}" ] ||
				die 1 "not a regular file in the backup: $n"
		fi
	done
	sync

	progress 80 replacing
	HOOK_ON_FAIL=restore_rollback
	for u in "${RESTORE_UNITS[@]}"; do
		t=$R/${u%/}
		n=${u%/}
		if [[ $u == */ ]]; then
			# A directory cannot be renamed over another: the old one
			# goes aside first (and back on failure).
			if [ -e "$t" ] || [ -L "$t" ]; then
				mv -T -- "$t" "$t.restore-old" ||
					die 1 "cannot move $t aside"
			fi
			RESTORE_DONE+=("$u")
			mv -T -- "$t.restore-new/${n##*/}" "$t" ||
				die 1 "cannot move the restored $n into place"
		else
			# A file is renamed over the old one at once; a link to the
			# old one is kept for a rollback.
			if [ -e "$t" ]; then
				ln -f -- "$t" "$t.restore-old" 2>/dev/null ||
					cp -p -- "$t" "$t.restore-old" ||
					die 1 "cannot keep a copy of $t"
			fi
			RESTORE_DONE+=("$u")
			mv -f -- "$t.restore-new/${n##*/}" "$t" ||
				die 1 "cannot move the restored $n into place"
		fi
	done
	HOOK_ON_FAIL=
	for u in "${RESTORE_UNITS[@]}"; do
		rm -rf -- "$R/${u%/}.restore-old"
	done
	sync
	progress 100 "done"
}

# Puts back the old copy of every unit swapped so far, newest first.
restore_rollback() {
	local i t failed=
	for ((i = ${#RESTORE_DONE[@]} - 1; i >= 0; i--)); do
		t=$R/${RESTORE_DONE[i]%/}
		if [ -e "$t.restore-old" ] || [ -L "$t.restore-old" ]; then
			rm -rf -- "$t" && mv -T -- "$t.restore-old" "$t" || failed="$failed $t"
		else
			rm -rf -- "$t" || failed="$failed $t"
		fi
	done
	[ -z "$failed" ] ||
		printf 'restore failed and the old configuration could not be put back at:%s\n' \
			"$failed" >&2
}

# hook_restore_start PROFILE USAGE ARGS...: the checks of ARCHIVE shared by
# both profiles; the archive in RESTORE_ARCHIVE.
hook_restore_start() {
	local profile=$1 usage=$2
	shift 2
	[ $# -ge 1 ] || die 2 "usage: $usage"
	[[ $1 == /* ]] || die 2 "ARCHIVE must be an absolute path: $1"
	hook_env "$profile"
	umask 077	# a backup holds the system's secrets
	[ -f "$1" ] || die 1 "no backup archive at $1"
	# shellcheck disable=SC2034 # used by the profile's restore
	RESTORE_ARCHIVE=$1
}

# ---- transfer-check -------------------------------------------------------------
hook_transfer_check() {
	local profile=$1 dir bytes need
	shift
	[ $# -eq 2 ] || die 2 "usage: transfer-check STAGING_DIR BYTES"
	dir=$1 bytes=$2
	[[ $dir == /* ]] || die 2 "STAGING_DIR must be an absolute path: $dir"
	# At most 18 digits: fits in bash's 64-bit arithmetic. 10# below: a
	# leading 0 is not octal.
	[[ $bytes =~ ^[0-9]{1,18}$ ]] || die 2 "BYTES must be a number of bytes: $bytes"
	hook_env "$profile"
	umask 077
	if [ ! -d "$dir" ]; then
		if ! mkdir -p -- "$(dirname -- "$dir")" || ! mkdir -m 0700 -- "$dir"; then
			die 1 "cannot create $dir"
		fi
	fi
	need=$(( (10#$bytes + 1023) / 1024 + 1024 ))	# + 1 MiB margin
	need_space "$need" "$dir" " in $dir"
	progress 100 "done"
}

# ---- upgrade --------------------------------------------------------------------
# json_str KEY JSON / json_num KEY JSON: the value of a string / number
# member KEY of flat JSON without white space ("" when absent).
json_str() { sed -n 's/.*"'"$1"'":"\([^"\\]*\)".*/\1/p' <<<"$2"; }
json_num() { sed -n 's/.*"'"$1"'":\([0-9][0-9]*\).*/\1/p' <<<"$2"; }

# The installed file's SHA-256, lower-case hex.
sha256_of() { sha256sum -- "$1" | cut -d ' ' -f 1; }

hook_upgrade() {
	local hook_profile=$1 staging manifest json release profile comps obj name size sha
	local base rels dest cur state old_target running prev need f got keep d
	local reuse i
	local -a names=() sizes=() shas=()
	shift
	[ $# -eq 2 ] || die 2 "usage: upgrade STAGING_DIR MANIFEST"
	staging=$1 manifest=$2
	[[ $staging == /* ]] || die 2 "STAGING_DIR must be an absolute path: $staging"
	[[ $manifest == /* ]] || die 2 "MANIFEST must be an absolute path: $manifest"
	hook_env "$hook_profile"
	state=$(state_dir) || exit
	umask 022	# the installed release is read by the system's services
	[ -d "$staging" ] || die 1 "no staging directory $staging"
	[ -f "$manifest" ] || die 1 "no manifest at $manifest"

	progress 10 checking
	# The agent writes the manifest as compact JSON on one line; white space
	# is dropped all the same (no value used here has any).
	json=$(tr -d ' \t\r\n' <"$manifest") || die 1 "cannot read the manifest $manifest"
	release=$(json_str release "$json")
	profile=$(json_str profile "$json")
	[[ $release =~ ^[0-9]+(\.[0-9]+)*$ && ${#release} -le 64 ]] ||
		die 1 "bad release in the manifest: '$release'"
	[ "$profile" = "$HOOK_PROFILE" ] ||
		die 1 "the manifest is for profile '$profile', this system is $HOOK_PROFILE"
	comps=$(sed -n 's/.*"components":\[\([^]]*\)\].*/\1/p' <<<"$json")
	while read -r obj; do
		[ -n "$obj" ] || continue
		name=$(json_str name "$obj")
		size=$(json_num size "$obj")
		sha=$(json_str sha256 "$obj")
		[[ $name =~ ^[A-Za-z0-9._-]{1,128}$ && $name != . && $name != .. ]] ||
			die 1 "bad component name in the manifest: '$name'"
		[[ $size =~ ^[0-9]{1,15}$ ]] ||
			die 1 "bad size of component $name in the manifest: '$size'"
		[[ $sha =~ ^[0-9a-f]{64}$ ]] ||
			die 1 "bad sha256 of component $name in the manifest: '$sha'"
		for f in ${names[@]+"${names[@]}"}; do
			[ "$f" != "$name" ] || die 1 "component $name is twice in the manifest"
		done
		names+=("$name") sizes+=("$((10#$size))") shas+=("$sha")
	done < <(grep -o '{[^{}]*}' <<<"$comps")
	if [ ${#names[@]} -lt 1 ] || [ ${#names[@]} -gt 16 ]; then
		die 1 "the manifest must list 1 to 16 components, it lists ${#names[@]}"
	fi

	base=$R/opt/ipoffice
	rels=$base/releases
	dest=$rels/$release
	cur=$base/current
	if [ -e "$cur" ] || [ -L "$cur" ]; then
		[ -L "$cur" ] || die 1 "$cur is not a symbolic link"
		old_target=$(readlink -- "$cur") || die 1 "cannot read the link $cur"
	else
		old_target=
	fi
	# The running version, as the agent reads it: the first line of the
	# version file; else the release that current points to.
	running=$(head -n 1 -- "$R/etc/ipoffice-version" 2>/dev/null | tr -d ' \t\r')
	[ -n "$running" ] || running=${old_target##*/}
	prev=$running
	if [ "$running" = "$release" ]; then	# reinstalling: keep the record
		prev=$(head -n 1 -- "$base/previous" 2>/dev/null)
	fi
	need=64
	for i in "${!names[@]}"; do
		f=$staging/${names[i]}
		[ -f "$f" ] || die 1 "component missing from $staging: ${names[i]}"
		size=$(wc -c <"$f") || die 1 "cannot read $f"
		[ "$size" -eq "${sizes[i]}" ] ||
			die 1 "component ${names[i]} has $size bytes, the manifest says ${sizes[i]}"
		need=$((need + (sizes[i] + 1023) / 1024))
	done
	# Installed already (a rerun)? Exactly these files with these hashes.
	reuse=
	# shellcheck disable=SC2012 # names are [A-Za-z0-9._-]
	if [ -d "$dest" ] && [ ! -L "$dest" ] &&
		[ "$(ls -A -- "$dest" | sort)" = "$(printf '%s\n' "${names[@]}" | sort)" ]; then
		reuse=1
		for i in "${!names[@]}"; do
			[ "$(sha256_of "$dest/${names[i]}")" = "${shas[i]}" ] || reuse=
		done
	fi
	[ -n "$reuse" ] || need_space "$need" "$rels"

	progress 50 installing
	if [ -z "$reuse" ]; then
		# A failure before the switch leaves nothing behind, not even
		# the directories made for the release.
		UP_MADE=$(first_missing "$rels")
		HOOK_ON_FAIL=upgrade_unmake
		mkdir -p -- "$rels" || die 1 "cannot create $rels"
		rm -rf -- "$rels/.$release.tmp" "$rels/.$release.old"
		tmp_add "$rels/.$release.tmp" "$rels/.$release.old"
		mkdir -- "$rels/.$release.tmp" || die 1 "cannot create $rels/.$release.tmp"
		for i in "${!names[@]}"; do
			f=$rels/.$release.tmp/${names[i]}
			cp -- "$staging/${names[i]}" "$f" ||
				die 1 "cannot copy ${names[i]} to $rels"
			got=$(sha256_of "$f") || die 1 "cannot hash $f"
			[ "$got" = "${shas[i]}" ] ||
				die 1 "component ${names[i]} does not match its SHA-256 in the manifest"
		done
		sync
		if [ -e "$dest" ] || [ -L "$dest" ]; then	# a broken earlier install
			mv -T -- "$dest" "$rels/.$release.old" || die 1 "cannot move $dest aside"
		fi
		mv -T -- "$rels/.$release.tmp" "$dest" || die 1 "cannot rename to $dest"
		HOOK_ON_FAIL=
	fi

	progress 90 switching
	# Everything is prepared next to its place first; then renames, current
	# first. A failure among them puts back what was renamed (rollback).
	UP_CUR=$cur UP_OLD_TARGET=$old_target UP_SWITCHED='' UP_RENAMED=()
	UP_FILES=("$R/etc/ipoffice-version" "$state/upgrade-pending")
	[ -z "$prev" ] || UP_FILES+=("$base/previous")
	mkdir -p -- "$R/etc" || die 1 "cannot create $R/etc"
	tmp_add "$cur.tmp"
	for f in "${UP_FILES[@]}"; do
		tmp_add "$f.tmp" "$f.upgrade-old"
		rm -f -- "$f.upgrade-old"
		if [ -e "$f" ]; then
			ln -f -- "$f" "$f.upgrade-old" 2>/dev/null ||
				cp -p -- "$f" "$f.upgrade-old" ||
				die 1 "cannot keep a copy of $f"
		fi
	done
	if [ -n "$prev" ]; then
		printf '%s\n' "$prev" >"$base/previous.tmp" ||
			die 1 "cannot write $base/previous.tmp"
	fi
	# The version file's first line is the release; other lines stay.
	{ printf '%s\n' "$release"; tail -n +2 -- "$R/etc/ipoffice-version" 2>/dev/null; } \
		>"$R/etc/ipoffice-version.tmp" || die 1 "cannot write $R/etc/ipoffice-version.tmp"
	printf '%s\n' "$release" >"$state/upgrade-pending.tmp" ||
		die 1 "cannot write $state/upgrade-pending.tmp"
	rm -rf -- "$cur.tmp"
	ln -sfn -- "releases/$release" "$cur.tmp" || die 1 "cannot create $cur.tmp"
	sync
	HOOK_ON_FAIL=upgrade_rollback
	mv -T -- "$cur.tmp" "$cur" || die 1 "cannot switch $cur to $release"
	UP_SWITCHED=1
	for f in "${UP_FILES[@]}"; do
		mv -f -T -- "$f.tmp" "$f" || die 1 "cannot rename $f.tmp to $f"
		UP_RENAMED+=("$f")
	done
	sync
	HOOK_ON_FAIL=

	# Keep the new release and the previous one; older ones go (the flash
	# of an IP500 V2 holds two).
	# What a killed install left goes too.
	keep=" $release $prev ${old_target##*/} "
	for d in "$rels"/* "$rels"/.*.tmp "$rels"/.*.old; do
		[ -e "$d" ] || continue
		[[ $keep == *" ${d##*/} "* ]] || rm -rf -- "$d"
	done
	progress 100 "done"
}

# The directories made for the release, when the install failed.
upgrade_unmake() { [ -z "$UP_MADE" ] || rm -rf -- "$UP_MADE"; }

# Puts back current and the files renamed so far (their old copies, or
# none when there was none).
upgrade_rollback() {
	local f failed=
	if [ -z "$UP_SWITCHED" ]; then
		:
	elif [ -n "$UP_OLD_TARGET" ]; then
		ln -sfn -- "$UP_OLD_TARGET" "$UP_CUR.tmp" &&
			mv -T -- "$UP_CUR.tmp" "$UP_CUR" || failed="$failed $UP_CUR"
	else
		rm -f -- "$UP_CUR" || failed="$failed $UP_CUR"
	fi
	for f in ${UP_RENAMED[@]+"${UP_RENAMED[@]}"}; do
		if [ -e "$f.upgrade-old" ]; then
			mv -f -T -- "$f.upgrade-old" "$f" || failed="$failed $f"
		else
			rm -f -- "$f" || failed="$failed $f"
		fi
	done
	[ -z "$failed" ] ||
		printf 'upgrade failed and the old state could not be put back at:%s\n' \
			"$failed" >&2
}

# ---- certificate -----------------------------------------------------------------
# The profile's certificate sets CERT_DIR (where the system's services read
# their identity certificate, relative to the root) and defines
# reload_services (how they learn of a new one; it dies on failure), then
# calls hook_certificate. Each pair is a directory CERT_DIR/set-<hash> with
# cert.pem and key.pem; CERT_DIR/current, a relative symbolic link, names
# the one in use and is switched with one rename.
hook_certificate() {
	local profile=$1 cert key dir sum pair old d
	shift
	[ $# -eq 2 ] || die 2 "usage: certificate CERT_FILE KEY_FILE"
	cert=$1 key=$2
	[[ $cert == /* ]] || die 2 "CERT_FILE must be an absolute path: $cert"
	[[ $key == /* ]] || die 2 "KEY_FILE must be an absolute path: $key"
	hook_env "$profile"
	umask 077	# the key; what the services read is opened up below

	progress 10 checking
	[ -f "$cert" ] || die 1 "no certificate file at $cert"
	[ -f "$key" ] || die 1 "no key file at $key"
	grep -q -- '^-----BEGIN CERTIFICATE-----' "$cert" ||
		die 1 "not a PEM certificate: $cert"
	grep -q -- '^-----BEGIN [A-Z ]*PRIVATE KEY-----' "$key" ||
		die 1 "not a PEM private key: $key"
	dir=$R/$CERT_DIR
	if [ -e "$dir/current" ] || [ -L "$dir/current" ]; then
		[ -L "$dir/current" ] || die 1 "$dir/current is not a symbolic link"
		old=$(readlink -- "$dir/current") || die 1 "cannot read the link $dir/current"
	else
		old=
	fi

	progress 50 installing
	# The pair's own name: the same files give the same set (a rerun).
	sum=$(cat -- "$cert" "$key" | sha256sum | cut -c 1-16) ||
		die 1 "cannot hash the certificate"
	pair=set-$sum
	if ! [ -d "$dir/$pair" ] || ! cmp -s -- "$cert" "$dir/$pair/cert.pem" ||
		! cmp -s -- "$key" "$dir/$pair/key.pem"; then
		# The services read it: what is made here is not 0700.
		(umask 022 && mkdir -p -- "$dir") || die 1 "cannot create $dir"
		rm -rf -- "$dir/.$pair.tmp"
		tmp_add "$dir/.$pair.tmp"
		mkdir -m 0755 -- "$dir/.$pair.tmp" || die 1 "cannot create $dir/.$pair.tmp"
		if ! cp -- "$cert" "$dir/.$pair.tmp/cert.pem" ||
			! chmod 0644 -- "$dir/.$pair.tmp/cert.pem"; then
			die 1 "cannot copy the certificate to $dir"
		fi
		if ! cp -- "$key" "$dir/.$pair.tmp/key.pem" ||
			! chmod 0600 -- "$dir/.$pair.tmp/key.pem"; then
			die 1 "cannot copy the key to $dir"
		fi
		sync
		rm -rf -- "${dir:?}/$pair"	# a broken earlier copy
		mv -T -- "$dir/.$pair.tmp" "$dir/$pair" || die 1 "cannot rename to $dir/$pair"
	fi

	progress 80 switching
	tmp_add "$dir/current.tmp"
	rm -f -- "$dir/current.tmp"
	ln -s -- "$pair" "$dir/current.tmp" || die 1 "cannot create $dir/current.tmp"
	CERT_LINK=$dir/current CERT_OLD=$old
	HOOK_ON_FAIL=certificate_rollback
	mv -T -- "$dir/current.tmp" "$dir/current" || die 1 "cannot switch $dir/current to $pair"
	sync
	reload_services
	HOOK_ON_FAIL=

	# The new pair and the one before stay; older ones go.
	for d in "$dir"/set-* "$dir"/.set-*.tmp; do
		[ -e "$d" ] || continue
		[ "${d##*/}" = "$pair" ] || [ "${d##*/}" = "$old" ] || rm -rf -- "$d"
	done
	progress 100 "done"
}

# Points current back where it was (or removes it) after a failed reload.
certificate_rollback() {
	if [ -n "$CERT_OLD" ]; then
		ln -sfn -- "$CERT_OLD" "$CERT_LINK.tmp" &&
			mv -T -- "$CERT_LINK.tmp" "$CERT_LINK" && return
	else
		rm -f -- "$CERT_LINK" && return
	fi
	printf 'certificate failed and %s could not be put back\n' "$CERT_LINK" >&2
}

# ---- restart-phones, reboot -------------------------------------------------------
hook_restart_phones() {
	hook_env "$1"
	shift
	[ $# -eq 0 ] || die 2 "usage: restart-phones"
	umask 022
	write_request "$R/run/ipoffice/restart-phones"
	progress 100 "done"
}

# The profile's reboot defines reboot_system (the real restart) first.
hook_reboot() {
	hook_env "$1"
	shift
	[ $# -eq 0 ] || die 2 "usage: reboot"
	umask 022
	# SAFETY: only a hook whose root is the real "/" restarts the machine.
	# Anywhere else (tests, sandboxes) it only asks, in a file.
	if [ "$COMAGENT_ROOT" != / ]; then
		write_request "$R/run/reboot-requested"
		progress 100 "reboot requested"
		exit 0
	fi
	progress 100 rebooting
	reboot_system || die 1 "cannot reboot the system"
}
