/*
 * der.c - the strict DER TLV reader declared in der.h.
 *
 * Only what X.690 DER allows is accepted: one-byte tags, definite minimal
 * lengths. Being strict here matters because two parsers that disagree on
 * where a value ends can be made to see different certificates in the same
 * bytes; rejecting anything that is not canonical removes that room.
 */
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"

#include "der.h"

static int
der_get_len(qes_cursor *c, size_t *out)
{
	uint8_t b, i, n;
	size_t len = 0;
	int r;

	if ((r = qes_cursor_get_u8(c, &b)) != 0)
		return r;
	if (b < 0x80) {
		*out = b;
		return 0;
	}
	/* 0x80 is the indefinite form (BER only), 0xff is reserved */
	if (b == 0x80 || b == 0xff)
		return QES_ERR_FORMAT;
	n = b & 0x7f;
	if (n > QES_DER_MAX_LEN_OCTETS)
		return QES_ERR_LIMIT;
	for (i = 0; i < n; i++) {
		if ((r = qes_cursor_get_u8(c, &b)) != 0)
			return r;
		if (i == 0 && b == 0)
			return QES_ERR_FORMAT;	/* leading zero octet: not minimal */
		len = len << 8 | b;
	}
	if (len < 0x80)
		return QES_ERR_FORMAT;	/* the short form was required */
	*out = len;
	return 0;
}

int
qes_der_get_tlv(qes_cursor *c, uint8_t *tag, qes_cursor *value)
{
	qes_cursor tmp = *c;
	uint8_t t;
	size_t len;
	int r;

	if ((r = qes_cursor_get_u8(&tmp, &t)) != 0)
		return r;
	/* tag 0 is end-of-contents (BER); 0x1f in the low bits: multi-byte tag */
	if (t == 0 || (t & 0x1f) == 0x1f)
		return QES_ERR_FORMAT;
	if ((r = der_get_len(&tmp, &len)) != 0)
		return r;
	if ((r = qes_cursor_sub(&tmp, len, value)) != 0)
		return r;
	*tag = t;
	*c = tmp;
	return 0;
}

int
qes_der_expect(qes_cursor *c, uint8_t tag, qes_cursor *value)
{
	qes_cursor tmp = *c, v;
	uint8_t t;
	int r;

	if ((r = qes_der_get_tlv(&tmp, &t, &v)) != 0)
		return r;
	if (t != tag)
		return QES_ERR_FORMAT;
	*value = v;
	*c = tmp;
	return 0;
}

int
qes_der_peek_tag(const qes_cursor *c, uint8_t *tag)
{
	return qes_cursor_peek_u8(c, tag);
}

int
qes_der_get_oid(qes_cursor *c, qes_cursor *oid)
{
	qes_cursor tmp = *c, v, walk;
	uint8_t b;
	int arc_start = 1, r;

	if ((r = qes_der_expect(&tmp, QES_DER_OID, &v)) != 0)
		return r;
	if (qes_cursor_remaining(&v) == 0)
		return QES_ERR_FORMAT;
	walk = v;
	while (qes_cursor_remaining(&walk) > 0) {
		if ((r = qes_cursor_get_u8(&walk, &b)) != 0)
			return r;
		/* an arc must not start with 0x80 (a redundant leading zero) */
		if (arc_start && b == 0x80)
			return QES_ERR_FORMAT;
		arc_start = (b & 0x80) == 0;
	}
	if (!arc_start)
		return QES_ERR_FORMAT;	/* the last arc is unterminated */
	*oid = v;
	*c = tmp;
	return 0;
}

int
qes_der_oid_eq(const qes_cursor *oid, const uint8_t *der, size_t der_len)
{
	qes_cursor tmp = *oid;
	const uint8_t *p;

	if (qes_cursor_remaining(&tmp) != der_len)
		return 0;
	if (qes_cursor_get_bytes(&tmp, der_len, &p) != 0)
		return 0;
	return der_len == 0 || memcmp(p, der, der_len) == 0;
}

int
qes_der_end(const qes_cursor *c)
{
	return qes_cursor_remaining(c) == 0 ? 0 : QES_ERR_FORMAT;
}
