/*
 * main — the comagent command line: run, check-config, status, version, help.
 *
 * `run` builds the one event loop (libwebsockets), the link to COM, the
 * dispatcher of COM's requests and the local control socket, then serves
 * until SIGTERM/SIGINT, when it closes the link cleanly (1000) and exits 0.
 * Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <libwebsockets.h>

#include "alarm.h"
#include "cert.h"
#include "conf.h"
#include "ctl.h"
#include "custom.h"
#include "dispatch.h"
#include "health.h"
#include "hook.h"
#include "hookrun.h"
#include "job.h"
#include "link.h"
#include "log.h"
#include "logs.h"
#include "logview.h"
#include "ops.h"
#include "settings.h"
#include "state.h"
#include "status.h"
#include "stream.h"

#include "../platform/platform.h"

#define LOG_MODULE "main"
#define DEFAULT_CONFIG "/etc/comagent/comagent.ini"
/* How long a clean shutdown may wait for COM to take the close frame. */
#define SHUTDOWN_GRACE_US (2 * LWS_USEC_PER_SEC)
/* lws base64-encodes the proxy's "user:password" into 128 bytes (and needs
 * 4 spare), and keeps the proxy host in 128 bytes. */
#define PROXY_AUTH_MAX 93
#define PROXY_HOST_MAX 127

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static volatile sig_atomic_t g_stop;
static struct lws_context *g_ctx;

struct opts {
	const char *config;
	bool json, daemon, help, prune;
};

static const char usage_main[] =
	"Usage: comagent COMMAND [OPTIONS]\n"
	"\n"
	"The customer-side agent of Customer Operations Manager (COM): keeps one\n"
	"secure WebSocket to COM open and carries out what COM asks.\n"
	"\n"
	"Commands:\n"
	"  run            run the agent (in the foreground unless --daemon)\n"
	"  check-config   validate the configuration file\n"
	"  config-keys    list every configuration key: type, default, bounds\n"
	"  status         show the running agent's connection state\n"
	"  settings       show or change the remote-operation settings\n"
	"  jobs           list the running agent's recent jobs\n"
	"  alarm          raise, clear or list the system's alarms\n"
	"  service-user   show or record the state of the COM service user\n"
	"  refresh-custom-files\n"
	"                 fetch COM's custom phone files and SIP templates now\n"
	"  custom-files   list the custom files the agent installed\n"
	"  logs           read the agent's own log, or list the PBX's stored logs\n"
	"  version        print the version\n"
	"  hook-runner    run one hook as root for the agent (systemd starts it)\n"
	"  help [COMMAND] show help for a command\n"
	"\n"
	"Every command that reads the configuration takes\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"\n"
	"Exit codes: 0 success, 1 failure, 2 usage or configuration error.\n";

static const char usage_run[] =
	"Usage: comagent run [-c FILE] [--daemon]\n"
	"\n"
	"Runs the agent: connects to COM and serves its requests until SIGTERM or\n"
	"SIGINT. Logs go to the configured log file and, in the foreground, to\n"
	"stderr.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"  -d, --daemon        detach from the terminal (log to the file only)\n";

static const char usage_hookrun[] =
	"Usage: comagent hook-runner [-c FILE]\n"
	"\n"
	"The root side of the agent's privilege separation on Linux servers:\n"
	"serves one request from the agent on the socket it gets as stdin\n"
	"(systemd's comagent-hooks.socket with Accept=yes), runs the named hook\n"
	"of [jobs] hooks_dir as root and reports how it ended. Only the hooks of\n"
	"scripts/HOOKS.md, only from a directory root alone can write. Logs go\n"
	"to stderr (the journal).\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n";

static const char usage_check[] =
	"Usage: comagent check-config [-c FILE]\n"
	"\n"
	"Validates the configuration. Prints \"configuration OK\", or one\n"
	"FILE:LINE: message line per problem and exits 2.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n";

static const char usage_status[] =
	"Usage: comagent status [-c FILE] [--json]\n"
	"\n"
	"Asks the running agent (over its control socket) for its connection\n"
	"state in COM's words (\"Connection successful\", \"Authorization failed\",\n"
	"\"Waiting for initial connection\", ...), since when, the last error, the\n"
	"next retry, COM's URL, the system identity, the operation in progress\n"
	"(backup, restore, upgrade, or idle) and when the automatic backup is\n"
	"next due. Exits 1 when the agent is not running.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"      --json          one JSON object instead of text\n";

static const char usage_settings[] =
	"Usage: comagent settings [-c FILE] show [--json]\n"
	"       comagent settings [-c FILE] set KEY=0|1 [KEY=0|1 ...]\n"
	"\n"
	"The remote-operation settings that gate what COM may do (CustomData.xml\n"
	"tag names): centralmgmt (Web Manager, System Status, SysMonitor),\n"
	"logtransfer (log upload), remoteupgrade (backup, restore, upgrade),\n"
	"remoteaccess (SSH, SFTP, HTTPS to this system and its network),\n"
	"externalremoteaccess (co-located servers with a [tunnel] entry) and\n"
	"centralcert (certificates). All are off until turned on. They are kept\n"
	"in the state directory; a running agent applies a change at once.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"      --json          show as one JSON object\n";

static const char usage_alarm[] =
	"Usage: comagent alarm [-c FILE] raise --type TYPE --severity SEVERITY\n"
	"                      --id ID TEXT...\n"
	"       comagent alarm [-c FILE] clear --id ID\n"
	"       comagent alarm [-c FILE] list [--json]\n"
	"\n"
	"Raises, clears or lists the system's alarms, which COM's alarm list\n"
	"shows. TYPE is Configuration, Trunk, Link, Service, QoS or Security;\n"
	"SEVERITY critical, major, minor or warning; ID names the alarm (1..64\n"
	"letters, digits, '-', '_', '.', ':'), TEXT says what is wrong (up to\n"
	"255 bytes). Raising an active ID again updates it and counts it; the\n"
	"running agent keeps the active set across restarts and gives COM the\n"
	"whole set after every reconnect. At most 64 are active. Exits 1 when\n"
	"the agent is not running (nothing is recorded then) or refuses.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"      --json          list as one JSON object\n";

static const char usage_svcuser[] =
	"Usage: comagent service-user [-c FILE] show\n"
	"       comagent service-user [-c FILE] set [state=STATE] [missing=LIST]\n"
	"\n"
	"Records what the PBX knows of its COM service user, which the agent\n"
	"reports to COM as the reasons behind its connection messages. STATE is\n"
	"ok, disabled, disabled_by_admin, locked, password_expired or\n"
	"password_change_required; LIST the rights the user lacks, comma-\n"
	"separated, of backup, upgrade, monitor_read and write_password (empty:\n"
	"none). Kept in the state directory; a running agent applies a change\n"
	"at once.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n";

static const char usage_jobs[] =
	"Usage: comagent jobs [-c FILE] [--json]\n"
	"\n"
	"Lists the jobs COM sent the running agent, and its own automatic\n"
	"backups (auto-backup-DATE), newest first, from its journal (kept across\n"
	"restarts): id, operation, state, reason or progress and when, and\n"
	"whether COM has acknowledged a final state yet. Exits 1 when the agent\n"
	"is not running.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"      --json          one JSON object instead of text\n";

static const char usage_logs[] =
	"Usage: comagent logs [-c FILE] [--since WHEN] [--level LEVEL]\n"
	"                     [--grep TEXT] [--follow]\n"
	"       comagent logs [-c FILE] --system\n"
	"\n"
	"Shows the agent's own diagnostic log ([log] file, its rotated copy\n"
	"first), for support staff on site. Lines are shown as written, with\n"
	"control characters as '?'.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"      --since WHEN    only entries from WHEN on: a UTC date or date-time\n"
	"                      (2026-11-23, 2026-11-23T10:51[:06][Z]) or a time\n"
	"                      ago (90s, 15m, 2h, 3d)\n"
	"      --level LEVEL   error, info or debug: that level and more severe\n"
	"      --grep TEXT     only lines containing TEXT (case-sensitive)\n"
	"  -f, --follow        keep showing new lines until interrupted\n"
	"      --system        list the PBX's log files in the log store with\n"
	"                      their upload state (asks the running agent)\n";

static const char usage_refresh[] =
	"Usage: comagent refresh-custom-files [-c FILE] [--prune]\n"
	"\n"
	"Asks the running agent to refresh the custom files now, as COM's\n"
	"\"refresh custom files\" does: CustomPhoneFiles.tar and\n"
	"CustomTemplates.tar from the provider, reseller and this system's\n"
	"folders on COM, in that order, a later folder's file replacing an\n"
	"earlier one's. Shows each step (per file) and a summary; a refused tar\n"
	"leaves the installed files as they were. CustomData.xml is never\n"
	"loaded again (only at the first connect). Exits 0 when the refresh\n"
	"succeeded, 1 otherwise (also when the agent is not running or busy).\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"      --prune         also remove files an earlier refresh installed\n"
	"                      that no folder ships any more\n";

static const char usage_custom[] =
	"Usage: comagent custom-files [-c FILE] [--json] [--prune]\n"
	"\n"
	"Lists the custom files the agent installed (from its manifest; the\n"
	"agent need not run): part (phones, templates), the folder it came from\n"
	"(provider, reseller, system), size, SHA-256 and name. Files the last\n"
	"refresh no longer shipped are marked; --prune asks the running agent to\n"
	"remove those (only while they are still the files it installed) first.\n"
	"\n"
	"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	"      --json          one JSON object instead of text\n"
	"      --prune         remove the files no longer shipped, then list\n";

static const char usage_version[] =
	"Usage: comagent version\n\nPrints the agent's version.\n";

static const char usage_keys[] =
	"Usage: comagent config-keys\n"
	"\n"
	"Lists every key the configuration file may hold, section by section,\n"
	"from the agent's own schema: its type, default (for keys whose default\n"
	"depends on [system] profile, each profile's), the values it accepts,\n"
	"whether it is required or secret, and rules between keys. Reads no\n"
	"configuration; comagent.ini.example describes what each key is for.\n";

static int parse_opts(int argc, char **argv, struct opts *o, bool allow_json,
		      bool allow_daemon, bool allow_prune)
{
	o->config = DEFAULT_CONFIG;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			o->help = true;
		} else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
			if (++i >= argc) {
				fprintf(stderr, "comagent: %s needs a file\n", a);
				return -1;
			}
			o->config = argv[i];
		} else if (allow_json && !strcmp(a, "--json")) {
			o->json = true;
		} else if (allow_daemon &&
			   (!strcmp(a, "-d") || !strcmp(a, "--daemon"))) {
			o->daemon = true;
		} else if (allow_prune && !strcmp(a, "--prune")) {
			o->prune = true;
		} else {
			fprintf(stderr, "comagent: unknown option '%s'\n", a);
			return -1;
		}
	}
	return 0;
}

/* ---- run ------------------------------------------------------------- */

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
	if (g_ctx)
		lws_cancel_service(g_ctx);
}

static void lws_emit(int level, const char *line)
{
	/* lws errors (TLS, DNS, proxy) are worth seeing; its chatter is not. */
	log_msg(level & LLL_ERR ? LOG_LVL_INFO : LOG_LVL_DEBUG, "lws", "%s",
		line);
}

static err_t mkparent(const char *file)
{
	char dir[4096];
	const char *slash = strrchr(file, '/');

	if (!slash || slash == file)
		return ERR_OK;
	if ((size_t)(slash - file) >= sizeof(dir))
		return ERR_INVAL;
	memcpy(dir, file, (size_t)(slash - file));
	dir[slash - file] = '\0';
	return state_mkdirs(dir, 0750);
}

/*
 * --daemon: the parent waits until the child says it is serving (exit 0) or
 * fails or dies (exit 1), so a daemon that cannot start says so on the
 * terminal instead of vanishing. Until then the child's errors still reach
 * stderr.
 */
static err_t daemon_start(int *ready_fd)
{
	int p[2];
	pid_t pid;

	if (pipe(p) != 0) {
		fprintf(stderr, "comagent: pipe: %s\n", strerror(errno));
		return ERR_IO;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "comagent: fork: %s\n", strerror(errno));
		return ERR_IO;
	}
	if (pid > 0) {
		char ok = 0;
		ssize_t n;

		close(p[1]);
		do
			n = read(p[0], &ok, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1 && ok == '1')
			_exit(EXIT_OK);
		fprintf(stderr, "comagent: the daemon did not start "
				"(see the messages above and the log)\n");
		_exit(EXIT_FAIL);
	}
	close(p[0]);
	fcntl(p[1], F_SETFD, FD_CLOEXEC);
	setsid();
	*ready_fd = p[1];
	return ERR_OK;
}

static void daemon_ready(int ready_fd)
{
	int fd;

	if (chdir("/") != 0)
		LOGE("chdir /: %s", strerror(errno));
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	log_set_stderr(false);
	if (write(ready_fd, "1", 1) != 1)
		LOGE("cannot tell the parent we are up: %s", strerror(errno));
	close(ready_fd);
}

struct app {
	const struct conf *conf;
	struct link *link;
	struct settings *settings;
	struct jobs *jobs;
	struct alarms *alarms;
	struct dispatch *dispatch;
	char version[64];
};

/* One job for the CLI that follows it: "STATE\tPROGRESS\tPHASE\tREASON\t
 * MESSAGE\n" (messages hold no tabs: they are sanitised names and our
 * words), or "error: no such job\n". */
static size_t job_line(const struct jobs *j, const char *id, char *buf,
		       size_t cap)
{
	const struct job_rec *r = jobs_find(j, id);
	int n = r ? snprintf(buf, cap, "%s\t%d\t%s\t%s\t%s\n",
			     job_state_name(r->state), r->progress, r->phase,
			     r->reason, r->message)
		  : snprintf(buf, cap, "error: no such job\n");

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/*
 * "raise TYPE SEVERITY ID TEXT", "clear ID", "list json|text": the
 * control socket's alarm requests (`comagent alarm`). Answers "ok COUNT"
 * (the alarm's count after a raise), "ok" or "error: why".
 */
static size_t alarm_answer(struct alarms *al, const char *req, char *buf,
			   size_t cap)
{
	char why[200] = "", word[3][ALARM_ID_MAX + 2];
	const char *p = req;
	int n, t, sv;
	err_t e;

	if (!strcmp(req, "list json") || !strcmp(req, "list text"))
		return status_render_alarms(al, req[5] == 'j', buf, cap);
	if (!strncmp(req, "clear ", 6)) {
		e = alarms_clear(al, req + 6, why, sizeof(why));
		n = e == ERR_OK ? snprintf(buf, cap, "ok\n")
				: snprintf(buf, cap, "error: %s\n", why);
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	if (strncmp(req, "raise ", 6)) {
		n = snprintf(buf, cap, "error: unknown alarm request\n");
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	p += 6;
	/* Three words, then the text (which may hold spaces). */
	for (int i = 0; i < 3; i++) {
		size_t len = strcspn(p, " ");

		if (!len || len >= sizeof(word[i]) || p[len] != ' ') {
			n = snprintf(buf, cap, "error: expected raise TYPE "
				     "SEVERITY ID TEXT\n");
			return n > 0 && (size_t)n < cap ? (size_t)n : 0;
		}
		memcpy(word[i], p, len);
		word[i][len] = '\0';
		p += len + 1;
	}
	t = alarm_type_lookup(word[0]);
	sv = alarm_severity_lookup(word[1]);
	if (t < 0)
		snprintf(why, sizeof(why), "unknown alarm type '%s'", word[0]);
	else if (sv < 0)
		snprintf(why, sizeof(why), "unknown severity '%s'", word[1]);
	else if (alarms_raise(al, word[2], (enum alarm_type)t,
			      (enum alarm_severity)sv, p, (int64_t)time(NULL),
			      why, sizeof(why)) == ERR_OK) {
		const struct alarm *x = alarms_find(al, word[2]);

		n = snprintf(buf, cap, "ok %lu\n",
			     (unsigned long)(x ? x->count : 0));
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	n = snprintf(buf, cap, "error: %s\n", why);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t ctl_answer(void *arg, const char *req, char *buf, size_t cap)
{
	struct app *a = arg;
	struct cert_info cert;
	struct status_src src = {
		.conf = a->conf, .link = a->link,
		.streams = dispatch_streams(a->dispatch),
		.settings = a->settings, .version = a->version,
		.operation = ops_current(dispatch_ops(a->dispatch)),
		.next_auto_backup = ops_next_auto(dispatch_ops(a->dispatch)),
		.logs = dispatch_logs(a->dispatch),
		.custom = dispatch_custom(a->dispatch),
		.health = dispatch_health(a->dispatch),
		.jobs = a->jobs, .alarms = a->alarms,
		.cert = ops_cert_info(dispatch_ops(a->dispatch), &cert) ?
			&cert : NULL,
	};
	int n;

	if (!strcmp(req, "status json"))
		return status_render(&src, true, buf, cap);
	if (!strcmp(req, "status text") || !strcmp(req, "status"))
		return status_render(&src, false, buf, cap);
	if (!strcmp(req, "jobs json") || !strcmp(req, "jobs text"))
		return status_render_jobs(a->jobs, req[5] == 'j', buf, cap);
	if (!strcmp(req, "logs list"))
		return logs_list(dispatch_logs(a->dispatch), buf, cap);
	if (!strncmp(req, "job ", 4))
		return job_line(a->jobs, req + 4, buf, cap);
	if (!strncmp(req, "alarm ", 6))
		return alarm_answer(a->alarms, req + 6, buf, cap);
	if (!strncmp(req, "custom-steps ", 13)) {
		char *end;
		unsigned long from;

		errno = 0;
		from = strtoul(req + 13, &end, 10);
		if (errno || *end || end == req + 13 || from > UINT32_MAX)
			n = snprintf(buf, cap, "error: bad step number\n");
		else
			return custom_steps(dispatch_custom(a->dispatch),
					    (unsigned)from, buf, cap);
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	if (!strcmp(req, "refresh-custom") ||
	    !strcmp(req, "refresh-custom prune")) {
		char id[JOB_ID_MAX + 1], why[200];

		if (ops_refresh_local(dispatch_ops(a->dispatch), req[14] != '\0',
				      false, id, sizeof(id), why,
				      sizeof(why)) == ERR_OK)
			n = snprintf(buf, cap, "ok %s\n", id);
		else
			n = snprintf(buf, cap, "error: %s\n", why);
	} else if (!strcmp(req, "custom-prune")) {
		char msg[256];

		n = snprintf(buf, cap, "%s%s\n",
			     custom_prune(dispatch_custom(a->dispatch), msg,
					  sizeof(msg)) == ERR_OK ? "ok " :
			     "error: ", msg);
	} else if (!strcmp(req, "service-user reload")) {
		err_t e = health_reload(dispatch_health(a->dispatch));

		n = snprintf(buf, cap, "%s\n", e == ERR_OK ? "ok" : "error");
	} else if (!strcmp(req, "settings reload")) {
		err_t e = settings_reload(a->settings);

		LOGI("remote-operation settings reloaded%s",
		     e == ERR_OK ? "" : " (with errors, see above)");
		/* "Remote operations not allowed" follows remoteupgrade. */
		dispatch_status_changed(a->dispatch);
		n = snprintf(buf, cap, "%s\n", e == ERR_OK ? "ok" : "error");
#ifdef COMAGENT_TESTING
	} else if (!strncmp(req, "test-clock ", 11)) {
		/* Test builds: shift the engine's wall clock (the automatic
		 * backup's tests); never in what gets installed. */
		char *end;
		long long off;

		errno = 0;
		off = strtoll(req + 11, &end, 10);
		if (errno || *end || end == req + 11 ||
		    off < -(100LL * 365 * 86400) || off > 100LL * 365 * 86400) {
			n = snprintf(buf, cap, "error: bad offset\n");
		} else {
			ops_clock_offset(dispatch_ops(a->dispatch), off);
			link_clock_offset(a->link, off);
			logs_clock_offset(dispatch_logs(a->dispatch), off);
			n = snprintf(buf, cap, "ok\n");
		}
#endif
	} else {
		n = snprintf(buf, cap, "error: unknown request\n");
	}
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

#define LWS_FD_LIMIT 1024

static struct lws_context *make_context(const struct conf *c, char *proxy,
					size_t proxy_cap)
{
	/* lws keeps a pointer to the table for the context's lifetime. */
	static struct lws_protocols protocols[7];
	struct lws_context_creation_info info, vi;
	struct lws_context *ctx;

	protocols[0] = link_protocol();
	protocols[1] = ctl_protocol();
	protocols[2] = streams_protocol();
	protocols[3] = hook_protocol();
	protocols[4] = logs_protocol();
	protocols[5] = health_protocol();
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	/* lws sizes its fd tables by the highest fd number it may see; the
	 * process ulimit can be 1M on servers. The agent holds a few hundred
	 * descriptors at most (tunnels <= max_streams, hooks, syslog, ctl), and
	 * the kernel hands out the lowest free number. */
	info.fd_limit_per_thread = LWS_FD_LIMIT;
	info.client_ssl_ca_filepath = conf_str(c, CONF_COM_CA_FILE);
	info.timeout_secs = (unsigned)(conf_num(c, CONF_COM_CONNECT_TIMEOUT) /
				       1000);
	/* lws would otherwise take the http_proxy environment variable: the
	 * configuration is the only source of the agent's proxy. */
	unsetenv("http_proxy");
	if (*conf_str(c, CONF_COM_PROXY)) {
		const char *user = conf_str(c, CONF_COM_PROXY_USER);
		const char *pass = conf_str(c, CONF_COM_PROXY_PASSWORD);
		int n;

		/* lws takes "user:pass@host:port" (it splits at the last '@',
		 * so '@' in the password is fine) and caps user:pass. */
		if (strlen(conf_str(c, CONF_COM_PROXY)) > PROXY_HOST_MAX) {
			LOGE("proxy address is longer than %d characters",
			     PROXY_HOST_MAX);
			return NULL;
		}
		if (*user && strlen(user) + 1 + strlen(pass) > PROXY_AUTH_MAX) {
			LOGE("proxy_user and proxy_password together exceed %d "
			     "characters", PROXY_AUTH_MAX);
			return NULL;
		}
		if (*user)
			n = snprintf(proxy, proxy_cap, "%s:%s@%s", user, pass,
				     conf_str(c, CONF_COM_PROXY));
		else
			n = snprintf(proxy, proxy_cap, "%s",
				     conf_str(c, CONF_COM_PROXY));
		if (n < 0 || (size_t)n >= proxy_cap) {
			LOGE("proxy address with credentials is too long");
			return NULL;
		}
		info.http_proxy_address = proxy;
	}
	ctx = lws_create_context(&info);
	if (!ctx)
		return NULL;
	/* The proxy above is for the COM link only; tunnels reach the LAN
	 * directly, from a vhost of their own. */
	memset(&vi, 0, sizeof(vi));
	vi.port = CONTEXT_PORT_NO_LISTEN;
	vi.protocols = protocols;
	vi.vhost_name = STREAM_VHOST;
	/* lws's own connect timeout must not beat tunnel_connect_timeout,
	 * whose expiry COM is told about as "timeout". */
	vi.connect_timeout_secs =
		(unsigned)(conf_num(c, CONF_COM_TUNNEL_CONNECT_TIMEOUT) / 1000) + 5;
	if (!lws_create_vhost(ctx, &vi)) {
		LOGE("cannot create the tunnels' vhost");
		lws_context_destroy(ctx);
		return NULL;
	}
	return ctx;
}

static void read_version(const struct conf *c, char *buf, size_t cap)
{
	if (*conf_str(c, CONF_SYSTEM_VERSION)) {
		snprintf(buf, cap, "%s", conf_str(c, CONF_SYSTEM_VERSION));
		return;
	}
	if (conf_platform(c)->read_version(conf_str(c, CONF_SYSTEM_ROOT), buf,
					   cap) != ERR_OK)
		snprintf(buf, cap, "unknown");
}

struct stopper {
	lws_sorted_usec_list_t sul;
	bool give_up;
};

static void give_up_cb(lws_sorted_usec_list_t *sul)
{
	lws_container_of(sul, struct stopper, sul)->give_up = true;
}

static void serve(struct lws_context *ctx, struct link *l)
{
	struct stopper st = { .give_up = false };
	bool stopping = false;

	while (!link_stopped(l) && !st.give_up) {
		if (lws_service(ctx, 0) < 0)
			break;
		if (g_stop && !stopping) {
			LOGI("stopping");
			stopping = true;
			link_shutdown(l);
			/* Also wakes the loop should nothing else happen. */
			lws_sul_schedule(ctx, 0, &st.sul, give_up_cb,
					 SHUTDOWN_GRACE_US);
		}
	}
	if (st.give_up)
		LOGI("COM did not confirm the close; leaving anyway");
	lws_sul_cancel(&st.sul);
}

static int cmd_run(const struct opts *o)
{
	struct conf *c = NULL;
	struct ctl *ctl = NULL;
	struct app app = { 0 };
	struct link_handler h;
	struct sigaction sa = { .sa_handler = SIG_DFL };
	char proxy[512];
	int rc = EXIT_FAIL, ready_fd = -1;
	err_t e;

	e = conf_load(o->config, stderr, &c);
	if (e != ERR_OK)
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	if (o->daemon && daemon_start(&ready_fd) != ERR_OK)
		goto out;
	if (mkparent(conf_str(c, CONF_LOG_FILE)) != ERR_OK ||
	    log_open(conf_str(c, CONF_LOG_FILE), conf_num(c, CONF_LOG_MAX_SIZE),
		     (enum log_level)conf_num(c, CONF_LOG_LEVEL), true) != ERR_OK)
		goto out;
	lws_set_log_level(LLL_ERR | LLL_WARN |
			  (log_get_level() >= LOG_LVL_DEBUG ? LLL_NOTICE : 0),
			  lws_emit);
	if (state_mkdirs(conf_str(c, CONF_SYSTEM_STATE_DIR), 0700) != ERR_OK ||
	    mkparent(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET)) != ERR_OK)
		goto out;
	app.conf = c;
	e = settings_load(conf_str(c, CONF_SYSTEM_STATE_DIR), &app.settings);
	if (!app.settings)
		goto out;
	/* A damaged settings file was reported line by line; what could be
	 * read applies and the agent keeps its link to COM regardless. The
	 * same goes for the job journal. */
	(void)jobs_open(conf_str(c, CONF_SYSTEM_STATE_DIR), &app.jobs);
	if (!app.jobs)
		goto out;
	(void)alarms_load(conf_str(c, CONF_SYSTEM_STATE_DIR), &app.alarms);
	if (!app.alarms)
		goto out;
	read_version(c, app.version, sizeof(app.version));
	LOGI("comagent %s starting: customer %s, system %s, profile %s, "
	     "version %s", COMAGENT_VERSION, conf_str(c, CONF_SYSTEM_CUSTOMER_ID),
	     conf_str(c, CONF_SYSTEM_SYSTEM_NAME), conf_str(c, CONF_SYSTEM_PROFILE),
	     app.version);

	g_ctx = make_context(c, proxy, sizeof(proxy));
	if (!g_ctx) {
		LOGE("cannot create the event loop (see lws errors above)");
		goto out;
	}
	app.dispatch = dispatch_new(g_ctx, c, app.settings, app.jobs,
				    app.alarms, app.version);
	if (!app.dispatch)
		goto out;
	h = dispatch_handler(app.dispatch);
	app.link = link_new(g_ctx, c, app.version, &h);
	if (!app.link)
		goto out;
	if (ctl_new(g_ctx, conf_str(c, CONF_SYSTEM_CONTROL_SOCKET), ctl_answer,
		    &app, &ctl) != ERR_OK)
		goto out;

	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	if (ready_fd >= 0) {
		daemon_ready(ready_fd);
		ready_fd = -1;
	}
	link_start(app.link);
	serve(g_ctx, app.link);
	LOGI("stopped");
	rc = EXIT_OK;
out:
	/* From here a signal has nothing left to stop. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	ctl_free(ctl);
	if (app.link)
		link_shutdown(app.link);
	dispatch_shutdown(app.dispatch);
	/* The context goes first: closing its sockets calls back into the
	 * link, which must still exist then. */
	if (g_ctx) {
		struct lws_context *ctx = g_ctx;

		g_ctx = NULL;
		lws_context_destroy(ctx);
	}
	link_free(app.link);
	dispatch_free(app.dispatch);
	jobs_free(app.jobs);
	alarms_free(app.alarms);
	settings_free(app.settings);
	conf_free(c);
	log_close();
	return rc;
}

/* ---- the other commands ---------------------------------------------- */

static int cmd_check(const struct opts *o)
{
	struct conf *c = NULL;
	err_t e = conf_load(o->config, stderr, &c);

	if (e != ERR_OK)
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	printf("%s: configuration OK\n", o->config);
	conf_free(c);
	return EXIT_OK;
}

static int cmd_hookrun(const struct opts *o)
{
	struct conf *c = NULL;
	err_t e;
	int rc;

	log_set_stderr(true);
	e = conf_load(o->config, stderr, &c);
	if (e != ERR_OK) {
		/* The agent waits for an answer: give it the reason. */
		(void)!dprintf(0, "error the runner's configuration %s is "
			       "not valid\n", o->config);
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	}
	rc = hookrun_serve(c, o->config, 0);
	conf_free(c);
	return rc ? EXIT_FAIL : EXIT_OK;
}

static int cmd_status(const struct opts *o)
{
	struct conf *c = NULL;
	err_t e = conf_load(o->config, stderr, &c);

	if (e != ERR_OK)
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	e = ctl_request(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
			o->json ? "status json" : "status text", stdout, false);
	conf_free(c);
	return e == ERR_OK ? EXIT_OK : EXIT_FAIL;
}

/* Asks the daemon: opening the journal here would mark its running job
 * interrupted. */
static int cmd_jobs(const struct opts *o)
{
	struct conf *c = NULL;
	err_t e = conf_load(o->config, stderr, &c);

	if (e != ERR_OK)
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	e = ctl_request(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
			o->json ? "jobs json" : "jobs text", stdout, false);
	conf_free(c);
	return e == ERR_OK ? EXIT_OK : EXIT_FAIL;
}

/* Asks the daemon; true with its answer in out (NUL-terminated, cut at
 * cap) if it answered. */
static bool ask_all(const char *sock, const char *req, char *out, size_t cap)
{
	FILE *f = fmemopen(out, cap, "w");
	err_t e;

	if (!f)
		return false;
	e = ctl_request(sock, req, f, false);
	fclose(f);
	out[cap - 1] = '\0';
	return e == ERR_OK;
}

/* The same, the first line only, without its newline. */
static bool ask(const char *sock, const char *req, char *out, size_t cap)
{
	bool ok = ask_all(sock, req, out, cap);

	out[strcspn(out, "\n")] = '\0';
	return ok;
}

#define STEPS_BUF 4096

/* Prints the refresh steps after *seen ("N\tTEXT" lines) and moves it. */
static bool show_steps(const char *sock, unsigned *seen, bool print)
{
	char req[48], buf[STEPS_BUF];

	snprintf(req, sizeof(req), "custom-steps %u", *seen);
	if (!ask_all(sock, req, buf, sizeof(buf)))
		return false;
	for (char *p = buf, *nl; *p && (nl = strchr(p, '\n')); p = nl + 1) {
		char *tab = strchr(p, '\t');
		unsigned long n;

		*nl = '\0';
		if (!tab || tab > nl)
			continue;
		n = strtoul(p, NULL, 10);
		if (n > *seen && n <= UINT32_MAX)
			*seen = (unsigned)n;
		if (print)
			printf("  %s\n", tab + 1);
	}
	fflush(stdout);
	return true;
}

/* Starts a refresh in the daemon and follows its job until it ends,
 * printing each new step. The job goes on if this is interrupted. */
static int cmd_refresh(const struct opts *o)
{
	struct conf *c = NULL;
	char line[512], req[96], id[80];
	unsigned seen = 0;
	const char *sock;
	struct sigaction sa;
	err_t e = conf_load(o->config, stderr, &c);
	int rc = EXIT_FAIL;

	if (e != ERR_OK)
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	sock = conf_str(c, CONF_SYSTEM_CONTROL_SOCKET);
	/* Only the steps of this refresh: those after the ones kept now. */
	if (!show_steps(sock, &seen, false))
		goto out;
	if (!ask(sock, o->prune ? "refresh-custom prune" : "refresh-custom",
		 line, sizeof(line)))
		goto out;
	if (strncmp(line, "ok ", 3)) {
		fprintf(stderr, "comagent: no refresh: %s\n",
			!strncmp(line, "error: ", 7) ? line + 7 : line);
		goto out;
	}
	if (strlen(line + 3) >= sizeof(id)) {
		fprintf(stderr, "comagent: odd answer: %s\n", line);
		goto out;
	}
	memcpy(id, line + 3, strlen(line + 3) + 1);
	printf("custom-files refresh %s started\n", id);
	fflush(stdout);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	snprintf(req, sizeof(req), "job %s", id);
	while (!g_stop) {
		char *f[5] = { line };
		int nf = 1;

		if (!ask(sock, req, line, sizeof(line)))
			goto out;
		for (char *p = line; *p && nf < 5; p++)
			if (*p == '\t') {
				*p = '\0';
				f[nf++] = p + 1;
			}
		if (nf < 5) {
			fprintf(stderr, "comagent: %s\n", line);
			goto out;
		}
		(void)show_steps(sock, &seen, true);
		if (!strcmp(f[0], "succeeded")) {
			printf("succeeded: %s\n", f[4]);
			rc = EXIT_OK;
			goto out;
		}
		if (!strcmp(f[0], "failed") || !strcmp(f[0], "rejected")) {
			printf("%s (%s): %s\n", f[0], f[3], f[4]);
			goto out;
		}
		/* A person watches: a few lines a second is enough. */
		nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
	}
	fprintf(stderr, "comagent: stopped following; the refresh goes on "
		"(comagent jobs shows it)\n");
out:
	conf_free(c);
	return rc;
}

static int cmd_custom(const struct opts *o)
{
	struct conf *c = NULL;
	char line[512];
	char *buf;
	size_t n;
	err_t e = conf_load(o->config, stderr, &c);
	int rc = EXIT_OK;

	if (e != ERR_OK)
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	if (o->prune) {
		if (!ask(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
			 "custom-prune", line, sizeof(line))) {
			conf_free(c);
			return EXIT_FAIL;
		}
		if (strncmp(line, "ok ", 3)) {
			fprintf(stderr, "comagent: no prune: %s\n",
				!strncmp(line, "error: ", 7) ? line + 7 : line);
			conf_free(c);
			return EXIT_FAIL;
		}
		fprintf(o->json ? stderr : stdout, "prune: %s\n", line + 3);
	}
	buf = malloc(CTL_REPLY_MAX * 4);
	if (!buf) {
		conf_free(c);
		return EXIT_FAIL;
	}
	n = custom_render_manifest(conf_str(c, CONF_SYSTEM_STATE_DIR), o->json,
				   buf, CTL_REPLY_MAX * 4, &e);
	if (e != ERR_OK) {
		fprintf(stderr, "comagent: %.*s", (int)n, buf);
		rc = EXIT_FAIL;
	} else {
		fwrite(buf, 1, n, stdout);
	}
	free(buf);
	conf_free(c);
	return rc;
}

__attribute__((format(printf, 1, 2)))
static int logs_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "comagent logs: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s", usage_logs);
	return EXIT_USAGE;
}

static int cmd_logs(int argc, char **argv)
{
	struct logview_opts lo = { .level = LOG_LVL_DEBUG, .stop = &g_stop };
	const char *config = DEFAULT_CONFIG;
	struct sigaction sa;
	bool system = false;
	struct conf *c = NULL;
	err_t e;
	int lvl;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		bool val = !strcmp(a, "-c") || !strcmp(a, "--config") ||
			   !strcmp(a, "--since") || !strcmp(a, "--level") ||
			   !strcmp(a, "--grep");

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_logs, stdout);
			return EXIT_OK;
		}
		if (val && i + 1 >= argc)
			return logs_usage_error("%s needs a value", a);
		if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
			config = argv[++i];
		} else if (!strcmp(a, "--since")) {
			if (!logview_parse_since(argv[++i], time(NULL),
						 &lo.since))
				return logs_usage_error("--since: '%s' is not a "
							"date, date-time or "
							"time ago", argv[i]);
		} else if (!strcmp(a, "--level")) {
			lvl = log_level_parse(argv[++i]);
			if (lvl < 0)
				return logs_usage_error("--level: '%s' is not "
							"error, info or debug",
							argv[i]);
			lo.level = (enum log_level)lvl;
		} else if (!strcmp(a, "--grep")) {
			lo.grep = argv[++i];
		} else if (!strcmp(a, "-f") || !strcmp(a, "--follow")) {
			lo.follow = true;
		} else if (!strcmp(a, "--system")) {
			system = true;
		} else {
			return logs_usage_error("unknown option '%s'", a);
		}
	}
	e = conf_load(config, stderr, &c);
	if (e != ERR_OK)
		return e == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	if (system) {
		e = ctl_request(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
				"logs list", stdout, false);
		conf_free(c);
		return e == ERR_OK ? EXIT_OK : EXIT_FAIL;
	}
	if (!*conf_str(c, CONF_LOG_FILE)) {
		fprintf(stderr, "comagent logs: no [log] file is configured; "
			"the agent logs to stderr only\n");
		conf_free(c);
		return EXIT_FAIL;
	}
	lo.path = conf_str(c, CONF_LOG_FILE);
	/* Follow mode ends cleanly on ^C or SIGTERM. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	e = logview_run(&lo, stdout, stderr);
	conf_free(c);
	return e == ERR_OK ? EXIT_OK : EXIT_FAIL;
}

static int settings_show(const struct settings *s, bool json)
{
	if (!json) {
		for (int k = 0; k < SET__COUNT; k++)
			printf("%-21s %s\n", settings_name((enum setting)k),
			       settings_get(s, (enum setting)k) ? "on" : "off");
		return EXIT_OK;
	}
	putchar('{');
	for (int k = 0; k < SET__COUNT; k++)
		printf("%s\"%s\":%s", k ? "," : "", settings_name((enum setting)k),
		       settings_get(s, (enum setting)k) ? "true" : "false");
	puts("}");
	return EXIT_OK;
}

/* KEY=0|1 (also on/off); -1 when malformed. */
static int parse_assignment(const char *a, int *key)
{
	const char *eq = strchr(a, '=');
	char name[32];

	if (!eq || (size_t)(eq - a) >= sizeof(name))
		return -1;
	memcpy(name, a, (size_t)(eq - a));
	name[eq - a] = '\0';
	*key = settings_lookup(name);
	if (*key < 0)
		return -1;
	if (!strcmp(eq + 1, "1") || !strcmp(eq + 1, "on"))
		return 1;
	if (!strcmp(eq + 1, "0") || !strcmp(eq + 1, "off"))
		return 0;
	return -1;
}

static int settings_change(struct settings *s, const struct conf *c,
			   char **assign, int n)
{
	int keys[SET__COUNT * 4], vals[SET__COUNT * 4];

	if (n < 1 || n > SET__COUNT * 4) {
		fputs(usage_settings, stderr);
		return EXIT_USAGE;
	}
	/* All or nothing: check every assignment before changing any. */
	for (int i = 0; i < n; i++) {
		vals[i] = parse_assignment(assign[i], &keys[i]);
		if (vals[i] < 0) {
			fprintf(stderr, "comagent: '%s' is not KEY=0|1 with KEY one "
				"of the settings (see comagent settings --help)\n",
				assign[i]);
			return EXIT_USAGE;
		}
	}
	for (int i = 0; i < n; i++)
		if (settings_set(s, (enum setting)keys[i], vals[i]) != ERR_OK) {
			fprintf(stderr, "comagent: cannot save the settings "
				"(see above)\n");
			return EXIT_FAIL;
		}
	/* A running agent re-reads them now; one that is not running reads
	 * them when it starts. */
	if (ctl_request(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
			"settings reload", NULL, true) != ERR_OK)
		printf("saved; the agent is not running and applies them when "
		       "it starts\n");
	else
		printf("saved and applied\n");
	return EXIT_OK;
}

static int cmd_settings(int argc, char **argv)
{
	const char *config = DEFAULT_CONFIG;
	char *pos[SET__COUNT * 4 + 2];
	struct settings *s = NULL;
	struct conf *c = NULL;
	bool json = false;
	int npos = 0, rc;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_settings, stdout);
			return EXIT_OK;
		} else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (++i >= argc) {
				fputs(usage_settings, stderr);
				return EXIT_USAGE;
			}
			config = argv[i];
		} else if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (npos < (int)(sizeof(pos) / sizeof(pos[0]))) {
			pos[npos++] = argv[i];
		} else {
			fputs(usage_settings, stderr);
			return EXIT_USAGE;
		}
	}
	if (npos < 1 || (strcmp(pos[0], "show") && strcmp(pos[0], "set")) ||
	    (!strcmp(pos[0], "show") && npos != 1)) {
		fputs(usage_settings, stderr);
		return EXIT_USAGE;
	}
	rc = (int)conf_load(config, stderr, &c);
	if (rc != ERR_OK)
		return rc == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	/* The agent may never have run: the state dir may not exist yet. */
	if (!strcmp(pos[0], "set") &&
	    state_mkdirs(conf_str(c, CONF_SYSTEM_STATE_DIR), 0700) != ERR_OK) {
		conf_free(c);
		return EXIT_FAIL;
	}
	/* A damaged file is reported line by line and shown as read. */
	(void)settings_load(conf_str(c, CONF_SYSTEM_STATE_DIR), &s);
	if (!s)
		rc = EXIT_FAIL;
	else if (!strcmp(pos[0], "show"))
		rc = settings_show(s, json);
	else
		rc = settings_change(s, c, pos + 1, npos - 1);
	settings_free(s);
	conf_free(c);
	return rc;
}

/* -c FILE anywhere among args; the rest into pos (at most npos_max).
 * -1 on a usage error. */
static int split_args(int argc, char **argv, const char **config,
		      char **pos, int npos_max, const char *usage)
{
	int npos = 0;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (++i >= argc)
				goto bad;
			*config = argv[i];
		} else if (npos < npos_max) {
			pos[npos++] = argv[i];
		} else {
			goto bad;
		}
	}
	return npos;
bad:
	fputs(usage, stderr);
	return -1;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

/* Sends one request; prints the answer's text after "ok" (or the error)
 * and returns the exit code. */
static int alarm_request(const struct conf *c, const char *req)
{
	char line[600];

	if (!ask(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET), req, line,
		 sizeof(line)))
		return EXIT_FAIL;
	if (!strncmp(line, "ok", 2)) {
		if (!strncmp(req, "alarm raise ", 12))
			printf("raised (count %s)\n", line + 3);
		else
			printf("cleared\n");
		return EXIT_OK;
	}
	fprintf(stderr, "comagent: %s\n",
		!strncmp(line, "error: ", 7) ? line + 7 : line);
	return EXIT_FAIL;
}

static int cmd_alarm(int argc, char **argv)
{
	const char *config = DEFAULT_CONFIG, *type = NULL, *sev = NULL;
	const char *id = NULL;
	char *pos[64], text[ALARM_TEXT_MAX + 1] = "", req[CTL_REQ_MAX];
	struct conf *c = NULL;
	bool json = false;
	int npos, ntext = 0, rc;
	size_t off = 0;

	if (wants_help(argc, argv)) {
		fputs(usage_alarm, stdout);
		return EXIT_OK;
	}
	npos = split_args(argc, argv, &config, pos, 64, usage_alarm);
	if (npos < 0)
		return EXIT_USAGE;
	if (npos < 1)
		goto usage;
	for (int i = 1; i < npos; i++) {
		const char **opt = !strcmp(pos[i], "--type") ? &type :
				   !strcmp(pos[i], "--severity") ? &sev :
				   !strcmp(pos[i], "--id") ? &id : NULL;

		if (opt) {
			if (++i >= npos || *opt)
				goto usage;
			*opt = pos[i];
		} else if (!strcmp(pos[i], "--json")) {
			json = true;
		} else if (pos[i][0] == '-' && pos[i][1] == '-') {
			goto usage;
		} else {
			int w = snprintf(text + off, sizeof(text) - off,
					 "%s%s", ntext ? " " : "", pos[i]);

			if (w < 0 || (size_t)w >= sizeof(text) - off) {
				fprintf(stderr, "comagent: the alarm text is "
					"longer than %d bytes\n",
					ALARM_TEXT_MAX);
				return EXIT_USAGE;
			}
			off += (size_t)w;
			ntext++;
		}
	}
	if (!strcmp(pos[0], "raise")) {
		if (!type || !sev || !id || !ntext || json)
			goto usage;
		if (alarm_type_lookup(type) < 0 ||
		    alarm_severity_lookup(sev) < 0 || strpbrk(id, " \n")) {
			fprintf(stderr, "comagent: unknown type or severity, "
				"or a space in the id\n\n");
			goto usage;
		}
		/* One line to the agent: it checks the rest (and says
		 * why), the text's control characters included. */
		if (strpbrk(text, "\n\r")) {
			fprintf(stderr, "comagent: the alarm text must be one "
				"line\n");
			return EXIT_USAGE;
		}
		snprintf(req, sizeof(req), "alarm raise %s %s %s %s", type,
			 sev, id, text);
	} else if (!strcmp(pos[0], "clear")) {
		if (!id || type || sev || ntext || json || strpbrk(id, " \n"))
			goto usage;
		snprintf(req, sizeof(req), "alarm clear %s", id);
	} else if (!strcmp(pos[0], "list")) {
		if (id || type || sev || ntext)
			goto usage;
		snprintf(req, sizeof(req), "alarm list %s",
			 json ? "json" : "text");
	} else {
		goto usage;
	}
	rc = (int)conf_load(config, stderr, &c);
	if (rc != ERR_OK)
		return rc == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	if (!strcmp(pos[0], "list"))
		rc = ctl_request(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET), req,
				 stdout, false) == ERR_OK ? EXIT_OK : EXIT_FAIL;
	else
		rc = alarm_request(c, req);
	conf_free(c);
	return rc;
usage:
	fputs(usage_alarm, stderr);
	return EXIT_USAGE;
}

static int cmd_svcuser(int argc, char **argv)
{
	const char *config = DEFAULT_CONFIG;
	char *pos[8], why[200], text[HEALTH_FILE_MAX];
	struct health_user_state u;
	struct conf *c = NULL;
	const char *dir;
	int npos, rc;

	if (wants_help(argc, argv)) {
		fputs(usage_svcuser, stdout);
		return EXIT_OK;
	}
	npos = split_args(argc, argv, &config, pos, 8, usage_svcuser);
	if (npos < 0)
		return EXIT_USAGE;
	if (npos < 1 || (strcmp(pos[0], "show") && strcmp(pos[0], "set")) ||
	    (!strcmp(pos[0], "show") && npos != 1) ||
	    (!strcmp(pos[0], "set") && npos < 2)) {
		fputs(usage_svcuser, stderr);
		return EXIT_USAGE;
	}
	rc = (int)conf_load(config, stderr, &c);
	if (rc != ERR_OK)
		return rc == ERR_IO ? EXIT_FAIL : EXIT_USAGE;
	dir = conf_str(c, CONF_SYSTEM_STATE_DIR);
	/* A damaged file was reported line by line; its valid lines hold. */
	(void)health_user_load(dir, &u);
	rc = EXIT_OK;
	if (!strcmp(pos[0], "show")) {
		if (health_user_render(&u, text, sizeof(text)))
			fputs(text, stdout);
		goto out;
	}
	/* All or nothing: every assignment checked before any is saved. */
	for (int i = 1; i < npos; i++)
		if (health_user_assign(&u, pos[i], why, sizeof(why)) != ERR_OK) {
			fprintf(stderr, "comagent: %s\n", why);
			rc = EXIT_USAGE;
			goto out;
		}
	if (state_mkdirs(dir, 0700) != ERR_OK ||
	    health_user_save(dir, &u) != ERR_OK) {
		fprintf(stderr, "comagent: cannot save (see above)\n");
		rc = EXIT_FAIL;
		goto out;
	}
	if (ctl_request(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
			"service-user reload", NULL, true) != ERR_OK)
		printf("saved; the agent is not running and reports it when "
		       "it starts\n");
	else
		printf("saved and reported\n");
out:
	conf_free(c);
	return rc;
}

struct command {
	const char *name;
	const char *usage;
	int (*fn)(const struct opts *o);
	bool json, daemon, prune;
};

static int cmd_version(const struct opts *o)
{
	(void)o;
	printf("comagent %s\n", COMAGENT_VERSION);
	return EXIT_OK;
}

static int cmd_keys(const struct opts *o)
{
	(void)o;
	conf_print_keys(stdout);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

static const struct command commands[] = {
	{ "run", usage_run, cmd_run, false, true, false },
	{ "check-config", usage_check, cmd_check, false, false, false },
	{ "config-keys", usage_keys, cmd_keys, false, false, false },
	{ "status", usage_status, cmd_status, true, false, false },
	{ "jobs", usage_jobs, cmd_jobs, true, false, false },
	{ "refresh-custom-files", usage_refresh, cmd_refresh, false, false,
	  true },
	{ "custom-files", usage_custom, cmd_custom, true, false, true },
	{ "version", usage_version, cmd_version, false, false, false },
	{ "hook-runner", usage_hookrun, cmd_hookrun, false, false, false },
};

/* Commands that parse their own arguments (positional ones, options
 * with values). */
static const struct {
	const char *name, *usage;
	int (*fn)(int argc, char **argv);
} own_args[] = {
	{ "settings", usage_settings, cmd_settings },
	{ "logs", usage_logs, cmd_logs },
	{ "alarm", usage_alarm, cmd_alarm },
	{ "service-user", usage_svcuser, cmd_svcuser },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct command *cmd;
	struct opts o = { 0 };

	if (argc < 2) {
		fputs(usage_main, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		cmd = argc > 2 && strcmp(argv[1], "help") == 0 ?
			      find_command(argv[2]) : NULL;
		for (size_t i = 0; argc > 2 && !strcmp(argv[1], "help") &&
				   i < sizeof(own_args) / sizeof(own_args[0]);
		     i++)
			if (!strcmp(argv[2], own_args[i].name)) {
				fputs(own_args[i].usage, stdout);
				return EXIT_OK;
			}
		fputs(cmd ? cmd->usage : usage_main, stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(&o);
	for (size_t i = 0; i < sizeof(own_args) / sizeof(own_args[0]); i++)
		if (!strcmp(argv[1], own_args[i].name))
			return own_args[i].fn(argc - 2, argv + 2);
	cmd = find_command(argv[1]);
	if (!cmd) {
		fprintf(stderr, "comagent: unknown command '%s'\n\n%s", argv[1],
			usage_main);
		return EXIT_USAGE;
	}
	if (parse_opts(argc - 2, argv + 2, &o, cmd->json, cmd->daemon,
		       cmd->prune) != 0) {
		fputs(cmd->usage, stderr);
		return EXIT_USAGE;
	}
	if (o.help) {
		fputs(cmd->usage, stdout);
		return EXIT_OK;
	}
	return cmd->fn(&o);
}
