/*
 * logstore — the local store of the PBX's syslog messages (see logstore.h).
 *
 * Appending is cheap: the local date is computed once per second of `now`,
 * the line is copied into a fixed LOGSTORE_BUF buffer and the buffer goes
 * to the current file (O_APPEND) when it fills, when the file is closed
 * and at logstore_flush(). All the expensive work — gzip, SHA-256, the
 * manifest's atomic write — happens when a file is closed, so file_max
 * bounds its cost.
 *
 * Closing a file: the raw file becomes "pending" (closed, uncompressed);
 * room for deflateBound() of it is made under max_total; it is compressed
 * to NAME.gz.tmp while the .gz bytes are hashed, fsync'ed, renamed to
 * NAME.gz, the raw file removed and the manifest written. A failure keeps
 * the raw file pending (counted in the total, retried after
 * LOGSTORE_RETRY_S) and a new current file starts anyway, so one bad
 * moment neither mixes days into one file nor stops the intake. A crash at
 * any point is repaired by the next open: a .gz.tmp is removed, a .gz
 * without a manifest line is hashed and added, a raw file whose .gz is
 * complete (its gzip trailer's length matches) is removed, any other raw
 * file is compressed.
 *
 * A write that fails leaves the file on a line boundary: what a partial
 * write added is cut off again (or, if that fails too, the next data
 * starts with a '\n'), and the buffered messages count as lost. For "no
 * space" errors (ENOSPC, EDQUOT, and EFBIG — what RLIMIT_FSIZE gives, the
 * tests' stand-in for a full disk) the oldest closed file is deleted (at
 * most once per LOGSTORE_RETRY_S) so that the next messages may fit; EIO
 * is no space problem, and deleting logs would not help.
 *
 * Deleting for room: the oldest uploaded file first, then the oldest not
 * uploaded one; never the current file or a pending one (both unsent and
 * the newest data).
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "digest.h"
#include "log.h"
#include "logstore.h"
#include "nightly.h"
#include "state.h"

#define LOG_MODULE "logstore"

#define BASE_LEN	16	/* "log-YYYYMMDD-NNN" */
#define RAW_SUFFIX	".log"
#define GZ_SUFFIX	".log.gz"
#define TMP_SUFFIX	".log.gz.tmp"
#define MANIFEST	"manifest"
#define PATH_BUF	(LOGSTORE_DIR_MAX + LOGSTORE_NAME_MAX + 16)
/* "name size sha256 uploaded\n": 23 + 1 + 20 + 1 + 64 + 1 + 1 + 1. */
#define MAN_LINE_MAX	128
#define MAN_SHOW_BAD	5	/* damaged manifest lines logged one by one */
#define ZCHUNK		16384	/* bytes read and written per deflate step */
/* zlib's default level: smaller files than the fastest level for more CPU
 * at close; on an IP500 V2 the flash is the scarcer resource. */
#define GZ_LEVEL	6
#define RAW_UNKNOWN	UINT64_MAX
/* The date used when the clock gives none (a year outside 1900..9999)
 * and no message has had one yet. */
#define NO_DAY		"1970-01-01"

/* Rate-limited log lines, one limiter per kind (see logstore.h). */
enum kind { K_DAY, K_TOTAL, K_WRITE, K_FILE, K_N };

static const char *const kind_what[K_N] = {
	"messages dropped over the day's cap",
	"messages dropped for lack of room in the store",
	"messages lost to write errors",
	"file errors (compress, create, remove)",
};
static const enum log_level kind_level[K_N] = {
	LOG_LVL_INFO, LOG_LVL_ERROR, LOG_LVL_ERROR, LOG_LVL_ERROR,
};

struct ratelog {
	bool have;	/* a line of this kind was logged this local day */
	time_t last;	/* when the last line was logged */
	uint64_t n;	/* events since then, not yet reported */
};

struct entry {
	struct logstore_file f;
	uint64_t raw;	/* uncompressed bytes; RAW_UNKNOWN until read */
};

/* A closed file not compressed yet. */
struct pend {
	char name[LOGSTORE_NAME_MAX];	/* "log-YYYYMMDD-NNN.log" */
	char day[LOGSTORE_DAY_LEN];
	uint64_t size;
};

struct logstore {
	struct logstore_cfg cfg;
	char dir[LOGSTORE_DIR_MAX + 1];

	struct entry *files;	/* sorted by name: oldest first */
	size_t count, cap;	/* cap grows to LOGSTORE_MAX_FILES */
	uint64_t gz_bytes;
	struct pend pend[LOGSTORE_MAX_PENDING];
	size_t npend;
	uint64_t pend_bytes;
	/* Our files that cannot be listed (unreadable, over the caps): not
	 * uploadable, but on disk, so they count against max_total. */
	uint64_t other_bytes, other_files;

	int fd;			/* the current file, -1: none */
	char cur_name[LOGSTORE_NAME_MAX];
	char cur_day[LOGSTORE_DAY_LEN];
	uint64_t cur_disk;	/* its bytes on disk */
	bool need_nl;		/* it ends in a torn line: start with '\n' */
	bool unsynced;		/* written since the last fdatasync */
	char *buf;		/* buf_cap bytes */
	size_t buf_cap, buf_len, buf_msgs;
	uint64_t buf_day_bytes;	/* message bytes in buf (not a leading \n) */

	char day[LOGSTORE_DAY_LEN];	/* the last message's local date */
	uint64_t today_bytes;		/* accepted on it */
	time_t day_t;			/* day_s is the date of this second */
	char day_s[LOGSTORE_DAY_LEN];
	char seq_day[LOGSTORE_DAY_LEN];	/* the last file number given out, */
	unsigned seq_last;		/* so a pruned one is not reused */

	/* Retry times after failures (see waiting()). */
	time_t compress_at, create_at, unlink_at, space_prune_at, manifest_at;
	bool manifest_dirty, manifest_failed;
	time_t last_now;	/* of the last append or close */
	struct ratelog lim[K_N];
	struct logstore_stats st;
};

/* --- small helpers ---------------------------------------------------- */

static void path_of(const struct logstore *s, const char *name,
		    const char *extra, char out[PATH_BUF])
{
	/* Fits: dir is at most LOGSTORE_DIR_MAX bytes, a name less than
	 * LOGSTORE_NAME_MAX, extra a short suffix. */
	size_t dl = strlen(s->dir), nl = strnlen(name, LOGSTORE_NAME_MAX - 1);
	size_t el = strnlen(extra, 8);

	memcpy(out, s->dir, dl);
	out[dl] = '/';
	memcpy(out + dl + 1, name, nl);
	memcpy(out + dl + 1 + nl, extra, el);
	out[dl + 1 + nl + el] = '\0';
}

/* Whether a retry deadline is still ahead. A clock stepped back by more
 * than the delay does not hold the retry back for that long. */
static bool waiting(time_t now, time_t until)
{
	return now < until && now >= until - LOGSTORE_RETRY_S;
}

static bool space_error(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

static bool write_all(int fd, const void *data, size_t len, size_t *done)
{
	const char *p = data;

	*done = 0;
	while (*done < len) {
		ssize_t w = write(fd, p + *done, len - *done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0)
			errno = EIO;	/* no progress, no errno of its own */
		if (w <= 0)
			return false;
		*done += (size_t)w;
	}
	return true;
}

/* "log-YYYYMMDD-NNN" followed by exactly suffix: the date as "YYYY-MM-DD"
 * into day, the number into *seq. */
static bool parse_name(const char *n, const char *suffix,
		       char day[LOGSTORE_DAY_LEN], unsigned *seq)
{
	size_t sl = strlen(suffix);
	unsigned y = 0, m = 0, d = 0, q = 0;

	if (strnlen(n, BASE_LEN + sl + 1) != BASE_LEN + sl ||
	    memcmp(n, "log-", 4) != 0 || n[12] != '-' ||
	    strcmp(n + BASE_LEN, suffix) != 0)
		return false;
	for (int i = 4; i < BASE_LEN; i++) {
		if (i == 12)
			continue;
		if (n[i] < '0' || n[i] > '9')
			return false;
		unsigned v = (unsigned)(n[i] - '0');
		if (i < 8)
			y = y * 10 + v;
		else if (i < 10)
			m = m * 10 + v;
		else if (i < 12)
			d = d * 10 + v;
		else
			q = q * 10 + v;
	}
	if (y < 1900 || m < 1 || m > 12 || d < 1 || d > 31 || q < 1 ||
	    q > LOGSTORE_SEQ_MAX)
		return false;
	memcpy(day, n + 4, 4);
	day[4] = '-';
	memcpy(day + 5, n + 8, 2);
	day[7] = '-';
	memcpy(day + 8, n + 10, 2);
	day[10] = '\0';
	*seq = q;
	return true;
}

/* A file name (at most BASE_LEN + 11 bytes once parsed) into dst. */
static void set_name(char dst[LOGSTORE_NAME_MAX], const char *src)
{
	size_t n = strnlen(src, LOGSTORE_NAME_MAX - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* The .gz's name of a raw file's name. */
static void gz_name(const char *raw, char out[LOGSTORE_NAME_MAX])
{
	size_t n = strnlen(raw, LOGSTORE_NAME_MAX - 4);

	memcpy(out, raw, n);
	memcpy(out + n, ".gz", 4);
}

static void make_name(const char *day, unsigned seq, const char *suffix,
		      char out[LOGSTORE_NAME_MAX])
{
	snprintf(out, LOGSTORE_NAME_MAX, "log-%.4s%.2s%.2s-%03u%s", day,
		 day + 5, day + 8, seq, suffix);
}

static uint64_t total(const struct logstore *s)
{
	return s->gz_bytes + s->pend_bytes + s->other_bytes + s->cur_disk +
	       s->buf_len + (s->need_nl ? 1 : 0);
}

/* The local date of now, once per second of it. */
static const char *day_of(struct logstore *s, time_t now)
{
	if (s->day_s[0] && s->day_t == now)
		return s->day_s;
	nightly_day(now, s->day_s);
	/* A clock outside 1900..9999: keep the last date rather than lose
	 * the messages. */
	if (!s->day_s[0])
		snprintf(s->day_s, sizeof(s->day_s), "%s",
			 s->day[0] ? s->day : NO_DAY);
	s->day_t = now;
	return s->day_s;
}

/* --- rate-limited logging --------------------------------------------- */

static void report(struct logstore *s, enum kind k, time_t now, bool force)
{
	struct ratelog *r = &s->lim[k];

	if (!r->n)
		return;
	/* now < last: the clock went back; report rather than wait. */
	if (!force && now >= r->last && now - r->last < LOGSTORE_REPORT_S)
		return;
	log_msg(kind_level[k], LOG_MODULE, "%s: %llu more %s since the last "
		"report", s->dir, (unsigned long long)r->n, kind_what[k]);
	r->n = 0;
	r->last = now;
}

/* Whether the next event of r is only counted, not logged. */
static bool held_back(const struct ratelog *r, time_t now)
{
	return r->have && (r->n || (now >= r->last &&
				    now - r->last < LOGSTORE_REPORT_S));
}

/* count more events of kind k: the first of the day, or the first after a
 * quiet minute, is logged with its reason; the rest only as numbers. The
 * reason is formatted only when it is logged: drops may come at 10^5/s. */
__attribute__((format(printf, 5, 6)))
static void note(struct logstore *s, enum kind k, time_t now, uint64_t count,
		 const char *fmt, ...)
{
	struct ratelog *r = &s->lim[k];
	char msg[PATH_BUF + 256];
	va_list ap;

	if (held_back(r, now)) {
		r->n += count;
		report(s, k, now, false);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(kind_level[k], LOG_MODULE, "%s", msg);
	r->have = true;
	r->last = now;
}

static void report_all(struct logstore *s, time_t now, bool force)
{
	for (int k = 0; k < K_N; k++)
		report(s, (enum kind)k, now, force);
}

/* --- the list of closed files ----------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->f.name,
		      ((const struct entry *)b)->f.name);
}

/* The index of the first entry not before name. */
static size_t lower_bound(const struct logstore *s, const char *name)
{
	size_t lo = 0, hi = s->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(s->files[mid].f.name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct entry *find(const struct logstore *s, const char *name)
{
	size_t i = lower_bound(s, name);

	return i < s->count && !strcmp(s->files[i].f.name, name) ?
	       &s->files[i] : NULL;
}

/* Room for one more entry; false (logged) when out of memory or at the
 * cap. */
static bool grow(struct logstore *s)
{
	size_t ncap;
	struct entry *n;

	if (s->count < s->cap)
		return true;
	if (s->cap >= LOGSTORE_MAX_FILES)
		return false;
	ncap = s->cap ? s->cap * 2 : 64;
	if (ncap > LOGSTORE_MAX_FILES)
		ncap = LOGSTORE_MAX_FILES;
	n = realloc(s->files, ncap * sizeof(*n));
	if (!n) {
		LOGE("out of memory");
		return false;
	}
	s->files = n;
	s->cap = ncap;
	return true;
}

static void remove_at(struct logstore *s, size_t i)
{
	s->gz_bytes -= s->files[i].f.size;
	memmove(&s->files[i], &s->files[i + 1],
		(s->count - i - 1) * sizeof(s->files[0]));
	s->count--;
	s->manifest_dirty = true;
}

/* The entry to delete first: the oldest uploaded one, else the oldest. */
static size_t victim(const struct logstore *s)
{
	for (size_t i = 0; i < s->count; i++)
		if (s->files[i].f.uploaded)
			return i;
	return s->count ? 0 : SIZE_MAX;
}

/* Deletes one closed file for room; false if there is none to delete or
 * it cannot be removed (then not tried again for LOGSTORE_RETRY_S: a
 * read-only file system must not cost a failing unlink per message). The
 * caller writes the manifest. */
static bool prune_one(struct logstore *s, time_t now)
{
	char path[PATH_BUF];
	size_t i = victim(s);
	struct entry *e;

	if (i == SIZE_MAX || waiting(now, s->unlink_at))
		return false;
	e = &s->files[i];
	path_of(s, e->f.name, "", path);
	if (unlink(path) != 0 && errno != ENOENT) {
		s->unlink_at = now + LOGSTORE_RETRY_S;
		note(s, K_FILE, now, 1, "%s: cannot remove: %s", path,
		     strerror(errno));
		return false;
	}
	LOGD("%s: removed for room (%s)", path,
	     e->f.uploaded ? "uploaded" : "never uploaded");
	if (e->f.uploaded)
		s->st.pruned_sent++;
	else
		s->st.pruned_unsent++;
	remove_at(s, i);
	return true;
}

/* Prunes until need more bytes fit under max_total; false if they do not. */
static bool make_room(struct logstore *s, time_t now, uint64_t need)
{
	while (total(s) + need > s->cfg.max_total)
		if (!prune_one(s, now))
			return false;
	return true;
}

/* Adds a closed file (the list stays sorted). At LOGSTORE_MAX_FILES one
 * is pruned first; false (logged) if it still cannot be listed. */
static bool add_entry(struct logstore *s, time_t now, const struct entry *e)
{
	size_t i;

	if (s->count >= LOGSTORE_MAX_FILES && !prune_one(s, now))
		return false;
	if (!grow(s))
		return false;
	i = lower_bound(s, e->f.name);
	memmove(&s->files[i + 1], &s->files[i],
		(s->count - i) * sizeof(s->files[0]));
	s->files[i] = *e;
	s->count++;
	s->gz_bytes += e->f.size;
	s->manifest_dirty = true;
	return true;
}

/* --- the manifest ----------------------------------------------------- */

/* Writes the manifest if it changed. After a failure it is tried again
 * only after LOGSTORE_RETRY_S, unless forced (an explicit request). */
static err_t save_manifest(struct logstore *s, time_t now, bool force)
{
	char path[PATH_BUF];
	char *text;
	size_t len = 0;
	err_t e;

	if (!s->manifest_dirty)
		return ERR_OK;
	if (!force && s->manifest_failed && waiting(now, s->manifest_at))
		return ERR_IO;
	text = malloc(s->count * MAN_LINE_MAX + 1);
	if (!text) {
		LOGE("out of memory");
		return ERR_NOMEM;
	}
	for (size_t i = 0; i < s->count; i++) {
		const struct logstore_file *f = &s->files[i].f;
		int n = snprintf(text + len, MAN_LINE_MAX, "%s %llu %s %d\n",
				 f->name, (unsigned long long)f->size,
				 f->sha256, f->uploaded ? 1 : 0);

		if (n > 0 && n < MAN_LINE_MAX)
			len += (size_t)n;
	}
	path_of(s, MANIFEST, "", path);
	e = state_write(path, text, len);	/* logs its failures */
	free(text);
	if (e == ERR_OK) {
		s->manifest_dirty = false;
		s->manifest_failed = false;
	} else {
		s->manifest_failed = true;
		s->manifest_at = now + LOGSTORE_RETRY_S;
	}
	return e;
}

/* A parsed manifest line. */
struct mline {
	char name[LOGSTORE_NAME_MAX];
	uint64_t size;
	char sha[DIGEST_HEX_LEN + 1];
	bool uploaded, used;
};

static int cmp_mline(const void *a, const void *b)
{
	return strcmp(((const struct mline *)a)->name,
		      ((const struct mline *)b)->name);
}

static bool parse_mline(const char *p, const char *end, struct mline *m)
{
	const char *f;
	size_t n;
	char day[LOGSTORE_DAY_LEN];
	unsigned seq;

	if (!state_field(&p, end, &f, &n) || n >= sizeof(m->name))
		return false;
	memcpy(m->name, f, n);
	m->name[n] = '\0';
	if (!parse_name(m->name, GZ_SUFFIX, day, &seq))
		return false;
	if (!state_field(&p, end, &f, &n) || n > 20)
		return false;
	m->size = 0;
	for (size_t i = 0; i < n; i++) {
		if (f[i] < '0' || f[i] > '9')
			return false;
		m->size = m->size * 10 + (uint64_t)(f[i] - '0');
		if (m->size > LOGSTORE_TOTAL_LIMIT)
			return false;
	}
	if (!state_field(&p, end, &f, &n) || n != DIGEST_HEX_LEN)
		return false;
	memcpy(m->sha, f, n);
	m->sha[n] = '\0';
	if (!digest_hex_valid(m->sha))
		return false;
	if (!state_field(&p, end, &f, &n) || n != 1 || (f[0] != '0' && f[0] != '1'))
		return false;
	m->uploaded = f[0] == '1';
	m->used = false;
	return p == end;
}

/* The manifest's lines, sorted by name, into *out (*n of them): none if
 * it is missing or unreadable (then every file is hashed again). Memory
 * as the file needs, up to LOGSTORE_MAX_FILES lines. */
static err_t load_manifest(struct logstore *s, struct mline **out, size_t *n)
{
	size_t cap = (size_t)LOGSTORE_MAX_FILES * MAN_LINE_MAX, lines = 1;
	char path[PATH_BUF];
	char *text;
	size_t len, bad = 0, k = 0, lineno = 0;
	struct mline *m;
	struct stat st;
	err_t e;

	*out = NULL;
	*n = 0;
	path_of(s, MANIFEST, "", path);
	/* A bigger file is refused by state_read() below (ERR_LIMIT). */
	if (stat(path, &st) == 0 && st.st_size >= 0 &&
	    (uint64_t)st.st_size < cap)
		cap = (size_t)st.st_size + 1;
	text = malloc(cap);
	if (!text) {
		LOGE("out of memory");
		return ERR_NOMEM;
	}
	e = state_read(path, text, cap, &len);	/* logs all but "missing" */
	if (e != ERR_OK)
		len = 0;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	if (lines > LOGSTORE_MAX_FILES)
		lines = LOGSTORE_MAX_FILES;
	m = malloc(lines * sizeof(*m));
	if (!m) {
		LOGE("out of memory");
		free(text);
		return ERR_NOMEM;
	}
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		lineno++;
		if (le > p && (k >= lines ||
			       !parse_mline(p, le, &m[k]))) {
			if (++bad <= MAN_SHOW_BAD)
				LOGE("%s: line %zu damaged, skipped", path,
				     lineno);
		} else if (le > p) {
			k++;
		}
		p = le + 1;
	}
	if (bad > MAN_SHOW_BAD)
		LOGE("%s: %zu more damaged lines skipped", path,
		     bad - MAN_SHOW_BAD);
	free(text);
	qsort(m, k, sizeof(*m), cmp_mline);
	/* Duplicates: the first wins; the file is hashed if they differ. */
	size_t w = 0;
	for (size_t i = 0; i < k; i++) {
		if (w && !strcmp(m[w - 1].name, m[i].name)) {
			LOGE("%s: %s listed twice, second line skipped", path,
			     m[i].name);
			continue;
		}
		m[w++] = m[i];
	}
	*out = m;
	*n = w;
	return ERR_OK;
}

/* --- compression ------------------------------------------------------ */

/* The uncompressed length a gzip file's trailer records (mod 2^32). */
static bool gz_isize(const char *path, uint64_t *out)
{
	unsigned char b[4];
	struct stat st;
	bool ok = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		LOGE("%s: cannot open: %s", path, strerror(errno));
		return false;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 18)
		LOGE("%s: not a gzip file", path);
	else if (pread(fd, b, 4, st.st_size - 4) != 4)
		LOGE("%s: cannot read: %s", path, strerror(errno));
	else
		ok = true;
	close(fd);
	if (ok)
		*out = (uint64_t)b[0] | (uint64_t)b[1] << 8 |
		       (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24;
	return ok;
}

static void drop_pend(struct logstore *s, size_t i)
{
	s->pend_bytes -= s->pend[i].size;
	memmove(&s->pend[i], &s->pend[i + 1],
		(s->npend - i - 1) * sizeof(s->pend[0]));
	s->npend--;
}

/*
 * Compresses pending file i into its .gz and lists it. A raw file that
 * ends in a torn line (a crash, a failed write) gets its '\n' in the .gz,
 * so every stored file is whole lines. ERR_IO (logged, rate-limited) with
 * the raw file left as it was.
 */
static err_t compress_one(struct logstore *s, time_t now, size_t i)
{
	struct pend *p = &s->pend[i];
	char raw[PATH_BUF], gz[PATH_BUF], tmp[PATH_BUF];
	const char *what = "read", *where = raw;
	unsigned char *in = NULL, *outb = NULL, last = '\n';
	struct digest *d = NULL;
	struct entry ent;
	struct stat st;
	z_stream z;
	bool zinit = false, made_tmp = false;
	int rfd = -1, wfd = -1, ret, err = 0;
	uint64_t got = 0, gz_size = 0;
	size_t done;
	err_t e = ERR_IO;

	path_of(s, p->name, "", raw);
	path_of(s, p->name, ".gz", gz);
	path_of(s, p->name, ".gz.tmp", tmp);
	rfd = open(raw, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (rfd < 0 && errno == ENOENT) {
		/* Removed behind our back: nothing left to keep. */
		LOGE("%s: gone before it was compressed", raw);
		drop_pend(s, i);
		return ERR_OK;
	}
	what = "open";
	if (rfd < 0 || fstat(rfd, &st) != 0)
		goto fail;
	if (st.st_size == 0) {
		close(rfd);
		unlink(raw);
		drop_pend(s, i);
		return ERR_OK;
	}
	/* Only the number matters now: the file may have grown (a restart's
	 * leftover) and is counted as what is read. */
	s->pend_bytes = s->pend_bytes - p->size + (uint64_t)st.st_size;
	p->size = (uint64_t)st.st_size;
	memset(&z, 0, sizeof(z));
	in = malloc(ZCHUNK);
	outb = malloc(ZCHUNK);
	d = digest_new();
	if (!in || !outb || !d) {
		LOGE("out of memory");
		e = ERR_NOMEM;
		goto out;
	}
	ret = deflateInit2(&z, GZ_LEVEL, Z_DEFLATED, 15 + 16, 8,
			   Z_DEFAULT_STRATEGY);
	if (ret != Z_OK) {
		LOGE("%s: cannot start gzip: %s", raw, zError(ret));
		e = ret == Z_MEM_ERROR ? ERR_NOMEM : ERR_IO;
		goto out;
	}
	zinit = true;
	/* Room for the worst case first; if nothing is left to prune the
	 * .gz is written anyway: the raw file goes when it is done. */
	make_room(s, now, deflateBound(&z, (uLong)p->size + 1));
	where = tmp;
	what = "create";
	wfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		   0600);
	if (wfd < 0)
		goto fail;
	made_tmp = true;
	for (;;) {
		ssize_t r = read(rfd, in, ZCHUNK);
		int flush = Z_NO_FLUSH;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			where = raw;
			what = "read";
			goto fail;
		}
		if (r == 0) {
			flush = Z_FINISH;
			if (last != '\n') {
				in[0] = '\n';
				r = 1;
			}
		} else {
			last = in[r - 1];
		}
		got += (uint64_t)r;
		z.next_in = in;
		z.avail_in = (uInt)r;
		do {
			z.next_out = outb;
			z.avail_out = ZCHUNK;
			ret = deflate(&z, flush);
			if (ret == Z_STREAM_ERROR) {
				LOGE("%s: gzip failed", tmp);
				goto out;
			}
			size_t have = ZCHUNK - z.avail_out;
			what = "write";
			if (!write_all(wfd, outb, have, &done))
				goto fail;
			if (digest_update(d, outb, have) != ERR_OK)
				goto out;	/* logged */
			gz_size += have;
		} while (z.avail_out == 0);
		if (flush == Z_FINISH)
			break;
	}
	what = "sync";
	if (fsync(wfd) != 0)
		goto fail;
	what = "close";
	ret = close(wfd);
	wfd = -1;
	if (ret != 0)
		goto fail;
	memset(&ent, 0, sizeof(ent));
	digest_hex(d, ent.f.sha256);
	if (!ent.f.sha256[0])
		goto out;	/* logged */
	what = "rename";
	if (rename(tmp, gz) != 0)
		goto fail;
	gz_name(p->name, ent.f.name);
	ent.f.size = gz_size;
	memcpy(ent.f.day, p->day, sizeof(ent.f.day));
	ent.raw = got;
	LOGD("%s: %llu bytes compressed to %llu", gz,
	     (unsigned long long)got, (unsigned long long)gz_size);
	if (!add_entry(s, now, &ent)) {
		/* Not listable: still ours on disk. */
		s->other_bytes += gz_size;
		s->other_files++;
		note(s, K_FILE, now, 1, "%s: more than %d files; not listed",
		     gz, LOGSTORE_MAX_FILES);
	}
	if (unlink(raw) != 0 && errno != ENOENT)
		LOGE("%s: cannot remove: %s", raw, strerror(errno));
	drop_pend(s, i);
	e = ERR_OK;
	goto out;
fail:
	err = errno;
	note(s, K_FILE, now, 1, "%s: cannot %s: %s; compression retried later",
	     where, what, strerror(err));
out:
	if (e != ERR_OK && made_tmp)
		unlink(tmp);
	if (wfd >= 0)
		close(wfd);
	if (rfd >= 0)
		close(rfd);
	if (zinit)
		deflateEnd(&z);
	digest_free(d);
	free(in);
	free(outb);
	return e;
}

/* Compresses the pending files, oldest first, stopping at a failure (then
 * tried again after LOGSTORE_RETRY_S unless forced). ERR_OK if none is
 * left. */
static err_t compress_pending(struct logstore *s, time_t now, bool force)
{
	err_t e = ERR_OK;

	if (!s->npend)
		return ERR_OK;
	if (!force && waiting(now, s->compress_at))
		return ERR_IO;
	while (s->npend > 0) {
		e = compress_one(s, now, 0);
		if (e != ERR_OK) {
			s->compress_at = now + LOGSTORE_RETRY_S;
			break;
		}
	}
	save_manifest(s, now, force);
	return s->npend ? ERR_IO : ERR_OK;
}

/* --- the current file ------------------------------------------------- */

/* Writes the buffer out. On failure the buffered messages (and extra
 * more, the caller's) are counted as lost, the file is cut back to its
 * last whole line, and for a lack of space a closed file is deleted. */
static err_t flush_buf(struct logstore *s, time_t now, size_t extra)
{
	char path[PATH_BUF];
	size_t done, lost;
	int err;

	if (!s->buf_len)
		return ERR_OK;
	if (write_all(s->fd, s->buf, s->buf_len, &done)) {
		s->cur_disk += s->buf_len;
		s->buf_len = 0;
		s->buf_msgs = 0;
		s->buf_day_bytes = 0;
		s->unsynced = true;
		return ERR_OK;
	}
	err = errno;
	if (done > 0) {
		/* A torn line must not glue onto the next one. */
		if (ftruncate(s->fd, (off_t)s->cur_disk) != 0) {
			s->cur_disk += done;
			s->need_nl = true;
		}
	}
	lost = s->buf_msgs + extra;
	s->st.messages -= s->buf_msgs;
	s->st.write_errors += lost;
	s->st.write_errno = err;
	if (!strcmp(s->cur_day, s->day) && s->today_bytes >= s->buf_day_bytes)
		s->today_bytes -= s->buf_day_bytes;
	s->buf_len = 0;
	s->buf_msgs = 0;
	s->buf_day_bytes = 0;
	path_of(s, s->cur_name, "", path);
	note(s, K_WRITE, now, lost, "%s: cannot write: %s; %zu messages lost",
	     path, strerror(err), lost);
	if (space_error(err) && !waiting(now, s->space_prune_at)) {
		s->space_prune_at = now + LOGSTORE_RETRY_S;
		if (prune_one(s, now))
			save_manifest(s, now, false);
	}
	return ERR_IO;
}

/* Closes the current file: it becomes pending and is compressed (with any
 * earlier pending ones). false if it cannot be closed — too many files
 * wait for compression — and stays current. */
static bool rotate(struct logstore *s, time_t now, bool force)
{
	struct pend *p;

	flush_buf(s, now, 0);	/* a failure is counted; the rest is kept */
	if (s->npend >= LOGSTORE_MAX_PENDING)
		compress_pending(s, now, force);
	if (s->npend >= LOGSTORE_MAX_PENDING)
		return false;
	close(s->fd);	/* read-only from here: nothing to report */
	s->fd = -1;
	p = &s->pend[s->npend++];
	set_name(p->name, s->cur_name);
	memcpy(p->day, s->cur_day, sizeof(p->day));
	p->size = s->cur_disk;	/* a torn end gets its '\n' in the .gz */
	s->pend_bytes += p->size;
	s->cur_disk = 0;
	s->need_nl = false;
	s->unsynced = false;
	compress_pending(s, now, force);
	return true;
}

/* The next file number for day: past every one listed, pending or given
 * out since open. */
static unsigned next_seq(const struct logstore *s, const char *day)
{
	unsigned max = 0, q;
	char d[LOGSTORE_DAY_LEN];

	for (size_t i = 0; i < s->count; i++)
		if (!strcmp(s->files[i].f.day, day) &&
		    parse_name(s->files[i].f.name, GZ_SUFFIX, d, &q) && q > max)
			max = q;
	for (size_t i = 0; i < s->npend; i++)
		if (!strcmp(s->pend[i].day, day) &&
		    parse_name(s->pend[i].name, RAW_SUFFIX, d, &q) && q > max)
			max = q;
	if (!strcmp(s->seq_day, day) && s->seq_last > max)
		max = s->seq_last;
	return max + 1;
}

/* Starts the current file for day. ERR_LIMIT when the day's numbers are
 * used up, ERR_IO (logged, rate-limited; not tried again for
 * LOGSTORE_RETRY_S) if it cannot be made. */
static err_t start_file(struct logstore *s, time_t now, const char *day)
{
	char name[LOGSTORE_NAME_MAX], path[PATH_BUF], gz[PATH_BUF];
	struct stat st;
	unsigned seq;

	if (waiting(now, s->create_at))
		return ERR_IO;
	for (seq = next_seq(s, day); seq <= LOGSTORE_SEQ_MAX; seq++) {
		make_name(day, seq, RAW_SUFFIX, name);
		path_of(s, name, "", path);
		path_of(s, name, ".gz", gz);
		if (lstat(gz, &st) == 0)
			continue;	/* never overwrite a .gz, listed or not */
		s->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND |
			     O_NOFOLLOW | O_CLOEXEC, 0600);
		if (s->fd >= 0)
			break;
		if (errno == EEXIST)
			continue;
		s->create_at = now + LOGSTORE_RETRY_S;
		s->st.write_errno = errno;
		note(s, K_FILE, now, 1, "%s: cannot create: %s", path,
		     strerror(errno));
		return ERR_IO;
	}
	if (seq > LOGSTORE_SEQ_MAX)
		return ERR_LIMIT;
	set_name(s->cur_name, name);
	memcpy(s->cur_day, day, sizeof(s->cur_day));
	memcpy(s->seq_day, day, sizeof(s->seq_day));
	s->seq_last = seq;
	s->cur_disk = 0;
	s->need_nl = false;
	LOGD("%s: started", path);
	return ERR_OK;
}

/* Bytes stored for day: the listed files' uncompressed lengths (from
 * their gzip trailers), pending and current ones. */
static uint64_t day_bytes(struct logstore *s, const char *day)
{
	char path[PATH_BUF];
	uint64_t sum = 0;

	for (size_t i = 0; i < s->count; i++) {
		struct entry *e = &s->files[i];

		if (strcmp(e->f.day, day))
			continue;
		if (e->raw == RAW_UNKNOWN) {
			path_of(s, e->f.name, "", path);
			if (!gz_isize(path, &e->raw))
				e->raw = 0;	/* logged; not read again */
		}
		sum += e->raw;
	}
	for (size_t i = 0; i < s->npend; i++)
		if (!strcmp(s->pend[i].day, day))
			sum += s->pend[i].size;
	if (s->fd >= 0 && !strcmp(s->cur_day, day))
		sum += s->cur_disk + s->buf_day_bytes;
	return sum;
}

static void switch_day(struct logstore *s, time_t now, const char *day)
{
	/* What was held back belongs to the old day's summary; the new day
	 * logs its first drop of each kind again. */
	report_all(s, now, true);
	for (int k = 0; k < K_N; k++)
		s->lim[k].have = false;
	memcpy(s->day, day, sizeof(s->day));
	s->today_bytes = day_bytes(s, day);
}

/* --- open and free ---------------------------------------------------- */

/* Checks c and copies it to eff: file_max is lowered to max_total / 4 if
 * it is bigger (so that a file can be compressed next to the current one
 * within the cap) rather than refused, so that a store still runs when
 * the two sizes were configured apart. */
static err_t check_cfg(const struct logstore_cfg *c, struct logstore_cfg *eff)
{
	if (!c || !c->dir || !c->dir[0]) {
		LOGE("no log store directory");
		return ERR_INVAL;
	}
	if (strnlen(c->dir, LOGSTORE_DIR_MAX + 1) > LOGSTORE_DIR_MAX) {
		LOGE("%.64s...: path too long (max %d characters)", c->dir,
		     LOGSTORE_DIR_MAX);
		return ERR_INVAL;
	}
	*eff = *c;
	if (c->max_total < 4 * LOGSTORE_FILE_MIN ||
	    c->max_total > LOGSTORE_TOTAL_LIMIT) {
		LOGE("%s: store size %llu outside %d..%llu", c->dir,
		     (unsigned long long)c->max_total, 4 * LOGSTORE_FILE_MIN,
		     (unsigned long long)LOGSTORE_TOTAL_LIMIT);
		return ERR_INVAL;
	}
	if (c->file_max < LOGSTORE_FILE_MIN || c->file_max > LOGSTORE_FILE_LIMIT) {
		LOGE("%s: file size %llu outside %d..%llu", c->dir,
		     (unsigned long long)c->file_max, LOGSTORE_FILE_MIN,
		     (unsigned long long)LOGSTORE_FILE_LIMIT);
		return ERR_INVAL;
	}
	if (c->file_max > c->max_total / 4) {
		eff->file_max = c->max_total / 4;
		LOGI("%s: file size %llu lowered to %llu, a quarter of the "
		     "store size", c->dir, (unsigned long long)c->file_max,
		     (unsigned long long)eff->file_max);
	}
	if (c->msg_max < 1 || c->msg_max > LOGSTORE_MSG_LIMIT ||
	    c->msg_max >= eff->file_max) {
		LOGE("%s: message size %zu outside 1..%d (and below the file "
		     "size)", c->dir, c->msg_max, LOGSTORE_MSG_LIMIT);
		return ERR_INVAL;
	}
	if (c->max_day > LOGSTORE_TOTAL_LIMIT) {
		LOGE("%s: daily cap %llu above %llu", c->dir,
		     (unsigned long long)c->max_day,
		     (unsigned long long)LOGSTORE_TOTAL_LIMIT);
		return ERR_INVAL;
	}
	return ERR_OK;
}

/* Each listed .gz gets its manifest line if that matches, else is hashed
 * again (and is then not known to be uploaded); one that cannot be read is
 * not listed but still counted. */
static void resolve(struct logstore *s, struct mline *m, size_t nm)
{
	char path[PATH_BUF];
	struct mline key, *ml;
	uint64_t bytes;
	size_t w = 0;

	for (size_t i = 0; i < s->count; i++) {
		struct entry *e = &s->files[i];

		set_name(key.name, e->f.name);
		ml = nm ? bsearch(&key, m, nm, sizeof(*m), cmp_mline) : NULL;
		if (ml)
			ml->used = true;
		if (ml && ml->size == e->f.size) {
			memcpy(e->f.sha256, ml->sha, sizeof(e->f.sha256));
			e->f.uploaded = ml->uploaded;
		} else {
			path_of(s, e->f.name, "", path);
			if (digest_file(path, UINT64_MAX, e->f.sha256,
					&bytes) != ERR_OK) {
				s->gz_bytes -= e->f.size;	/* logged */
				s->other_bytes += e->f.size;
				s->other_files++;
				continue;
			}
			s->gz_bytes = s->gz_bytes - e->f.size + bytes;
			e->f.size = bytes;
			if (ml)
				LOGI("%s: size differs from the manifest; "
				     "hashed again, to be uploaded again", path);
			else
				LOGI("%s: not in the manifest; hashed and added",
				     path);
			s->manifest_dirty = true;
		}
		s->files[w++] = *e;
	}
	s->count = w;
}

/* Lists the directory: .gz files, raw files left by a restart (pending),
 * stale temporary files (removed). In name order, so that what is logged
 * about them is too. */
static err_t scan(struct logstore *s, struct mline *m, size_t nm)
{
	DIR *dp = opendir(s->dir);
	struct dirent *de;
	struct stat st;
	char day[LOGSTORE_DAY_LEN], path[PATH_BUF];
	unsigned seq;
	bool full = false;
	size_t gone = 0;
	const char *first_gone = NULL;

	if (!dp) {
		LOGE("%s: cannot read: %s", s->dir, strerror(errno));
		return ERR_IO;
	}
	while ((de = readdir(dp))) {
		const char *n = de->d_name;
		bool gz = parse_name(n, GZ_SUFFIX, day, &seq);
		bool raw = !gz && parse_name(n, RAW_SUFFIX, day, &seq);
		bool tmp = !gz && !raw && parse_name(n, TMP_SUFFIX, day, &seq);

		if (!gz && !raw && !tmp)
			continue;	/* not ours */
		path_of(s, n, "", path);
		if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;	/* not ours either */
		if (tmp) {
			LOGI("%s: left by an interrupted compression; removed",
			     path);
			unlink(path);
		} else if (gz && !full && grow(s)) {
			struct entry *e = &s->files[s->count++];

			memset(e, 0, sizeof(*e));
			set_name(e->f.name, n);
			memcpy(e->f.day, day, sizeof(e->f.day));
			e->f.size = (uint64_t)st.st_size;
			e->raw = RAW_UNKNOWN;
			s->gz_bytes += e->f.size;
		} else if (gz) {
			if (!full)
				LOGE("%s: more than %d log files; the others "
				     "are not listed", s->dir,
				     LOGSTORE_MAX_FILES);
			full = true;
			s->other_bytes += (uint64_t)st.st_size;
			s->other_files++;
		} else if (s->npend < LOGSTORE_MAX_PENDING) {
			struct pend *p = &s->pend[s->npend++];

			set_name(p->name, n);
			memcpy(p->day, day, sizeof(p->day));
			p->size = (uint64_t)st.st_size;
			s->pend_bytes += p->size;
		} else {
			LOGE("%s: more than %d uncompressed files; left for "
			     "later", path, LOGSTORE_MAX_PENDING);
			s->other_bytes += (uint64_t)st.st_size;
			s->other_files++;
		}
	}
	closedir(dp);
	if (s->count > 1)
		qsort(s->files, s->count, sizeof(s->files[0]), cmp_entry);
	resolve(s, m, nm);
	for (size_t i = 0; i < nm; i++) {
		if (m[i].used)
			continue;
		if (!gone++)
			first_gone = m[i].name;
		s->manifest_dirty = true;
	}
	if (gone)
		LOGI("%s: %zu files in the manifest are gone (%s%s); dropped",
		     s->dir, gone, first_gone, gone > 1 ? ", ..." : "");
	return ERR_OK;
}

static int cmp_pend(const void *a, const void *b)
{
	return strcmp(((const struct pend *)a)->name,
		      ((const struct pend *)b)->name);
}

/* Raw files left by a restart: removed if their .gz is complete (a crash
 * after the rename), compressed otherwise. */
static void adopt_leftovers(struct logstore *s, time_t now)
{
	char gzname[LOGSTORE_NAME_MAX], path[PATH_BUF];
	uint64_t isize;

	qsort(s->pend, s->npend, sizeof(s->pend[0]), cmp_pend);
	for (size_t i = 0; i < s->npend;) {
		struct pend *p = &s->pend[i];
		struct entry *e;

		gz_name(p->name, gzname);
		e = find(s, gzname);
		if (!e) {
			i++;
			continue;
		}
		path_of(s, gzname, "", path);
		if (gz_isize(path, &isize) &&
		    (isize == (p->size & 0xffffffffu) ||
		     isize == ((p->size + 1) & 0xffffffffu))) {
			path_of(s, p->name, "", path);
			LOGI("%s: already compressed; removed", path);
			unlink(path);
			drop_pend(s, i);
			continue;
		}
		LOGE("%s: does not match %s; compressed again", path, p->name);
		unlink(path);
		remove_at(s, (size_t)(e - s->files));
		i++;
	}
	if (s->npend)
		LOGI("%s: %zu files left by a restart; compressing", s->dir,
		     s->npend);
	compress_pending(s, now, true);
}

err_t logstore_open(const struct logstore_cfg *c, time_t now,
		    struct logstore **out)
{
	struct logstore *s = NULL;
	struct logstore_cfg eff;
	struct mline *m = NULL;
	size_t nm = 0;
	err_t e;

	if (!out)
		return ERR_INVAL;
	*out = NULL;
	e = check_cfg(c, &eff);
	if (e != ERR_OK)
		return e;
	s = calloc(1, sizeof(*s));
	if (!s) {
		LOGE("out of memory");
		return ERR_NOMEM;
	}
	s->fd = -1;
	/* A message always fits an empty buffer, with a leading '\n'. */
	s->buf_cap = eff.msg_max + 2 > LOGSTORE_BUF ? eff.msg_max + 2 :
						      LOGSTORE_BUF;
	s->buf = malloc(s->buf_cap);
	if (!s->buf) {
		LOGE("out of memory");
		e = ERR_NOMEM;
		goto out;
	}
	s->cfg = eff;
	snprintf(s->dir, sizeof(s->dir), "%s", c->dir);
	s->cfg.dir = s->dir;
	s->last_now = now;
	e = state_mkdirs(s->dir, 0700);
	if (e != ERR_OK)
		goto out;
	e = load_manifest(s, &m, &nm);
	if (e != ERR_OK)
		goto out;
	e = scan(s, m, nm);
	if (e != ERR_OK)
		goto out;
	adopt_leftovers(s, now);
	/* The cap may have been lowered since the last run. */
	make_room(s, now, 0);
	s->manifest_dirty = true;	/* whatever was read, write it clean */
	save_manifest(s, now, true);
	switch_day(s, now, day_of(s, now));
	*out = s;
	s = NULL;
out:
	free(m);
	if (s)
		s->manifest_dirty = false;	/* a half-read store: keep the
						 * manifest as it is */
	logstore_free(s);
	return e;
}

void logstore_free(struct logstore *s)
{
	char path[PATH_BUF];

	if (!s)
		return;
	if (s->fd >= 0) {
		flush_buf(s, s->last_now, 0);
		if (s->unsynced && fdatasync(s->fd) != 0)
			LOGE("%s/%s: cannot sync: %s", s->dir, s->cur_name,
			     strerror(errno));
		close(s->fd);
		if (s->cur_disk == 0 && !s->need_nl) {
			path_of(s, s->cur_name, "", path);
			unlink(path);	/* an empty file is no leftover */
		}
	}
	save_manifest(s, s->last_now, true);	/* if it changed */
	report_all(s, s->last_now, true);
	free(s->files);
	free(s->buf);
	free(s);
}

/* --- the interface ---------------------------------------------------- */

/* Drops one message: counted by kind, logged rate-limited ("DIR:
 * dropping messages: WHY"). ERR_LIMIT for the caps, ERR_IO otherwise. */
__attribute__((format(printf, 4, 5)))
static err_t drop(struct logstore *s, enum kind k, time_t now,
		  const char *fmt, ...)
{
	char why[160];
	va_list ap;

	if (k == K_DAY)
		s->st.dropped_day++;
	else if (k == K_TOTAL)
		s->st.dropped_total++;
	else
		s->st.write_errors++;
	if (held_back(&s->lim[k], now)) {
		note(s, k, now, 1, "%s", "");	/* counted, not formatted */
	} else {
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
		note(s, k, now, 1, "%s: dropping messages: %s", s->dir, why);
	}
	return k == K_WRITE ? ERR_IO : ERR_LIMIT;
}

err_t logstore_append(struct logstore *s, time_t now, const char *msg,
		      size_t len)
{
	const char *day;
	size_t n, line;
	err_t e;

	if (!s || (!msg && len))
		return ERR_INVAL;
	s->last_now = now;
	day = day_of(s, now);
	if (strcmp(day, s->day))
		switch_day(s, now, day);
	n = len > s->cfg.msg_max ? s->cfg.msg_max : len;
	line = n + 1;
	if (s->cfg.max_day && s->today_bytes + line > s->cfg.max_day)
		return drop(s, K_DAY, now, "%s reached its cap of %llu bytes",
			    day, (unsigned long long)s->cfg.max_day);
	if (s->fd >= 0 && (strcmp(s->cur_day, day) ||
			   s->cur_disk + s->buf_len + line > s->cfg.file_max) &&
	    !rotate(s, now, false))
		return drop(s, K_WRITE, now, "%d files wait for compression",
			    LOGSTORE_MAX_PENDING);
	if (total(s) + line > s->cfg.max_total &&
	    !make_room(s, now, line)) {
		save_manifest(s, now, false);
		return drop(s, K_TOTAL, now, "the store is full (%llu bytes) "
			    "and nothing is left to delete",
			    (unsigned long long)s->cfg.max_total);
	}
	save_manifest(s, now, false);	/* after pruning, if any */
	if (s->fd < 0) {
		e = start_file(s, now, day);
		if (e == ERR_LIMIT)
			return drop(s, K_DAY, now, "%s has its %d files", day,
				    LOGSTORE_SEQ_MAX);
		if (e != ERR_OK)
			return drop(s, K_WRITE, now, "no file to write to");
	}
	if (s->buf_len + line + 1 > s->buf_cap &&
	    flush_buf(s, now, 1) != ERR_OK)
		return ERR_IO;	/* this message counted with the others */
	if (s->need_nl) {
		s->buf[s->buf_len++] = '\n';
		s->need_nl = false;
	}
	char *p = s->buf + s->buf_len;
	if (n)
		memcpy(p, msg, n);	/* msg may be NULL for n == 0 */
	/* One line per message. */
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\n' || p[i] == '\r')
			p[i] = ' ';
	p[n] = '\n';
	s->buf_len += line;
	s->buf_msgs++;
	s->buf_day_bytes += line;
	s->today_bytes += line;
	s->st.messages++;
	if (len > n)
		s->st.truncated++;
	return ERR_OK;
}

void logstore_flush(struct logstore *s)
{
	time_t now;

	if (!s)
		return;
	now = s->last_now;
	if (s->fd >= 0 && flush_buf(s, now, 0) == ERR_OK && s->unsynced) {
		if (fdatasync(s->fd) == 0) {
			s->unsynced = false;
		} else {
			s->st.write_errno = errno;
			note(s, K_WRITE, now, 0, "%s/%s: cannot sync: %s",
			     s->dir, s->cur_name, strerror(errno));
		}
	}
	compress_pending(s, now, false);
	save_manifest(s, now, false);
	report_all(s, now, false);
}

err_t logstore_close_current(struct logstore *s, time_t now)
{
	if (!s)
		return ERR_INVAL;
	s->last_now = now;
	if (s->fd < 0 || s->cur_disk + s->buf_len == 0)
		return compress_pending(s, now, true);
	/* rotate() tries the pending files, this one included, once. */
	if (!rotate(s, now, true))
		return ERR_IO;
	return s->npend ? ERR_IO : ERR_OK;
}

size_t logstore_count(const struct logstore *s)
{
	return s ? s->count : 0;
}

const struct logstore_file *logstore_at(const struct logstore *s, size_t i)
{
	return s && i < s->count ? &s->files[i].f : NULL;
}

bool logstore_path(const struct logstore *s, const char *name, char *out,
		   size_t cap)
{
	return s && name && out && state_path(s->dir, name, out, cap);
}

err_t logstore_mark_uploaded(struct logstore *s, const char *name)
{
	struct entry *e;

	if (!s || !name)
		return ERR_INVAL;
	e = find(s, name);
	if (!e) {
		/* Pruned while it was being uploaded, most likely. */
		LOGI("%s/%s: not in the log store", s->dir, name);
		return ERR_NOTFOUND;
	}
	if (e->f.uploaded)
		return ERR_OK;
	e->f.uploaded = true;
	s->manifest_dirty = true;
	return save_manifest(s, s->last_now, true);
}

void logstore_stats(const struct logstore *s, struct logstore_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (!s)
		return;
	*out = s->st;
	out->bytes = total(s);
	out->files = s->count + s->npend + s->other_files + (s->fd >= 0);
	out->today_bytes = s->today_bytes;
}
