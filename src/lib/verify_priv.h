/*
 * verify_priv.h - what the verify*.c files of libqes share. Private.
 */
#ifndef QES_VERIFY_PRIV_H
#define QES_VERIFY_PRIV_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "qes/verify.h"

/* certificates read from one CMS */
#define QES_VERIFY_MAX_CERTS 64

/* integrity_ok = 0 with the reason (printf-style) in integrity_err */
void verify_fail(qes_verify_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append a certificate's DER to r->certs as found (no checks). */
int verify_add_cert(qes_verify_report *r, const uint8_t *der, size_t len);
/* Grow *arr (reports) by one initialised report; QES_ERR_LIMIT past
 * QES_VERIFY_MAX_SIGS. */
int verify_push(qes_verify_report **arr, size_t *n, qes_verify_report **out);
void verify_free_all(qes_verify_report *arr, size_t n);
/* Standard base64 (padding optional, no whitespace) appended to out. */
int verify_b64_decode(const char *s, size_t len, qes_buf *out);
/* Fill r->ts_md/ts_digest: md of the token's imprint over data. QES_ERR_FORMAT
 * when the token is unreadable or its hash unknown. */
int verify_ts_digest(qes_verify_report *r, const uint8_t *data, size_t len);

#endif
