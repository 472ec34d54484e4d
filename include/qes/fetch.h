/*
 * fetch.h - outbound HTTP(S) for the services an AdES signature needs:
 * timestamp authorities (RFC 3161 over HTTP), OCSP responders and CRL
 * distribution points.
 *
 * One call, one request, one bounded answer. The defaults are the safe ones
 * and cannot be switched off: only http:// and https:// URLs, redirects
 * only to http(s) (at most QES_FETCH_MAX_REDIRECTS), TLS peer and host
 * verification on, a connect and a total timeout, and a response size cap
 * (the transfer is aborted as soon as the cap is crossed, QES_ERR_LIMIT).
 * Anything but HTTP 200 is QES_ERR_FETCH with the status in err; a network
 * or TLS failure is QES_ERR_FETCH (or QES_ERR_TIMEOUT) with curl's message.
 * Bodies are never logged: they may be documents' digests or certificates,
 * and the caller decides what to say about them.
 */
#ifndef QES_FETCH_H
#define QES_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QES_FETCH_DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define QES_FETCH_DEFAULT_TOTAL_TIMEOUT_MS   20000L
#define QES_FETCH_DEFAULT_MAX_RESPONSE_BYTES ((size_t)4 * 1024 * 1024)
#define QES_FETCH_MAX_REDIRECTS 3
#define QES_FETCH_MAX_URL_LEN 2048

typedef struct qes_fetch_opts {
	long connect_timeout_ms;	/* 0: QES_FETCH_DEFAULT_CONNECT_TIMEOUT_MS */
	long total_timeout_ms;		/* 0: QES_FETCH_DEFAULT_TOTAL_TIMEOUT_MS */
	size_t max_response_bytes;	/* 0: QES_FETCH_DEFAULT_MAX_RESPONSE_BYTES */
	const char *ca_file;		/* https trust anchors; NULL: the system's */
	const char *user_agent;		/* NULL: "qes/<version>" */
} qes_fetch_opts;

/*
 * GET url; the body is appended to out. opts may be NULL (defaults).
 * err (may be NULL) receives a sentence on failure.
 */
int qes_fetch_get(const char *url, const qes_fetch_opts *opts, qes_buf *out,
    char *err, size_t errlen);

/*
 * POST body with Content-Type content_type; accept (may be NULL) is sent
 * as the Accept header. The response body is appended to out.
 */
int qes_fetch_post(const char *url, const qes_fetch_opts *opts,
    const char *content_type, const char *accept, const uint8_t *body,
    size_t body_len, qes_buf *out, char *err, size_t errlen);

/* 1 when url is an absolute http:// or https:// URL qes would fetch. */
int qes_fetch_url_ok(const char *url);

#ifdef __cplusplus
}
#endif
#endif
