/*
 * collect — log files of configured directories, followed (see collect.h).
 *
 * Every followed file is an entry holding its open descriptor: a file is
 * known by its inode (dev, ino), never by its name, and an inode number is
 * unique only while its file exists — a file kept open exists. A look
 * lists the directories (lstat: no symlinks), matches what it finds to the
 * entries by inode, and then:
 *   an entry whose inode is listed is "linked" under that name (renames
 *     within the watched directories are followed that way);
 *   an open entry whose inode is no longer listed is an "orphan", read on
 *     through its descriptor (orphans first, oldest first) until it is
 *     deleted or its name's new file has data, and then closed;
 *   a listed inode without an entry is a new file.
 * Entries of a directory that could not be listed this time are left as
 * they were: an unreadable directory does not make its files orphans.
 *
 * Offsets are read positions; the part of a line not yet complete is held
 * in the entry (a buffer of line_max bytes, made when first needed) and
 * the position kept in the state file is where that line starts, so a
 * restart reads it again. Inside a cut line the position is the read one
 * and the entry's skip flag, kept with it, drops bytes to the next '\n'.
 *
 * The state file ("comagent-collect 1", then one line per file):
 *   INO OFFSET SKIP HEADLEN HEAD PATH
 * HEAD is the FNV-1a hash (16 hex digits) of the file's first HEADLEN
 * bytes, HEADLEN = min(bytes read, HEAD_MAX): the check that an inode
 * found after a restart is still the same file. PATH comes last and runs
 * to the end of the line, so it may hold spaces. Lines are sorted by
 * directory and name (then positions for directories not listed yet, as
 * they were read), so an unchanged state is written the same: a look that
 * changed nothing writes nothing (the text's hash is compared with the
 * last one read or written).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collect.h"
#include "log.h"
#include "state.h"

#define LOG_MODULE "collect"

#define SUFFIX		".log"
#define SUFFIX_LEN	(sizeof(SUFFIX) - 1)
#define NAME_CAP	(NAME_MAX + 1)
#define PATH_CAP	(COLLECT_DIR_MAX + 1 + NAME_CAP)
/* Open files: every followed one and as many orphans. At the cap the
 * oldest orphan is closed for a new file. */
#define POOL_MAX	(2 * COLLECT_FILES_MAX)
/* New files taken from one look's listing; more are left to later looks
 * (logged as too many). */
#define NEW_MAX		POOL_MAX
#define CHUNK		(64 * 1024)	/* bytes per read() */
#define HEAD_MAX	256		/* bytes hashed as a file's identity */
#define FNV_BASIS	14695981039346656037ULL
#define FNV_PRIME	1099511628211ULL

#define STATE_HEADER	"comagent-collect 1\n"
/* "INO OFFSET SKIP HEADLEN HEAD PATH\n" at its longest. */
#define STATE_LINE_MAX	(20 + 1 + 20 + 1 + 1 + 1 + 3 + 1 + 16 + 1 + PATH_CAP)
#define STATE_LINES_MAX	POOL_MAX
#define STATE_CAP	(sizeof(STATE_HEADER) + \
			 STATE_LINES_MAX * STATE_LINE_MAX)
/* Offsets beyond this are damage, not files (off_t is signed 64-bit). */
#define OFF_LIMIT	((uint64_t)INT64_MAX)

/* Where a new entry's reading starts once its file is open. */
enum start {
	START_ZERO,	/* a new file: at its beginning */
	START_SAVED,	/* at the saved position, if it is the same file */
	START_GUESS,	/* no position (damaged state): by the file's size */
};

struct cdir {
	char path[COLLECT_DIR_MAX + 1];	/* no trailing '/' but for "/" */
	bool failed;	/* a failure to list it was logged */
	bool listed;	/* listed by this look */
	bool looked;	/* listed once: saved positions were used */
};

struct entry {
	bool used;
	bool linked;		/* listed under dir/name (else an orphan) */
	bool mark;		/* matched by this look's listing */
	int dir;
	char name[NAME_CAP];
	uint64_t dev, ino;
	uint64_t size;		/* as listed (a linked entry) */
	uint64_t seq;		/* when it became an orphan */
	int fd;			/* -1 until opened */
	enum start start;
	uint64_t off;		/* bytes read */
	bool skip;		/* inside a cut line */
	char *held;		/* the incomplete line: line_max bytes */
	size_t hlen;
	unsigned head_len;	/* bytes of the file hashed into head */
	uint64_t head;
	bool open_failed;	/* logged */
	bool read_failed;	/* logged */
};

/* A position from the state file, for a file not yet found again. */
struct saved {
	char path[PATH_CAP];
	uint64_t ino, off;
	bool skip;
	unsigned head_len;
	uint64_t head;
	bool used;
};

/* A listed file without an entry. */
struct item {
	int dir;
	char name[NAME_CAP];
	uint64_t dev, ino, size;
};

struct collect {
	struct cdir dirs[COLLECT_DIRS_MAX];
	int ndirs;
	char state_path[STATE_PATH_MAX + 1];
	size_t line_max;

	struct entry pool[POOL_MAX];
	uint64_t seq;
	/* The linked file the last look ran out of bytes in: the next one
	 * starts there (by directory and name, which survive new files). */
	int rr_dir;
	char rr_name[NAME_CAP];

	struct saved *saved;	/* from the state file, until used */
	size_t nsaved;
	bool damaged;		/* the state file was: GUESS for the others */

	struct item *items;	/* NEW_MAX */
	size_t nitems;
	bool over;		/* this look found more than NEW_MAX new */
	bool too_many;		/* files were left out: logged */

	char *buf;		/* CHUNK, for reads */
	char *text;		/* STATE_CAP, the state file's text */
	uint64_t text_hash;	/* of the text last read or written */
	size_t text_len;
	bool write_failed;
	struct timespec retry_at;

	bool ready;		/* made whole: collect_free() saves */
	struct collect_stats st;
	collect_line_fn *line;	/* during a look */
	void *arg;
	size_t delivered;
};

/* ---- small helpers ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= FNV_PRIME;
	}
	return h;
}

/* "DIR/NAME" into out (PATH_CAP bytes; always fits). */
static void join(const struct collect *c, int dir, const char *name,
		 char *out)
{
	const char *d = c->dirs[dir].path;

	snprintf(out, PATH_CAP, "%s%s%s", d, strcmp(d, "/") ? "/" : "", name);
}

/* Whether path is a file directly in directory d. */
static bool in_dir(const char *d, const char *path)
{
	size_t n = strcmp(d, "/") ? strlen(d) : 0;

	return !strncmp(path, d, n) && path[n] == '/' && path[n + 1] &&
	       !strchr(path + n + 1, '/');
}

static bool name_wanted(const char *name)
{
	size_t n = strlen(name);

	return n > SUFFIX_LEN && !strcmp(name + n - SUFFIX_LEN, SUFFIX) &&
	       !strchr(name, '\n');
}

static struct timespec mono_now(void)
{
	struct timespec t = { 0, 0 };

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t;
}

static bool mono_before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec ||
	       (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* Hashes the first len bytes of fd into *h; false if they are not there. */
static bool hash_head(int fd, unsigned len, uint64_t *h)
{
	char b[HEAD_MAX];
	ssize_t r;

	do {
		r = pread(fd, b, len, 0);
	} while (r < 0 && errno == EINTR);
	if (r < 0 || (size_t)r != len)
		return false;
	*h = fnv(FNV_BASIS, b, len);
	return true;
}

/* ---- delivering lines ---- */

static void deliver(struct collect *c, const char *path, const char *text,
		    size_t len, bool cut)
{
	c->line(c->arg, path, text, len, cut);
	c->delivered++;
	c->st.lines++;
	if (cut)
		c->st.truncated++;
}

/* The held incomplete line, delivered as it is: its file will not get the
 * rest (rotated away, truncated). */
static void flush_held(struct collect *c, struct entry *e, const char *path)
{
	if (e->hlen)
		deliver(c, path, e->held, e->hlen, false);
	e->hlen = 0;
}

/* Back to the file's start (a new or truncated file). */
static void rewind_entry(struct entry *e)
{
	e->off = 0;
	e->skip = false;
	e->hlen = 0;
	e->head_len = 0;
	e->head = FNV_BASIS;
}

/* Splits n bytes read at e->off into lines. Returns the bytes used: all,
 * or fewer if there was no memory to hold an incomplete line (its bytes
 * are read again next time). */
static size_t take(struct collect *c, struct entry *e, const char *path,
		   const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t seg = nl ? (size_t)(nl - (p + i)) : n - i;

		if (e->skip) {
			e->skip = !nl;
		} else if (e->hlen + seg > c->line_max) {
			/* Too long: its first line_max bytes go now, the
			 * rest up to its '\n' is dropped. */
			if (e->hlen) {
				memcpy(e->held + e->hlen, p + i,
				       c->line_max - e->hlen);
				deliver(c, path, e->held, c->line_max, true);
				e->hlen = 0;
			} else {
				deliver(c, path, p + i, c->line_max, true);
			}
			e->skip = !nl;
		} else if (nl) {
			if (e->hlen) {
				memcpy(e->held + e->hlen, p + i, seg);
				deliver(c, path, e->held, e->hlen + seg,
					false);
				e->hlen = 0;
			} else {
				deliver(c, path, p + i, seg, false);
			}
		} else {
			if (!e->held) {
				e->held = malloc(c->line_max);
				if (!e->held) {
					LOGE("out of memory");
					c->st.errors++;
					return i;
				}
			}
			memcpy(e->held + e->hlen, p + i, seg);
			e->hlen += seg;
		}
		i += seg + (nl != NULL);
	}
	return n;
}

/* ---- opening and reading files ---- */

/* Hashes the file's first min(off, HEAD_MAX) bytes into e->head: what a
 * look reads next extends it from there. False if they are not there. */
static bool set_head(struct entry *e)
{
	e->head_len = e->off < HEAD_MAX ? (unsigned)e->off : HEAD_MAX;
	return hash_head(e->fd, e->head_len, &e->head);
}

/* Positions a file just opened (size from fstat) as its entry says. */
static void position(struct entry *e, const char *path, uint64_t size)
{
	uint64_t h;
	char last;

	switch (e->start) {
	case START_SAVED:
		if (size >= e->off && hash_head(e->fd, e->head_len, &h) &&
		    h == e->head && set_head(e))
			break;
		LOGI("%s: not the file of the saved position; read from its "
		     "start", path);
		rewind_entry(e);
		break;
	case START_GUESS:
		rewind_entry(e);
		if (size < COLLECT_REREAD_MAX)
			break;
		e->off = size;
		if (!set_head(e)) {
			rewind_entry(e);	/* truncated meanwhile */
			break;
		}
		/* From the next line start: a line begun is not whole. */
		e->skip = pread(e->fd, &last, 1, (off_t)size - 1) != 1 ||
			  last != '\n';
		LOGI("%s: no saved position; its %llu bytes are left out",
		     path, (unsigned long long)size);
		break;
	case START_ZERO:
		rewind_entry(e);
		break;
	}
	e->start = START_ZERO;
}

static void open_entry(struct collect *c, struct entry *e)
{
	char path[PATH_CAP];
	struct stat st;
	int fd;

	join(c, e->dir, e->name, path);
	/* O_NOFOLLOW: a symlink put there since the listing is no log file;
	 * O_NONBLOCK: nor is a FIFO, which must not hang the event loop. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
				O_NOCTTY);
	if (fd < 0) {
		if (!e->open_failed) {
			LOGE("%s: cannot open: %s", path, strerror(errno));
			c->st.errors++;
			e->open_failed = true;
		}
		return;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_dev != e->dev || (uint64_t)st.st_ino != e->ino) {
		close(fd);	/* replaced since the listing: next look */
		return;
	}
	if (e->open_failed)
		LOGI("%s: readable now", path);
	e->open_failed = false;
	e->fd = fd;
	position(e, path, (uint64_t)st.st_size);
}

enum rd { RD_END, RD_MORE, RD_ERR };

/* Reads e from its offset to its end or until *budget is used up. */
static enum rd read_entry(struct collect *c, struct entry *e,
			  const char *path, size_t *budget)
{
	struct stat st;

	if (fstat(e->fd, &st) != 0) {
		if (!e->read_failed) {
			LOGE("%s: cannot read: %s", path, strerror(errno));
			c->st.errors++;
			e->read_failed = true;
		}
		return RD_ERR;
	}
	if ((uint64_t)st.st_size < e->off) {
		LOGD("%s: truncated; read again from its start", path);
		flush_held(c, e, path);
		rewind_entry(e);
	}
	while (*budget > 0) {
		size_t want = *budget < CHUNK ? *budget : CHUNK;
		ssize_t r = pread(e->fd, c->buf, want, (off_t)e->off);
		size_t used;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			if (!e->read_failed) {
				LOGE("%s: cannot read: %s", path,
				     strerror(errno));
				c->st.errors++;
				e->read_failed = true;
			}
			return RD_ERR;
		}
		if (e->read_failed)
			LOGI("%s: readable now", path);
		e->read_failed = false;
		if (r == 0)
			return RD_END;
		*budget -= (size_t)r;
		used = take(c, e, path, c->buf, (size_t)r);
		if (e->off < HEAD_MAX) {
			size_t k = HEAD_MAX - e->off < used ?
					   (size_t)(HEAD_MAX - e->off) : used;

			e->head = fnv(e->head, c->buf, k);
			e->head_len += (unsigned)k;
		}
		e->off += used;
		c->st.bytes += used;
		if (used < (size_t)r)
			return RD_ERR;
		/* Short: the end, as far as a regular file goes now. */
		if ((size_t)r < want)
			return RD_END;
	}
	return RD_MORE;
}

static void drop_entry(struct entry *e)
{
	if (e->fd >= 0)
		close(e->fd);
	free(e->held);
	memset(e, 0, sizeof(*e));
	e->fd = -1;
}

/* An orphan is done: what it held goes, and it is forgotten. */
static void finish_orphan(struct collect *c, struct entry *e)
{
	char path[PATH_CAP];

	join(c, e->dir, e->name, path);
	flush_held(c, e, path);
	LOGD("%s: old file closed", path);
	drop_entry(e);
}

/* Whether an orphan read to its end can be closed: deleted, or the new
 * file under its name has data (the writer moved to it). */
static bool orphan_done(const struct collect *c, const struct entry *e)
{
	struct stat st;

	if (fstat(e->fd, &st) != 0 || st.st_nlink == 0)
		return true;
	for (int i = 0; i < POOL_MAX; i++) {
		const struct entry *n = &c->pool[i];

		if (n->used && n->linked && n->dir == e->dir &&
		    !strcmp(n->name, e->name) && n->size > 0)
			return true;
	}
	return false;
}

/* ---- listing the directories ---- */

static struct entry *find_inode(struct collect *c, uint64_t dev, uint64_t ino)
{
	for (int i = 0; i < POOL_MAX; i++)
		if (c->pool[i].used && c->pool[i].dev == dev &&
		    c->pool[i].ino == ino)
			return &c->pool[i];
	return NULL;
}

static bool find_item(const struct collect *c, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; i < c->nitems; i++)
		if (c->items[i].dev == dev && c->items[i].ino == ino)
			return true;
	return false;
}

static void list_dir(struct collect *c, int di)
{
	struct cdir *d = &c->dirs[di];
	struct dirent *de;
	struct stat st;
	DIR *dp = opendir(d->path);

	d->listed = false;
	if (!dp) {
		if (!d->failed) {
			LOGE("%s: cannot read: %s", d->path, strerror(errno));
			c->st.errors++;
			d->failed = true;
		}
		return;
	}
	if (d->failed)
		LOGI("%s: readable now", d->path);
	d->failed = false;
	while ((de = readdir(dp))) {
		struct entry *e;
		struct item *it;

		if (!name_wanted(de->d_name) ||
		    fstatat(dirfd(dp), de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		e = find_inode(c, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
		if (e) {
			/* Marked already: a second name of that file. */
			if (e->mark)
				continue;
			e->mark = true;
			e->linked = true;
			e->dir = di;
			snprintf(e->name, sizeof(e->name), "%s", de->d_name);
			e->size = (uint64_t)st.st_size;
			continue;
		}
		if (find_item(c, (uint64_t)st.st_dev, (uint64_t)st.st_ino))
			continue;	/* a second name of a new file */
		if (c->nitems >= NEW_MAX) {
			c->over = true;
			continue;
		}
		it = &c->items[c->nitems++];
		it->dir = di;
		snprintf(it->name, sizeof(it->name), "%s", de->d_name);
		it->dev = (uint64_t)st.st_dev;
		it->ino = (uint64_t)st.st_ino;
		it->size = (uint64_t)st.st_size;
	}
	closedir(dp);
	d->listed = true;
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	return x->dir != y->dir ? (x->dir < y->dir ? -1 : 1) :
				  strcmp(x->name, y->name);
}

/* A free entry; at the cap the oldest orphan is closed for it. */
static struct entry *free_entry(struct collect *c)
{
	struct entry *old = NULL;

	for (int i = 0; i < POOL_MAX; i++) {
		struct entry *e = &c->pool[i];

		if (!e->used)
			return e;
		if (!e->linked && (!old || e->seq < old->seq))
			old = e;
	}
	if (!old)
		return NULL;	/* cannot be: linked ones are capped lower */
	LOGI("%s: more than %d old files open; the oldest is closed",
	     c->dirs[old->dir].path, POOL_MAX - COLLECT_FILES_MAX);
	finish_orphan(c, old);
	return old;
}

/* The saved position for a file found at its directory's first look: by
 * inode (the name may have changed while the agent was down; the head
 * check at open tells a reused inode number). */
static struct saved *find_saved(struct collect *c, uint64_t ino)
{
	for (size_t i = 0; i < c->nsaved; i++)
		if (!c->saved[i].used && c->saved[i].ino == ino)
			return &c->saved[i];
	return NULL;
}

static void add_new(struct collect *c, const struct item *it)
{
	struct entry *e = free_entry(c);
	struct saved *s;

	if (!e)
		return;
	memset(e, 0, sizeof(*e));
	e->used = true;
	e->linked = true;
	e->mark = true;
	e->dir = it->dir;
	memcpy(e->name, it->name, sizeof(e->name));
	e->dev = it->dev;
	e->ino = it->ino;
	e->size = it->size;
	e->fd = -1;
	e->start = START_ZERO;
	rewind_entry(e);
	if (c->dirs[it->dir].looked)
		return;
	s = find_saved(c, it->ino);
	if (s) {
		s->used = true;
		e->start = START_SAVED;
		e->off = s->off;
		e->skip = s->skip;
		e->head_len = s->head_len;
		e->head = s->head;
	} else if (c->damaged) {
		e->start = START_GUESS;
	}
}

/* Lists every directory and brings the entries up to date with it. */
static void look(struct collect *c)
{
	unsigned linked = 0;
	size_t left_out = 0;
	char first[PATH_CAP] = "";

	c->nitems = 0;
	c->over = false;
	for (int i = 0; i < POOL_MAX; i++)
		c->pool[i].mark = false;
	for (int d = 0; d < c->ndirs; d++)
		list_dir(c, d);
	for (int i = 0; i < POOL_MAX; i++) {
		struct entry *e = &c->pool[i];

		if (!e->used || e->mark || !c->dirs[e->dir].listed) {
			linked += e->used && e->linked;
			continue;
		}
		if (e->fd < 0) {
			drop_entry(e);	/* never opened: nothing to read */
		} else if (e->linked) {
			char path[PATH_CAP];

			join(c, e->dir, e->name, path);
			LOGD("%s: rotated or gone; the old file is read on",
			     path);
			e->linked = false;
			e->seq = ++c->seq;
		}
	}
	qsort(c->items, c->nitems, sizeof(c->items[0]), cmp_item);
	for (size_t i = 0; i < c->nitems; i++) {
		if (linked >= COLLECT_FILES_MAX) {
			if (!left_out++)
				join(c, c->items[i].dir, c->items[i].name,
				     first);
			continue;
		}
		add_new(c, &c->items[i]);
		linked++;
	}
	/* Logged once while it lasts; again after it stopped. */
	if ((left_out || c->over) && !c->too_many) {
		if (left_out)
			LOGE("more than %d log files; %s and %zu more left out",
			     COLLECT_FILES_MAX, first, left_out - 1);
		else
			LOGE("more than %d new log files at once; some left "
			     "out until later looks", NEW_MAX);
		c->st.errors++;
	}
	c->too_many = left_out || c->over;
	for (int d = 0; d < c->ndirs; d++) {
		struct cdir *cd = &c->dirs[d];

		if (!cd->listed || cd->looked)
			continue;
		cd->looked = true;
		/* Its saved positions not used now are for files gone. */
		for (size_t i = 0; i < c->nsaved; i++)
			if (in_dir(cd->path, c->saved[i].path))
				c->saved[i].used = true;
	}
}

/* ---- the state file ---- */

/* Sorts the state's lines: a state that did not change is written the
 * same (and not written at all). */
static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = *(const struct entry *const *)a;
	const struct entry *y = *(const struct entry *const *)b;

	return x->dir != y->dir ? (x->dir < y->dir ? -1 : 1) :
				  strcmp(x->name, y->name);
}

/* One line into c->text at *len; false if there is no room left. */
static bool put_line(struct collect *c, size_t *len, uint64_t ino,
		     uint64_t off, bool skip, unsigned head_len, uint64_t head,
		     const char *path)
{
	int n = snprintf(c->text + *len, STATE_CAP - *len,
			 "%llu %llu %d %u %016llx %s\n",
			 (unsigned long long)ino, (unsigned long long)off,
			 skip ? 1 : 0, head_len, (unsigned long long)head,
			 path);

	if (n < 0 || (size_t)n >= STATE_CAP - *len)
		return false;
	*len += (size_t)n;
	return true;
}

/* Writes the positions if they changed. After a failure not again for
 * COLLECT_RETRY_S (state_write() logs each failure), unless final. */
static void save_state(struct collect *c, bool final)
{
	struct entry *list[POOL_MAX];
	char path[PATH_CAP];
	size_t n = 0, len, lines = 0;
	struct timespec now;
	uint64_t h;

	for (int i = 0; i < POOL_MAX; i++) {
		struct entry *e = &c->pool[i];

		/* Not yet opened: only a saved position is worth keeping
		 * (a new file starts at 0 anyway). */
		if (e->used && e->linked &&
		    (e->fd >= 0 || e->start == START_SAVED))
			list[n++] = e;
	}
	qsort(list, n, sizeof(list[0]), cmp_entry);
	memcpy(c->text, STATE_HEADER, sizeof(STATE_HEADER) - 1);
	len = sizeof(STATE_HEADER) - 1;
	for (size_t i = 0; i < n; i++) {
		struct entry *e = list[i];

		join(c, e->dir, e->name, path);
		/* Where the held line starts: it is read again. */
		if (!put_line(c, &len, e->ino, e->off - e->hlen, e->skip,
			      e->head_len, e->head, path))
			break;
		lines++;
	}
	/* Positions for directories not listed yet (missing for now). */
	for (size_t i = 0; i < c->nsaved && lines < STATE_LINES_MAX; i++) {
		struct saved *s = &c->saved[i];

		if (s->used)
			continue;
		if (!put_line(c, &len, s->ino, s->off, s->skip, s->head_len,
			      s->head, s->path))
			break;
		lines++;
	}
	h = fnv(FNV_BASIS, c->text, len);
	if (len == c->text_len && h == c->text_hash)
		return;
	now = mono_now();
	if (!final && c->write_failed && mono_before(now, c->retry_at))
		return;
	if (state_write(c->state_path, c->text, len) == ERR_OK) {
		c->text_len = len;
		c->text_hash = h;
		c->write_failed = false;
		return;
	}
	c->st.errors++;
	c->write_failed = true;
	c->retry_at = now;
	c->retry_at.tv_sec += COLLECT_RETRY_S;
}

/* "INO OFFSET SKIP HEADLEN HEAD PATH" in [p, end). */
static bool parse_line(const char *p, const char *end, struct saved *s)
{
	const char *f;
	size_t n;
	uint64_t v;

	memset(s, 0, sizeof(*s));
	if (!state_field(&p, end, &f, &n) ||
	    !state_number(f, n, 10, UINT64_MAX, &s->ino))
		return false;
	if (!state_field(&p, end, &f, &n) ||
	    !state_number(f, n, 10, OFF_LIMIT, &s->off))
		return false;
	if (!state_field(&p, end, &f, &n) || !state_number(f, n, 10, 1, &v))
		return false;
	s->skip = v == 1;
	if (!state_field(&p, end, &f, &n) ||
	    !state_number(f, n, 10, HEAD_MAX, &v))
		return false;
	s->head_len = (unsigned)v;
	if (!state_field(&p, end, &f, &n) || n != 16 ||
	    !state_number(f, n, 16, UINT64_MAX, &s->head))
		return false;
	n = (size_t)(end - p);
	if (n == 0 || n >= sizeof(s->path) || *p != '/' || memchr(p, '\0', n))
		return false;
	memcpy(s->path, p, n);
	s->path[n] = '\0';
	return true;
}

static bool configured(const struct collect *c, const char *path)
{
	for (int d = 0; d < c->ndirs; d++)
		if (in_dir(c->dirs[d].path, path))
			return true;
	return false;
}

/* Reads the saved positions. Only memory can fail; damage is logged and
 * noted (c->damaged). */
static err_t load_state(struct collect *c)
{
	size_t len = 0, lines = 0, bad = 0, lineno = 1;
	const char *p, *end;
	err_t e = state_read(c->state_path, c->text, STATE_CAP, &len);

	if (e == ERR_NOTFOUND)
		return ERR_OK;	/* a first start */
	if (e != ERR_OK) {
		/* state_read() logged why. */
		LOGI("%s: no positions; files start at 0 below %d bytes, "
		     "else at their end", c->state_path, COLLECT_REREAD_MAX);
		c->st.errors++;
		c->damaged = true;
		return ERR_OK;
	}
	c->text_len = len;
	c->text_hash = fnv(FNV_BASIS, c->text, len);
	p = c->text;
	end = c->text + len;
	if (len < sizeof(STATE_HEADER) - 1 ||
	    memcmp(p, STATE_HEADER, sizeof(STATE_HEADER) - 1)) {
		bad = 1;
		goto out;
	}
	p += sizeof(STATE_HEADER) - 1;
	for (const char *q = p; q < end; q++)
		lines += *q == '\n';
	if (lines > STATE_LINES_MAX)
		lines = STATE_LINES_MAX;
	if (lines) {
		c->saved = calloc(lines, sizeof(*c->saved));
		if (!c->saved) {
			LOGE("out of memory");
			return ERR_NOMEM;
		}
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		lineno++;
		/* No '\n' at the end: state_write() writes whole files, so
		 * that is damage too. */
		if (!nl || c->nsaved >= lines ||
		    !parse_line(p, nl, &c->saved[c->nsaved])) {
			if (!bad)
				bad = lineno;
			if (!nl)
				break;
		} else if (configured(c, c->saved[c->nsaved].path)) {
			c->nsaved++;
		} else {
			LOGD("%s: no longer collected",
			     c->saved[c->nsaved].path);
		}
		p = nl + 1;
	}
out:
	if (bad) {
		LOGE("%s: line %zu damaged; files it does not list start at 0 "
		     "below %d bytes, else at their end", c->state_path, bad,
		     COLLECT_REREAD_MAX);
		c->st.errors++;
		c->damaged = true;
	}
	return ERR_OK;
}

/* ---- the interface ---- */

/* The space-separated directories into c->dirs. */
static err_t parse_dirs(struct collect *c, const char *dirs)
{
	const char *p = dirs;

	for (;;) {
		const char *s;
		size_t n;
		struct cdir *d;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		s = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		n = (size_t)(p - s);
		if (*s != '/') {
			LOGE("%.*s: not an absolute path",
			     (int)(n < 200 ? n : 200), s);
			return ERR_INVAL;
		}
		if (n > COLLECT_DIR_MAX) {
			LOGE("%.64s...: path too long (max %d characters)", s,
			     COLLECT_DIR_MAX);
			return ERR_INVAL;
		}
		if (c->ndirs >= COLLECT_DIRS_MAX) {
			LOGE("more than %d directories to collect",
			     COLLECT_DIRS_MAX);
			return ERR_INVAL;
		}
		while (n > 1 && s[n - 1] == '/')
			n--;
		d = &c->dirs[c->ndirs];
		memcpy(d->path, s, n);
		d->path[n] = '\0';
		for (int i = 0; i < c->ndirs; i++) {
			if (!strcmp(c->dirs[i].path, d->path)) {
				LOGE("%s: listed twice", d->path);
				return ERR_INVAL;
			}
		}
		c->ndirs++;
	}
	if (!c->ndirs) {
		LOGE("no directories to collect");
		return ERR_INVAL;
	}
	return ERR_OK;
}

err_t collect_new(const char *dirs, const char *state_path, size_t line_max,
		  struct collect **out)
{
	struct collect *c;
	size_t plen;
	err_t e;

	if (!out)
		return ERR_INVAL;
	*out = NULL;
	if (!dirs || !state_path) {
		LOGE("no directories or no state file");
		return ERR_INVAL;
	}
	if (line_max < 1 || line_max > COLLECT_LINE_LIMIT) {
		LOGE("line length %zu outside 1..%d", line_max,
		     COLLECT_LINE_LIMIT);
		return ERR_INVAL;
	}
	plen = strlen(state_path);
	if (plen == 0 || plen > STATE_PATH_MAX) {
		LOGE("%.64s: state file path empty or too long (max %d "
		     "characters)", state_path, STATE_PATH_MAX);
		return ERR_INVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		LOGE("out of memory");
		return ERR_NOMEM;
	}
	for (int i = 0; i < POOL_MAX; i++)
		c->pool[i].fd = -1;
	memcpy(c->state_path, state_path, plen + 1);
	c->line_max = line_max;
	e = parse_dirs(c, dirs);
	if (e != ERR_OK)
		goto out;
	c->items = calloc(NEW_MAX, sizeof(*c->items));
	c->buf = malloc(CHUNK);
	c->text = malloc(STATE_CAP);
	if (!c->items || !c->buf || !c->text) {
		LOGE("out of memory");
		e = ERR_NOMEM;
		goto out;
	}
	e = load_state(c);
	if (e != ERR_OK)
		goto out;
	c->ready = true;
	*out = c;
	c = NULL;
out:
	collect_free(c);
	return e;
}

void collect_free(struct collect *c)
{
	if (!c)
		return;
	if (c->ready)
		save_state(c, true);
	for (int i = 0; i < POOL_MAX; i++)
		drop_entry(&c->pool[i]);
	free(c->saved);
	free(c->items);
	free(c->buf);
	free(c->text);
	free(c);
}

/* Orphans first, oldest first: the rest of a rotated file comes before
 * its name's new file. Returns false if the bytes ran out. */
static bool read_orphans(struct collect *c, size_t *budget)
{
	struct entry *list[POOL_MAX];
	char path[PATH_CAP];
	size_t n = 0;

	for (int i = 0; i < POOL_MAX; i++)
		if (c->pool[i].used && !c->pool[i].linked &&
		    c->pool[i].fd >= 0)
			list[n++] = &c->pool[i];
	for (size_t i = 1; i < n; i++)	/* few: insertion sort by seq */
		for (size_t k = i; k > 0 && list[k - 1]->seq > list[k]->seq;
		     k--) {
			struct entry *t = list[k];

			list[k] = list[k - 1];
			list[k - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		struct entry *e = list[i];
		enum rd r;

		join(c, e->dir, e->name, path);
		r = read_entry(c, e, path, budget);
		if (r == RD_MORE)
			return false;
		/* Unreadable (logged): it would be kept open forever. */
		if (r == RD_ERR || orphan_done(c, e))
			finish_orphan(c, e);
	}
	return true;
}

/* The linked files, by directory and name, starting after the one the
 * last look ran out of bytes in: a file with a big backlog takes what the
 * others leave, and does not starve them. */
static void read_linked(struct collect *c, size_t *budget)
{
	struct entry *list[POOL_MAX];
	char path[PATH_CAP];
	size_t n = 0, start = 0;

	if (!*budget)
		return;		/* nothing read: where to start stays */
	for (int i = 0; i < POOL_MAX; i++)
		if (c->pool[i].used && c->pool[i].linked &&
		    c->pool[i].fd >= 0)
			list[n++] = &c->pool[i];
	qsort(list, n, sizeof(list[0]), cmp_entry);
	if (c->rr_name[0]) {
		while (start < n &&
		       (list[start]->dir < c->rr_dir ||
			(list[start]->dir == c->rr_dir &&
			 strcmp(list[start]->name, c->rr_name) <= 0)))
			start++;
	}
	for (size_t k = 0; k < n; k++) {
		struct entry *e = list[(start + k) % n];

		join(c, e->dir, e->name, path);
		if (read_entry(c, e, path, budget) == RD_MORE) {
			c->rr_dir = e->dir;
			memcpy(c->rr_name, e->name, sizeof(c->rr_name));
			return;
		}
	}
	c->rr_name[0] = '\0';
}

size_t collect_poll(struct collect *c, size_t max_bytes, collect_line_fn *line,
		    void *arg)
{
	size_t budget = max_bytes;

	if (!c || !line)
		return 0;
	c->line = line;
	c->arg = arg;
	c->delivered = 0;
	look(c);
	for (int i = 0; i < POOL_MAX; i++)
		if (c->pool[i].used && c->pool[i].linked && c->pool[i].fd < 0)
			open_entry(c, &c->pool[i]);
	if (read_orphans(c, &budget))
		read_linked(c, &budget);
	save_state(c, false);
	c->line = NULL;
	c->arg = NULL;
	return c->delivered;
}

void collect_stats(const struct collect *c, struct collect_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	*out = c->st;
	for (int i = 0; i < POOL_MAX; i++)
		if (c->pool[i].used && c->pool[i].linked && c->pool[i].fd >= 0)
			out->files++;
}
