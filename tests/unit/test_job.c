/*
 * test_job — the job journal: record, find, update and order; persistence
 * across instances (an agent restart); interrupted jobs becoming failed
 * for good; acks; the capacity and which job makes room; records that are
 * refused; each kind of damaged line with its line number; an oversized or
 * unreadable file; failed writes that leave memory as it was; the message
 * ids acks are matched by; and a full journal of the longest records.
 *
 * Each test has its own state directory; the log goes to a file next to it
 * so that the exact "FILE:LINE: message" lines can be checked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "testutil.h"
#include "state.h"

static char dir[64], path[128], tmp[136];

static void logged_is(const char *expected)
{
	logged_is_at(expected, path);
}

static void put_raw(const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void put(const char *text)
{
	put_raw(text, strlen(text));
}

static const char *file_text(void)
{
	static char buf[JOBS_FILE_MAX + 1];
	size_t len;

	assert_int_equal(state_read(path, buf, JOBS_FILE_MAX, &len), ERR_OK);
	buf[len] = '\0';
	return buf;
}

static const char *entries(void)
{
	return dir_entries(dir);
}

static struct job_rec rec(const char *id, enum job_state st, int64_t created)
{
	struct job_rec r;

	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "%s", id);
	snprintf(r.op, sizeof(r.op), "backup");
	r.state = st;
	r.created = created;
	r.updated = created;
	return r;
}

static void rec_equal(const struct job_rec *a, const struct job_rec *b)
{
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->op, b->op);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->progress, b->progress);
	assert_string_equal(a->reason, b->reason);
	assert_string_equal(a->message, b->message);
	assert_true(a->created == b->created);
	assert_true(a->updated == b->updated);
	assert_int_equal(a->acked, b->acked);
	assert_string_equal(a->phase, b->phase);
	assert_string_equal(a->target, b->target);
	assert_int_equal(a->phones, b->phones);
	assert_int_equal(a->local, b->local);
}

/* The ids in iteration order, each followed by ' '. */
static const char *order(const struct jobs *j)
{
	static char out[JOBS_MAX * (JOB_ID_MAX + 1) + 1];
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < jobs_count(j); i++)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s ",
				      jobs_at(j, i)->id);
	return out;
}

static int setup(void **state)
{
	(void)state;
	if (test_dir_setup("job", dir, sizeof(dir)))
		return -1;
	snprintf(path, sizeof(path), "%s/jobs", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return test_dir_teardown(dir);
}

static void test_empty_start(void **state)
{
	struct jobs *j = NULL;

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_non_null(j);
	assert_int_equal(jobs_count(j), 0);
	assert_null(jobs_at(j, 0));
	assert_null(jobs_find(j, "J-1"));
	assert_null(jobs_active(j));
	assert_null(jobs_by_sent(j, 1));
	/* Opening writes nothing, and a missing journal is no error. */
	assert_string_equal(entries(), "");
	logged_is("");
	jobs_free(j);
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(job_state_name(JOB_ACCEPTED), "accepted");
	assert_string_equal(job_state_name(JOB_RUNNING), "running");
	assert_string_equal(job_state_name(JOB_SUCCEEDED), "succeeded");
	assert_string_equal(job_state_name(JOB_FAILED), "failed");
	assert_string_equal(job_state_name(JOB_REJECTED), "rejected");
	assert_null(job_state_name((enum job_state)5));
	assert_null(job_state_name((enum job_state)-1));
	assert_false(job_state_final(JOB_ACCEPTED));
	assert_false(job_state_final(JOB_RUNNING));
	assert_true(job_state_final(JOB_SUCCEEDED));
	assert_true(job_state_final(JOB_FAILED));
	assert_true(job_state_final(JOB_REJECTED));
	assert_false(job_state_final((enum job_state)5));
}

static void test_record_find_update(void **state)
{
	struct jobs *j = NULL;
	struct job_rec r = rec("J-1", JOB_ACCEPTED, 1000);
	const struct job_rec *f;
	struct stat st;

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	f = jobs_find(j, "J-1");
	rec_equal(f, &r);
	assert_ptr_equal(jobs_at(j, 0), f);
	assert_ptr_equal(jobs_active(j), f);
	assert_string_equal(file_text(),
		"{\"type\":\"job\",\"id\":1,\"job\":\"J-1\",\"op\":\"backup\","
		"\"state\":\"accepted\",\"progress\":0,\"reason\":\"\","
		"\"message\":\"\",\"created\":1000,\"updated\":1000,"
		"\"acked\":false,\"phase\":\"\",\"target\":\"\","
		"\"phones\":false,\"local\":false}\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	r.state = JOB_RUNNING;
	r.progress = 40;
	r.updated = 1010;
	snprintf(r.message, sizeof(r.message), "copying \"cfg\"\n");
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_int_equal(jobs_count(j), 1);
	rec_equal(jobs_find(j, "J-1"), &r);
	assert_string_equal(file_text(),
		"{\"type\":\"job\",\"id\":1,\"job\":\"J-1\",\"op\":\"backup\","
		"\"state\":\"running\",\"progress\":40,\"reason\":\"\","
		"\"message\":\"copying \\\"cfg\\\"\\u000a\",\"created\":1000,"
		"\"updated\":1010,\"acked\":false,\"phase\":\"\","
		"\"target\":\"\",\"phones\":false,\"local\":false}\n");

	r.state = JOB_SUCCEEDED;
	r.progress = 100;
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_null(jobs_active(j));
	/* A record from the journal itself may be given back. */
	assert_int_equal(jobs_record(j, jobs_find(j, "J-1")), ERR_OK);
	rec_equal(jobs_find(j, "J-1"), &r);
	assert_null(jobs_find(j, "J-2"));
	assert_null(jobs_find(j, "j-1"));
	assert_null(jobs_find(j, "J-1 "));
	assert_string_equal(entries(), "jobs ");
	logged_is("");
	jobs_free(j);
}

/* An agent restart: a second instance sees everything the first wrote. */
static void test_persist_reopen(void **state)
{
	struct jobs *a = NULL, *b = NULL;
	struct job_rec r[3];

	(void)state;
	r[0] = rec("J-20261123-0042", JOB_REJECTED, 1795431066);
	snprintf(r[0].reason, sizeof(r[0].reason), "unsupported");
	snprintf(r[0].message, sizeof(r[0].message),
		 "operation backup is not supported by this agent");
	r[1] = rec("J-\xc3\xa9t\xc3\xa9 \"q\" \\", JOB_FAILED, 1795431067);
	snprintf(r[1].op, sizeof(r[1].op), "transfer_upgrade");
	snprintf(r[1].reason, sizeof(r[1].reason), "disk_full");
	snprintf(r[1].message, sizeof(r[1].message),
		 "tab\there, \xe2\x82\xac, \x7f, \x01, \xf0\x9f\x98\x80");
	r[1].progress = 73;
	r[1].updated = 1795431999;
	r[2] = rec("x", JOB_SUCCEEDED, -5);
	r[2].op[0] = '\0';
	r[2].progress = 100;
	assert_int_equal(jobs_open(dir, &a), ERR_OK);
	for (int i = 0; i < 3; i++)
		assert_int_equal(jobs_record(a, &r[i]), ERR_OK);
	assert_int_equal(jobs_ack(a, "x"), ERR_OK);
	r[2].acked = true;

	assert_int_equal(jobs_open(dir, &b), ERR_OK);
	assert_int_equal(jobs_count(b), 3);
	for (int i = 0; i < 3; i++) {
		rec_equal(jobs_find(b, r[i].id), &r[i]);
		rec_equal(jobs_at(b, (size_t)i), jobs_at(a, (size_t)i));
	}
	/* A job id seen before is known after the restart: not run again. */
	assert_non_null(jobs_find(b, "J-20261123-0042"));
	assert_null(jobs_find(b, "J-20261123-0043"));
	assert_null(jobs_active(b));
	logged_is("");
	jobs_free(a);
	jobs_free(b);
}

/* Jobs cut short by a restart fail, and stay failed. */
/* A job that restarts the system on purpose is not "interrupted" by it;
 * its phase, target and flags come back as they were written. */
static void test_awaits_restart(void **state)
{
	struct jobs *j = NULL;
	struct job_rec up = rec("J-9", JOB_RUNNING, 100);
	struct job_rec auto_ = rec("auto-1", JOB_SUCCEEDED, 50);
	const struct job_rec *f;

	(void)state;
	snprintf(up.op, sizeof(up.op), "upgrade");
	snprintf(up.phase, sizeof(up.phase), JOB_PHASE_RESTART);
	snprintf(up.target, sizeof(up.target), "12.0.1.0");
	up.phones = true;
	auto_.local = true;
	auto_.acked = true;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &up), ERR_OK);
	assert_int_equal(jobs_record(j, &auto_), ERR_OK);
	jobs_free(j);

	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	logged_is("");
	f = jobs_find(j, "J-9");
	rec_equal(f, &up);
	assert_true(job_awaits_restart(f));
	assert_ptr_equal(jobs_active(j), f);
	rec_equal(jobs_find(j, "auto-1"), &auto_);
	jobs_free(j);

	/* Running in another phase: interrupted as before. */
	snprintf(up.phase, sizeof(up.phase), "apply");
	put_raw("", 0);
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &up), ERR_OK);
	jobs_free(j);
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_find(j, "J-9")->state, JOB_FAILED);
	jobs_free(j);
}

static void test_interrupted(void **state)
{
	struct jobs *j = NULL;
	struct job_rec acc = rec("J-1", JOB_ACCEPTED, 100);
	struct job_rec run = rec("J-2", JOB_RUNNING, 200);
	struct job_rec done = rec("J-3", JOB_SUCCEEDED, 300);
	const struct job_rec *f;
	int64_t t0 = (int64_t)time(NULL);

	(void)state;
	run.progress = 40;
	snprintf(run.message, sizeof(run.message), "copying");
	done.progress = 100;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &acc), ERR_OK);
	assert_int_equal(jobs_record(j, &run), ERR_OK);
	assert_int_equal(jobs_record(j, &done), ERR_OK);
	jobs_free(j);

	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	logged_is("error job: job J-2 was running when the agent stopped; it "
		  "failed (interrupted)\n"
		  "error job: job J-1 was accepted when the agent stopped; it "
		  "failed (interrupted)\n");
	assert_null(jobs_active(j));
	f = jobs_find(j, "J-2");
	assert_int_equal(f->state, JOB_FAILED);
	assert_string_equal(f->reason, "interrupted");
	assert_string_equal(f->message,
			    "the agent restarted while the job was running");
	assert_int_equal(f->progress, 40);
	assert_true(f->created == 200);
	assert_true(f->updated >= t0 && f->updated <= (int64_t)time(NULL));
	assert_false(f->acked);
	f = jobs_find(j, "J-1");
	assert_int_equal(f->state, JOB_FAILED);
	assert_string_equal(f->message,
			    "the agent restarted while the job was accepted");
	rec_equal(jobs_find(j, "J-3"), &done);
	jobs_free(j);

	/* Persisted at once: the third start finds them failed, quietly. */
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	logged_is("");
	for (int i = 0; i < 2; i++) {
		f = jobs_find(j, i ? "J-1" : "J-2");
		assert_int_equal(f->state, JOB_FAILED);
		assert_string_equal(f->reason, "interrupted");
		assert_false(f->acked);
	}
	assert_string_equal(order(j), "J-3 J-2 J-1 ");
	assert_string_equal(entries(), "jobs ");
	jobs_free(j);
}

/* The rewrite after an interruption fails: failed in memory all the same. */
static void test_interrupted_write_fails(void **state)
{
	struct jobs *j = NULL;
	struct job_rec run = rec("J-1", JOB_RUNNING, 100);

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &run), ERR_OK);
	jobs_free(j);
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(jobs_open(dir, &j), ERR_IO);
	assert_non_null(j);
	assert_int_equal(jobs_find(j, "J-1")->state, JOB_FAILED);
	assert_null(jobs_active(j));
	logged_is("error job: job J-1 was running when the agent stopped; it "
		  "failed (interrupted)\n"
		  "error state: $.tmp: cannot create: Is a directory\n");
	jobs_free(j);
	assert_int_equal(rmdir(tmp), 0);
	/* The next start still finds it running, and fails it again. */
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_find(j, "J-1")->state, JOB_FAILED);
	logged_is("error job: job J-1 was running when the agent stopped; it "
		  "failed (interrupted)\n");
	jobs_free(j);
}

static void test_ack(void **state)
{
	struct jobs *j = NULL;
	struct job_rec fail = rec("J-1", JOB_FAILED, 100);
	struct job_rec run = rec("J-2", JOB_RUNNING, 200);
	char before[1024];

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &fail), ERR_OK);
	assert_int_equal(jobs_record(j, &run), ERR_OK);
	assert_false(jobs_find(j, "J-1")->acked);
	assert_int_equal(jobs_ack(j, "J-1"), ERR_OK);
	assert_true(jobs_find(j, "J-1")->acked);
	assert_non_null(strstr(file_text(), "\"job\":\"J-1\",\"op\":\"backup\","
			       "\"state\":\"failed\",\"progress\":0,"
			       "\"reason\":\"\",\"message\":\"\","
			       "\"created\":100,\"updated\":100,"
			       "\"acked\":true,\"phase\":\"\","
			       "\"target\":\"\",\"phones\":false,"
			       "\"local\":false}\n"));
	/* Again: fine, nothing written. */
	snprintf(before, sizeof(before), "%s", file_text());
	assert_int_equal(mkdir(tmp, 0700), 0);	/* a write would fail */
	assert_int_equal(jobs_ack(j, "J-1"), ERR_OK);
	assert_int_equal(rmdir(tmp), 0);
	assert_string_equal(file_text(), before);
	logged_is("");

	assert_int_equal(jobs_ack(j, "J-2"), ERR_STATE);
	assert_int_equal(jobs_ack(j, "J-9"), ERR_NOTFOUND);
	assert_int_equal(jobs_ack(j, "J\n-forged"), ERR_NOTFOUND);
	assert_int_equal(jobs_ack(j, ""), ERR_NOTFOUND);
	logged_is("error job: cannot acknowledge job J-2: running is not a "
		  "final state\n"
		  "error job: cannot acknowledge job J-9: not in the journal\n"
		  "error job: cannot acknowledge a job: not in the journal\n"
		  "error job: cannot acknowledge a job: not in the journal\n");
	assert_false(jobs_find(j, "J-2")->acked);
	assert_string_equal(file_text(), before);
	jobs_free(j);

	/* Persisted. */
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_true(jobs_find(j, "J-1")->acked);
	jobs_free(j);
	logged_is("error job: job J-2 was running when the agent stopped; it "
		  "failed (interrupted)\n");
}

static void test_capacity(void **state)
{
	struct jobs *j = NULL;
	struct job_rec r;
	static char before[JOBS_FILE_MAX];
	char id[16];

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	for (int i = 0; i < JOBS_MAX; i++) {
		snprintf(id, sizeof(id), "J-%d", i);
		r = rec(id, i < 2 ? JOB_RUNNING : JOB_REJECTED, 1000 + i);
		assert_int_equal(jobs_record(j, &r), ERR_OK);
	}
	assert_int_equal(jobs_count(j), JOBS_MAX);
	snprintf(before, sizeof(before), "%s", file_text());

	/* Full of unacknowledged jobs: nothing gives way. */
	r = rec("J-new", JOB_ACCEPTED, 5000);
	assert_int_equal(jobs_record(j, &r), ERR_LIMIT);
	logged_is("error job: cannot record job J-new: the journal holds 64 "
		  "jobs and none is final and acknowledged\n");
	assert_int_equal(jobs_count(j), JOBS_MAX);
	assert_null(jobs_find(j, "J-new"));
	assert_string_equal(file_text(), before);
	/* Updating a job it holds needs no room. */
	r = rec("J-1", JOB_SUCCEEDED, 1001);
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	r = rec("J-0", JOB_FAILED, 1000);
	assert_int_equal(jobs_record(j, &r), ERR_OK);

	/* The oldest final and acknowledged job makes room. */
	assert_int_equal(jobs_ack(j, "J-20"), ERR_OK);
	assert_int_equal(jobs_ack(j, "J-10"), ERR_OK);
	assert_int_equal(jobs_ack(j, "J-1"), ERR_OK);
	r = rec("J-new", JOB_ACCEPTED, 5000);
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_null(jobs_find(j, "J-1"));
	assert_non_null(jobs_find(j, "J-0"));	/* older, not acked */
	assert_non_null(jobs_find(j, "J-10"));
	assert_int_equal(jobs_count(j), JOBS_MAX);
	r = rec("J-new2", JOB_REJECTED, 5001);
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_null(jobs_find(j, "J-10"));
	assert_non_null(jobs_find(j, "J-20"));
	r = rec("J-new3", JOB_REJECTED, 5002);
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_null(jobs_find(j, "J-20"));
	r = rec("J-new4", JOB_REJECTED, 5003);
	assert_int_equal(jobs_record(j, &r), ERR_LIMIT);
	logged_is("error job: cannot record job J-new4: the journal holds 64 "
		  "jobs and none is final and acknowledged\n");
	jobs_free(j);

	/* The file holds what memory holds. */
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_count(j), JOBS_MAX);
	assert_string_equal(jobs_at(j, 0)->id, "J-new3");
	assert_null(jobs_find(j, "J-10"));
	assert_int_equal(jobs_find(j, "J-new")->state, JOB_FAILED);
	jobs_free(j);
	logged_is("error job: job J-new was accepted when the agent stopped; "
		  "it failed (interrupted)\n");
}

/* What the journal could not give back as it is, is refused whole. */
static void test_bad_records(void **state)
{
	static const struct {
		const char *id;
		const char *log;
	} bad_ids[] = {
		{ "", "job id is empty" },
		{ "J\n1", "job id contains a control character" },
		{ "J\x01", "job id contains a control character" },
		{ "J\x7f", "job id contains a control character" },
		{ "J\xff", "job id is not UTF-8" },
		{ "J\xc3", "job id is not UTF-8" },
		{ "J\xed\xa0\x80", "job id is not UTF-8" },	/* surrogate */
		{ "J\xc0\xaf", "job id is not UTF-8" },		/* overlong */
	};
	struct jobs *j = NULL;
	struct job_rec r;
	char want[200];

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		r = rec(bad_ids[i].id, JOB_REJECTED, 1);
		assert_int_equal(jobs_record(j, &r), ERR_INVAL);
		snprintf(want, sizeof(want), "error job: cannot record a job: "
			 "%s\n", bad_ids[i].log);
		assert_string_equal(logged(), want);
	}
	/* 65 bytes: no room for the NUL. */
	r = rec("J", JOB_REJECTED, 1);
	memset(r.id, 'a', sizeof(r.id));
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	logged_is("error job: cannot record a job: job id is longer than 64 "
		  "bytes\n");

	r = rec("J-1", JOB_REJECTED, 1);
	memset(r.op, 'o', sizeof(r.op));
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	r = rec("J-1", JOB_REJECTED, 1);
	snprintf(r.reason, sizeof(r.reason), "bad\xe2\x82");	/* cut € */
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	r = rec("J-1", JOB_REJECTED, 1);
	memset(r.message, 'm', sizeof(r.message));
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	r = rec("J-1", (enum job_state)5, 1);
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	r = rec("J-1", (enum job_state)-1, 1);
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	r = rec("J-1", JOB_RUNNING, 1);
	r.progress = 101;
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	r.progress = -1;
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	r = rec("J-1", JOB_RUNNING, 1);
	r.acked = true;
	assert_int_equal(jobs_record(j, &r), ERR_INVAL);
	logged_is("error job: cannot record job J-1: op is not UTF-8 text "
		  "that fits its field\n"
		  "error job: cannot record job J-1: reason is not UTF-8 text "
		  "that fits its field\n"
		  "error job: cannot record job J-1: message is not UTF-8 text "
		  "that fits its field\n"
		  "error job: cannot record job J-1: unknown state 5\n"
		  "error job: cannot record job J-1: unknown state -1\n"
		  "error job: cannot record job J-1: progress 101 is not in "
		  "0..100\n"
		  "error job: cannot record job J-1: progress -1 is not in "
		  "0..100\n"
		  "error job: cannot record job J-1: acknowledged but running "
		  "is not a final state\n");
	assert_int_equal(jobs_count(j), 0);
	assert_string_equal(entries(), "");

	/* The limits themselves are fine. */
	r = rec("J", JOB_RUNNING, 1);
	memset(r.id, 'a', JOB_ID_MAX);
	memset(r.op, 'o', sizeof(r.op) - 1);
	memset(r.reason, 'r', sizeof(r.reason) - 1);
	memset(r.message, 'm', sizeof(r.message) - 1);
	r.progress = 100;
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	r = rec("J-\xc3\xa9", JOB_RUNNING, 1);
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_int_equal(jobs_count(j), 2);
	logged_is("");
	jobs_free(j);
}

/* A journal line with the given members after "type" and "id". */
#define L(members) "{\"type\":\"job\",\"id\":1," members "}\n"
#define GOOD(id, st) "\"job\":\"" id "\",\"op\":\"backup\",\"state\":\"" st \
	"\",\"progress\":0,\"reason\":\"\",\"message\":\"\",\"created\":1," \
	"\"updated\":1,\"acked\":false"

static void test_damaged_lines(void **state)
{
	static const char text[] =
		L(GOOD("J-1", "failed"))				/* 1 */
		"not json\n"						/* 2 */
		"{\"type\":\"status\",\"id\":2}\n"			/* 3 */
		L("\"op\":\"backup\"")					/* 4 */
		L("\"job\":\"\"")					/* 5 */
		L("\"job\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaa\"")					/* 6 */
		L("\"job\":\"a\\u0001b\"")				/* 7 */
		L("\"job\":\"J-8\",\"op\":\"x\",\"state\":\"paused\"")	/* 8 */
		L("\"job\":\"J-9\",\"op\":\"x\",\"state\":\"st\\u0001\"")/* 9 */
		L("\"job\":\"J-10\",\"op\":\"x\",\"state\":7")		/* 10 */
		L("\"job\":\"J-11\",\"op\":\"aaaaaaaaaaaa"
		  "aaaaaaaaaaaa\"")					/* 11 */
		L("\"job\":\"J-12\",\"op\":\"x\",\"state\":\"running\","
		  "\"progress\":101")					/* 12 */
		L("\"job\":\"J-13\",\"op\":\"x\",\"state\":\"running\","
		  "\"progress\":1.5")					/* 13 */
		L("\"job\":\"J-14\",\"op\":\"x\",\"state\":\"running\","
		  "\"progress\":1,\"reason\":\"\"")			/* 14 */
		L("\"job\":\"J-15\",\"op\":\"x\",\"state\":\"running\","
		  "\"progress\":1,\"reason\":\"\",\"message\":\"\","
		  "\"created\":\"1\"")					/* 15 */
		L("\"job\":\"J-16\",\"op\":\"x\",\"state\":\"running\","
		  "\"progress\":1,\"reason\":\"\",\"message\":\"\","
		  "\"created\":1,\"updated\":1")			/* 16 */
		L("\"job\":\"J-17\",\"op\":\"x\",\"state\":\"running\","
		  "\"progress\":1,\"reason\":\"\",\"message\":\"\","
		  "\"created\":1,\"updated\":1,\"acked\":true")		/* 17 */
		L(GOOD("J-1", "succeeded"))				/* 18 */
		"\n"							/* 19 */
		"  \r\n"						/* 20 */
		"{\"type\":\"job\"," GOOD("J-21", "failed") "}\n"	/* 21 */
		L(GOOD("J-22", "running") ",\"extra\":[1,{\"a\":2}]")	/* 22 */
		"{\"type\":\"job\",\"id\":1," GOOD("J-23", "failed")	/* 23 */
		"} x\n"
		"{\"type\":\"job\",\"id\":2," GOOD("J-24", "rejected")	/* 24 */
		"}";				/* no newline at the end */
	struct jobs *j = NULL;

	(void)state;
	put(text);
	assert_int_equal(jobs_open(dir, &j), ERR_INVAL);
	assert_non_null(j);
	logged_is("error job: $:2: not a JSON object\n"
		  "error job: $:3: not a job record\n"
		  "error job: $:4: \"job\" missing or not a string\n"
		  "error job: $:5: job id is empty\n"
		  "error job: $:6: job id is longer than 64 bytes\n"
		  "error job: $:7: job id contains a control character\n"
		  "error job: $:8: unknown state 'paused'\n"
		  "error job: $:9: unknown state\n"
		  "error job: $:10: \"state\" missing or not a string\n"
		  "error job: $:11: \"op\" longer than 23 bytes\n"
		  "error job: $:12: progress 101 is not in 0..100\n"
		  "error job: $:13: \"progress\" missing or not an integer\n"
		  "error job: $:14: \"message\" missing or not a string\n"
		  "error job: $:15: \"created\" missing or not an integer\n"
		  "error job: $:16: \"acked\" missing or not a boolean\n"
		  "error job: $:17: acknowledged but running is not a final "
		  "state\n"
		  "error job: $:18: duplicate job 'J-1' (first at line 1)\n"
		  "error job: $:21: no \"id\"\n"
		  "error job: $:23: trailing data after the object\n"
		  "error job: job J-22 was running when the agent stopped; it "
		  "failed (interrupted)\n");
	/* The good lines are kept: the first J-1, J-22, J-24. */
	assert_int_equal(jobs_count(j), 3);
	assert_int_equal(jobs_find(j, "J-1")->state, JOB_FAILED);
	assert_int_equal(jobs_find(j, "J-22")->state, JOB_FAILED);
	assert_int_equal(jobs_find(j, "J-24")->state, JOB_REJECTED);
	/* Equal "created" and "id": the file's order decides. */
	assert_string_equal(order(j), "J-24 J-22 J-1 ");
	jobs_free(j);

	/* The interruption rewrote the journal: only good lines are left. */
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	logged_is("");
	assert_string_equal(order(j), "J-24 J-22 J-1 ");
	jobs_free(j);
}

/* Bytes a damaged file may hold never reach the log as they are. */
static void test_damaged_bytes(void **state)
{
	static const char text[] =
		L(GOOD("J-1", "failed"))		/* 1 */
		L(GOOD("J-\0", "failed"))		/* 2 */
		L(GOOD("J-\xff", "failed"))		/* 3 */
		L(GOOD("J-\\u0000", "failed"))		/* 4 */
		L(GOOD("J-5", "failed"));		/* 5 */
	struct jobs *j = NULL;

	(void)state;
	put_raw(text, sizeof(text) - 1);
	assert_int_equal(jobs_open(dir, &j), ERR_INVAL);
	logged_is("error job: $:2: NUL byte in message\n"
		  "error job: $:3: invalid UTF-8\n"
		  "error job: $:4: NUL character in string at \"job\"\n");
	assert_string_equal(order(j), "J-5 J-1 ");
	jobs_free(j);
}

static void test_too_many_lines(void **state)
{
	static char text[JOBS_FILE_MAX];
	struct jobs *j = NULL;
	size_t n = 0;

	(void)state;
	for (int i = 1; i <= JOBS_MAX + 2; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "{\"type\":\"job\",\"id\":%d,\"job\":"
				      "\"J-%d\",\"op\":\"\",\"state\":"
				      "\"rejected\",\"progress\":0,\"reason\":"
				      "\"\",\"message\":\"\",\"created\":%d,"
				      "\"updated\":0,\"acked\":%s}\n",
				      i, i, i, i == 66 ? "1" : "true");
	put(text);
	assert_int_equal(jobs_open(dir, &j), ERR_INVAL);
	/* A good line beyond the capacity, then a bad one. */
	logged_is("error job: $:65: more than 64 jobs\n"
		  "error job: $:66: \"acked\" missing or not a boolean\n");
	assert_int_equal(jobs_count(j), JOBS_MAX);
	assert_string_equal(jobs_at(j, 0)->id, "J-64");
	assert_string_equal(jobs_at(j, JOBS_MAX - 1)->id, "J-1");
	jobs_free(j);
}

static void test_oversized(void **state)
{
	static char big[JOBS_FILE_MAX + 1];
	static const char line[] = L(GOOD("J-1", "failed"));
	struct jobs *j = NULL;
	struct job_rec r = rec("J-2", JOB_REJECTED, 2);

	(void)state;
	/* The biggest file taken: a good line, then blanks up to the cap. */
	memset(big, ' ', sizeof(big));
	memcpy(big, line, sizeof(line) - 1);
	put_raw(big, JOBS_FILE_MAX);
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_count(j), 1);
	logged_is("");
	jobs_free(j);

	/* One byte more: nothing of it is trusted. */
	put_raw(big, JOBS_FILE_MAX + 1);
	assert_int_equal(jobs_open(dir, &j), ERR_INVAL);
	assert_non_null(j);
	assert_int_equal(jobs_count(j), 0);
	logged_is("error state: $: bigger than 131072 bytes\n");
	/* It goes on as an empty journal, which replaces the file. */
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	jobs_free(j);
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_string_equal(order(j), "J-2 ");
	jobs_free(j);
}

static void test_unreadable(void **state)
{
	struct jobs *j = NULL;

	(void)state;
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(jobs_open(dir, &j), ERR_IO);
	assert_non_null(j);
	assert_int_equal(jobs_count(j), 0);
	logged_is("error state: $: not a regular file\n");
	jobs_free(j);
}

/* A failed write leaves memory as it was, and the file too. */
static void test_write_failure(void **state)
{
	struct jobs *j = NULL;
	struct job_rec acc = rec("J-1", JOB_ACCEPTED, 100);
	struct job_rec fail = rec("J-2", JOB_FAILED, 200);
	struct job_rec r;
	char before[2048];

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &acc), ERR_OK);
	assert_int_equal(jobs_record(j, &fail), ERR_OK);
	jobs_set_sent(j, "J-1", 7);
	snprintf(before, sizeof(before), "%s", file_text());

	assert_int_equal(mkdir(tmp, 0700), 0);
	r = acc;
	r.state = JOB_RUNNING;
	r.progress = 10;
	assert_int_equal(jobs_record(j, &r), ERR_IO);
	r = rec("J-3", JOB_REJECTED, 300);
	assert_int_equal(jobs_record(j, &r), ERR_IO);
	assert_int_equal(jobs_ack(j, "J-2"), ERR_IO);
	logged_is("error state: $.tmp: cannot create: Is a directory\n"
		  "error state: $.tmp: cannot create: Is a directory\n"
		  "error state: $.tmp: cannot create: Is a directory\n");
	assert_int_equal(jobs_count(j), 2);
	rec_equal(jobs_find(j, "J-1"), &acc);
	rec_equal(jobs_find(j, "J-2"), &fail);
	assert_null(jobs_find(j, "J-3"));
	assert_ptr_equal(jobs_by_sent(j, 7), jobs_find(j, "J-1"));
	assert_string_equal(file_text(), before);

	/* Once it can be written, the journal goes on from where it was. */
	assert_int_equal(rmdir(tmp), 0);
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_int_equal(jobs_ack(j, "J-2"), ERR_OK);
	assert_string_equal(order(j), "J-3 J-2 J-1 ");
	assert_non_null(strstr(file_text(), "{\"type\":\"job\",\"id\":3,"
			       "\"job\":\"J-3\""));
	assert_string_equal(entries(), "jobs ");
	logged_is("");
	jobs_free(j);
}

static void test_order(void **state)
{
	static const struct {
		const char *id;
		int64_t created;
	} in[] = {
		{ "A", 100 }, { "B", 300 }, { "C", 200 }, { "D", 200 },
		{ "E", 300 }, { "F", -1 },
	};
	struct jobs *j = NULL, *k = NULL;
	struct job_rec r;

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		r = rec(in[i].id, JOB_REJECTED, in[i].created);
		assert_int_equal(jobs_record(j, &r), ERR_OK);
	}
	/* By created; recorded later first among equals. */
	assert_string_equal(order(j), "E B D C A F ");
	/* Updating keeps the insertion order. */
	r = rec("B", JOB_REJECTED, 300);
	snprintf(r.message, sizeof(r.message), "again");
	assert_int_equal(jobs_record(j, &r), ERR_OK);
	assert_string_equal(order(j), "E B D C A F ");
	/* The file is oldest first; a reload sorts by created and "id". */
	assert_true(!strncmp(file_text(), "{\"type\":\"job\",\"id\":6,"
			     "\"job\":\"F\"", 30));
	assert_int_equal(jobs_open(dir, &k), ERR_OK);
	assert_string_equal(order(k), "E B D C A F ");
	/* A new created time moves a job. */
	r = rec("C", JOB_REJECTED, 400);
	assert_int_equal(jobs_record(k, &r), ERR_OK);
	assert_string_equal(order(k), "C E B D A F ");
	/* Insertion numbers go on after a reload. */
	r = rec("G", JOB_REJECTED, 200);
	assert_int_equal(jobs_record(k, &r), ERR_OK);
	assert_string_equal(order(k), "C E B G D A F ");
	jobs_free(k);
	assert_int_equal(jobs_open(dir, &k), ERR_OK);
	assert_string_equal(order(k), "C E B G D A F ");
	assert_null(jobs_at(k, 7));
	logged_is("");
	jobs_free(j);
	jobs_free(k);
}

static void test_sent(void **state)
{
	struct jobs *j = NULL;
	struct job_rec a = rec("J-1", JOB_RUNNING, 1);
	struct job_rec b = rec("J-2", JOB_REJECTED, 2);

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, &a), ERR_OK);
	assert_int_equal(jobs_record(j, &b), ERR_OK);
	jobs_set_sent(j, "J-1", 5);
	jobs_set_sent(j, "J-2", 7);
	jobs_set_sent(j, "J-9", 8);		/* unknown: ignored */
	assert_string_equal(jobs_by_sent(j, 5)->id, "J-1");
	assert_string_equal(jobs_by_sent(j, 7)->id, "J-2");
	assert_null(jobs_by_sent(j, 6));
	assert_null(jobs_by_sent(j, 8));
	assert_null(jobs_by_sent(j, 0));
	assert_null(jobs_by_sent(j, -1));
	/* Updating a job keeps its message id until a new one is sent. */
	a.state = JOB_SUCCEEDED;
	assert_int_equal(jobs_record(j, &a), ERR_OK);
	assert_string_equal(jobs_by_sent(j, 5)->id, "J-1");
	jobs_set_sent(j, "J-1", 9);
	assert_null(jobs_by_sent(j, 5));
	assert_string_equal(jobs_by_sent(j, 9)->id, "J-1");
	jobs_set_sent(j, "J-2", 0);
	assert_null(jobs_by_sent(j, 7));
	jobs_set_sent(j, "J-2", 7);
	/* A new link: message ids start again. */
	jobs_clear_sent(j);
	assert_null(jobs_by_sent(j, 9));
	assert_null(jobs_by_sent(j, 7));
	jobs_set_sent(j, "J-2", 1);
	assert_string_equal(jobs_by_sent(j, 1)->id, "J-2");
	jobs_free(j);
	/* Memory only. */
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_null(jobs_by_sent(j, 1));
	logged_is("");
	jobs_free(j);
}

/* A full journal of the longest records: fits, and comes back as it was. */
static void test_longest_records(void **state)
{
	struct jobs *j = NULL, *k = NULL;
	struct job_rec r;
	struct stat st;

	(void)state;
	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	for (unsigned i = 0; i < JOBS_MAX; i++) {
		memset(&r, 0, sizeof(r));
		for (unsigned c = 0; c < JOB_ID_MAX - 2; c++)
			r.id[c] = c % 2 ? '"' : '\\';
		r.id[JOB_ID_MAX - 2] = (char)('0' + i / 10);
		r.id[JOB_ID_MAX - 1] = (char)('0' + i % 10);
		memset(r.op, 0x01, sizeof(r.op) - 1);
		memset(r.reason, 0x7f, sizeof(r.reason) - 1);
		memset(r.message, 0x1f, sizeof(r.message) - 1);
		r.state = JOB_SUCCEEDED;
		r.progress = 100;
		r.created = i % 2 ? INT64_MIN : INT64_MAX;
		r.updated = i % 2 ? INT64_MAX : INT64_MIN;
		r.acked = true;
		assert_int_equal(jobs_record(j, &r), ERR_OK);
	}
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > JOBS_FILE_MAX / 2);
	assert_true(st.st_size <= JOBS_FILE_MAX);
	assert_int_equal(jobs_open(dir, &k), ERR_OK);
	assert_int_equal(jobs_count(k), JOBS_MAX);
	for (size_t i = 0; i < JOBS_MAX; i++)
		rec_equal(jobs_at(k, i), jobs_at(j, i));
	logged_is("");
	jobs_free(j);
	jobs_free(k);
}

static void test_bad_arguments(void **state)
{
	static char longdir[STATE_PATH_MAX + 8];
	struct jobs *j = (struct jobs *)0x1;
	struct job_rec r = rec("J-1", JOB_REJECTED, 1);
	char want[200];

	(void)state;
	assert_int_equal(jobs_open(dir, NULL), ERR_INVAL);
	assert_int_equal(jobs_open(NULL, &j), ERR_INVAL);
	assert_null(j);
	j = (struct jobs *)0x1;
	assert_int_equal(jobs_open("", &j), ERR_INVAL);
	assert_null(j);
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[0] = '/';
	j = (struct jobs *)0x1;
	assert_int_equal(jobs_open(longdir, &j), ERR_INVAL);
	assert_null(j);
	snprintf(want, sizeof(want), "error job: %.64s...: state directory "
		 "path too long\n", longdir);
	assert_string_equal(logged(), want);

	jobs_free(NULL);
	assert_null(jobs_find(NULL, "J-1"));
	assert_int_equal(jobs_record(NULL, &r), ERR_INVAL);
	assert_int_equal(jobs_ack(NULL, "J-1"), ERR_INVAL);
	assert_null(jobs_active(NULL));
	assert_int_equal(jobs_count(NULL), 0);
	assert_null(jobs_at(NULL, 0));
	jobs_set_sent(NULL, "J-1", 1);
	assert_null(jobs_by_sent(NULL, 1));
	jobs_clear_sent(NULL);

	assert_int_equal(jobs_open(dir, &j), ERR_OK);
	assert_int_equal(jobs_record(j, NULL), ERR_INVAL);
	assert_int_equal(jobs_ack(j, NULL), ERR_INVAL);
	assert_null(jobs_find(j, NULL));
	jobs_set_sent(j, NULL, 1);
	assert_string_equal(entries(), "");
	logged_is("");
	jobs_free(j);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_empty_start),
		T(test_state_names),
		T(test_record_find_update),
		T(test_persist_reopen),
		T(test_awaits_restart),
		T(test_interrupted),
		T(test_interrupted_write_fails),
		T(test_ack),
		T(test_capacity),
		T(test_bad_records),
		T(test_damaged_lines),
		T(test_damaged_bytes),
		T(test_too_many_lines),
		T(test_oversized),
		T(test_unreadable),
		T(test_write_failure),
		T(test_order),
		T(test_sent),
		T(test_longest_records),
		T(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
