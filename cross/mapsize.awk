# cross/mapsize.awk — `make TARGET=... size`: reads a GNU ld map file
# (-Wl,-Map) and prints how many bytes of the loaded image each static
# library contributes (and the biggest single members), then the stripped
# binary's size; exits 1 when that exceeds the limit.
#   awk -v stripped=BYTES -v limit=BYTES -v name=FILE -f mapsize.awk X.map
# Counted: input sections placed in allocated output sections that occupy
# file space (.text, .rodata, .data, .ARM.exidx...), not .bss/.tbss or
# debug/comment/attribute sections. Sizes are before stripping, so the sum is
# close to, not equal to, the stripped file size (headers, alignment).

function group(f,   g) {
	if (f ~ /\.a\(/) { g = f; sub(/\(.*$/, "", g); sub(/^.*\//, "", g); return g }
	if (f ~ /(^|\/)build\/[^\/]+\/(test)?obj\//) return "comagent objects"
	if (f ~ /crt[^\/]*\.o$/) return "crt (startup)"
	g = f; sub(/^.*\//, "", g); return g
}
function member(f,   m) {
	m = f
	if (m ~ /\.a\(/) { sub(/^.*\.a\(/, "", m); sub(/\)$/, "", m); return m }
	sub(/^build\/[^\/]+\/(test)?obj\//, "", m); sub(/^.*\.\.\//, "", m); return m
}
function counted(sec) {
	if (sec ~ /^\.(t?bss|debug|comment|ARM\.attributes|gnu\.attributes|stab|gnu_debug|gnu\.warning)/) return 0
	if (sec ~ /^__libc_freeres_ptrs/) return 0	# NOBITS
	return 1
}
function hex(s,   i, v) {	# mawk has no strtonum
	v = 0; s = tolower(s); sub(/^0x/, "", s)
	for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
	return v
}
function add(sz, f,   v) {
	if (!counted(out) || f == "" || f ~ /^\*/) return
	v = hex(sz)
	if (v == 0) return
	bylib[group(f)] += v
	bymem[group(f) SUBSEP member(f)] += v
	total += v
}
BEGIN { inmap = 0; pending = "" }
/^Linker script and memory map/ { inmap = 1; next }
!inmap { next }
# Output section header: name in column 0 (optionally with address/size).
/^[._a-zA-Z]/ { out = $1; pending = ""; next }
# Input section: " .text.foo 0xADDR 0xSIZE file" or the name alone on one line
# and " 0xADDR 0xSIZE file" on the next.
/^ [^ ]/ {
	if ($1 ~ /^\*/) { pending = ""; next }	# *fill*, *(pattern)
	if (NF >= 4 && $2 ~ /^0x/ && $3 ~ /^0x/) { add($3, $4); pending = "" }
	else if (NF == 1) pending = $1
	else pending = ""
	next
}
/^  +0x/ {
	if (pending != "" && NF >= 3 && $2 ~ /^0x/) add($2, $3)
	pending = ""
	next
}
END {
	n = 0
	for (g in bylib) { n++; gl[n] = g }
	# sort by size, descending (insertion sort; a handful of entries)
	for (i = 2; i <= n; i++) { k = gl[i]; j = i - 1
		while (j > 0 && bylib[gl[j]] < bylib[k]) { gl[j+1] = gl[j]; j-- }
		gl[j+1] = k }
	printf "%-28s %10s %6s\n", "library / archive", "bytes", "share"
	for (i = 1; i <= n; i++)
		printf "%-28s %10d %5.1f%%\n", gl[i], bylib[gl[i]], 100 * bylib[gl[i]] / total
	printf "%-28s %10d\n\n", "total (loaded sections)", total
	m = 0
	for (k in bymem) { m++; ml[m] = k }
	for (i = 2; i <= m; i++) { k = ml[i]; j = i - 1
		while (j > 0 && bymem[ml[j]] < bymem[k]) { ml[j+1] = ml[j]; j-- }
		ml[j+1] = k }
	print "biggest members:"
	for (i = 1; i <= m && i <= 15; i++) {
		split(ml[i], p, SUBSEP)
		printf "  %-18s %-30s %8d\n", p[1], p[2], bymem[ml[i]]
	}
	printf "\n%s: %d bytes stripped (limit %d)\n", name, stripped, limit
	if (stripped + 0 > limit + 0) {
		printf "FAIL: stripped binary exceeds the size limit by %d bytes\n", stripped - limit
		exit 1
	}
}
