/*
 * custom — CustomData.xml once, custom-files refreshes (see custom.h).
 *
 * State files in STATE_DIR (all written with state_write):
 *   customdata           "STATE\nFIRST_REFRESHED(0|1)\nMESSAGE\n": the
 *                        first connect's outcome; absent until it is known
 *   vmpro                "none" | "config" | "full" (CustomData.xml's)
 *   custom-refresh       "STATE\nMESSAGE\n": the last refresh
 *   custom-files         the manifest, one line per file:
 *                        "ST PART LEVEL SIZE SHA256 NAME" (NAME is the rest
 *                        of the line: names may hold spaces)
 *   custom-files.pending the same with ST "drop" for files to remove: the
 *                        install's journal; its existence is the commit
 *
 * Install: every shipped file of an accepted part sits in the part's
 * staging directory (<target>/.comagent-<part>, same file system, so a
 * rename is atomic) when the journal is written; applying it renames each
 * staged file that is still there, removes the dropped ones, writes the
 * manifest and deletes the journal. Every step can be repeated, so a crash
 * at any point is finished by custom_start() the same way.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "custom.h"
#include "customdata.h"
#include "customtar.h"
#include "digest.h"
#include "link.h"
#include "log.h"
#include "proto.h"
#include "settings.h"
#include "state.h"
#include "xfer.h"

#define LOG_MODULE "custom"

#define LIST_WAIT_US (60 * LWS_USEC_PER_SEC)
#define MSG_MAX 512
#define STEPS_KEPT 16
#define STEP_MAX 192
#define CUSTOMDATA_FILE "CustomData.xml"
#define FLAG_FILE "customdata"
#define VMPRO_FILE "vmpro"
#define REFRESH_FILE "custom-refresh"
#define PENDING_FILE CUSTOM_MANIFEST ".pending"
/* A manifest line: state, part, level, size, hash, name. */
#define LINE_MAX_BYTES (8 + 10 + 10 + 21 + DIGEST_HEX_LEN + \
			CUSTOMTAR_NAME_MAX + 8)
#define MANIFEST_MAX_BYTES ((size_t)CUSTOM_FILES_MAX * LINE_MAX_BYTES + 64)

enum part { P_PHONES, P_TEMPLATES, P__N };
enum level { L_PROVIDER, L_RESELLER, L_SYSTEM, L__N };
/* E_LOST: staged but not moved into place (never written out). */
enum est { E_SHIP, E_STALE, E_DROP, E_LOST };

static const char *const part_key[P__N] = { "phones", "templates" };
static const char *const part_file[P__N] = { "CustomPhoneFiles.tar",
					     "CustomTemplates.tar" };
static const char *const part_label[P__N] = { "phone files", "templates" };
static const char *const level_name[L__N] = { "provider", "reseller",
					      "system" };
static const char *const est_name[] = { "ship", "stale", "drop" };

struct entry {
	char name[CUSTOMTAR_NAME_MAX + 1];
	char sha[DIGEST_HEX_LEN + 1];
	uint64_t size;
	unsigned char part, level, st;
};

struct fileref {
	bool present;
	uint64_t size;
	char sha[DIGEST_HEX_LEN + 1];
};

struct listing {
	struct fileref tar[L__N][P__N];
	struct fileref cd;
	int cd_level;
};

struct refresh {
	struct custom *c;
	char job[65];
	bool prune;
	struct custom_refresh_cbs cbs;
	void *arg;
	bool listed;
	struct listing ls;
	int next;			/* download sequence: level * P__N + part */
	struct xfer *xfer;
	uint64_t total, got;		/* bytes to download, done before xfer */
	char refused[P__N][256];	/* why a part was refused; "" if not */
	unsigned warnings;
	char warning[256];		/* the first one */
	struct entry *ent;		/* the new set, both parts */
	size_t nent;
	bool overflow;
	enum part cur_part;		/* extracting */
	enum level cur_level;
	/* the end, called from a timer, never inside custom_refresh() */
	const char *reason;
	char text[MSG_MAX];
	lws_sorted_usec_list_t sul_end;
};

struct custom {
	struct lws_context *ctx;
	const struct conf *conf;
	struct settings *settings;
	struct xfers *xfers;
	struct custom_cbs cbs;
	void *arg;
	struct link *link;
	struct proto_w *w;
	/* the custom.list in flight: for the first connect and/or a refresh */
	bool list_first, list_refresh;
	int64_t list_id;		/* 0: not sent on this link */
	lws_sorted_usec_list_t sul_list;
	/* first connect */
	char data_state[16];
	char data_msg[MSG_MAX];
	bool first_refreshed;
	bool first_busy;		/* listing or fetching CustomData.xml */
	struct xfer *cd_xfer;
	char cd_path[STATE_PATH_MAX + 1];
	char cd_level[10];
	/* refreshes */
	struct refresh *r;
	char refresh_state[16];
	char refresh_msg[MSG_MAX];
	char vmpro[16];
	char state_dir[STATE_PATH_MAX + 1];
	/* The refreshes' steps, per file, for `refresh-custom-files` to
	 * show: the last STEPS_KEPT, numbered from 1. */
	char steps[STEPS_KEPT][STEP_MAX];
	unsigned nsteps;
};

/* ---- small helpers ---------------------------------------------------- */

#ifdef COMAGENT_TESTING
/* Test builds: die like a power cut at a named step of the install, when
 * COMAGENT_TEST_CRASH names it ("staged", "journaled", "moved"). */
static void crash_point(const char *name)
{
	const char *want = getenv("COMAGENT_TEST_CRASH");

	if (want && !strcmp(want, name)) {
		LOGI("test build: crashing at '%s' as asked", name);
		_exit(99);
	}
}
#else
#define crash_point(name) ((void)0)
#endif

static bool path_in(const char *dir, const char *name, char *out, size_t cap)
{
	if (state_path(dir, name, out, cap))
		return true;
	LOGE("%s/%s: path too long", dir, name);
	return false;
}

static bool state_file(const struct custom *c, const char *name, char *out,
		       size_t cap)
{
	return path_in(c->state_dir, name, out, cap);
}

static const char *target_dir(const struct custom *c, enum part p)
{
	return conf_str(c->conf, p == P_PHONES ? CONF_CUSTOM_PHONE_DIR
					       : CONF_CUSTOM_TEMPLATE_DIR);
}

/* <target>/.comagent-<part>: beside the files it will replace. */
static bool staging_dir(const struct custom *c, enum part p, char *out,
			size_t cap)
{
	char name[32];

	snprintf(name, sizeof(name), ".comagent-%s", part_key[p]);
	return path_in(target_dir(c, p), name, out, cap);
}

/* Empties and removes a staging directory (flat, regular files only: it
 * is ours); a missing one is fine. */
static void wipe_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d) {
		if (errno != ENOENT)
			LOGE("cannot open %s: %s", dir, strerror(errno));
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    unlinkat(dirfd(d), de->d_name, 0) != 0)
			LOGE("cannot remove %s/%s: %s", dir, de->d_name,
			     strerror(errno));
	closedir(d);
	if (rmdir(dir) != 0 && errno != ENOENT)
		LOGE("cannot remove %s: %s", dir, strerror(errno));
}

/* Both parts' staging directories, emptied and removed. */
static void wipe_staging(const struct custom *c)
{
	char stage[STATE_PATH_MAX + 1];

	for (int p = 0; p < P__N; p++)
		if (staging_dir(c, (enum part)p, stage, sizeof(stage)))
			wipe_dir(stage);
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fsync(fd) != 0)
		LOGE("fsync %s: %s", dir, strerror(errno));
	close(fd);
}

static int lookup(const char *const *names, int n, const char *s, size_t len)
{
	for (int i = 0; i < n; i++)
		if (strlen(names[i]) == len && !memcmp(names[i], s, len))
			return i;
	return -1;
}

static bool is_template(const char *name)
{
	size_t n = strlen(name);

	return n > 4 && !strcasecmp(name + n - 4, ".xml");
}

/* ---- the manifest ----------------------------------------------------- */

struct manifest_set {
	struct entry *e;
	size_t n;
};

static void set_free(struct manifest_set *s)
{
	free(s->e);
	s->e = NULL;
	s->n = 0;
}

/* One line into *e; false if malformed. */
static bool parse_line(const char *p, const char *end, struct entry *e)
{
	const char *f;
	size_t n;
	int k;

	memset(e, 0, sizeof(*e));
	if (!state_field(&p, end, &f, &n) ||
	    (k = lookup(est_name, 3, f, n)) < 0)
		return false;
	e->st = (unsigned char)k;
	if (!state_field(&p, end, &f, &n) ||
	    (k = lookup(part_key, P__N, f, n)) < 0)
		return false;
	e->part = (unsigned char)k;
	if (!state_field(&p, end, &f, &n) ||
	    (k = lookup(level_name, L__N, f, n)) < 0)
		return false;
	e->level = (unsigned char)k;
	if (!state_field(&p, end, &f, &n) ||
	    !state_number(f, n, 10, CUSTOM_TAR_MAX, &e->size))
		return false;
	if (!state_field(&p, end, &f, &n) || n != DIGEST_HEX_LEN)
		return false;
	memcpy(e->sha, f, n);
	if (!digest_hex_valid(e->sha))
		return false;
	n = (size_t)(end - p);
	if (n == 0 || n > CUSTOMTAR_NAME_MAX || memchr(p, '/', n) ||
	    memchr(p, '\0', n) || (n <= 2 && p[0] == '.' &&
				   (n == 1 || p[1] == '.')))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return false;
	memcpy(e->name, p, n);
	return true;
}

/* Reads a manifest (or the journal). A missing file is an empty set. */
static err_t set_load(const char *path, struct manifest_set *s, char *why,
		      size_t whylen)
{
	char *buf = malloc(MANIFEST_MAX_BYTES);
	size_t len = 0, line = 0;
	err_t e;

	s->e = NULL;
	s->n = 0;
	if (!buf)
		return ERR_NOMEM;
	e = state_read_why(path, buf, MANIFEST_MAX_BYTES, &len, why, whylen);
	if (e == ERR_NOTFOUND) {
		free(buf);
		return ERR_OK;
	}
	if (e != ERR_OK)
		goto out;
	s->e = calloc(CUSTOM_FILES_MAX, sizeof(*s->e));
	if (!s->e) {
		e = ERR_NOMEM;
		goto out;
	}
	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		line++;
		if (le > p && *p != '#') {
			if (s->n >= CUSTOM_FILES_MAX ||
			    !parse_line(p, le, &s->e[s->n])) {
				err_say(why, whylen, "%s:%zu: %s", path, line,
					s->n >= CUSTOM_FILES_MAX ?
					"too many files" : "malformed line");
				e = ERR_INVAL;
				goto out;
			}
			s->n++;
		}
		p = le + 1;
	}
out:
	free(buf);
	if (e != ERR_OK)
		set_free(s);
	return e;
}

/* Writes the entries whose state passes (drop too when with_drop). */
static err_t set_write(const char *path, const struct manifest_set *s,
		       bool with_drop)
{
	char *buf = malloc(MANIFEST_MAX_BYTES);
	size_t len = 0;
	err_t e;
	int w;

	if (!buf)
		return ERR_NOMEM;
	w = snprintf(buf, MANIFEST_MAX_BYTES, "# comagent custom files 1\n");
	len = (size_t)w;
	for (size_t i = 0; i < s->n; i++) {
		const struct entry *x = &s->e[i];

		if (x->st == E_LOST || (x->st == E_DROP && !with_drop))
			continue;
		w = snprintf(buf + len, MANIFEST_MAX_BYTES - len,
			     "%s %s %s %llu %s %s\n", est_name[x->st],
			     part_key[x->part], level_name[x->level],
			     (unsigned long long)x->size, x->sha, x->name);
		if (w < 0 || (size_t)w >= MANIFEST_MAX_BYTES - len) {
			free(buf);
			LOGE("%s: manifest too long", path);
			return ERR_LIMIT;
		}
		len += (size_t)w;
	}
	e = state_write(path, buf, len);
	free(buf);
	return e;
}

/* Is the file at path still what the entry says the agent installed? */
static bool still_ours(const char *path, const struct entry *x)
{
	struct stat st;
	char hex[DIGEST_HEX_LEN + 1];
	uint64_t n = 0;

	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != x->size)
		return false;
	return digest_file(path, x->size, hex, &n) == ERR_OK &&
	       n == x->size && !strcmp(hex, x->sha);
}

/*
 * Carries out the journal s (already written to the pending file): the
 * staged files into place, the dropped ones removed, the manifest, then
 * the journal deleted. Repeatable. replay: a journal found on disk, whose
 * staging directory may hold another refresh's files by now, so each
 * staged file is hashed against the journal first (an install just
 * extracted them itself, and has hashed them already). *moved / *failed /
 * *dropped count what it did (NULL ok).
 */
static err_t apply_journal(struct custom *c, struct manifest_set *s,
			   bool replay, unsigned *moved, unsigned *failed,
			   unsigned *dropped)
{
	char stage[P__N][STATE_PATH_MAX + 1];
	char src[STATE_PATH_MAX + 1], dst[STATE_PATH_MAX + 1];
	char path[STATE_PATH_MAX + 1];
	unsigned mv = 0, bad = 0, gone = 0;
	bool touched[P__N] = { false, false };
	err_t e;

	for (int p = 0; p < P__N; p++)
		if (!staging_dir(c, (enum part)p, stage[p], sizeof(stage[p])))
			return ERR_INVAL;
	for (size_t i = 0; i < s->n; i++) {
		struct entry *x = &s->e[i];
		struct stat st;

		if (x->st == E_DROP || !path_in(stage[x->part], x->name, src,
						sizeof(src)) ||
		    lstat(src, &st) != 0)
			continue;	/* not staged, or already moved */
		if (replay && !still_ours(src, x)) {
			LOGE("%s: not the file the install journal names; "
			     "left out", src);
			x->st = E_LOST;
			bad++;
			continue;
		}
		if (!path_in(target_dir(c, x->part), x->name, dst,
			     sizeof(dst)) ||
		    state_mkdirs(target_dir(c, x->part), 0755) != ERR_OK ||
		    rename(src, dst) != 0) {
			LOGE("cannot install %s into %s: %s", x->name,
			     target_dir(c, x->part), strerror(errno));
			x->st = E_LOST;	/* not installed: out of the manifest */
			bad++;
			continue;
		}
		touched[x->part] = true;
		mv++;
		crash_point("moved");
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct entry *x = &s->e[i];

		if (x->st != E_DROP ||
		    !path_in(target_dir(c, x->part), x->name, dst, sizeof(dst)))
			continue;
		if (!still_ours(dst, x)) {
			struct stat st;

			if (lstat(dst, &st) == 0)
				LOGI("%s: kept: it is no longer the file the "
				     "agent installed", dst);
			continue;
		}
		if (unlink(dst) != 0) {
			LOGE("cannot remove %s: %s", dst, strerror(errno));
			continue;
		}
		LOGI("removed %s (no folder ships it any more)", dst);
		touched[x->part] = true;
		gone++;
	}
	/* Moves and removals on disk before the manifest says so. */
	for (int p = 0; p < P__N; p++)
		if (touched[p])
			fsync_dir(target_dir(c, (enum part)p));
	if (!state_file(c, CUSTOM_MANIFEST, path, sizeof(path)))
		return ERR_INVAL;
	e = set_write(path, s, false);
	if (e != ERR_OK)
		return e;
	if (!state_file(c, PENDING_FILE, path, sizeof(path)))
		return ERR_INVAL;
	if (unlink(path) != 0 && errno != ENOENT) {
		LOGE("cannot remove %s: %s", path, strerror(errno));
		return ERR_IO;
	}
	wipe_staging(c);
	if (moved)
		*moved = mv;
	if (failed)
		*failed = bad;
	if (dropped)
		*dropped = gone;
	return ERR_OK;
}

/* A journal an earlier install left (a crash, or its last steps failed):
 * carried out now, before anything new touches the staging directories.
 * ERR_OK when there is none (any more). abandon_unreadable (at start): a
 * journal that cannot be read is removed and what is in place stays;
 * otherwise it is an error. */
static err_t finish_journal(struct custom *c, bool abandon_unreadable)
{
	char path[STATE_PATH_MAX + 1], why[256] = "";
	struct manifest_set s;
	err_t e;

	if (!state_file(c, PENDING_FILE, path, sizeof(path)))
		return ERR_INVAL;
	if (access(path, F_OK) != 0)
		return ERR_OK;
	LOGI("finishing an earlier custom-files install");
	e = set_load(path, &s, why, sizeof(why));
	if (e != ERR_OK && abandon_unreadable) {
		/* state_write makes this impossible short of a damaged disk. */
		LOGE("%s; the custom-files install it records is abandoned",
		     why);
		(void)unlink(path);
		return ERR_OK;
	}
	if (e != ERR_OK) {
		LOGE("%s", why);
		return e;
	}
	e = apply_journal(c, &s, true, NULL, NULL, NULL);
	set_free(&s);
	return e;
}

/* Writes the journal, then carries it out. */
static err_t commit(struct custom *c, struct manifest_set *s, unsigned *moved,
		    unsigned *failed, unsigned *dropped)
{
	char path[STATE_PATH_MAX + 1], stage[STATE_PATH_MAX + 1];
	err_t e;

	/* The staged files' names are on disk before the journal that
	 * will move them (their data was synced as they were written). */
	for (int p = 0; p < P__N; p++)
		if (staging_dir(c, (enum part)p, stage, sizeof(stage)))
			fsync_dir(stage);
	if (!state_file(c, PENDING_FILE, path, sizeof(path)))
		return ERR_INVAL;
	e = set_write(path, s, true);
	if (e != ERR_OK)
		return e;
	crash_point("journaled");
	return apply_journal(c, s, false, moved, failed, dropped);
}

/* ---- persisted outcomes ----------------------------------------------- */

static void save_flag(struct custom *c)
{
	char path[STATE_PATH_MAX + 1], text[MSG_MAX + 32];
	int n = snprintf(text, sizeof(text), "%s\n%d\n%s\n", c->data_state,
			 c->first_refreshed, c->data_msg);

	/* Kept in memory either way, so not applied again while the agent
	 * runs; a restart would find it pending. */
	if (!state_file(c, FLAG_FILE, path, sizeof(path)) ||
	    state_write(path, text, (size_t)n) != ERR_OK)
		LOGE("the first connect's outcome (CustomData.xml %s) could not "
		     "be recorded: after a restart it would be fetched again",
		     c->data_state);
}

static void save_refresh(struct custom *c)
{
	char path[STATE_PATH_MAX + 1], text[MSG_MAX + 32];
	int n = snprintf(text, sizeof(text), "%s\n%s\n", c->refresh_state,
			 c->refresh_msg);

	if (state_file(c, REFRESH_FILE, path, sizeof(path)))
		(void)state_write(path, text, (size_t)n);
}

/* Line i (0-based) of text [p, end) into out; false if there is none. */
static bool nth_line(const char *p, const char *end, int i, char *out,
		     size_t cap)
{
	for (; i > 0 && p < end; i--) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl)
			return false;
		p = nl + 1;
	}
	if (p >= end)
		return false;
	{
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);

		if (n >= cap)
			n = cap - 1;
		memcpy(out, p, n);
		out[n] = '\0';
		for (size_t k = 0; k < n; k++)
			if ((unsigned char)out[k] < 0x20)
				out[k] = ' ';
	}
	return true;
}

static void load_states(struct custom *c)
{
	char path[STATE_PATH_MAX + 1], buf[MSG_MAX + 64], word[16];
	size_t len;

	snprintf(c->data_state, sizeof(c->data_state), "pending");
	snprintf(c->refresh_state, sizeof(c->refresh_state), "never");
	snprintf(c->vmpro, sizeof(c->vmpro), "none");
	if (state_file(c, FLAG_FILE, path, sizeof(path)) &&
	    state_read(path, buf, sizeof(buf), &len) == ERR_OK &&
	    nth_line(buf, buf + len, 0, word, sizeof(word)) &&
	    (!strcmp(word, "applied") || !strcmp(word, "none") ||
	     !strcmp(word, "rejected"))) {
		snprintf(c->data_state, sizeof(c->data_state), "%s", word);
		c->first_refreshed = nth_line(buf, buf + len, 1, word,
					      sizeof(word)) &&
				     !strcmp(word, "1");
		if (!nth_line(buf, buf + len, 2, c->data_msg,
			      sizeof(c->data_msg)))
			c->data_msg[0] = '\0';
	}
	if (state_file(c, REFRESH_FILE, path, sizeof(path)) &&
	    state_read(path, buf, sizeof(buf), &len) == ERR_OK &&
	    nth_line(buf, buf + len, 0, word, sizeof(word)) &&
	    (!strcmp(word, "succeeded") || !strcmp(word, "failed"))) {
		snprintf(c->refresh_state, sizeof(c->refresh_state), "%s",
			 word);
		if (!nth_line(buf, buf + len, 1, c->refresh_msg,
			      sizeof(c->refresh_msg)))
			c->refresh_msg[0] = '\0';
	}
	if (state_file(c, VMPRO_FILE, path, sizeof(path)) &&
	    state_read(path, buf, sizeof(buf), &len) == ERR_OK &&
	    nth_line(buf, buf + len, 0, word, sizeof(word)) &&
	    (!strcmp(word, "config") || !strcmp(word, "full")))
		snprintf(c->vmpro, sizeof(c->vmpro), "%s", word);
}

static void changed(struct custom *c)
{
	if (c->cbs.changed)
		c->cbs.changed(c->arg);
}

/* ---- custom.list ------------------------------------------------------ */

static void list_answer(struct custom *c, const struct listing *ls,
			const char *fail);
static void list_timeout(lws_sorted_usec_list_t *sul);

static void list_send(struct custom *c)
{
	char *buf;
	size_t len;
	int64_t id;

	if (!c->link || c->list_id || (!c->list_first && !c->list_refresh))
		return;
	id = link_next_id(c->link);
	proto_w_begin(c->w, "custom.list", id);
	if (proto_w_finish(c->w, &buf, &len) != ERR_OK ||
	    link_send(c->link, buf, len) != ERR_OK) {
		LOGE("cannot send custom.list; trying again on the next link");
		return;
	}
	c->list_id = id;
	lws_sul_schedule(c->ctx, 0, &c->sul_list, list_timeout, LIST_WAIT_US);
}

static void list_timeout(lws_sorted_usec_list_t *sul)
{
	struct custom *c = lws_container_of(sul, struct custom, sul_list);

	LOGE("COM did not answer custom.list within %d s",
	     (int)(LIST_WAIT_US / LWS_USEC_PER_SEC));
	list_answer(c, NULL, "COM did not answer the custom-files list "
		    "request within 60 s");
}

static void list_want(struct custom *c, bool first)
{
	if (first)
		c->list_first = true;
	else
		c->list_refresh = true;
	list_send(c);
}

/* A level's file from custom.files; false (why set) if malformed. */
static bool read_ref(const struct proto_msg *m, const char *at,
		     struct fileref *f, char *why, size_t cap)
{
	char kp[64], kh[64];
	int64_t size;
	const char *sha;
	bool has_size, has_sha;

	snprintf(kp, sizeof(kp), "%s.size", at);
	snprintf(kh, sizeof(kh), "%s.sha256", at);
	has_size = proto_int(m, kp, &size);
	sha = proto_str(m, kh);
	has_sha = sha != NULL;
	f->present = false;
	if (!has_size && !has_sha)
		return true;
	if (!has_size || size < 0 || size > (int64_t)1 << 40 ||
	    !sha || !digest_hex_valid(sha)) {
		snprintf(why, cap, "COM's custom.files: %s needs a size and "
			 "a lower-case hex sha256", at);
		return false;
	}
	f->present = true;
	f->size = (uint64_t)size;
	memcpy(f->sha, sha, sizeof(f->sha));
	return true;
}

bool custom_on_message(struct custom *c, const struct proto_msg *m)
{
	const char *type = proto_type(m);
	struct listing ls;
	char why[160] = "";
	bool ok = true;

	if (!c->list_id || proto_re(m) != c->list_id)
		return false;
	if (strcmp(type, "custom.files")) {
		const char *msg = proto_str(m, "message");

		snprintf(why, sizeof(why), "COM could not list the custom "
			 "files: %s", msg ? msg : type);
		list_answer(c, NULL, why);
		return true;
	}
	memset(&ls, 0, sizeof(ls));
	ls.cd_level = -1;
	for (int l = 0; l < L__N && ok; l++)
		for (int p = 0; p < P__N && ok; p++) {
			char at[32];

			snprintf(at, sizeof(at), "%s.%s", level_name[l],
				 part_key[p]);
			ok = read_ref(m, at, &ls.tar[l][p], why, sizeof(why));
		}
	if (ok)
		ok = read_ref(m, "customdata", &ls.cd, why, sizeof(why));
	if (ok && ls.cd.present) {
		const char *lv = proto_str(m, "customdata.level");

		ls.cd_level = lv ? lookup(level_name, L__N, lv, strlen(lv))
				 : -1;
		if (ls.cd_level < 0) {
			snprintf(why, sizeof(why), "COM's custom.files: "
				 "customdata.level must be provider, reseller "
				 "or system");
			ok = false;
		}
	}
	if (!ok)
		LOGE("%s", why);
	list_answer(c, ok ? &ls : NULL, ok ? NULL : why);
	return true;
}

/* ---- the first connect: CustomData.xml -------------------------------- */

static void data_settled(struct custom *c, const char *state,
			 const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void data_settled(struct custom *c, const char *state,
			 const char *fmt, ...)
{
	va_list ap;

	c->first_busy = false;
	snprintf(c->data_state, sizeof(c->data_state), "%s", state);
	va_start(ap, fmt);
	vsnprintf(c->data_msg, sizeof(c->data_msg), fmt, ap);
	va_end(ap);
	if (!strcmp(state, "rejected"))
		LOGE("CustomData.xml rejected, nothing of it applied: %s",
		     c->data_msg);
	else
		LOGI("CustomData.xml %s%s%s", state, c->data_msg[0] ? ": " : "",
		     c->data_msg);
	if (strcmp(state, "pending"))
		save_flag(c);
	changed(c);
	if (strcmp(state, "pending") && !c->first_refreshed &&
	    c->cbs.first_refresh)
		c->cbs.first_refresh(c->arg);
}

static void apply_customdata(struct custom *c)
{
	char *xml = malloc(CUSTOMDATA_MAX_BYTES + 1);
	struct customdata cd;
	char why[256], path[STATE_PATH_MAX + 1];
	const char *vm;
	size_t len = 0;
	unsigned n = 0;
	err_t e;

	if (!xml) {
		data_settled(c, "pending", "out of memory");
		return;
	}
	e = state_read_why(c->cd_path, xml, CUSTOMDATA_MAX_BYTES + 1, &len,
			   why, sizeof(why));
	(void)unlink(c->cd_path);
	if (e != ERR_OK) {
		free(xml);
		data_settled(c, "pending", "%s", why);
		return;
	}
	e = customdata_parse(xml, len, &cd, why, sizeof(why));
	free(xml);
	if (e != ERR_OK) {
		data_settled(c, "rejected", "CustomData.xml (%s folder): %s",
			     c->cd_level, why);
		return;
	}
	if (settings_apply(c->settings, cd.present, cd.value) != ERR_OK) {
		data_settled(c, "pending", "the settings could not be written "
			     "(see the agent's log)");
		return;
	}
	vm = customdata_vmpro(&cd);
	if (vm && state_file(c, VMPRO_FILE, path, sizeof(path)) &&
	    state_write(path, vm, strlen(vm)) == ERR_OK)
		snprintf(c->vmpro, sizeof(c->vmpro), "%s", vm);
	for (int k = 0; k < SET__COUNT; k++)
		n += cd.present[k];
	data_settled(c, "applied", "from the %s folder: %u setting%s%s%s",
		     c->cd_level, n, n == 1 ? "" : "s",
		     vm ? ", voicemail backup " : "", vm ? vm : "");
}

static void cd_done(void *arg, const char *reason, const char *why)
{
	struct custom *c = arg;

	xfer_free(c->cd_xfer);
	c->cd_xfer = NULL;
	if (reason && !strcmp(reason, "corrupt")) {
		/* COM's bytes are not what its list said, twice: the file's
		 * fault, so final like any other bad file. */
		data_settled(c, "rejected", "CustomData.xml (%s folder): %s",
			     c->cd_level, why);
		return;
	}
	if (reason) {
		/* Not the file's fault (or not known to be): next link. */
		data_settled(c, "pending", "fetching CustomData.xml failed "
			     "(%s): %s; trying again on the next link", reason,
			     why);
		return;
	}
	apply_customdata(c);
}

static void first_listed(struct custom *c, const struct listing *ls,
			 const char *fail)
{
	struct xfer_cbs cbs = { .done = cd_done };
	char work[STATE_PATH_MAX + 1];

	if (!ls) {
		data_settled(c, "pending", "%s; trying again on the next link",
			     fail);
		return;
	}
	if (!ls->cd.present) {
		data_settled(c, "none", "%s", "");
		return;
	}
	snprintf(c->cd_level, sizeof(c->cd_level), "%s",
		 level_name[ls->cd_level]);
	if (ls->cd.size > CUSTOMDATA_MAX_BYTES) {
		data_settled(c, "rejected", "CustomData.xml (%s folder): "
			     "%llu bytes, more than %d", c->cd_level,
			     (unsigned long long)ls->cd.size,
			     CUSTOMDATA_MAX_BYTES);
		return;
	}
	snprintf(work, sizeof(work), "%s",
		 conf_str(c->conf, CONF_JOBS_WORK_DIR));
	if (state_mkdirs(work, 0700) != ERR_OK ||
	    !path_in(work, CUSTOMDATA_FILE, c->cd_path, sizeof(c->cd_path)) ||
	    xfer_download(c->xfers, "", "custom", c->cd_level, CUSTOMDATA_FILE,
			  c->cd_path, ls->cd.size, ls->cd.sha, &cbs, c,
			  &c->cd_xfer) != ERR_OK) {
		data_settled(c, "pending", "cannot start fetching "
			     "CustomData.xml into %s", work);
		return;
	}
	LOGI("first connect: fetching CustomData.xml from the %s folder",
	     c->cd_level);
}

/* ---- refresh ---------------------------------------------------------- */

static bool tar_path(const struct refresh *r, int l, int p, char *out,
		     size_t cap);

static void refresh_free(struct refresh *r)
{
	lws_sul_cancel(&r->sul_end);
	xfer_free(r->xfer);
	free(r->ent);
	free(r);
}

static void refresh_end_cb(lws_sorted_usec_list_t *sul)
{
	struct refresh *r = lws_container_of(sul, struct refresh, sul_end);
	struct custom *c = r->c;
	struct custom_refresh_cbs cbs = r->cbs;
	void *arg = r->arg;
	const char *reason = r->reason;
	char text[MSG_MAX];

	snprintf(text, sizeof(text), "%s", r->text);
	snprintf(c->refresh_state, sizeof(c->refresh_state), "%s",
		 reason ? "failed" : "succeeded");
	snprintf(c->refresh_msg, sizeof(c->refresh_msg), "%s", text);
	save_refresh(c);
	c->r = NULL;
	refresh_free(r);
	changed(c);
	if (cbs.done)
		cbs.done(arg, reason, text);
}

/* The refresh ends (reason NULL: succeeded); the caller hears of it from
 * the loop, so never inside one of its own calls. */
static void refresh_end(struct refresh *r, const char *reason,
			const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refresh_end(struct refresh *r, const char *reason,
			const char *fmt, ...)
{
	va_list ap;

	r->reason = reason;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
	if (reason)
		LOGE("custom-files refresh failed (%s): %s", reason, r->text);
	else
		LOGI("custom-files refresh: %s", r->text);
	/* Downloaded tars are not needed again; partial ones stay (xfer). */
	for (int l = 0; l < L__N; l++)
		for (int p = 0; p < P__N; p++) {
			char path[STATE_PATH_MAX + 1];

			if (tar_path(r, l, p, path, sizeof(path)))
				(void)unlink(path);
		}
	lws_sul_schedule(r->c->ctx, 0, &r->sul_end, refresh_end_cb, 1);
}

static void progress(struct refresh *r, const char *phase, int pct,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void progress(struct refresh *r, const char *phase, int pct,
		     const char *fmt, ...)
{
	char text[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (r->cbs.progress)
		r->cbs.progress(r->arg, phase, pct, text);
}

/* A step worth a line of its own (a file, a level): kept for the CLI,
 * logged, and reported as progress. */
static void step(struct refresh *r, const char *phase, int pct,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void step(struct refresh *r, const char *phase, int pct,
		 const char *fmt, ...)
{
	struct custom *c = r->c;
	char *slot = c->steps[c->nsteps % STEPS_KEPT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(slot, STEP_MAX, fmt, ap);
	va_end(ap);
	c->nsteps++;
	LOGI("custom-files refresh: %s", slot);
	if (r->cbs.progress)
		r->cbs.progress(r->arg, phase, pct, slot);
}

size_t custom_steps(const struct custom *c, unsigned from, char *buf,
		    size_t cap)
{
	size_t len = 0;
	unsigned first = c->nsteps > STEPS_KEPT ? c->nsteps - STEPS_KEPT : 0;

	int w;

	if (cap == 0)
		return 0;
	buf[0] = '\0';
	/* A first line even when there is nothing new: an empty answer would
	 * look like a failure to the client. */
	w = snprintf(buf, cap, "steps %u\n", c->nsteps);
	if (w < 0 || (size_t)w >= cap) {
		buf[0] = '\0';
		return 0;
	}
	len = (size_t)w;
	/* Steps are numbered from 1; from is the last one the caller saw. */
	for (unsigned i = from > first ? from : first; i < c->nsteps; i++) {
		w = snprintf(buf + len, cap - len, "%u\t%s\n", i + 1,
			     c->steps[i % STEPS_KEPT]);

		if (w < 0 || (size_t)w >= cap - len) {
			buf[len] = '\0';
			break;
		}
		len += (size_t)w;
	}
	return len;
}

static bool tar_path(const struct refresh *r, int l, int p, char *out,
		     size_t cap)
{
	char name[64];

	snprintf(name, sizeof(name), "custom-%s-%s", level_name[l],
		 part_file[p]);
	return path_in(conf_str(r->c->conf, CONF_JOBS_WORK_DIR), name, out,
		       cap);
}

static void on_file(void *arg, const char *name, uint64_t size,
		    const char *sha256)
{
	struct refresh *r = arg;
	struct entry *x = NULL;

	for (size_t i = 0; i < r->nent && !x; i++)
		if (r->ent[i].part == r->cur_part &&
		    !strcmp(r->ent[i].name, name))
			x = &r->ent[i];	/* a later level replaces it */
	if (!x) {
		if (r->nent >= CUSTOM_FILES_MAX) {
			r->overflow = true;
			return;
		}
		x = &r->ent[r->nent++];
		snprintf(x->name, sizeof(x->name), "%s", name);
		x->part = (unsigned char)r->cur_part;
	}
	x->level = (unsigned char)r->cur_level;
	x->size = size;
	x->st = E_SHIP;
	snprintf(x->sha, sizeof(x->sha), "%s", sha256);
}

/* Drops part p's new entries (it was refused). */
static void forget_part(struct refresh *r, enum part p)
{
	size_t k = 0;

	for (size_t i = 0; i < r->nent; i++)
		if (r->ent[i].part != p)
			r->ent[k++] = r->ent[i];
	r->nent = k;
}

static void refuse_part(struct refresh *r, enum part p, const char *stage,
			const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void refuse_part(struct refresh *r, enum part p, const char *stage,
			const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->refused[p], sizeof(r->refused[p]), fmt, ap);
	va_end(ap);
	LOGE("%s refused, the installed ones stay: %s", part_label[p],
	     r->refused[p]);
	snprintf(r->c->steps[r->c->nsteps++ % STEPS_KEPT], STEP_MAX,
		 "%s refused: %s", part_label[p], r->refused[p]);
	forget_part(r, p);
	r->overflow = false;
	if (stage)
		wipe_dir(stage);
}

/* Extracts part p's levels into its staging directory. */
static void extract_part(struct refresh *r, enum part p,
			 const struct manifest_set *old)
{
	struct custom *c = r->c;
	char stage[STATE_PATH_MAX + 1], tar[STATE_PATH_MAX + 1], why[256];
	struct customtar_limits lim = {
		.max_members = CUSTOM_MEMBERS_MAX, .max_total = CUSTOM_TAR_MAX,
		.max_file = CUSTOM_TAR_MAX, .max_tar = CUSTOM_TAR_MAX,
		.on_file = on_file, .arg = r,
	};
	unsigned templates = 0;

	if (!staging_dir(c, p, stage, sizeof(stage))) {
		refuse_part(r, p, NULL, "staging path too long");
		return;
	}
	wipe_dir(stage);
	if (r->refused[p][0])
		return;
	if (state_mkdirs(stage, 0700) != ERR_OK) {
		refuse_part(r, p, stage, "cannot create %s (see the agent's "
			    "log)", stage);
		return;
	}
	r->cur_part = p;
	for (int l = 0; l < L__N; l++) {
		struct customtar_result res;
		err_t e;

		if (!r->ls.tar[l][p].present)
			continue;
		r->cur_level = (enum level)l;
		progress(r, "check", 70 + 10 * (p * L__N + l) / (P__N * L__N),
			 "extracting %s (%s)", part_file[p], level_name[l]);
		if (!tar_path(r, l, p, tar, sizeof(tar))) {
			refuse_part(r, p, stage, "work path too long");
			return;
		}
		e = customtar_extract(tar, stage, &lim, &res, why, sizeof(why));
		if (e != ERR_OK) {
			refuse_part(r, p, stage, "%s (%s): %s", part_file[p],
				    level_name[l], why);
			return;
		}
		if (r->overflow) {
			refuse_part(r, p, stage, "more than %d custom files in "
				    "all", CUSTOM_FILES_MAX);
			return;
		}
		if (res.warnings && !r->warnings)
			snprintf(r->warning, sizeof(r->warning), "%s (%s): %s",
				 part_file[p], level_name[l], res.warning[0]);
		r->warnings += res.warnings;
		for (unsigned i = 0; i < res.warnings &&
		     i < CUSTOMTAR_WARN_KEEP; i++)
			LOGI("%s (%s): %s", part_file[p], level_name[l],
			     res.warning[i]);
		step(r, "check", 70 + 10 * (p * L__N + l + 1) / (P__N * L__N),
		     "extracted %s (%s): %u files, %llu bytes", part_file[p],
		     level_name[l], res.files, (unsigned long long)res.bytes);
	}
	/* A name the target directory holds as something a rename cannot
	 * replace (a directory: the templates folder inside the phone-file
	 * one, say) would fail half-way through the install: refused now. */
	for (size_t i = 0; i < r->nent; i++) {
		char dst[STATE_PATH_MAX + 1];
		struct stat st;

		if (r->ent[i].part != p ||
		    !path_in(target_dir(c, p), r->ent[i].name, dst,
			     sizeof(dst)) ||
		    lstat(dst, &st) != 0 || S_ISREG(st.st_mode) ||
		    S_ISLNK(st.st_mode))
			continue;
		refuse_part(r, p, stage, "member '%s': %s holds something "
			    "other than a file of that name", r->ent[i].name,
			    target_dir(c, p));
		return;
	}
	if (p != P_TEMPLATES)
		return;
	/* Templates installed afterwards: the new ones and, without a
	 * prune, the stale ones no level replaces. */
	for (size_t i = 0; i < r->nent; i++)
		templates += r->ent[i].part == P_TEMPLATES &&
			     is_template(r->ent[i].name);
	for (size_t i = 0; !r->prune && i < old->n; i++) {
		const struct entry *x = &old->e[i];
		bool shipped = false;

		if (x->part != P_TEMPLATES || !is_template(x->name))
			continue;
		for (size_t k = 0; k < r->nent && !shipped; k++)
			shipped = r->ent[k].part == P_TEMPLATES &&
				  !strcmp(r->ent[k].name, x->name);
		templates += !shipped;
	}
	if (templates > CUSTOM_TEMPLATES_MAX)
		refuse_part(r, p, stage, "%u SIP templates would be installed, "
			    "at most %d per system", templates,
			    CUSTOM_TEMPLATES_MAX);
}

static void install(struct refresh *r)
{
	struct custom *c = r->c;
	char path[STATE_PATH_MAX + 1], why[256] = "", parts[2][96];
	struct manifest_set old, next = { NULL, 0 };
	unsigned moved = 0, failed = 0, dropped = 0, stale = 0;
	unsigned count[P__N] = { 0, 0 };
	err_t e;

	if (!state_file(c, CUSTOM_MANIFEST, path, sizeof(path)) ||
	    set_load(path, &old, why, sizeof(why)) != ERR_OK) {
		LOGE("%s", why);
		refresh_end(r, "space", "the manifest of installed custom "
			    "files cannot be read: %s", why);
		return;
	}
	/* Both targets first: one may live inside the other (templates in
	 * the phone-file folder), and the name checks must see it. */
	for (int p = 0; p < P__N; p++)
		if (state_mkdirs(target_dir(c, (enum part)p), 0755) != ERR_OK)
			refuse_part(r, (enum part)p, NULL, "cannot create %s "
				    "(see the agent's log)",
				    target_dir(c, (enum part)p));
	for (int p = 0; p < P__N; p++)
		extract_part(r, (enum part)p, &old);
	next.e = calloc(CUSTOM_FILES_MAX, sizeof(*next.e));
	if (!next.e) {
		set_free(&old);
		refresh_end(r, "space", "out of memory");
		return;
	}
	/* Earlier files: kept as they were for a refused part; for an
	 * accepted one, replaced if shipped again, else stale (or dropped
	 * with prune). */
	for (size_t i = 0; i < old.n; i++) {
		struct entry x = old.e[i];
		bool shipped = false;

		for (size_t k = 0; k < r->nent && !shipped; k++)
			shipped = r->ent[k].part == x.part &&
				  !strcmp(r->ent[k].name, x.name);
		if (shipped)
			continue;
		if (!r->refused[x.part][0] && x.st == E_SHIP)
			x.st = E_STALE;
		if (r->prune && x.st == E_STALE && !r->refused[x.part][0])
			x.st = E_DROP;
		if (next.n + r->nent >= CUSTOM_FILES_MAX) {
			/* Nothing is cut off silently: no install at all. */
			wipe_staging(c);
			set_free(&old);
			set_free(&next);
			refresh_end(r, "refused", "more than %d custom files "
				    "would be installed; prune the ones no "
				    "folder ships any more", CUSTOM_FILES_MAX);
			return;
		}
		next.e[next.n++] = x;
	}
	for (size_t k = 0; k < r->nent; k++) {
		next.e[next.n++] = r->ent[k];
		count[r->ent[k].part]++;
	}
	step(r, "apply", 90, "installing %u phone files and %u templates",
	     count[P_PHONES], count[P_TEMPLATES]);
	crash_point("staged");
	e = commit(c, &next, &moved, &failed, &dropped);
	for (size_t i = 0; i < next.n; i++)
		stale += next.e[i].st == E_STALE;
	set_free(&old);
	set_free(&next);
	if (e != ERR_OK) {
		refresh_end(r, "space", "the install could not be recorded "
			    "(see the agent's log); the next start finishes "
			    "it");
		return;
	}
	for (int p = 0; p < P__N; p++)
		if (r->refused[p][0])
			snprintf(parts[p], sizeof(parts[p]), "%s refused",
				 part_label[p]);
		else
			snprintf(parts[p], sizeof(parts[p]), "%u %.*s", count[p],
				 (int)strlen(part_label[p]) - (count[p] == 1),
				 part_label[p]);	/* "1 template" */
	if (r->refused[P_PHONES][0] || r->refused[P_TEMPLATES][0]) {
		refresh_end(r, "refused", "%s; %s, %s", r->refused[P_PHONES][0]
			    ? r->refused[P_PHONES] : r->refused[P_TEMPLATES],
			    parts[P_PHONES], parts[P_TEMPLATES]);
		return;
	}
	if (failed) {
		refresh_end(r, "space", "%u files could not be moved into "
			    "place (see the agent's log); %s, %s", failed,
			    parts[P_PHONES], parts[P_TEMPLATES]);
		return;
	}
	{
		char extra[400] = "";
		size_t n = 0;

		if (dropped)
			n += (size_t)snprintf(extra + n, sizeof(extra) - n,
					      "; %u removed", dropped);
		if (stale && n < sizeof(extra))
			n += (size_t)snprintf(extra + n, sizeof(extra) - n,
					      "; %u no longer shipped, kept",
					      stale);
		if (r->warnings && n < sizeof(extra))
			snprintf(extra + n, sizeof(extra) - n,
				 "; %u warning%s: %s", r->warnings,
				 r->warnings == 1 ? "" : "s", r->warning);
		refresh_end(r, NULL, "installed %s and %s%s", parts[P_PHONES],
			    parts[P_TEMPLATES], extra);
	}
}

static void next_download(struct refresh *r);

static void dl_progress(void *arg, uint64_t done, uint64_t total)
{
	struct refresh *r = arg;
	int l = r->next / P__N, p = r->next % P__N;

	progress(r, "download", 5 + (int)(r->total ? (r->got + done) * 60 /
					  r->total : 60),
		 "downloading %s (%s): %llu of %llu bytes", part_file[p],
		 level_name[l], (unsigned long long)done,
		 (unsigned long long)total);
}

static void dl_done(void *arg, const char *reason, const char *why)
{
	struct refresh *r = arg;
	int l = r->next / P__N, p = r->next % P__N;

	xfer_free(r->xfer);
	r->xfer = NULL;
	if (reason) {
		refresh_end(r, reason, "%s (%s): %s", part_file[p],
			    level_name[l], why);
		return;
	}
	r->got += r->ls.tar[l][p].size;
	r->next++;
	next_download(r);
}

static void next_download(struct refresh *r)
{
	struct custom *c = r->c;
	struct xfer_cbs cbs = { .progress = dl_progress, .done = dl_done };
	char path[STATE_PATH_MAX + 1];

	for (; r->next < L__N * P__N; r->next++) {
		int l = r->next / P__N, p = r->next % P__N;
		const struct fileref *f = &r->ls.tar[l][p];

		if (!f->present || r->refused[p][0])
			continue;
		step(r, "download", 5 + (int)(r->total ? r->got * 60 /
					      r->total : 0),
		     "downloading %s (%s): %llu bytes", part_file[p],
		     level_name[l], (unsigned long long)f->size);
		if (state_mkdirs(conf_str(c->conf, CONF_JOBS_WORK_DIR), 0700) !=
		    ERR_OK || !tar_path(r, l, p, path, sizeof(path)) ||
		    xfer_download(c->xfers, r->job, "custom", level_name[l],
				  part_file[p], path, f->size, f->sha, &cbs, r,
				  &r->xfer) != ERR_OK) {
			refresh_end(r, "space", "cannot start the download of "
				    "%s (%s) into %s", part_file[p],
				    level_name[l],
				    conf_str(c->conf, CONF_JOBS_WORK_DIR));
			return;
		}
		return;
	}
	install(r);
}

static void refresh_listed(struct refresh *r, const struct listing *ls,
			   const char *fail)
{
	unsigned n = 0;

	if (!ls) {
		refresh_end(r, "transfer", "%s", fail);
		return;
	}
	r->listed = true;
	r->ls = *ls;
	for (int l = 0; l < L__N; l++)
		for (int p = 0; p < P__N; p++) {
			const struct fileref *f = &ls->tar[l][p];

			if (!f->present)
				continue;
			n++;
			if (f->size > CUSTOM_TAR_MAX && !r->refused[p][0])
				snprintf(r->refused[p], sizeof(r->refused[p]),
					 "%s (%s): %llu bytes, more than %u",
					 part_file[p], level_name[l],
					 (unsigned long long)f->size,
					 CUSTOM_TAR_MAX);
			else
				r->total += f->size;
		}
	step(r, "download", 5, "COM has %u custom tar%s for this system", n,
	     n == 1 ? "" : "s");
	next_download(r);
}

/* ---- the list's answer, for whoever asked ----------------------------- */

static void list_answer(struct custom *c, const struct listing *ls,
			const char *fail)
{
	bool first = c->list_first, refresh = c->list_refresh;

	lws_sul_cancel(&c->sul_list);
	c->list_id = 0;
	c->list_first = c->list_refresh = false;
	if (first)
		first_listed(c, ls, fail);
	if (refresh && c->r && !c->r->listed)
		refresh_listed(c->r, ls, fail);
}

/* ---- public ----------------------------------------------------------- */

err_t custom_refresh(struct custom *c, const char *job, bool prune,
		     const struct custom_refresh_cbs *cbs, void *arg)
{
	struct refresh *r;

	if (c->r)
		return ERR_STATE;
	if (finish_journal(c, false) != ERR_OK) {
		LOGE("an earlier custom-files install cannot be finished (see "
		     "above); no refresh until it can");
		return ERR_STATE;
	}
	r = calloc(1, sizeof(*r));
	if (r)
		r->ent = calloc(CUSTOM_FILES_MAX, sizeof(*r->ent));
	if (!r || !r->ent) {
		free(r);
		LOGE("out of memory for a custom-files refresh");
		return ERR_NOMEM;
	}
	r->c = c;
	snprintf(r->job, sizeof(r->job), "%s", job);
	r->prune = prune;
	r->cbs = *cbs;
	r->arg = arg;
	c->r = r;
	snprintf(c->refresh_state, sizeof(c->refresh_state), "running");
	c->refresh_msg[0] = '\0';
	changed(c);
	LOGI("custom-files refresh%s%s%s", job[0] ? " for job " : "", job,
	     prune ? " (with prune)" : "");
	if (!c->link) {
		refresh_end(r, "transfer", "not connected to COM");
		return ERR_OK;
	}
	progress(r, "list", 0, "asking COM which custom files there are");
	list_want(c, false);
	return ERR_OK;
}

void custom_first_refreshed(struct custom *c)
{
	if (c->first_refreshed)
		return;
	c->first_refreshed = true;
	save_flag(c);
}

err_t custom_prune(struct custom *c, char *msg, size_t cap)
{
	char path[STATE_PATH_MAX + 1], why[256] = "";
	struct manifest_set s;
	unsigned stale = 0, dropped = 0;
	err_t e;

	if (c->r) {
		snprintf(msg, cap, "a custom-files refresh runs");
		return ERR_STATE;
	}
	if (finish_journal(c, false) != ERR_OK) {
		snprintf(msg, cap, "an earlier install cannot be finished (see "
			 "the agent's log)");
		return ERR_STATE;
	}
	if (!state_file(c, CUSTOM_MANIFEST, path, sizeof(path)))
		return ERR_INVAL;
	e = set_load(path, &s, why, sizeof(why));
	if (e != ERR_OK) {
		LOGE("%s", why);
		snprintf(msg, cap, "%s", why);
		return e;
	}
	for (size_t i = 0; i < s.n; i++)
		if (s.e[i].st == E_STALE) {
			s.e[i].st = E_DROP;
			stale++;
		}
	e = stale ? commit(c, &s, NULL, NULL, &dropped) : ERR_OK;
	set_free(&s);
	if (e != ERR_OK)
		snprintf(msg, cap, "the prune could not be recorded (see the "
			 "agent's log)");
	else
		snprintf(msg, cap, "%u stale file%s: %u removed, %u kept (changed "
			 "since the agent installed them)", stale,
			 stale == 1 ? "" : "s", dropped, stale - dropped);
	return e;
}

void custom_link_up(struct custom *c, struct link *l)
{
	c->link = l;
	if (!strcmp(c->data_state, "pending") && !c->first_busy) {
		c->first_busy = true;
		LOGI("first connect: asking COM for CustomData.xml");
		list_want(c, true);
	} else if (strcmp(c->data_state, "pending") && !c->first_refreshed &&
		   !c->r && c->cbs.first_refresh) {
		c->cbs.first_refresh(c->arg);
	}
	list_send(c);
}

void custom_link_down(struct custom *c)
{
	c->link = NULL;
	/* An unanswered list goes again on the next link. */
	c->list_id = 0;
	lws_sul_cancel(&c->sul_list);
}

const char *custom_data_state(const struct custom *c)
{
	return c->data_state;
}

const char *custom_data_message(const struct custom *c)
{
	return c->data_msg;
}

const char *custom_refresh_state(const struct custom *c)
{
	return c->refresh_state;
}

const char *custom_refresh_message(const struct custom *c)
{
	return c->refresh_msg;
}

const char *custom_vmpro(const struct custom *c)
{
	return c->vmpro;
}

void custom_start(struct custom *c)
{
	/* Then what an extraction left without reaching a journal: the old
	 * set stays. A journal that could not be finished keeps its staged
	 * files for the next try. */
	if (finish_journal(c, true) == ERR_OK)
		wipe_staging(c);
}

struct custom *custom_new(struct lws_context *ctx, const struct conf *conf,
			  struct settings *s, struct xfers *x,
			  const struct custom_cbs *cbs, void *arg)
{
	struct custom *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ctx = ctx;
	c->conf = conf;
	c->settings = s;
	c->xfers = x;
	c->cbs = *cbs;
	c->arg = arg;
	snprintf(c->state_dir, sizeof(c->state_dir), "%s",
		 conf_str(conf, CONF_SYSTEM_STATE_DIR));
	c->w = proto_w_new(256, 0);
	if (!c->w) {
		free(c);
		return NULL;
	}
	load_states(c);
	return c;
}

void custom_shutdown(struct custom *c)
{
	if (!c)
		return;
	lws_sul_cancel(&c->sul_list);
	xfer_free(c->cd_xfer);
	c->cd_xfer = NULL;
	if (c->r) {
		/* The journal, if any, is finished at the next start. */
		refresh_free(c->r);
		c->r = NULL;
	}
}

void custom_free(struct custom *c)
{
	if (!c)
		return;
	proto_w_free(c->w);
	free(c);
}

/* ---- the CLI's listing ------------------------------------------------ */

size_t custom_render_manifest(const char *state_dir, bool json, char *buf,
			      size_t cap, err_t *err)
{
	char path[STATE_PATH_MAX + 1], why[256] = "";
	struct manifest_set s;
	size_t len = 0;
	err_t e;
	int w;

	*err = ERR_OK;
	if (cap == 0)
		return 0;
	buf[0] = '\0';
	if (!path_in(state_dir, CUSTOM_MANIFEST, path, sizeof(path))) {
		*err = ERR_INVAL;
		return 0;
	}
	e = set_load(path, &s, why, sizeof(why));
	if (e != ERR_OK) {
		*err = e;
		return (size_t)snprintf(buf, cap, "%s\n", why);
	}
	if (json) {
		struct proto_w *pw = proto_w_new(cap - 1, 0);
		char *out;
		size_t n = 0;

		if (!pw) {
			set_free(&s);
			*err = ERR_NOMEM;
			return 0;
		}
		proto_w_begin(pw, "custom-files", 1);
		proto_w_arr(pw, "files");
		for (size_t i = 0; i < s.n; i++) {
			proto_w_obj(pw, NULL);
			proto_w_str(pw, "name", s.e[i].name);
			proto_w_str(pw, "part", part_key[s.e[i].part]);
			proto_w_str(pw, "level", level_name[s.e[i].level]);
			proto_w_int(pw, "size", (int64_t)s.e[i].size);
			proto_w_str(pw, "sha256", s.e[i].sha);
			proto_w_bool(pw, "shipped", s.e[i].st == E_SHIP);
			proto_w_end(pw);
		}
		proto_w_end(pw);
		if (proto_w_finish(pw, &out, &n) == ERR_OK && n + 1 < cap) {
			memcpy(buf, out, n);
			buf[n++] = '\n';
			buf[n] = '\0';
		} else {
			*err = ERR_LIMIT;
			n = 0;
		}
		proto_w_free(pw);
		set_free(&s);
		return n;
	}
	if (!s.n) {
		set_free(&s);
		return (size_t)snprintf(buf, cap, "No custom files installed "
					"by the agent\n");
	}
	w = snprintf(buf, cap, "%-10s %-9s %9s  %-12s  %s\n", "PART", "LEVEL",
		     "SIZE", "SHA256", "NAME");
	len = w > 0 ? (size_t)w : 0;
	for (size_t i = 0; i < s.n && len < cap; i++) {
		const struct entry *x = &s.e[i];

		w = snprintf(buf + len, cap - len, "%-10s %-9s %9llu  %.12s  "
			     "%s%s\n", part_key[x->part], level_name[x->level],
			     (unsigned long long)x->size, x->sha, x->name,
			     x->st == E_STALE ? "  (no longer shipped; "
			     "--prune removes it)" : "");
		if (w < 0)
			break;
		len += (size_t)w;
	}
	set_free(&s);
	if (len >= cap) {
		*err = ERR_LIMIT;
		len = cap - 1;
	}
	return len;
}
