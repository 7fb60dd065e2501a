/*
 * logview — `comagent logs` (see logview.h).
 *
 * The files are read with read() in chunks and split into lines here, not
 * with stdio: follow mode reads on past an end of file, and a line is held
 * in a fixed buffer whatever its length (the rest is counted, not kept, and
 * still searched for the grep text through a small rolling window).
 *
 * Rotation (log.c): FILE is closed, renamed to FILE.1 (replacing the older
 * one) and a new FILE created. The open descriptor keeps reading the old
 * file after the rename, so on a rotation the old file is read to its end
 * first — no line is lost at the switch — and then the new FILE from its
 * start. If the log rotated twice between two polls (a small cap and a
 * burst of debug lines), FILE.1 is then a file never seen: it is read whole
 * before the new FILE. To know "never seen" for sure the previous file is
 * kept open: an inode number is unique only while its file exists, and a
 * file kept open exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logview.h"

#define LV_PATH_MAX	4096		/* as log.c's */
#define LV_READ_CHUNK	(64 * 1024)
/* The cut part of a line is searched for the grep text this many bytes at
 * a time, each piece behind the glen - 1 bytes that came before it. */
#define LV_SCAN_PIECE	1024

/* log.c writes "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: " */
#define HDR_TS_LEN	24		/* "2026-11-23T10:51:06.854Z" */
#define HDR_LEN		(HDR_TS_LEN + 1 + 5 + 1)	/* and " info  " */

/* log.c's level names as "%-5s" pads them, indexed by enum log_level. */
static const char *const level_words[] = { "error", "info ", "debug" };

struct lv {
	const struct logview_opts *o;
	FILE *out, *err;
	size_t glen;		/* strlen(o->grep), 0 for no grep */
	bool shown;		/* the current entry passes since and level */
	uint64_t pos;		/* bytes read from the current file */

	/* The line being read: its first bytes, how many more there were,
	 * and whether the grep text occurs in those. */
	char line[LOGVIEW_LINE_MAX];
	size_t len;
	uint64_t cut;
	bool hit;
	char win[LOGVIEW_GREP_MAX + LV_SCAN_PIECE];
	size_t wlen;

	char buf[LV_READ_CHUNK];
};

__attribute__((format(printf, 2, 3)))
static void say(FILE *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	fputs("comagent logs: ", err);
	va_start(ap, fmt);
	vfprintf(err, fmt, ap);
	va_end(ap);
	fputc('\n', err);
}

/* ---- time ---- */

struct utc {
	int y, mo, d, h, mi, s;
};

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
				    30, 31 };

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a valid date from 1970 on (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = y / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

/* Epoch seconds of t; false for an impossible one or one before 1970. No
 * leap second (:60): gmtime() never writes one, so no log line has it. */
static bool utc_epoch(const struct utc *t, int64_t *out)
{
	if (t->y < 1970 || t->y > 9999 || t->mo < 1 || t->mo > 12 ||
	    t->d < 1 || t->d > days_in_month(t->y, t->mo) || t->h > 23 ||
	    t->mi > 59 || t->s > 59)
		return false;
	*out = days_from_civil(t->y, t->mo, t->d) * 86400 + t->h * 3600 +
	       t->mi * 60 + t->s;
	return true;
}

/* Exactly n ASCII digits at s (stops at the first non-digit, so never
 * reads past a NUL). */
static bool digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* "YYYY-MM-DD" at s. */
static bool parse_date(const char *s, struct utc *t)
{
	return digits(s, 4, &t->y) && s[4] == '-' && digits(s + 5, 2, &t->mo) &&
	       s[7] == '-' && digits(s + 8, 2, &t->d);
}

/* "HH:MM" at s. */
static bool parse_hm(const char *s, struct utc *t)
{
	return digits(s, 2, &t->h) && s[2] == ':' && digits(s + 3, 2, &t->mi);
}

/* The time and level of a log line that starts an entry; false for one
 * that does not (a continuation, a damaged line). */
static bool parse_header(const char *l, size_t len, int64_t *t, int *level)
{
	struct utc u;
	int ms;

	if (len < HDR_LEN || !parse_date(l, &u) || l[10] != 'T' ||
	    !parse_hm(l + 11, &u) || l[16] != ':' || !digits(l + 17, 2, &u.s) ||
	    l[19] != '.' || !digits(l + 20, 3, &ms) || l[23] != 'Z' ||
	    l[24] != ' ' || l[HDR_LEN - 1] != ' ')
		return false;
	for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
		if (!memcmp(l + HDR_TS_LEN + 1, level_words[i], 5)) {
			*level = i;
			return utc_epoch(&u, t);
		}
	}
	return false;
}

/* "90s", "15m", "2h", "3d" before now. */
static bool parse_relative(const char *s, time_t now, int64_t *out)
{
	unsigned long long v, mult;
	size_t n = 0;
	char *end;

	while (s[n] >= '0' && s[n] <= '9')
		n++;
	/* 12 digits: past any sensible amount, within unsigned long long. */
	if (n == 0 || n > 12 || !s[n] || s[n + 1])
		return false;
	switch (s[n]) {
	case 's': mult = 1; break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = 86400; break;
	default: return false;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end != s + n)
		return false;
	/* Not before 1970 (which is also what keeps v * mult in range). */
	if (now < 0 || v > (unsigned long long)now / mult)
		return false;
	*out = (int64_t)now - (int64_t)(v * mult);
	return true;
}

bool logview_parse_since(const char *s, time_t now, int64_t *out)
{
	struct utc t = { 0 };
	const char *p;
	int frac;

	if (!s || !out)
		return false;
	if (!parse_date(s, &t))
		return parse_relative(s, now, out);
	p = s + 10;
	if (*p == 'T') {
		if (!parse_hm(p + 1, &t))
			return false;
		p += 6;
		if (*p == ':') {
			if (!digits(p + 1, 2, &t.s))
				return false;
			p += 3;
			/* A fraction (as in the log's own timestamps) is
			 * dropped: lines are compared by the second. */
			if (*p == '.') {
				int n = 0;

				while (n < 10 && digits(p + 1 + n, 1, &frac))
					n++;
				if (n < 1 || n > 9)
					return false;
				p += 1 + n;
			}
		}
		if (*p == 'Z')
			p++;
	}
	if (*p)
		return false;
	return utc_epoch(&t, out);
}

/* ---- lines ---- */

/* Whether needle (nlen > 0) occurs in hay (memmem() is a GNU extension). */
static bool contains(const char *hay, size_t hlen, const char *needle,
		     size_t nlen)
{
	for (size_t i = 0; i + nlen <= hlen; i++)
		if (hay[i] == needle[0] && !memcmp(hay + i, needle, nlen))
			return true;
	return false;
}

/* Bytes of a line past LOGVIEW_LINE_MAX: counted, and searched for the
 * grep text together with the glen - 1 bytes before them (a match may
 * straddle two pieces, or the kept part and the dropped one). */
static void drop(struct lv *v, const char *p, size_t n)
{
	size_t keep;

	if (v->cut == 0 && v->glen > 0) {
		keep = v->glen - 1 < v->len ? v->glen - 1 : v->len;
		memcpy(v->win, v->line + v->len - keep, keep);
		v->wlen = keep;
	}
	v->cut += n;
	while (v->glen > 0 && !v->hit && n > 0) {
		size_t k = n < LV_SCAN_PIECE ? n : LV_SCAN_PIECE;

		memcpy(v->win + v->wlen, p, k);
		v->wlen += k;
		if (contains(v->win, v->wlen, v->o->grep, v->glen)) {
			v->hit = true;
			return;
		}
		keep = v->glen - 1 < v->wlen ? v->glen - 1 : v->wlen;
		memmove(v->win, v->win + v->wlen - keep, keep);
		v->wlen = keep;
		p += k;
		n -= k;
	}
}

/* Part of a line (no newline in it). */
static void add(struct lv *v, const char *p, size_t n)
{
	size_t room, k;

	/* NULs where a line should start are what a power cut leaves in a
	 * file being appended to; the next line is written after them. */
	if (v->len == 0 && v->cut == 0)
		while (n > 0 && *p == '\0') {
			p++;
			n--;
		}
	room = sizeof(v->line) - v->len;
	k = n < room ? n : room;
	memcpy(v->line + v->len, p, k);
	v->len += k;
	if (n > k)
		drop(v, p + k, n - k);
}

/* Where a line cut at n bytes should end so that it does not end in the
 * middle of a UTF-8 character. */
static size_t utf8_whole(const char *s, size_t n)
{
	size_t i = n, cont = 0, need;
	unsigned char c;

	while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		cont++;
	}
	if (i == 0)
		return n;
	c = (unsigned char)s[i - 1];
	need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
	return need > cont + 1 ? i - 1 : n;
}

/* Control characters would reach the reader's terminal: an escape sequence
 * in a message a peer sent could rewrite the screen. */
static void put_clean(FILE *out, const char *s, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			fwrite(s + start, 1, i - start, out);
			fputc('?', out);
			start = i + 1;
		}
	}
	fwrite(s + start, 1, n - start, out);
}

/* The line is complete: show it if it passes the filters. */
static void end_line(struct lv *v)
{
	const struct logview_opts *o = v->o;
	int64_t t;
	int level;

	if (parse_header(v->line, v->len, &t, &level))
		v->shown = t >= o->since && level <= (int)o->level;
	if (v->shown && (v->glen == 0 || v->hit ||
			 contains(v->line, v->len, o->grep, v->glen))) {
		size_t n = v->len;
		uint64_t more = v->cut;

		if (more) {
			n = utf8_whole(v->line, n);
			more += v->len - n;
		}
		put_clean(v->out, v->line, n);
		if (more)
			fprintf(v->out, " [line cut: %llu more bytes]",
				(unsigned long long)more);
		fputc('\n', v->out);
	}
	v->len = 0;
	v->cut = 0;
	v->hit = false;
	v->wlen = 0;
}

static void feed(struct lv *v, const char *p, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl - p) : n;

		add(v, p, k);
		if (nl) {
			end_line(v);
			k++;
		}
		p += k;
		n -= k;
	}
}

/* The file is left: a last line without its newline will not get one. */
static void end_file(struct lv *v)
{
	if (v->len || v->cut)
		end_line(v);
}

/* ---- files ---- */

static err_t check_out(struct lv *v)
{
	if (fflush(v->out) != 0 || ferror(v->out)) {
		say(v->err, "cannot write the output: %s", strerror(errno));
		return ERR_IO;
	}
	return ERR_OK;
}

/* Reads fd from where it is to its end. */
static err_t read_all(struct lv *v, int fd, const char *path)
{
	for (;;) {
		ssize_t n = read(fd, v->buf, sizeof(v->buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			say(v->err, "cannot read %s: %s", path, strerror(errno));
			return ERR_IO;
		}
		if (n == 0)
			return ERR_OK;
		v->pos += (uint64_t)n;
		feed(v, v->buf, (size_t)n);
		/* A reader that went away (`| head`): stop reading. */
		if (ferror(v->out))
			return check_out(v);
	}
}

/* ERR_NOTFOUND without a word: whether that is a problem is the caller's
 * to say. */
static err_t open_log(struct lv *v, const char *path, int *fd,
		      struct stat *st)
{
	err_t e;

	/* O_NONBLOCK: a FIFO put there must not hang the open. */
	*fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (*fd < 0) {
		int en = errno;

		if (en == ENOENT)
			return ERR_NOTFOUND;
		say(v->err, "cannot open %s: %s", path, strerror(en));
		return en == EACCES || en == EPERM ? ERR_PERM : ERR_IO;
	}
	if (fstat(*fd, st) != 0) {
		say(v->err, "cannot stat %s: %s", path, strerror(errno));
		e = ERR_IO;
		goto fail;
	}
	if (!S_ISREG(st->st_mode)) {
		say(v->err, "%s is not a regular file", path);
		e = ERR_INVAL;
		goto fail;
	}
	return ERR_OK;
fail:
	close(*fd);
	*fd = -1;
	return e;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static bool stopped(const struct lv *v)
{
	return v->o->stop && *v->o->stop;
}

static void nap(void)
{
	struct timespec ts = { 0, LOGVIEW_POLL_MS * 1000000L };

	/* Cut short by a signal: the caller looks at *stop at once. */
	(void)nanosleep(&ts, NULL);
}

/* A rotation was seen (FILE is another file than *fd, or *fd is -1): the
 * old file is read to its end, then FILE.1 if it is a file never read (a
 * second rotation came before this poll), then the new FILE from its start
 * (*fd -1 if there is none yet). The new FILE is opened before FILE.1 is
 * looked at, as at the start: a rotation in between makes FILE.1 the file
 * just opened, not a file missed. *prev is the newest file read before
 * *fd, kept open (see the top of the file). */
static err_t switch_file(struct lv *v, const char *rotated, int *fd,
			 struct stat *cur, int *prev, struct stat *pst)
{
	struct stat nst = { 0 }, st1;
	int nfd = -1, fd1 = -1;
	err_t e;

	if (*fd >= 0) {
		e = read_all(v, *fd, v->o->path);
		if (e != ERR_OK)
			return e;
		end_file(v);
	}
	e = open_log(v, v->o->path, &nfd, &nst);
	if (e != ERR_OK && e != ERR_NOTFOUND)
		return e;
	e = open_log(v, rotated, &fd1, &st1);
	if (e != ERR_OK && e != ERR_NOTFOUND)
		goto out;
	e = ERR_OK;
	if (fd1 >= 0 && !(*fd >= 0 && same_file(&st1, cur)) &&
	    !(*prev >= 0 && same_file(&st1, pst)) &&
	    !(nfd >= 0 && same_file(&st1, &nst))) {
		e = read_all(v, fd1, rotated);
		end_file(v);
		if (e != ERR_OK)
			goto out;
		/* Now the newest file read. */
		if (*fd >= 0)
			close(*fd);
		*fd = fd1;
		*cur = st1;
		fd1 = -1;
	}
	if (*fd >= 0) {
		if (*prev >= 0)
			close(*prev);
		*prev = *fd;
		*pst = *cur;
	}
	/* -1 if FILE is not there (yet; log.c creates it right after the
	 * rename): a later poll opens it. */
	*fd = nfd;
	*cur = nst;
	nfd = -1;
	v->pos = 0;
out:
	if (nfd >= 0)
		close(nfd);
	if (fd1 >= 0)
		close(fd1);
	return e;
}

/* What a poll found at FILE (st): another file (a rotation), or the same
 * one made shorter (truncated in place, as copytruncate does: what is in
 * it now is new). */
static err_t check_file(struct lv *v, const char *rotated,
			const struct stat *st, int *fd, struct stat *cur,
			int *prev, struct stat *pst)
{
	if (*fd < 0 || !same_file(st, cur))
		return switch_file(v, rotated, fd, cur, prev, pst);
	if ((uint64_t)st->st_size < v->pos) {
		end_file(v);
		if (lseek(*fd, 0, SEEK_SET) < 0) {
			say(v->err, "cannot rewind %s: %s", v->o->path,
			    strerror(errno));
			return ERR_IO;
		}
		v->pos = 0;
	}
	return ERR_OK;
}

/* Follow mode: *fd is FILE (or -1 if there is none yet), read to its end
 * once already; *prev FILE.1 as read before it (or -1). */
static err_t follow(struct lv *v, const char *rotated, int *fd,
		    struct stat *cur, int *prev, struct stat *pst)
{
	struct stat st;
	err_t e;

	for (;;) {
		e = check_out(v);
		if (e != ERR_OK || stopped(v))
			return e;
		nap();
		if (stopped(v))
			return ERR_OK;
		/* Missing (between log.c's rename and its new file, or
		 * removed): nothing to switch to yet; what *fd still gets
		 * is read meanwhile. */
		if (stat(v->o->path, &st) == 0) {
			e = check_file(v, rotated, &st, fd, cur, prev, pst);
			if (e != ERR_OK)
				return e;
		}
		if (*fd >= 0) {
			e = read_all(v, *fd, v->o->path);
			if (e != ERR_OK)
				return e;
		}
	}
}

err_t logview_run(const struct logview_opts *o, FILE *out, FILE *err)
{
	struct lv *v = NULL;
	struct stat st = { 0 }, st1 = { 0 };
	char rotated[LV_PATH_MAX + 3];
	int fd = -1, fd1 = -1;
	size_t plen;
	err_t e;

	if (!o || !out || !o->path || !*o->path) {
		say(err, "no log file given");
		return ERR_INVAL;
	}
	plen = strlen(o->path);
	if (plen > LV_PATH_MAX) {
		say(err, "log file path too long");
		return ERR_INVAL;
	}
	if (o->grep && strlen(o->grep) > LOGVIEW_GREP_MAX) {
		say(err, "text to look for too long (at most %d bytes)",
		    LOGVIEW_GREP_MAX);
		return ERR_INVAL;
	}
	if ((int)o->level < LOG_LVL_ERROR || o->level > LOG_LVL_DEBUG) {
		say(err, "bad level %d", (int)o->level);
		return ERR_INVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		say(err, "out of memory");
		return ERR_NOMEM;
	}
	v->o = o;
	v->out = out;
	v->err = err;
	v->glen = o->grep ? strlen(o->grep) : 0;
	/* Lines before the first entry have no time or level to go by. */
	v->shown = o->since <= 0 && o->level == LOG_LVL_DEBUG;
	memcpy(rotated, o->path, plen);
	memcpy(rotated + plen, ".1", 3);

	/* FILE before FILE.1: if a rotation renames FILE to FILE.1 in
	 * between, both are the same file, read once (the FILE.1 it
	 * replaced is gone); the other way round that file would be missed. */
	e = open_log(v, o->path, &fd, &st);
	if (e != ERR_OK && e != ERR_NOTFOUND)
		goto out;
	e = open_log(v, rotated, &fd1, &st1);
	if (e != ERR_OK && e != ERR_NOTFOUND)
		goto out;
	if (fd < 0 && fd1 < 0) {
		say(v->err, "no log at %s (nor %s)", o->path, rotated);
		e = ERR_NOTFOUND;
		goto out;
	}
	if (fd >= 0 && fd1 >= 0 && same_file(&st, &st1)) {
		close(fd1);
		fd1 = -1;
	}
	if (fd1 >= 0) {
		e = read_all(v, fd1, rotated);
		if (e != ERR_OK)
			goto out;
		end_file(v);
	}
	v->pos = 0;
	if (fd >= 0) {
		e = read_all(v, fd, o->path);
		if (e != ERR_OK)
			goto out;
	}
	if (o->follow) {
		e = follow(v, rotated, &fd, &st, &fd1, &st1);
		if (e != ERR_OK)
			goto out;
	}
	end_file(v);
	e = check_out(v);
out:
	if (fd >= 0)
		close(fd);
	if (fd1 >= 0)
		close(fd1);
	free(v);
	return e;
}
