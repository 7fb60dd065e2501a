/*
 * customtar — safe extraction of one custom-files tar from COM; see
 * customtar.h for the rules. Everything is checked before a byte of a
 * member is written, and everything this call created is removed again on
 * any refusal, so a bad tar leaves dest_dir as it was.
 */
#include "customtar.h"
#include "digest.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_BUF	65536

/* One extraction's state: what was created, for the undo. */
struct ctx {
	int dirfd;
	char (*names)[CUSTOMTAR_NAME_MAX + 1];	/* members seen (duplicates) */
	unsigned nnames;
	bool *created;				/* names[i] created by us */
};

static bool utf8_ok(const unsigned char *s, size_t n);

/* A member name safe to quote in why: control characters (and, in a name
 * that is not UTF-8, every non-ASCII byte) become '?', so a hostile name
 * can neither forge log lines nor put invalid UTF-8 into a log or JSON. */
static void quote_name(const char *in, char *out, size_t cap)
{
	bool utf8 = utf8_ok((const unsigned char *)in, strlen(in));
	size_t k = 0;

	for (; *in && k + 1 < cap; in++) {
		unsigned char c = (unsigned char)*in;

		out[k++] = (c < 0x20 || c == 0x7f || (!utf8 && c >= 0x80)) ?
			'?' : (char)c;
	}
	out[k] = '\0';
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t j = 1; j < len; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* Flat phone files and templates: one path component, nothing a shell,
 * a web server or a phone could misread, not hidden. */
static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n < 1 || n > CUSTOMTAR_NAME_MAX)
		return false;
	/* No hidden names either (".", ".." included): phones never ask
	 * for one, and the agent's staging directories are hidden. */
	if (name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '/' || c < 0x20 || c == 0x7f)
			return false;
	}
	return utf8_ok((const unsigned char *)name, n);
}

/* What the custom tars are meant to hold (guide ch. 15-16): the specials
 * file, the images it names (screen savers, backgrounds) and XML SIP
 * templates. Anything else is accepted but warned about, so COM can show
 * a likely mistake (the reference system silently extracts it). */
static bool name_known(const char *name)
{
	static const char *const ext[] = {
		".png", ".jpg", ".jpeg", ".bmp", ".gif", ".xml",
	};
	size_t n = strlen(name);

	if (!strcasecmp(name, "46xxspecials.txt"))
		return true;
	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		size_t e = strlen(ext[i]);

		if (n > e && !strcasecmp(name + n - e, ext[i]))
			return true;
	}
	return false;
}

static void warn(struct customtar_result *res, const char *qname)
{
	if (res->warnings < CUSTOMTAR_WARN_KEEP)
		err_say(res->warning[res->warnings],
			sizeof(res->warning[0]),
			"member '%s': not a phone file or template type",
			qname);
	res->warnings++;
}

/* Copies the member's data to a new file name; the bytes read must be
 * exactly the header's size (a truncated tar is refused). */
static err_t write_member(struct ctx *c, struct archive *a, unsigned idx,
			  int64_t size, const char *qname, struct digest *dg,
			  char *why, size_t whylen)
{
	const char *name = c->names[idx];
	char *buf = NULL;
	int fd = -1;
	int64_t got = 0;
	err_t e = ERR_OK;

	/* An earlier level's file of the same name is replaced; unlinkat
	 * removes a symlink itself, never what it points to. */
	if (unlinkat(c->dirfd, name, 0) != 0 && errno != ENOENT) {
		err_say(why, whylen, "member '%s': cannot replace: %s", qname,
			strerror(errno));
		e = ERR_IO;
		goto out;
	}
	fd = openat(c->dirfd, name,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		err_say(why, whylen, "member '%s': cannot create: %s", qname,
			strerror(errno));
		e = ERR_IO;
		goto out;
	}
	c->created[idx] = true;
	buf = malloc(COPY_BUF);
	if (!buf) {
		err_say(why, whylen, "out of memory");
		e = ERR_NOMEM;
		goto out;
	}
	for (;;) {
		la_ssize_t n = archive_read_data(a, buf, COPY_BUF);

		if (n == 0)
			break;
		if (n < 0) {
			err_say(why, whylen, "member '%s': %s", qname,
				archive_error_string(a) ?
				archive_error_string(a) : "read error");
			e = ERR_INVAL;
			goto out;
		}
		if ((int64_t)n > size - got) {
			err_say(why, whylen, "member '%s': more data than its "
				"header says", qname);
			e = ERR_INVAL;
			goto out;
		}
		for (la_ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				err_say(why, whylen, "member '%s': write: %s",
					qname, strerror(errno));
				e = ERR_IO;
				goto out;
			}
			off += w;
		}
		if (dg)
			(void)digest_update(dg, buf, (size_t)n);
		got += n;
	}
	if (got != size) {
		err_say(why, whylen, "member '%s': truncated (%lld of %lld "
			"bytes)", qname, (long long)got, (long long)size);
		e = ERR_INVAL;
		goto out;
	}
	/* On disk before the caller moves it into place: a power cut after
	 * that must not leave an empty file where the old one was. */
	if (fsync(fd) != 0) {
		err_say(why, whylen, "member '%s': fsync: %s", qname,
			strerror(errno));
		e = ERR_IO;
		goto out;
	}
out:
	free(buf);
	if (fd >= 0 && close(fd) != 0 && e == ERR_OK) {
		err_say(why, whylen, "member '%s': close: %s", qname,
			strerror(errno));
		e = ERR_IO;
	}
	return e;
}

/* Checks one header; on ERR_OK *skip says it is the harmless "./" entry,
 * and *name the plain name to write. */
static err_t check_member(struct ctx *c, struct archive_entry *ent,
			  const struct customtar_limits *lim, uint64_t total,
			  const char **name, bool *skip, char *qname,
			  size_t qcap, char *why, size_t whylen)
{
	const char *p = archive_entry_pathname(ent);
	mode_t type = archive_entry_filetype(ent);
	int64_t size;

	*skip = false;
	quote_name(p ? p : "", qname, qcap);
	if (!p) {
		err_say(why, whylen, "member without a name");
		return ERR_INVAL;
	}
	/* "tar -C dir ." stores the directory itself first: implied. */
	if (type == AE_IFDIR && (!strcmp(p, ".") || !strcmp(p, "./"))) {
		*skip = true;
		return ERR_OK;
	}
	if (!strncmp(p, "./", 2))
		p += 2;
	if (archive_entry_hardlink(ent) || archive_entry_symlink(ent) ||
	    type != AE_IFREG) {
		err_say(why, whylen, "member '%s': not a regular file", qname);
		return ERR_INVAL;
	}
	if (!name_ok(p)) {
		err_say(why, whylen, "member '%s': not a plain file name",
			qname);
		return ERR_INVAL;
	}
	if (!strcasecmp(p, "46xxsettings.txt")) {
		err_say(why, whylen, "member '%s': generated by the system, "
			"not accepted", qname);
		return ERR_INVAL;
	}
	for (unsigned i = 0; i < c->nnames; i++) {
		if (!strcmp(c->names[i], p)) {
			err_say(why, whylen, "member '%s': twice in the tar",
				qname);
			return ERR_INVAL;
		}
	}
	if (!archive_entry_size_is_set(ent)) {
		err_say(why, whylen, "member '%s': no size", qname);
		return ERR_INVAL;
	}
	size = archive_entry_size(ent);
	if (size < 0 || (uint64_t)size > lim->max_file) {
		err_say(why, whylen, "member '%s': %lld bytes, more than %llu",
			qname, (long long)size,
			(unsigned long long)lim->max_file);
		return ERR_LIMIT;
	}
	if ((uint64_t)size > lim->max_total - total) {
		err_say(why, whylen, "member '%s': the tar unpacks to more "
			"than %llu bytes", qname,
			(unsigned long long)lim->max_total);
		return ERR_LIMIT;
	}
	*name = p;
	return ERR_OK;
}

err_t customtar_extract(const char *tar_path, const char *dest_dir,
			const struct customtar_limits *lim,
			struct customtar_result *res, char *why, size_t whylen)
{
	struct ctx c = { .dirfd = -1 };
	struct archive *a = NULL;
	struct archive_entry *ent;
	struct digest *dg = NULL;
	struct stat st;
	char qname[CUSTOMTAR_NAME_MAX * 2 + 1];
	unsigned members = 0;
	uint64_t total = 0;
	int fd = -1;
	err_t e = ERR_OK;

	err_say(why, whylen, "%s", "");
	if (!tar_path || !dest_dir || !lim || !res || lim->max_members == 0 ||
	    lim->max_members > CUSTOMTAR_MEMBERS_CAP) {
		err_say(why, whylen, "bad arguments");
		return ERR_INVAL;
	}
	memset(res, 0, sizeof(*res));
	fd = open(tar_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		err_say(why, whylen, "%s: %s", tar_path, strerror(errno));
		e = errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		err_say(why, whylen, "%s: not a regular file", tar_path);
		e = ERR_INVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > lim->max_tar) {
		err_say(why, whylen, "tar is %lld bytes, more than %llu",
			(long long)st.st_size,
			(unsigned long long)lim->max_tar);
		e = ERR_LIMIT;
		goto out;
	}
	c.dirfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.dirfd < 0) {
		err_say(why, whylen, "%s: %s", dest_dir, strerror(errno));
		e = errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
		goto out;
	}
	c.names = calloc(lim->max_members, sizeof(*c.names));
	c.created = calloc(lim->max_members, sizeof(*c.created));
	a = archive_read_new();
	if (lim->on_file)
		dg = digest_new();
	if (!c.names || !c.created || !a || (lim->on_file && !dg)) {
		err_say(why, whylen, "out of memory");
		e = ERR_NOMEM;
		goto out;
	}
	/* Tar only, no filters: compressed input is refused, never
	 * inflated. */
	if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_open_fd(a, fd, 16384) != ARCHIVE_OK) {
		err_say(why, whylen, "not a plain tar: %s",
			archive_error_string(a) ? archive_error_string(a) :
			"cannot open");
		e = ERR_INVAL;
		goto out;
	}
	for (;;) {
		const char *name = NULL;
		bool skip;
		int r = archive_read_next_header(a, &ent);

		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			err_say(why, whylen, "not a plain tar: %s",
				archive_error_string(a) ?
				archive_error_string(a) : "bad header");
			e = ERR_INVAL;
			goto out;
		}
		if (++members > lim->max_members) {
			err_say(why, whylen, "more than %u members",
				lim->max_members);
			e = ERR_LIMIT;
			goto out;
		}
		e = check_member(&c, ent, lim, total, &name, &skip, qname,
				 sizeof(qname), why, whylen);
		if (e != ERR_OK)
			goto out;
		if (skip)
			continue;
		memcpy(c.names[c.nnames], name, strlen(name) + 1);
		c.nnames++;
		if (dg)
			digest_reset(dg);
		e = write_member(&c, a, c.nnames - 1, archive_entry_size(ent),
				 qname, dg, why, whylen);
		if (e != ERR_OK)
			goto out;
		if (lim->on_file) {
			char hex[DIGEST_HEX_LEN + 1];

			digest_hex(dg, hex);
			lim->on_file(lim->arg, name,
				     (uint64_t)archive_entry_size(ent), hex);
		}
		total += (uint64_t)archive_entry_size(ent);
		res->files++;
		if (!name_known(name))
			warn(res, qname);
	}
	res->bytes = total;
out:
	if (e != ERR_OK) {
		/* Undo: only what this call created, by name, in the fd. */
		for (unsigned i = 0; c.created && i < c.nnames; i++)
			if (c.created[i])
				(void)unlinkat(c.dirfd, c.names[i], 0);
		memset(res, 0, sizeof(*res));
	}
	if (a)
		archive_read_free(a);
	if (fd >= 0)
		close(fd);
	if (c.dirfd >= 0)
		close(c.dirfd);
	free(c.names);
	free(c.created);
	digest_free(dg);
	return e;
}
