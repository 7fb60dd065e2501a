/*
 * customtar — extracts one custom-files tar from COM (CustomPhoneFiles.tar
 * or CustomTemplates.tar) into a staging directory, safely (issue 6: one
 * bad tar must never damage a PBX).
 *
 * The tar is untrusted. Only a plain tar (ustar/gnutar/pax, no compression
 * filter, so a gzip bomb is simply "not a tar") of regular files with flat,
 * plain names is accepted: no '/', no "." or "..", no control characters,
 * valid UTF-8, 1..CUSTOMTAR_NAME_MAX bytes (a leading "./" is stripped; a
 * bare "./" directory entry is skipped). Symlinks, hardlinks, devices,
 * FIFOs, other directories, hidden names (a leading '.'), duplicate names and 46xxsettings.txt (the
 * system generates it; any case) are refused, as is anything over a cap.
 *
 * Files are written with fsync (they are moved into place afterwards, and
 * a power cut must not leave an empty file), created through an O_DIRECTORY fd of dest_dir with
 * O_EXCL|O_NOFOLLOW, so nothing planted in dest_dir can redirect a write; a
 * name already there (an earlier level's file) is unlinked first, never
 * followed. On any refusal every file this call created is removed again
 * (a replaced earlier file stays gone: the caller's staging is refused as
 * a whole anyway) and *res is all-zero.
 *
 * No logging: the reason goes to why ("member '../x': not a plain file
 * name"), the caller logs it once.
 */
#ifndef COMAGENT_CUSTOMTAR_H
#define COMAGENT_CUSTOMTAR_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

#define CUSTOMTAR_NAME_MAX	128	/* bytes of a member name */
#define CUSTOMTAR_MEMBERS_CAP	100000	/* sanity cap on max_members */
#define CUSTOMTAR_WARN_KEEP	4	/* warnings kept as text */

struct customtar_limits {
	unsigned max_members;	/* e.g. 1000; 1..CUSTOMTAR_MEMBERS_CAP */
	uint64_t max_total;	/* unpacked bytes of all members, e.g. 64 MiB */
	uint64_t max_file;	/* bytes of one member, e.g. 10 MiB */
	uint64_t max_tar;	/* bytes of the tar file itself, e.g. 10 MiB */
	/* Optional: called for each file written (and fsync'd), with its
	 * size and lower-case hex SHA-256. A later refusal still undoes it. */
	void (*on_file)(void *arg, const char *name, uint64_t size,
			const char *sha256);
	void *arg;
};

struct customtar_result {
	unsigned files;		/* members written */
	uint64_t bytes;		/* their bytes */
	unsigned warnings;	/* odd names seen (all counted) */
	char warning[CUSTOMTAR_WARN_KEEP][160];	/* the first few, as text */
};

/* Extracts tar_path into dest_dir (which must exist). ERR_OK, or ERR_INVAL
 * for a refused tar or member, ERR_LIMIT for a cap, ERR_IO / ERR_NOTFOUND /
 * ERR_NOMEM; why says which member and why. */
err_t customtar_extract(const char *tar_path, const char *dest_dir,
			const struct customtar_limits *lim,
			struct customtar_result *res, char *why, size_t whylen);

#endif
