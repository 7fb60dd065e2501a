/*
 * fuzz_job — libFuzzer harness for agent/job.c: the input is written as
 * STATE_DIR/jobs (the job journal, one JSON object per line read back with
 * proto_parse) and jobs_open()ed. Checks the loaded journal against the
 * documented rules (at most JOBS_MAX jobs, unique ids, progress 0..100,
 * acked only when final, nothing left accepted/running except a running
 * job in phase "restart"), then writes every job back with jobs_record()
 * and opens the journal again: the round trip must give the same records.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "job.h"

static char dir[512], file[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("job");
	snprintf(dir, sizeof(dir), "%s", fz_path("state"));
	snprintf(file, sizeof(file), "%s/jobs", dir);
	return 0;
}

static void check_rec(const struct job_rec *r)
{
	FZ_CHECK(r->id[0] && memchr(r->id, '\0', sizeof(r->id)));
	FZ_CHECK(memchr(r->op, '\0', sizeof(r->op)));
	FZ_CHECK(memchr(r->reason, '\0', sizeof(r->reason)));
	FZ_CHECK(memchr(r->message, '\0', sizeof(r->message)));
	FZ_CHECK(memchr(r->phase, '\0', sizeof(r->phase)));
	FZ_CHECK(memchr(r->target, '\0', sizeof(r->target)));
	FZ_CHECK(job_state_name(r->state));
	FZ_CHECK(r->progress >= 0 && r->progress <= 100);
	FZ_CHECK(!r->acked || job_state_final(r->state));
	FZ_CHECK(job_state_final(r->state) || job_awaits_restart(r));
	for (const char *p = r->id; *p; p++)
		FZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static bool same(const struct job_rec *a, const struct job_rec *b)
{
	return !strcmp(a->id, b->id) && !strcmp(a->op, b->op) &&
	       a->state == b->state && a->progress == b->progress &&
	       !strcmp(a->reason, b->reason) &&
	       !strcmp(a->message, b->message) && a->created == b->created &&
	       a->updated == b->updated && a->acked == b->acked &&
	       !strcmp(a->phase, b->phase) && !strcmp(a->target, b->target) &&
	       a->phones == b->phones && a->local == b->local;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct job_rec recs[JOBS_MAX];
	struct jobs *j = NULL, *j2 = NULL;
	size_t n;
	err_t e;

	if (size > JOBS_FILE_MAX + 16)
		return 0;
	fz_empty(fz_dir);
	FZ_CHECK(mkdir(dir, 0700) == 0);
	fz_write(file, data, size, 0600);
	e = jobs_open(dir, &j);
	FZ_CHECK(j != NULL);
	FZ_CHECK(e == ERR_OK || e == ERR_INVAL || e == ERR_IO);
	n = jobs_count(j);
	FZ_CHECK(n <= JOBS_MAX);
	FZ_CHECK(jobs_at(j, n) == NULL);
	for (size_t i = 0; i < n; i++) {
		const struct job_rec *r = jobs_at(j, i);

		FZ_CHECK(r);
		check_rec(r);
		FZ_CHECK(jobs_find(j, r->id) == r);
		for (size_t k = 0; k < i; k++)
			FZ_CHECK(strcmp(jobs_at(j, k)->id, r->id));
		recs[i] = *r;
	}
	(void)jobs_active(j);

	/* Round trip: record each one again (rewrites the journal), load. */
	for (size_t i = 0; i < n; i++) {
		e = jobs_record(j, &recs[i]);
		if (e != ERR_OK)
			fprintf(stderr, "jobs_record refused a loaded job "
				"'%s': %d\n", recs[i].id, e);
		FZ_CHECK(e == ERR_OK);
	}
	FZ_CHECK(jobs_count(j) == n);
	for (size_t i = 0; i < n; i++)
		recs[i] = *jobs_at(j, i);
	jobs_free(j);
	e = jobs_open(dir, &j2);
	FZ_CHECK(j2 != NULL);
	if (n > 0) {
		if (e != ERR_OK)
			fprintf(stderr, "rewritten journal damaged: %d\n", e);
		FZ_CHECK(e == ERR_OK);
	}
	FZ_CHECK(jobs_count(j2) == n);
	for (size_t i = 0; i < n; i++) {
		if (!same(jobs_at(j2, i), &recs[i]))
			fprintf(stderr, "job '%s' changed in the round trip\n",
				recs[i].id);
		FZ_CHECK(same(jobs_at(j2, i), &recs[i]));
	}
	jobs_free(j2);
	fz_empty(fz_dir);
	return 0;
}
