/*
 * log — the agent's own diagnostic log.
 *
 * One process-wide log: levels error/info/debug (COM's logging preference
 * names), each line "TIME LEVEL module: message". Written to a file whose
 * disk use is capped (the current file plus one rotated ".1" file stay
 * within max_size together) and, in the foreground, to stderr.
 * Before log_open() lines go to stderr only.
 */
#ifndef COMAGENT_LOG_H
#define COMAGENT_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include "err.h"

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_INFO = 1, LOG_LVL_DEBUG = 2 };

/* file may be NULL or "" for no file. */
err_t log_open(const char *file, uint64_t max_size, enum log_level level,
	       bool to_stderr);
void log_close(void);
void log_set_level(enum log_level level);
/* Whether lines also go to stderr (off once a daemon detached). */
void log_set_stderr(bool on);
enum log_level log_get_level(void);
/* Parses "error" | "info" | "debug"; returns -1 for anything else. */
int log_level_parse(const char *s);

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Each .c file defines LOG_MODULE before using these. */
#define LOGE(...) log_msg(LOG_LVL_ERROR, LOG_MODULE, __VA_ARGS__)
#define LOGI(...) log_msg(LOG_LVL_INFO, LOG_MODULE, __VA_ARGS__)
#define LOGD(...) log_msg(LOG_LVL_DEBUG, LOG_MODULE, __VA_ARGS__)

#endif
