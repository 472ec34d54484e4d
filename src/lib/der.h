/*
 * der.h - a small strict DER reader over qes_cursor, private to libqes.
 *
 * OpenSSL decodes the ASN.1 it knows; the pieces it does not (certificate
 * extensions such as qcStatements, CMS/PDF glue) are read with these
 * functions, so that every such parser shares one bounds-checked TLV reader
 * instead of doing its own pointer arithmetic.
 *
 * Accepted: low-tag-number form only (one tag byte, tag number < 31),
 * definite lengths in minimal form with at most QES_DER_MAX_LEN_OCTETS
 * length octets. Everything else (indefinite lengths, high tag numbers,
 * non-minimal lengths) is QES_ERR_FORMAT; more length octets than the limit
 * is QES_ERR_LIMIT; a value running past the end is QES_ERR_TRUNCATED.
 */
#ifndef QES_DER_H
#define QES_DER_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"

/* universal tags as they appear in the tag byte (constructed bit included) */
#define QES_DER_BOOLEAN		0x01u
#define QES_DER_INTEGER		0x02u
#define QES_DER_BIT_STRING	0x03u
#define QES_DER_OCTET_STRING	0x04u
#define QES_DER_NULL		0x05u
#define QES_DER_OID		0x06u
#define QES_DER_UTF8_STRING	0x0cu
#define QES_DER_SEQUENCE	0x30u
#define QES_DER_SET		0x31u
/* context-specific tags: QES_DER_CONTEXT(0) is [0] primitive */
#define QES_DER_CONTEXT(n)	((uint8_t)(0x80u | (n)))
#define QES_DER_CONTEXT_CONS(n)	((uint8_t)(0xa0u | (n)))

#define QES_DER_MAX_LEN_OCTETS	4

/*
 * Read one TLV at the cursor: its tag byte, and a sub-cursor over its value
 * (borrowing the parent's bytes). The parent moves past the whole TLV only
 * on success.
 */
int qes_der_get_tlv(qes_cursor *c, uint8_t *tag, qes_cursor *value);

/* qes_der_get_tlv(), and QES_ERR_FORMAT unless the tag byte is tag. */
int qes_der_expect(qes_cursor *c, uint8_t tag, qes_cursor *value);

/* The next tag byte without consuming it; QES_ERR_TRUNCATED at the end. */
int qes_der_peek_tag(const qes_cursor *c, uint8_t *tag);

/*
 * An OBJECT IDENTIFIER TLV; oid is a sub-cursor over its content octets,
 * checked to be well formed (non-empty, each arc minimal base-128 and
 * terminated).
 */
int qes_der_get_oid(qes_cursor *c, qes_cursor *oid);

/*
 * 1 when the OID content under the cursor (remaining bytes) equals der, the
 * content octets of an OID without tag and length; 0 otherwise.
 */
int qes_der_oid_eq(const qes_cursor *oid, const uint8_t *der, size_t der_len);

/* 0 when the cursor is fully consumed, QES_ERR_FORMAT when bytes remain. */
int qes_der_end(const qes_cursor *c);

#endif
