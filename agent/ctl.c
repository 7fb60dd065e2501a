/*
 * ctl — the local control socket (see ctl.h).
 *
 * The listening socket is ours (so we decide unlink/permissions); lws only
 * watches it as a raw file descriptor and tells us when to accept. Accepted
 * connections are adopted by lws as raw sockets so reading and writing never
 * block the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"
#include "../platform/platform.h"

#define LOG_MODULE "ctl"
#define CTL_IDLE_S 5
/* Concurrent clients; more are accepted and closed at once. */
#define CTL_MAX_CONNS 8
#define CTL_REFUSED "error: not allowed (root, the agent's user or its group only)\n"
/* After accept() fails for lack of descriptors, stop listening this long
 * rather than spin on a listener that stays readable. */
#define CTL_PAUSE_US (1 * LWS_USEC_PER_SEC)

struct ctl {
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct lws *listen_wsi;
	int fd;
	bool bound;		/* we created the socket file at path */
	unsigned conns;
	lws_sorted_usec_list_t sul_resume;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctl_answer_fn fn;
	void *arg;
};

/* Per-connection state, lws allocates it (per_session_data_size). */
struct ctl_conn {
	char req[CTL_REQ_MAX];
	size_t req_len;
	unsigned char *reply;	/* LWS_PRE headroom first */
	size_t reply_len;
};

static err_t fill_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return ERR_INVAL;
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return ERR_OK;
}

/* Only a socket nobody answers on (ECONNREFUSED) is stale and ours to
 * replace; anything else (a daemon answering, a full backlog, no access)
 * means leave it alone. Non-blocking, so a busy daemon cannot stall us. */
static bool is_stale(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool stale;

	if (fd < 0)
		return false;
	stale = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 &&
		errno == ECONNREFUSED;
	close(fd);
	return stale;
}

static err_t listen_on(struct ctl *c)
{
	struct sockaddr_un sa;
	struct stat st;

	if (fill_addr(c->path, &sa) != ERR_OK) {
		LOGE("control socket path too long: %s", c->path);
		return ERR_INVAL;
	}
	if (lstat(c->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			LOGE("%s exists and is not a socket; not replacing it",
			     c->path);
			return ERR_STATE;
		}
		if (!is_stale(&sa)) {
			LOGE("%s is in use (another comagent running?)",
			     c->path);
			return ERR_STATE;
		}
		unlink(c->path);
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		LOGE("cannot bind %s: %s", c->path, strerror(errno));
		return ERR_IO;
	}
	c->bound = true;
	if (chmod(c->path, 0660) != 0 || listen(c->fd, 8) != 0) {
		LOGE("cannot listen on %s: %s", c->path, strerror(errno));
		return ERR_IO;
	}
	return ERR_OK;
}

err_t ctl_new(struct lws_context *ctx, const char *path, ctl_answer_fn fn,
	      void *arg, struct ctl **out)
{
	struct ctl *c = calloc(1, sizeof(*c));
	lws_sock_file_fd_type u;
	err_t e;

	*out = NULL;
	if (!c) {
		LOGE("out of memory");
		return ERR_NOMEM;
	}
	c->fd = -1;
	c->ctx = ctx;
	c->fn = fn;
	c->arg = arg;
	if (strlen(path) >= sizeof(c->path)) {
		LOGE("control socket path is longer than %zu characters: %s",
		     sizeof(c->path) - 1, path);
		e = ERR_INVAL;
		goto fail;
	}
	memcpy(c->path, path, strlen(path) + 1);
	e = listen_on(c);
	if (e != ERR_OK)
		goto fail;
	c->vh = lws_get_vhost_by_name(ctx, "default");
	u.filefd = c->fd;
	c->listen_wsi = c->vh ? lws_adopt_descriptor_vhost(c->vh,
				LWS_ADOPT_RAW_FILE_DESC, u, CTL_PROTOCOL, NULL)
			      : NULL;
	if (!c->listen_wsi) {
		LOGE("cannot watch control socket %s", path);
		e = ERR_STATE;
		goto fail;
	}
	lws_set_opaque_user_data(c->listen_wsi, c);
	*out = c;
	return ERR_OK;
fail:
	ctl_free(c);
	return e;
}

void ctl_free(struct ctl *c)
{
	if (!c)
		return;
	lws_sul_cancel(&c->sul_resume);
	if (c->listen_wsi)
		lws_set_opaque_user_data(c->listen_wsi, NULL);
	/* The fd belongs to lws once adopted; it closes it with the context. */
	if (!c->listen_wsi && c->fd >= 0)
		close(c->fd);
	if (c->bound)
		unlink(c->path);
	free(c);
}

static void resume_cb(lws_sorted_usec_list_t *sul)
{
	struct ctl *c = lws_container_of(sul, struct ctl, sul_resume);

	if (c->listen_wsi)
		lws_rx_flow_control(c->listen_wsi, 1);
}

static void accept_all(struct ctl *c)
{
	for (;;) {
		int fd = accept(c->fd, NULL, NULL);
		lws_sock_file_fd_type u;
		struct lws *wsi;

		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			LOGE("accept on %s: %s; pausing the control socket",
			     c->path, strerror(errno));
			lws_rx_flow_control(c->listen_wsi, 0);
			lws_sul_schedule(c->ctx, 0, &c->sul_resume, resume_cb,
					 CTL_PAUSE_US);
			return;
		}
		if (c->conns >= CTL_MAX_CONNS) {
			LOGE("more than %d control clients; one turned away",
			     CTL_MAX_CONNS);
			close(fd);
			continue;
		}
		/* lws makes the adopted socket non-blocking itself. */
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
			LOGE("control connection: fcntl: %s", strerror(errno));
			close(fd);
			continue;
		}
		u.sockfd = fd;
		wsi = lws_adopt_descriptor_vhost(c->vh, LWS_ADOPT_SOCKET, u,
						 CTL_PROTOCOL, NULL);
		if (!wsi) {
			LOGE("cannot adopt control connection");
			/* lws closes the fd when adoption fails */
			continue;
		}
		lws_set_opaque_user_data(wsi, c);
		c->conns++;
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, CTL_IDLE_S);
	}
}

static int on_rx(struct ctl *c, struct lws *wsi, struct ctl_conn *cc,
		 const char *in, size_t len)
{
	char who[48];
	const char *nl;

	if (cc->reply)
		return 0;	/* already answering; ignore the rest */
	if (cc->req_len + len >= sizeof(cc->req)) {
		LOGE("control request over %d bytes; dropped", CTL_REQ_MAX);
		return -1;
	}
	memcpy(cc->req + cc->req_len, in, len);
	cc->req_len += len;
	cc->req[cc->req_len] = '\0';
	nl = memchr(cc->req, '\n', cc->req_len);
	if (!nl)
		return 0;
	cc->req[nl - cc->req] = '\0';
	cc->reply = malloc(LWS_PRE + CTL_REPLY_MAX);
	if (!cc->reply) {
		LOGE("out of memory answering a control request");
		return -1;
	}
	/* Defence in depth behind the socket's 0660: a socket made reachable
	 * by mistake still answers no one else. Asked once the request is
	 * read, so the refusal is an answer like any other (closing on unread
	 * input would reset the connection before the client reads why). */
	if (!platform_peer_allowed(lws_get_socket_fd(wsi), who, sizeof(who))) {
		LOGE("control socket: %s refused (not root, the agent's user "
		     "or its group)", who);
		cc->reply_len = strlen(CTL_REFUSED);
		memcpy(cc->reply + LWS_PRE, CTL_REFUSED, cc->reply_len);
	} else {
		cc->reply_len = c->fn(c->arg, cc->req,
				      (char *)cc->reply + LWS_PRE,
				      CTL_REPLY_MAX);
	}
	lws_callback_on_writable(wsi);
	return 0;
}

static int ctl_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
		     void *user, void *in, size_t len)
{
	struct ctl *c = lws_get_opaque_user_data(wsi);
	struct ctl_conn *cc = user;

	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (c)
			accept_all(c);
		return 0;
	case LWS_CALLBACK_RAW_RX:
		return c && cc ? on_rx(c, wsi, cc, in, len) : -1;
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (!cc || !cc->reply)
			return 0;
		if (cc->reply_len &&
		    lws_write(wsi, cc->reply + LWS_PRE, cc->reply_len,
			      LWS_WRITE_RAW) < (int)cc->reply_len)
			return -1;
		cc->reply_len = 0;
		/* Close once lws has flushed anything it had to buffer. */
		if (lws_partial_buffered(wsi)) {
			lws_callback_on_writable(wsi);
			return 0;
		}
		return -1;
	case LWS_CALLBACK_RAW_CLOSE:
		if (c && c->conns)
			c->conns--;
		if (cc) {
			free(cc->reply);
			cc->reply = NULL;
		}
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		/* lws closed the listener (and its fd) itself. */
		if (c) {
			c->listen_wsi = NULL;
			c->fd = -1;
		}
		return 0;
	default:
		return 0;
	}
}

struct lws_protocols ctl_protocol(void)
{
	struct lws_protocols p = {
		.name = CTL_PROTOCOL,
		.callback = ctl_lws_callback,
		.per_session_data_size = sizeof(struct ctl_conn),
		.rx_buffer_size = CTL_REQ_MAX,
		/* else lws sends the answer in rx_buffer_size pieces */
		.tx_packet_size = CTL_REPLY_MAX,
	};
	return p;
}

/* ---- client side ----------------------------------------------------- */

static void complain(bool quiet, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void complain(bool quiet, const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	fputs("comagent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

err_t ctl_request(const char *path, const char *req, FILE *out, bool quiet)
{
	struct sockaddr_un sa;
	struct timeval tmo = { .tv_sec = CTL_IDLE_S };
	char buf[4096];
	size_t total = 0;
	err_t e = ERR_OK;
	int fd = -1;

	if (fill_addr(path, &sa) != ERR_OK) {
		complain(quiet, "control socket path too long: %s", path);
		return ERR_INVAL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* A wedged daemon must not hang the CLI. */
	if (fd >= 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (errno == EACCES || errno == EPERM) {
			complain(quiet, "no permission to use %s (root, the "
				 "agent's user and members of its group "
				 "only): %s", path, strerror(errno));
			e = ERR_PERM;
		} else {
			complain(quiet, "the daemon is not running (cannot "
				 "connect to %s: %s)", path, strerror(errno));
			e = ERR_NOTFOUND;
		}
		goto out;
	}
	/* A refused peer may find the socket closed before its request is
	 * out: the answer that says why is still there to read. */
	if ((send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req) ||
	     send(fd, "\n", 1, MSG_NOSIGNAL) != 1) && errno != EPIPE &&
	    errno != ECONNRESET) {
		complain(quiet, "cannot send to %s: %s", path, strerror(errno));
		e = ERR_IO;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				complain(quiet, "no answer from the daemon on "
					 "%s within %d s", path, CTL_IDLE_S);
			else
				complain(quiet, "reading from %s: %s", path,
					 strerror(errno));
			e = ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		if (total == 0 && (size_t)n >= strlen(CTL_REFUSED) &&
		    !memcmp(buf, CTL_REFUSED, strlen(CTL_REFUSED))) {
			complain(quiet, "%s refused this user: %.*s", path,
				 (int)strlen(CTL_REFUSED) - 1, buf);
			e = ERR_PERM;
			goto out;
		}
		total += (size_t)n;
		if (total > CTL_REPLY_MAX) {
			complain(quiet, "answer over %d bytes", CTL_REPLY_MAX);
			e = ERR_LIMIT;
			goto out;
		}
		if (out)
			fwrite(buf, 1, (size_t)n, out);
	}
	if (total == 0) {
		complain(quiet, "empty answer from %s", path);
		e = ERR_PROTO;
	}
out:
	if (fd >= 0)
		close(fd);
	return e;
}
