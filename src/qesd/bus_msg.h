/*
 * bus_msg.h - the envelopes qesd replicas exchange on the bus (bus.h):
 * encoding, and the bounded parser every received message goes through.
 *
 * An envelope is one line of compact JSON (the header), a newline, and an
 * optional body of raw bytes:
 *
 *   {"v":1,"op":"send","t":"ten_...","d":"dev_..."}\n<qes.v1 frame>
 *
 * The header carries a version (v, 1 today: a replica refuses what it does
 * not know instead of guessing), the operation and its small fields; the
 * body carries what is large and already has its own format (a qes.v1 text
 * frame for the device, a diagnosis report), so nothing is escaped twice.
 *
 *   op           direction        header fields           body
 *   send         to the holder    t d                     the frame
 *   live         to the holder    t d                     -
 *   close        to the holder    t d code reason         -
 *   diag         to the holder    t d ref                 -
 *   replace      to the holder    t d s since_ms          - (no reply)
 *   reply        from the holder  r [s]                   -
 *   diag_result  from the holder  t d ref outcome s rtt_ms scan_ms total_ms
 *                                 [agent_error close_reason invalid]
 *                                                         report (outcome ok)
 *   job          to every replica t j                     -
 *
 * Limits: the header at most QESD_BUS_HEADER_MAX bytes, the body at most
 * QESD_BUS_BODY_MAX, ids [A-Za-z0-9_] shorter than QESD_ID_SIZE (so they
 * are safe as NATS subject tokens), a ref [A-Za-z0-9_-]{1,32}, short words
 * for results and reasons. Anything else is QES_ERR_FORMAT (or
 * QES_ERR_LIMIT for sizes, QES_ERR_UNSUPPORTED for another version); the
 * receiver logs and drops it.
 */
#ifndef QESD_BUS_MSG_H
#define QESD_BUS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"
#include "qes/proto.h"
#include "store.h"

#define QESD_BUS_VERSION	1
#define QESD_BUS_HEADER_MAX	2048
#define QESD_BUS_BODY_MAX	(QES_PROTO_MAX_BYTES + 64 * 1024)
#define QESD_BUS_REF_MAX	32
#define QESD_BUS_WORD_MAX	64	/* reply results, outcomes, agent codes */
#define QESD_BUS_TEXT_MAX	128	/* close reasons, invalid-report texts */

typedef enum qesd_bus_op {
	QESD_BUS_SEND = 1,
	QESD_BUS_LIVE,
	QESD_BUS_CLOSE,
	QESD_BUS_DIAG,
	QESD_BUS_REPLY,
	QESD_BUS_DIAG_RESULT,
	QESD_BUS_JOB,
	QESD_BUS_REPLACE,
} qesd_bus_op;

/* One envelope. Strings are copied in; body is borrowed from the input
 * of qesd_bus_msg_decode (or from the caller, for encode). */
typedef struct qesd_bus_msg {
	qesd_bus_op op;
	char tenant_id[QESD_ID_SIZE];		/* t */
	char device_id[QESD_ID_SIZE];		/* d */
	char job_id[QESD_ID_SIZE];		/* j */
	char session_id[QESD_ID_SIZE];		/* s: reply (live), diag_result,
						 * replace (the newer session) */
	int64_t since_ms;			/* replace: its connect time, > 0 */
	char ref[QESD_BUS_REF_MAX + 1];		/* diag, diag_result */
	/* reply: 0, QES_ERR_NOT_FOUND, QES_ERR_LIMIT, QES_ERR_INVALID_ARG
	 * ("ok", "not_found", "limit", "invalid") */
	int result;
	int close_code;				/* close: 4000..4999 */
	char reason[QESD_BUS_TEXT_MAX];		/* close */
	char outcome[QESD_BUS_WORD_MAX];	/* diag_result: qesd_diag_outcome_name */
	int64_t rtt_ms, scan_ms, total_ms;	/* diag_result; -1: none */
	char agent_error[QESD_BUS_WORD_MAX + 1];	/* diag_result, "" none */
	char close_reason[QESD_BUS_WORD_MAX];	/* diag_result, "" none */
	char invalid[QESD_BUS_TEXT_MAX];	/* diag_result, "" none */
	const uint8_t *body;			/* send: frame; diag_result: report */
	size_t body_len;
} qesd_bus_msg;

/* A zeroed envelope of op (times -1). */
void qesd_bus_msg_init(qesd_bus_msg *m, qesd_bus_op op);

/* 1 when s is a valid id for the bus (and a NATS subject token). */
int qesd_bus_id_ok(const char *s);

/*
 * Append m's envelope to out. QES_ERR_INVALID_ARG when a field the op
 * needs is missing or invalid (the same rules as the parser), QES_ERR_LIMIT
 * when the body is too large, QES_ERR_ALLOC.
 */
int qesd_bus_msg_encode(const qesd_bus_msg *m, qes_buf *out);

/*
 * Parse an envelope of len bytes; out->body points into data. 0,
 * QES_ERR_FORMAT, QES_ERR_LIMIT, QES_ERR_UNSUPPORTED (another version).
 */
int qesd_bus_msg_decode(const uint8_t *data, size_t len, qesd_bus_msg *out);

/* The op's name ("send", ...) or NULL. */
const char *qesd_bus_op_name(qesd_bus_op op);

#endif
