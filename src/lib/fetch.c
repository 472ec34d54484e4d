/*
 * fetch.c - outbound HTTP(S) for TSA, OCSP and CRL requests (fetch.h).
 *
 * libcurl does the protocol work; this file only fixes the policy every
 * caller gets: http/https only (also after a redirect), verification on,
 * timeouts, and a response cap enforced while receiving, so a hostile or
 * broken server cannot make us buffer more than the cap.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "qes/err.h"
#include "qes/fetch.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct sink {
	qes_buf *out;
	size_t got;
	size_t max;
	int over;
	int alloc_failed;
};

static size_t
sink_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;

	if (n > s->max - s->got) {
		s->over = 1;
		return 0;	/* curl aborts with CURLE_WRITE_ERROR */
	}
	if (qes_buf_put(s->out, data, n) != 0) {
		s->alloc_failed = 1;
		return 0;
	}
	s->got += n;
	return n;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
qes_fetch_url_ok(const char *url)
{
	size_t len;

	if (url == NULL)
		return 0;
	len = strlen(url);
	if (len == 0 || len > QES_FETCH_MAX_URL_LEN)
		return 0;
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
		return 0;
	/* no control characters or spaces: a URL from a certificate is untrusted */
	for (; *url != '\0'; url++)
		if ((unsigned char)*url <= 0x20 || (unsigned char)*url == 0x7f)
			return 0;
	return 1;
}

static int
fetch(const char *url, const qes_fetch_opts *opts, const char *content_type,
    const char *accept, const uint8_t *body, size_t body_len, int post,
    qes_buf *out, char *err, size_t errlen)
{
	char curl_err[CURL_ERROR_SIZE] = "";
	char hdr_ct[160], hdr_accept[160];
	struct curl_slist *hdrs = NULL;
	struct sink sink;
	CURL *h = NULL;
	CURLcode rc;
	long status = 0, connect_ms, total_ms;
	size_t out_len0;
	int r = QES_ERR_FETCH;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || (post && body == NULL && body_len != 0))
		return QES_ERR_INVALID_ARG;
	if (!qes_fetch_url_ok(url)) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "refused URL: only http:// and https:// are fetched");
		return QES_ERR_INVALID_ARG;
	}
	if (content_type != NULL && strlen(content_type) > 100)
		return QES_ERR_INVALID_ARG;
	if (accept != NULL && strlen(accept) > 100)
		return QES_ERR_INVALID_ARG;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return QES_ERR_INTERNAL;

	connect_ms = opts != NULL && opts->connect_timeout_ms > 0 ?
	    opts->connect_timeout_ms : QES_FETCH_DEFAULT_CONNECT_TIMEOUT_MS;
	total_ms = opts != NULL && opts->total_timeout_ms > 0 ?
	    opts->total_timeout_ms : QES_FETCH_DEFAULT_TOTAL_TIMEOUT_MS;
	memset(&sink, 0, sizeof(sink));
	sink.out = out;
	sink.max = opts != NULL && opts->max_response_bytes > 0 ?
	    opts->max_response_bytes : QES_FETCH_DEFAULT_MAX_RESPONSE_BYTES;
	out_len0 = qes_buf_len(out);

	if ((h = curl_easy_init()) == NULL)
		return QES_ERR_ALLOC;
	if (content_type != NULL) {
		snprintf(hdr_ct, sizeof(hdr_ct), "Content-Type: %s", content_type);
		if ((hdrs = curl_slist_append(hdrs, hdr_ct)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
	}
	if (accept != NULL) {
		struct curl_slist *n;

		snprintf(hdr_accept, sizeof(hdr_accept), "Accept: %s", accept);
		if ((n = curl_slist_append(hdrs, hdr_accept)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		hdrs = n;
	}
	/* "Expect: 100-continue" only costs a round trip with small bodies */
	{
		struct curl_slist *n = curl_slist_append(hdrs, "Expect:");

		if (n == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		hdrs = n;
	}

	if (curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)QES_FETCH_MAX_REDIRECTS) != CURLE_OK ||
	    /* a redirected POST stays a POST (RFC 7231 allows switching to GET) */
	    curl_easy_setopt(h, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total_ms) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_USERAGENT, opts != NULL &&
	        opts->user_agent != NULL ? opts->user_agent : "qes") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
	    /* a proxy from the environment is fine; no netrc, no cookies */
	    curl_easy_setopt(h, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED) != CURLE_OK) {
		r = QES_ERR_INTERNAL;
		goto out;
	}
	if (sink.max <= (size_t)0x7fffffff)
		(void)curl_easy_setopt(h, CURLOPT_MAXFILESIZE, (long)sink.max);
	if (opts != NULL && opts->ca_file != NULL &&
	    curl_easy_setopt(h, CURLOPT_CAINFO, opts->ca_file) != CURLE_OK) {
		r = QES_ERR_INTERNAL;
		goto out;
	}
	if (post) {
		if (curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK ||
		    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_len > 0 ?
		        (const char *)body : "") != CURLE_OK ||
		    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		        (curl_off_t)body_len) != CURLE_OK) {
			r = QES_ERR_INTERNAL;
			goto out;
		}
	}

	rc = curl_easy_perform(h);
	if (sink.over || rc == CURLE_FILESIZE_EXCEEDED) {
		set_err(err, errlen, "response larger than %zu bytes", sink.max);
		r = QES_ERR_LIMIT;
		goto out;
	}
	if (sink.alloc_failed) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		set_err(err, errlen, "%s (timeout %ld ms)", curl_err[0] != '\0' ?
		    curl_err : curl_easy_strerror(rc), total_ms);
		r = QES_ERR_TIMEOUT;
		goto out;
	}
	if (rc != CURLE_OK) {
		set_err(err, errlen, "%s (curl error %ld)", curl_err[0] != '\0' ?
		    curl_err : curl_easy_strerror(rc), (long)rc);
		r = QES_ERR_FETCH;
		goto out;
	}
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	if (status != 200) {
		set_err(err, errlen, "server answered HTTP status %ld", status);
		r = QES_ERR_FETCH;
		goto out;
	}
	r = 0;
out:
	if (r != 0)
		(void)qes_buf_truncate(out, out_len0);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return r;
}

int
qes_fetch_get(const char *url, const qes_fetch_opts *opts, qes_buf *out,
    char *err, size_t errlen)
{
	return fetch(url, opts, NULL, NULL, NULL, 0, 0, out, err, errlen);
}

int
qes_fetch_post(const char *url, const qes_fetch_opts *opts,
    const char *content_type, const char *accept, const uint8_t *body,
    size_t body_len, qes_buf *out, char *err, size_t errlen)
{
	if (content_type == NULL)
		return QES_ERR_INVALID_ARG;
	return fetch(url, opts, content_type, accept, body, body_len, 1, out,
	    err, errlen);
}
