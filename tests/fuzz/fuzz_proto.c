/*
 * fuzz_proto.c - libFuzzer target for the qes.v1 message parser
 * (qes_proto_parse: the raw-byte pre-scan, jansson, the envelope and every
 * schema in proto.c and proto_report.c).
 *
 * Properties checked on every input:
 *   - a refusal leaves no message behind, returns a negative qes_err and a
 *     non-empty error of printable ASCII (errors go to logs and close frames);
 *   - an accepted message rebuilds (qes_proto_build), the rebuilt text parses
 *     again to an equal message, and rebuilding that gives the same bytes:
 *     parser and builders agree, whatever the input;
 *   - the role filters accept exactly the types of their direction.
 * Seeds in corpus/proto/ are one valid message of each type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_err(const char *err)
{
	size_t i;

	if (err[0] == '\0')
		abort();
	for (i = 0; err[i] != '\0'; i++)
		if (err[i] < 0x20 || err[i] > 0x7e)
			abort();
}

static int
from_agent(qes_proto_type t)
{
	return t == QES_PROTO_HELLO || t == QES_PROTO_AUTH || t == QES_PROTO_INVENTORY ||
	    t == QES_PROTO_SIGN_RESULT || t == QES_PROTO_DIAGNOSE_RESULT ||
	    t == QES_PROTO_ERROR || t == QES_PROTO_PING || t == QES_PROTO_PONG ||
	    t == QES_PROTO_SIGN_STATUS;
}

static int
from_gateway(qes_proto_type t)
{
	return t == QES_PROTO_CHALLENGE || t == QES_PROTO_AUTH_OK || t == QES_PROTO_SIGN ||
	    t == QES_PROTO_DIAGNOSE || t == QES_PROTO_CANCEL || t == QES_PROTO_ERROR ||
	    t == QES_PROTO_PING || t == QES_PROTO_PONG;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qes_proto_msg *m = NULL, *m2 = NULL, *mr = NULL;
	qes_buf *b1 = NULL, *b2 = NULL;
	qes_proto_limits gw, ag;
	char err[256];
	int r;

	r = qes_proto_parse(data, size, NULL, &m, err, sizeof(err));
	if (r != 0) {
		if (m != NULL || r >= 0)
			abort();
		check_err(err);
		return 0;
	}
	if (m == NULL || qes_proto_type_name(m->type) == NULL || !qes_proto_id_ok(m->id))
		abort();

	qes_proto_limits_init(&gw, QES_PROTO_ROLE_GATEWAY);
	qes_proto_limits_init(&ag, QES_PROTO_ROLE_AGENT);
	r = qes_proto_parse(data, size, &gw, &mr, err, sizeof(err));
	if ((r == 0) != from_agent(m->type))
		abort();
	qes_proto_msg_free(mr);
	mr = NULL;
	r = qes_proto_parse(data, size, &ag, &mr, err, sizeof(err));
	if ((r == 0) != from_gateway(m->type))
		abort();
	qes_proto_msg_free(mr);

	if ((b1 = qes_buf_new()) == NULL || (b2 = qes_buf_new()) == NULL)
		abort();
	if (qes_proto_build(m, b1, err, sizeof(err)) != 0)
		abort();
	if (qes_proto_parse(qes_buf_data(b1), qes_buf_len(b1), NULL, &m2, err,
	    sizeof(err)) != 0)
		abort();
	if (!qes_proto_msg_equal(m, m2) || !qes_proto_msg_equal(m2, m))
		abort();
	if (qes_proto_build(m2, b2, NULL, 0) != 0 ||
	    qes_buf_len(b1) != qes_buf_len(b2) ||
	    memcmp(qes_buf_data(b1), qes_buf_data(b2), qes_buf_len(b1)) != 0)
		abort();
	if (m->type == QES_PROTO_SIGN) {
		char code[QES_PROTO_VCODE_LEN + 1];

		if (qes_verification_code(m->u.sign.md, m->u.sign.digests,
		    m->u.sign.n_digests, code) != 0 ||
		    strcmp(code, m->u.sign.verification_code) != 0)
			abort();
	}
	qes_proto_msg_free(m2);
	qes_proto_msg_free(m);
	qes_buf_free(b1);
	qes_buf_free(b2);
	return 0;
}
