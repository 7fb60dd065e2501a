/*
 * intake — the parsing and framing half of the agent's syslog receiver.
 *
 * The PBX sends syslog to the agent over UDP and TCP; the socket code hands
 * the bytes to this module, which says what a message is and, on TCP, where
 * each message ends. Pure: no I/O, no clock, no logging (the caller counts
 * by kind and logs summaries). (Not called "syslog": agent/ is on the
 * include path, and an agent/syslog.h would shadow the system <syslog.h>.)
 *
 * Classification (intake_classify), first match wins:
 *  - BINARY: a control character other than TAB, LF and CR (C0, DEL, C1;
 *    a multi-line message is text, the store makes it one line) or
 *    bytes that are not strict UTF-8 (overlong forms, surrogates, beyond
 *    U+10FFFF, cut sequences). A BOM is valid UTF-8, so the BOM RFC 5424
 *    allows before MSG passes. RFC 5424's MSG-ANY (any octets) is counted
 *    here too: the agent stores text only.
 *  - MALFORMED: empty, no valid PRI ("<" 0..191 ">", no leading zero but
 *    "<0>"), or a broken RFC 5424 header: after "<PRI>1 " every field of
 *    TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA must be there,
 *    NILVALUE "-" or within the RFC's charset and length, and SD followed
 *    by the end or SP MSG. The timestamp is checked for its shape only
 *    (YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm), digits not ranges), and
 *    up to 9 fraction digits are let through where the RFC says 6: senders
 *    with nanosecond clocks exist and their messages are otherwise fine.
 *    Also MALFORMED: another VERSION ("<PRI>2 " and so on) followed by a
 *    5424-shaped timestamp field: a syslog version this agent cannot read.
 *  - RFC5424: "<PRI>1 " and a header as above.
 *  - RFC3164: anything else after a valid PRI, even nothing; RFC 3164's
 *    TIMESTAMP HOSTNAME TAG are conventions that relays are told to repair,
 *    not requirements (so "<13>2 files deleted" is 3164 text).
 * The agent stores RFC5424 and RFC3164 messages verbatim.
 *
 * TCP framing (RFC 6587), one framer per connection; the first byte of each
 * frame decides:
 *  - '1'..'9': octet counting, "MSG-LEN SP SYSLOG-MSG", MSG-LEN 1 to 9
 *    digits (< 10^9) without a leading zero;
 *  - '<': non-transparent framing: the message ends at LF or NUL (a trailer
 *    some senders use); one CR before it is dropped (CR LF);
 *  - LF, CR, NUL between frames are skipped (stray trailers, keep-alives);
 *  - anything else, a MSG-LEN that is not 1..9 digits then SP: the stream
 *    cannot be resynchronised, so it is a framing error.
 * A message longer than msg_max is delivered cut to msg_max with truncated
 * set, as soon as that is known; the rest of it is skipped (octet counting:
 * exactly the announced length; LF framing: up to the next LF or NUL), and
 * the messages after it arrive intact. Bytes may arrive split anywhere.
 * The framer buffers at most msg_max + 1 bytes (the extra one a CR that may
 * be the CR of CR LF).
 */
#ifndef COMAGENT_INTAKE_H
#define COMAGENT_INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* intake_tcp_new's msg_max is 1..this. RFC 5424 asks receivers for 2048
 * and allows more; a MiB per connection is already generous. */
#define INTAKE_MSG_MAX_LIMIT (1u << 20)
/* MSG-LEN digits: 9 keeps every announced length below 10^9. */
#define INTAKE_LEN_DIGITS 9

enum intake_kind {
	INTAKE_RFC5424 = 0,
	INTAKE_RFC3164,
	INTAKE_MALFORMED,
	INTAKE_BINARY,
};
#define INTAKE_KINDS 4	/* for the caller's per-kind counters */

/* What msg[0..len) is (rules above). Any length; msg NULL counts as empty. */
enum intake_kind intake_classify(const char *msg, size_t len);
/* "rfc5424", "rfc3164", "malformed", "binary"; "unknown" otherwise. */
const char *intake_kind_name(enum intake_kind kind);

/* The length of a UDP datagram without its trailing LF, CR and NUL bytes
 * (any number, any order): many senders end UDP syslog with "\n" or "\0". */
size_t intake_trim(const char *msg, size_t len);

struct intake_tcp;

/* Called once per message, in stream order. m is valid during the call
 * only and is not NUL-terminated. The callback must not call intake_tcp_*
 * on the framer that called it. */
typedef void intake_msg_fn(void *arg, const char *m, size_t len,
			   bool truncated);

/* A framer for one connection; msg_max 1..INTAKE_MSG_MAX_LIMIT. NULL for
 * a bad msg_max or no memory. */
struct intake_tcp *intake_tcp_new(size_t msg_max);
void intake_tcp_free(struct intake_tcp *f);

/*
 * Feeds the next n bytes of the stream; calls msg for every message they
 * complete (and for every message cut at msg_max). ERR_PROTO on a framing
 * error: the messages before it were delivered, the caller closes the
 * connection, and every later feed returns ERR_PROTO too. ERR_INVAL for f
 * or msg NULL, or p NULL with n > 0.
 */
err_t intake_tcp_feed(struct intake_tcp *f, const uint8_t *p, size_t n,
		      intake_msg_fn *msg, void *arg);

/* Bytes received of a frame not delivered yet, its MSG-LEN and SP
 * included: non-zero when the peer closes means a last message was lost
 * incomplete. 0 between frames and while skipping the rest of a message
 * already delivered truncated. */
size_t intake_tcp_pending(const struct intake_tcp *f);

#endif
