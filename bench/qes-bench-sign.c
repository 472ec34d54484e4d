/*
 * qes-bench-sign.c - the load generator and the PKCS#11 baseline that
 * bench/sign_path.sh runs (docs/benchmarks.md). A benchmark, not a test:
 * it prints figures, and it fails (exit 1) rather than print a figure it
 * cannot stand behind.
 *
 *   qes-bench-sign path ...    N clients, each in a closed loop: POST
 *                              /v1/signatures with a batch of random
 *                              digests, long-poll GET /v1/signatures/{id}
 *                              ?wait= until the job is final. A job counts
 *                              only when it completed with one signature
 *                              per digest; after the run every returned
 *                              value is verified with OpenSSL against the
 *                              signer's certificate (outside the timed
 *                              window, so verifying does not take CPU from
 *                              the system being measured).
 *   qes-bench-sign direct ...  the same key through the PKCS#11 module
 *                              itself: dlopen, C_Login once, then
 *                              C_SignInit + C_Sign in a loop in N threads,
 *                              one session each. The first and the last
 *                              value of every thread is verified.
 *
 * Both print one line "result mode=... key=value ..." for the script and
 * nothing else on standard output; errors go to standard error. Latency is
 * per job (path: from the POST to the final answer) or per signature
 * (direct), with p50 and p99 by nearest rank.
 *
 * Measuring window: a warm-up (TLS handshakes, first logins, SQLite pages)
 * is not counted; then work started within [start, start + duration) is
 * counted, and the run goes on past the duration until at least --min
 * counted jobs (or signatures) were started, but never beyond --max-seconds.
 * Throughput is counted work divided by the time from the window's start to
 * the last counted completion.
 *
 * Secrets: the API key comes from $QES_API_KEY and the token PIN from
 * $QES_BENCH_PIN; both are copied into a qes_secret, wiped in the
 * environment and unset, and never printed. The digests are random bytes,
 * so no document content exists at all.
 *
 * Hand-written here, not found in a library: the percentile (nearest rank
 * over a sorted array) and the strict base64 wrapper around
 * EVP_DecodeBlock (which itself does not reject non-canonical padding).
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "qes/sig.h"

#define CLIENTS_MAX		1024
#define THREADS_MAX		1024
#define BATCH_MAX		1000	/* QES_PROTO_DIGESTS_MAX */
#define API_KEY_MAX		256
#define PIN_MAX			256
#define URL_MAX			512
#define JOB_ID_MAX		64
#define RESPONSE_MAX		(8u << 20)	/* a batch of 1000 RSA-8192 values in base64 is 1.4 MB */
#define SIG_MAX			1024
#define SAMPLES_MAX		((size_t)50 * 1000 * 1000)
#define RECORDS_MAX		((size_t)1 << 30)	/* kept (digest, signature) pairs, all clients */
#define POLL_WAIT_S		30
#define JOB_TIMEOUT_S		300	/* timeout_seconds of every job */
#define CONNECT_TIMEOUT_MS	10000L

static const char *prog = "qes-bench-sign";

/* ------------------------------------------------------------------------- */
/* time, samples, percentiles */

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct samples {
	double *v;	/* milliseconds */
	size_t n, cap;
};

static int
samples_push(struct samples *s, double ms)
{
	double *nv;
	size_t ncap;

	if (s->n == s->cap) {
		if (s->cap >= SAMPLES_MAX)
			return QES_ERR_LIMIT;
		ncap = s->cap == 0 ? 1024 : s->cap * 2;
		if ((nv = realloc(s->v, ncap * sizeof(*nv))) == NULL)
			return QES_ERR_ALLOC;
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = ms;
	return 0;
}

static int
samples_merge(struct samples *dst, const struct samples *src)
{
	size_t i;
	int r;

	for (i = 0; i < src->n; i++)
		if ((r = samples_push(dst, src->v[i])) != 0)
			return r;
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank on a sorted array: the smallest value with >= q of all at or below it. */
static double
percentile(const struct samples *s, double q)
{
	size_t rank;

	if (s->n == 0)
		return NAN;
	rank = (size_t)ceil(q * (double)s->n);
	if (rank < 1)
		rank = 1;
	return s->v[rank - 1];
}

/* ------------------------------------------------------------------------- */
/* options shared by both modes */

struct common {
	qes_sig_scheme scheme;
	qes_md md;
	const char *cert_path;
	EVP_PKEY *pub;
	int concurrency;
	double warmup_s, duration_s, max_s;
	long min_count;
};

static int
parse_long(const char *what, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "%s: %s takes a whole number in %ld..%ld\n", prog,
		    what, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_seconds(const char *what, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
		fprintf(stderr, "%s: %s takes seconds in %g..%g\n", prog, what, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* Copy an environment variable into a secret, wipe and unset it. */
static int
secret_from_env(const char *name, qes_secret *s)
{
	char *v = getenv(name);
	size_t len;
	int r;

	if (v == NULL || v[0] == '\0') {
		fprintf(stderr, "%s: %s is not set\n", prog, name);
		return -1;
	}
	len = strlen(v);
	r = qes_secret_set(s, v, len);
	qes_wipe(v, len);
	unsetenv(name);
	if (r != 0) {
		fprintf(stderr, "%s: %s is too long\n", prog, name);
		return -1;
	}
	return 0;
}

static EVP_PKEY *
load_cert_key(const char *path)
{
	EVP_PKEY *pk = NULL;
	X509 *x = NULL;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "%s: cannot open %s: %s\n", prog, path, strerror(errno));
		return NULL;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL || (pk = X509_get_pubkey(x)) == NULL)
		fprintf(stderr, "%s: %s holds no PEM certificate with a public key\n",
		    prog, path);
	X509_free(x);
	return pk;
}

static const EVP_MD *
evp_md(qes_md md)
{
	switch (md) {
	case QES_MD_SHA384:
		return EVP_sha384();
	case QES_MD_SHA512:
		return EVP_sha512();
	default:
		return EVP_sha256();
	}
}

/* 0 when sig (DER for ECDSA) is a valid signature of digest under pub. */
static int
verify_one(EVP_PKEY *pub, qes_sig_scheme scheme, qes_md md, const uint8_t *digest,
    size_t dlen, const uint8_t *sig, size_t slen)
{
	EVP_PKEY_CTX *ctx;
	int ok = 0;

	if ((ctx = EVP_PKEY_CTX_new(pub, NULL)) == NULL)
		return -1;
	if (EVP_PKEY_verify_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, evp_md(md)) == 1 &&
	    (scheme != QES_SIG_RSA_PKCS1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1) &&
	    (scheme != QES_SIG_RSA_PSS ||
	    (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, evp_md(md)) == 1)))
		ok = EVP_PKEY_verify(ctx, sig, slen, digest, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok ? 0 : -1;
}

static int
key_fits_scheme(EVP_PKEY *pub, qes_sig_scheme scheme)
{
	int ec = EVP_PKEY_is_a(pub, "EC");

	return scheme == QES_SIG_ECDSA ? ec : !ec && EVP_PKEY_is_a(pub, "RSA");
}

/* Reads the options both modes share; 1 when ch was one, 0 when not, -1 on error. */
enum {
	OPT_SCHEME = 0x100, OPT_MD, OPT_CERT, OPT_WARMUP, OPT_DURATION, OPT_MAX,
	OPT_MIN, OPT_CONCURRENCY, OPT_SERVER, OPT_CA, OPT_CREDENTIAL, OPT_BATCH,
	OPT_MODULE, OPT_TOKEN, OPT_KEY_ID, OPT_LOGIN_EACH,
};

static int
common_opt(struct common *c, int ch, const char *arg)
{
	long v;

	switch (ch) {
	case OPT_SCHEME:
		if (qes_sig_scheme_from_name(arg, &c->scheme) != 0) {
			fprintf(stderr, "%s: --scheme: rsa-pkcs1, rsa-pss or ecdsa\n", prog);
			return -1;
		}
		return 1;
	case OPT_MD:
		if (qes_md_from_name(arg, &c->md) != 0) {
			fprintf(stderr, "%s: --md: sha256, sha384 or sha512\n", prog);
			return -1;
		}
		return 1;
	case OPT_CERT:
		c->cert_path = arg;
		return 1;
	case OPT_WARMUP:
		return parse_seconds("--warmup", arg, 0, 600, &c->warmup_s) == 0 ? 1 : -1;
	case OPT_DURATION:
		return parse_seconds("--duration", arg, 0.1, 3600, &c->duration_s) == 0 ? 1 : -1;
	case OPT_MAX:
		return parse_seconds("--max-seconds", arg, 0.1, 36000, &c->max_s) == 0 ? 1 : -1;
	case OPT_MIN:
		return parse_long("--min", arg, 0, 100000000, &c->min_count) == 0 ? 1 : -1;
	case OPT_CONCURRENCY:
		if (parse_long("--concurrency", arg, 1, CLIENTS_MAX, &v) != 0)
			return -1;
		c->concurrency = (int)v;
		return 1;
	default:
		return 0;
	}
}

static int
common_finish(struct common *c)
{
	if (c->cert_path == NULL) {
		fprintf(stderr, "%s: --cert PEM is required (the signer's certificate)\n", prog);
		return -1;
	}
	if (c->max_s < c->duration_s)
		c->max_s = c->duration_s;
	if ((c->pub = load_cert_key(c->cert_path)) == NULL)
		return -1;
	if (!key_fits_scheme(c->pub, c->scheme)) {
		fprintf(stderr, "%s: the certificate's key does not fit --scheme %s\n",
		    prog, qes_sig_scheme_name(c->scheme));
		return -1;
	}
	return 0;
}

static void
common_init(struct common *c)
{
	memset(c, 0, sizeof(*c));
	c->scheme = QES_SIG_ECDSA;
	c->md = QES_MD_SHA256;
	c->concurrency = 1;
	c->warmup_s = 1;
	c->duration_s = 5;
	c->max_s = 60;
	c->min_count = 0;
}

/* The window's rule: may a client start one more unit of work? */
struct window {
	int64_t start_us, end_us, hard_end_us;	/* counting starts, nominal end, hard end */
	long min_count;
	atomic_long started;	/* counted units started */
	atomic_int stop;	/* a failure stops everyone */
};

static void
window_init(struct window *w, const struct common *c)
{
	int64_t t = now_us();

	w->start_us = t + (int64_t)(c->warmup_s * 1e6);
	w->end_us = w->start_us + (int64_t)(c->duration_s * 1e6);
	w->hard_end_us = w->start_us + (int64_t)(c->max_s * 1e6);
	w->min_count = c->min_count;
	atomic_init(&w->started, 0);
	atomic_init(&w->stop, 0);
}

/* -1: stop; 0: go, not counted (warm-up); 1: go, counted. */
static int
window_next(struct window *w, int64_t t, long units)
{
	if (atomic_load(&w->stop))
		return -1;
	if (t < w->start_us)
		return 0;
	if (t >= w->hard_end_us)
		return -1;
	if (t >= w->end_us && atomic_load(&w->started) >= w->min_count)
		return -1;
	atomic_fetch_add(&w->started, units);
	return 1;
}

static void
print_latency(const char *what, struct samples *s)
{
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	printf(" %s_p50_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f", what,
	    percentile(s, 0.50), what, percentile(s, 0.99), what,
	    s->n > 0 ? s->v[s->n - 1] : NAN);
}

/* ------------------------------------------------------------------------- */
/* path: the API, qesd, the agent, the token */

struct path_run {
	struct common c;
	const char *server, *ca, *credential;
	int batch;
	qes_secret *api_key;
	struct window w;
	pthread_mutex_t err_mu;
	char first_error[512];
};

struct client {
	struct path_run *pr;
	pthread_t th;
	CURL *curl;
	struct curl_slist *post_hdrs, *get_hdrs;
	char errbuf[CURL_ERROR_SIZE];
	qes_buf *resp;
	struct samples lat;
	qes_buf *records;	/* digest, u16 length, signature; ... */
	long jobs, polls, warmup_jobs;
	int64_t last_done_us;
	int failed;
};

static void
path_fail(struct client *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
path_fail(struct client *cl, const char *fmt, ...)
{
	struct path_run *pr = cl->pr;
	va_list ap;

	cl->failed = 1;
	atomic_store(&pr->w.stop, 1);
	pthread_mutex_lock(&pr->err_mu);
	if (pr->first_error[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(pr->first_error, sizeof(pr->first_error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&pr->err_mu);
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	qes_buf *b = arg;
	size_t n = size * nmemb;

	return qes_buf_put(b, data, n) == 0 ? n : 0;	/* 0 aborts: past RESPONSE_MAX */
}

/* Headers: the secret Authorization line plus the fixed ones; the staging copy is wiped. */
static struct curl_slist *
make_headers(const qes_secret *key, int with_body)
{
	static const char pfx[] = "Authorization: Bearer ";
	char hdr[sizeof(pfx) + API_KEY_MAX];
	struct curl_slist *l = NULL, *n;
	size_t klen = qes_secret_len(key);

	if (klen >= API_KEY_MAX)
		return NULL;
	memcpy(hdr, pfx, sizeof(pfx) - 1);
	memcpy(hdr + sizeof(pfx) - 1, qes_secret_data(key), klen);
	hdr[sizeof(pfx) - 1 + klen] = '\0';
	l = curl_slist_append(NULL, hdr);
	qes_wipe(hdr, sizeof(hdr));
	if (l == NULL)
		return NULL;
	if ((n = curl_slist_append(l, "Accept: application/json")) == NULL)
		goto fail;
	l = n;
	if (with_body) {
		if ((n = curl_slist_append(l, "Content-Type: application/json")) == NULL)
			goto fail;
		l = n;
	}
	return l;
 fail:
	qes_wipe(l->data, strlen(l->data));
	curl_slist_free_all(l);
	return NULL;
}

static void
free_headers(struct curl_slist *l)
{
	if (l != NULL && l->data != NULL)
		qes_wipe(l->data, strlen(l->data));
	curl_slist_free_all(l);
}

/* One HTTPS request on the client's connection; the answer in cl->resp. */
static int
http(struct client *cl, const char *method, const char *path, const char *body,
    long *status)
{
	char url[URL_MAX + 128];
	CURL *c = cl->curl;
	CURLcode cc;

	*status = 0;
	qes_buf_reset(cl->resp);
	if ((size_t)snprintf(url, sizeof(url), "%s%s", cl->pr->server, path) >= sizeof(url)) {
		path_fail(cl, "URL too long");
		return -1;
	}
	cl->errbuf[0] = '\0';
	curl_easy_reset(c);
	if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSLVERSION,
	    (long)(CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_DEFAULT)) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_CAINFO, cl->pr->ca) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(POLL_WAIT_S + 30) * 1000L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cl->errbuf) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_USERAGENT, "qes-bench-sign/" QES_VERSION) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER,
	    body != NULL ? cl->post_hdrs : cl->get_hdrs) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, cl->resp) != CURLE_OK) {
		path_fail(cl, "libcurl refused an option (built without TLS 1.3?)");
		return -1;
	}
	if (strcmp(method, "POST") == 0 &&
	    (curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)(body != NULL ? strlen(body) : 0)) != CURLE_OK)) {
		path_fail(cl, "libcurl refused the POST body");
		return -1;
	}
	if ((cc = curl_easy_perform(c)) != CURLE_OK) {
		path_fail(cl, "%s %s: %s", method, path, cl->errbuf[0] != '\0' ?
		    cl->errbuf : curl_easy_strerror(cc));
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	return 0;
}

static json_t *
resp_json(struct client *cl, const char *what)
{
	json_error_t e;
	json_t *j;

	j = json_loadb((const char *)qes_buf_data(cl->resp), qes_buf_len(cl->resp), 0, &e);
	if (j == NULL || !json_is_object(j)) {
		path_fail(cl, "%s: the answer is not a JSON object: %s", what, e.text);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* A short, printable form of a problem answer for an error message. */
static void
problem_text(const struct client *cl, char *out, size_t len)
{
	size_t i, n = qes_buf_len(cl->resp);
	const uint8_t *d = qes_buf_data(cl->resp);

	if (n >= len)
		n = len - 1;
	for (i = 0; i < n; i++)
		out[i] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
	out[n] = '\0';
}

/* Strict base64 (RFC 4648 section 4, padded) into out; -1 when not canonical. */
static int
b64_decode(const char *s, uint8_t *out, size_t out_max, size_t *out_len)
{
	size_t len = strlen(s), pad = 0, n;
	uint8_t tmp[SIG_MAX + 3];
	char back[((SIG_MAX + 2) / 3) * 4 + 1];

	if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(tmp))
		return -1;
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	if (EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len) < 0)
		return -1;
	n = len / 4 * 3 - pad;
	if (n > out_max)
		return -1;
	/* canonical: encoding the bytes again gives the same text */
	if ((size_t)EVP_EncodeBlock((unsigned char *)back, tmp, (int)n) != len ||
	    memcmp(back, s, len) != 0)
		return -1;
	memcpy(out, tmp, n);
	*out_len = n;
	return 0;
}

static int
state_final(const char *st)
{
	return strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
	    strcmp(st, "cancelled") == 0 || strcmp(st, "expired") == 0;
}

/* Keep a job's (digest, signature) pairs for the verification after the run. */
static int
keep_signatures(struct client *cl, const uint8_t *digests, json_t *sigs)
{
	struct path_run *pr = cl->pr;
	size_t dlen = qes_md_len(pr->c.md), i, slen;
	uint8_t sig[SIG_MAX], len16[2];
	json_t *v;

	json_array_foreach(sigs, i, v) {
		if (!json_is_string(v) ||
		    b64_decode(json_string_value(v), sig, sizeof(sig), &slen) != 0) {
			path_fail(cl, "signatures[%zu] is not canonical base64 of at "
			    "most %d bytes", i, SIG_MAX);
			return -1;
		}
		len16[0] = (uint8_t)(slen >> 8);
		len16[1] = (uint8_t)slen;
		if (qes_buf_put(cl->records, digests + i * dlen, dlen) != 0 ||
		    qes_buf_put(cl->records, len16, 2) != 0 ||
		    qes_buf_put(cl->records, sig, slen) != 0) {
			path_fail(cl, "too many signatures kept for verification "
			    "(more than %zu MB): shorten the run", RECORDS_MAX >> 20);
			return -1;
		}
	}
	return 0;
}

/* One job through the whole path; 0 when it completed. */
static int
one_job(struct client *cl, int counted)
{
	struct path_run *pr = cl->pr;
	size_t dlen = qes_md_len(pr->c.md), i;
	uint8_t digests[BATCH_MAX * QES_MD_MAX_LEN];
	char b64[((QES_MD_MAX_LEN + 2) / 3) * 4 + 1], path[128], id[JOB_ID_MAX + 1];
	char problem[300];
	json_t *body = NULL, *arr = NULL, *j = NULL, *sigs;
	const char *st;
	char *text = NULL;
	int64_t t0, t1, deadline;
	long status;
	int rc = -1;

	if (RAND_bytes(digests, (int)(dlen * (size_t)pr->batch)) != 1) {
		path_fail(cl, "RAND_bytes failed");
		return -1;
	}
	if ((arr = json_array()) == NULL)
		goto nomem;
	for (i = 0; i < (size_t)pr->batch; i++) {
		EVP_EncodeBlock((unsigned char *)b64, digests + i * dlen, (int)dlen);
		if (json_array_append_new(arr, json_string(b64)) != 0)
			goto nomem;
	}
	body = json_pack("{s:s, s:s, s:s, s:O, s:s, s:s, s:i}",
	    "credential_id", pr->credential,
	    "digest_algorithm", qes_md_name(pr->c.md),
	    "signature_scheme", qes_sig_scheme_name(pr->c.scheme),
	    "digests", arr,
	    "title", "Benchmark batch",
	    "application", "qes-bench-sign",
	    "timeout_seconds", JOB_TIMEOUT_S);
	if (body == NULL || (text = json_dumps(body, JSON_COMPACT)) == NULL)
		goto nomem;

	t0 = now_us();
	if (http(cl, "POST", "/v1/signatures", text, &status) != 0)
		goto out;
	if (status != 202) {
		problem_text(cl, problem, sizeof(problem));
		path_fail(cl, "POST /v1/signatures answered %ld: %s", status, problem);
		goto out;
	}
	if ((j = resp_json(cl, "POST /v1/signatures")) == NULL)
		goto out;
	if (!json_is_string(json_object_get(j, "id")) ||
	    strlen(json_string_value(json_object_get(j, "id"))) > JOB_ID_MAX ||
	    !json_is_string(json_object_get(j, "state"))) {
		path_fail(cl, "POST /v1/signatures: no job id or state in the answer");
		goto out;
	}
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
	snprintf(path, sizeof(path), "/v1/signatures/%s?wait=%d", id, POLL_WAIT_S);
	deadline = t0 + (int64_t)(JOB_TIMEOUT_S + 60) * 1000000;
	while (!state_final(json_string_value(json_object_get(j, "state")))) {
		json_decref(j);
		j = NULL;
		if (now_us() > deadline) {
			path_fail(cl, "job %s: not final %d s after it was made", id,
			    JOB_TIMEOUT_S + 60);
			goto out;
		}
		cl->polls++;
		if (http(cl, "GET", path, NULL, &status) != 0)
			goto out;
		if (status != 200) {
			problem_text(cl, problem, sizeof(problem));
			path_fail(cl, "GET job %s answered %ld: %s", id, status, problem);
			goto out;
		}
		if ((j = resp_json(cl, "GET /v1/signatures/{id}")) == NULL)
			goto out;
		if (!json_is_string(json_object_get(j, "state"))) {
			path_fail(cl, "GET job %s: no state in the answer", id);
			goto out;
		}
	}
	t1 = now_us();
	st = json_string_value(json_object_get(j, "state"));
	if (strcmp(st, "completed") != 0) {
		const char *reason = json_string_value(json_object_get(j, "reason"));

		path_fail(cl, "job %s ended %s (reason %s)", id, st,
		    reason != NULL ? reason : "none given");
		goto out;
	}
	sigs = json_object_get(j, "signatures");
	if (!json_is_array(sigs) || json_array_size(sigs) != (size_t)pr->batch) {
		path_fail(cl, "job %s completed with %zu signatures for %d digests",
		    id, json_is_array(sigs) ? json_array_size(sigs) : 0, pr->batch);
		goto out;
	}
	if (keep_signatures(cl, digests, sigs) != 0)
		goto out;
	if (counted) {
		if (samples_push(&cl->lat, (double)(t1 - t0) / 1000.0) != 0) {
			path_fail(cl, "too many latency samples");
			goto out;
		}
		cl->jobs++;
		cl->last_done_us = t1;
	} else
		cl->warmup_jobs++;
	rc = 0;
	goto out;
 nomem:
	path_fail(cl, "out of memory");
 out:
	free(text);
	json_decref(body);
	json_decref(arr);
	json_decref(j);
	return rc;
}

static void *
client_main(void *arg)
{
	struct client *cl = arg;
	int go;

	while ((go = window_next(&cl->pr->w, now_us(), 1)) >= 0)
		if (one_job(cl, go) != 0)
			break;
	return NULL;
}

/* Verify every kept pair; the count verified, or -1 at the first bad one. */
static long
verify_records(struct path_run *pr, const qes_buf *rec)
{
	size_t dlen = qes_md_len(pr->c.md);
	const uint8_t *digest, *len16, *sig;
	qes_cursor cur;
	long n = 0;

	qes_cursor_init(&cur, qes_buf_data(rec), qes_buf_len(rec));
	while (qes_cursor_remaining(&cur) > 0) {
		if (qes_cursor_get_bytes(&cur, dlen, &digest) != 0 ||
		    qes_cursor_get_bytes(&cur, 2, &len16) != 0 ||
		    qes_cursor_get_bytes(&cur, (size_t)len16[0] << 8 | len16[1], &sig) != 0)
			return -1;
		if (verify_one(pr->c.pub, pr->c.scheme, pr->c.md, digest, dlen, sig,
		    (size_t)len16[0] << 8 | len16[1]) != 0)
			return -1;
		n++;
	}
	return n;
}

static void
path_usage(void)
{
	fprintf(stderr,
	    "usage: qes-bench-sign path --server https://HOST:PORT --ca PEM --credential ID\n"
	    "           --cert PEM [--scheme ecdsa|rsa-pkcs1|rsa-pss] [--md sha256|sha384|sha512]\n"
	    "           [--concurrency N] [--batch N] [--warmup S] [--duration S] [--min JOBS]\n"
	    "           [--max-seconds S]\n"
	    "The API key is read from QES_API_KEY (scope sign).\n");
}

static int
run_path(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, OPT_SERVER },
		{ "ca", required_argument, NULL, OPT_CA },
		{ "credential", required_argument, NULL, OPT_CREDENTIAL },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "scheme", required_argument, NULL, OPT_SCHEME },
		{ "md", required_argument, NULL, OPT_MD },
		{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "min", required_argument, NULL, OPT_MIN },
		{ "max-seconds", required_argument, NULL, OPT_MAX },
		{ NULL, 0, NULL, 0 },
	};
	struct path_run pr;
	struct client *cls = NULL;
	struct samples all = { 0 };
	long jobs = 0, polls = 0, warm = 0, verified = 0, v;
	int64_t last = 0;
	int ch, r, i, started = 0, rc = 1, failed = 0;
	double secs;

	memset(&pr, 0, sizeof(pr));
	common_init(&pr.c);
	pr.batch = 1;
	pthread_mutex_init(&pr.err_mu, NULL);
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		long b;

		if ((r = common_opt(&pr.c, ch, optarg)) < 0)
			goto out;
		if (r > 0)
			continue;
		switch (ch) {
		case OPT_SERVER:
			pr.server = optarg;
			break;
		case OPT_CA:
			pr.ca = optarg;
			break;
		case OPT_CREDENTIAL:
			pr.credential = optarg;
			break;
		case OPT_BATCH:
			if (parse_long("--batch", optarg, 1, BATCH_MAX, &b) != 0)
				goto out;
			pr.batch = (int)b;
			break;
		default:
			path_usage();
			goto out;
		}
	}
	if (optind != argc || pr.server == NULL || pr.ca == NULL || pr.credential == NULL ||
	    strncmp(pr.server, "https://", 8) != 0 || strlen(pr.server) > URL_MAX) {
		path_usage();
		goto out;
	}
	if (common_finish(&pr.c) != 0)
		goto out;
	if ((pr.api_key = qes_secret_new(API_KEY_MAX)) == NULL ||
	    secret_from_env("QES_API_KEY", pr.api_key) != 0)
		goto out;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: cannot initialise libcurl\n", prog);
		goto out;
	}
	if ((cls = calloc((size_t)pr.c.concurrency, sizeof(*cls))) == NULL)
		goto nomem;
	for (i = 0; i < pr.c.concurrency; i++) {
		cls[i].pr = &pr;
		if ((cls[i].curl = curl_easy_init()) == NULL ||
		    (cls[i].post_hdrs = make_headers(pr.api_key, 1)) == NULL ||
		    (cls[i].get_hdrs = make_headers(pr.api_key, 0)) == NULL ||
		    (cls[i].resp = qes_buf_new()) == NULL ||
		    (cls[i].records = qes_buf_new()) == NULL)
			goto nomem;
		qes_buf_set_max(cls[i].resp, RESPONSE_MAX);
		qes_buf_set_max(cls[i].records, RECORDS_MAX / (size_t)pr.c.concurrency);
	}
	window_init(&pr.w, &pr.c);
	for (i = 0; i < pr.c.concurrency; i++) {
		if (pthread_create(&cls[i].th, NULL, client_main, &cls[i]) != 0) {
			fprintf(stderr, "%s: cannot start client thread %d\n", prog, i);
			atomic_store(&pr.w.stop, 1);
			break;
		}
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(cls[i].th, NULL);
	if (started < pr.c.concurrency)
		goto out;
	for (i = 0; i < started; i++) {
		failed |= cls[i].failed;
		jobs += cls[i].jobs;
		polls += cls[i].polls;
		warm += cls[i].warmup_jobs;
		if (cls[i].last_done_us > last)
			last = cls[i].last_done_us;
		if (samples_merge(&all, &cls[i].lat) != 0)
			goto nomem;
	}
	if (failed) {
		fprintf(stderr, "%s: path: a job failed, no figures: %s\n", prog,
		    pr.first_error);
		goto out;
	}
	if (jobs == 0) {
		fprintf(stderr, "%s: path: no job completed in the window\n", prog);
		goto out;
	}
	/* after the timed window: every value returned, against the certificate */
	for (i = 0; i < started; i++) {
		if ((v = verify_records(&pr, cls[i].records)) < 0) {
			fprintf(stderr, "%s: path: a returned signature does not verify "
			    "against %s\n", prog, pr.c.cert_path);
			goto out;
		}
		verified += v;
	}
	if (verified != (warm + jobs) * pr.batch) {
		fprintf(stderr, "%s: path: %ld signatures verified, %ld expected\n",
		    prog, verified, (warm + jobs) * pr.batch);
		goto out;
	}
	secs = (double)(last - pr.w.start_us) / 1e6;
	printf("result mode=path concurrency=%d batch=%d scheme=%s md=%s jobs=%ld "
	    "signatures=%ld seconds=%.3f jobs_per_s=%.1f sigs_per_s=%.1f "
	    "polls_per_job=%.2f", pr.c.concurrency, pr.batch,
	    qes_sig_scheme_name(pr.c.scheme), qes_md_name(pr.c.md), jobs,
	    jobs * pr.batch, secs, (double)jobs / secs,
	    (double)(jobs * pr.batch) / secs, (double)polls / (double)(jobs + warm));
	print_latency("job", &all);
	printf(" verified=%ld warmup_jobs=%ld failures=0\n", verified, warm);
	rc = 0;
	goto out;
 nomem:
	fprintf(stderr, "%s: out of memory\n", prog);
 out:
	if (cls != NULL) {
		for (i = 0; i < pr.c.concurrency; i++) {
			if (cls[i].curl != NULL)
				curl_easy_cleanup(cls[i].curl);
			free_headers(cls[i].post_hdrs);
			free_headers(cls[i].get_hdrs);
			qes_buf_free(cls[i].resp);
			qes_buf_free(cls[i].records);
			free(cls[i].lat.v);
		}
		free(cls);
		curl_global_cleanup();
	}
	free(all.v);
	qes_secret_free(pr.api_key);
	EVP_PKEY_free(pr.c.pub);
	pthread_mutex_destroy(&pr.err_mu);
	return rc;
}

/* ------------------------------------------------------------------------- */
/* direct: C_Sign on the same key */

struct direct_run {
	struct common c;
	const char *module, *token;
	qes_buf *key_id;
	int login_each;		/* C_Login and C_Logout around every signature */
	const qes_secret *pin;	/* kept only with login_each */
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	struct window w;
	pthread_mutex_t err_mu;
	char first_error[256];
};

struct signer {
	struct direct_run *dr;
	pthread_t th;
	struct samples lat;
	long ops;
	int64_t last_done_us;
	int failed;
	/* the first and the last counted value, verified after the run */
	uint8_t first_digest[QES_MD_MAX_LEN], last_digest[QES_MD_MAX_LEN];
	uint8_t first_sig[SIG_MAX], last_sig[SIG_MAX];
	CK_ULONG first_len, last_len;
};

static void
direct_fail(struct signer *s, const char *what, CK_RV rv)
{
	struct direct_run *dr = s->dr;

	s->failed = 1;
	atomic_store(&dr->w.stop, 1);
	pthread_mutex_lock(&dr->err_mu);
	if (dr->first_error[0] == '\0')
		snprintf(dr->first_error, sizeof(dr->first_error), "%s: CKR 0x%lx",
		    what, (unsigned long)rv);
	pthread_mutex_unlock(&dr->err_mu);
}

/* The data C_Sign gets for a digest: what libqes gives the token (sig.h). */
static int
sign_input(const struct direct_run *dr, const uint8_t *digest, qes_buf *out)
{
	qes_buf_reset(out);
	if (dr->c.scheme == QES_SIG_RSA_PKCS1)
		return qes_digest_info(dr->c.md, digest, qes_md_len(dr->c.md), out);
	return qes_buf_put(out, digest, qes_md_len(dr->c.md));
}

static CK_MECHANISM_TYPE
ck_hash(qes_md md)
{
	return md == QES_MD_SHA384 ? CKM_SHA384 : md == QES_MD_SHA512 ? CKM_SHA512 :
	    CKM_SHA256;
}

static CK_RSA_PKCS_MGF_TYPE
ck_mgf(qes_md md)
{
	return md == QES_MD_SHA384 ? CKG_MGF1_SHA384 : md == QES_MD_SHA512 ?
	    CKG_MGF1_SHA512 : CKG_MGF1_SHA256;
}

/* The private key with the wanted CKA_ID, as the session sees it now. */
static int
find_key(struct signer *s, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE *key)
{
	struct direct_run *dr = s->dr;
	CK_FUNCTION_LIST_PTR f = dr->f;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, (void *)qes_buf_data(dr->key_id), qes_buf_len(dr->key_id) },
	};
	CK_ULONG found = 0;
	CK_RV rv;

	if ((rv = f->C_FindObjectsInit(sh, tmpl, 2)) != CKR_OK)
		goto fail;
	rv = f->C_FindObjects(sh, key, 1, &found);
	(void)f->C_FindObjectsFinal(sh);
	if (rv == CKR_OK && found == 1)
		return 0;
 fail:
	direct_fail(s, "no private key with that CKA_ID (C_FindObjects)", rv);
	return -1;
}

static void *
signer_main(void *arg)
{
	struct signer *s = arg;
	struct direct_run *dr = s->dr;
	CK_FUNCTION_LIST_PTR f = dr->f;
	CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	CK_ULONG slen;
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	uint8_t digest[QES_MD_MAX_LEN], sig[SIG_MAX];
	size_t dlen = qes_md_len(dr->c.md);
	qes_buf *in = NULL;
	int64_t t0, t1;
	int go;
	CK_RV rv;

	if (dr->c.scheme == QES_SIG_RSA_PKCS1)
		mech.mechanism = CKM_RSA_PKCS;
	else if (dr->c.scheme == QES_SIG_RSA_PSS) {
		pss.hashAlg = ck_hash(dr->c.md);
		pss.mgf = ck_mgf(dr->c.md);
		pss.sLen = dlen;
		mech.mechanism = CKM_RSA_PKCS_PSS;
		mech.pParameter = &pss;
		mech.ulParameterLen = sizeof(pss);
	}
	if ((in = qes_buf_new()) == NULL) {
		direct_fail(s, "out of memory", 0);
		return NULL;
	}
	if ((rv = f->C_OpenSession(dr->slot, CKF_SERIAL_SESSION, NULL, NULL, &sh)) != CKR_OK) {
		direct_fail(s, "C_OpenSession", rv);
		goto out;
	}
	if (!dr->login_each && find_key(s, sh, &key) != 0)
		goto out;
	if (RAND_bytes(digest, (int)dlen) != 1) {
		direct_fail(s, "RAND_bytes", 0);
		goto out;
	}
	while ((go = window_next(&dr->w, now_us(), 1)) >= 0) {
		/* a new digest each time: count up in its first 8 bytes */
		uint64_t ctr;

		memcpy(&ctr, digest, sizeof(ctr));
		ctr++;
		memcpy(digest, &ctr, sizeof(ctr));
		if (sign_input(dr, digest, in) != 0) {
			direct_fail(s, "DigestInfo", 0);
			break;
		}
		t0 = now_us();
		slen = sizeof(sig);
		/* the private key is visible, and its handle valid, only while logged in */
		if (dr->login_each && ((rv = f->C_Login(sh, CKU_USER,
		    (CK_UTF8CHAR_PTR)qes_secret_data(dr->pin),
		    qes_secret_len(dr->pin))) != CKR_OK || find_key(s, sh, &key) != 0)) {
			direct_fail(s, "C_Login", rv);
			break;
		}
		if ((rv = f->C_SignInit(sh, &mech, key)) != CKR_OK) {
			direct_fail(s, "C_SignInit", rv);
			break;
		}
		if ((rv = f->C_Sign(sh, (CK_BYTE_PTR)qes_buf_data(in), qes_buf_len(in),
		    sig, &slen)) != CKR_OK) {
			direct_fail(s, "C_Sign", rv);
			break;
		}
		if (dr->login_each && (rv = f->C_Logout(sh)) != CKR_OK) {
			direct_fail(s, "C_Logout", rv);
			break;
		}
		t1 = now_us();
		if (!go)
			continue;
		if (samples_push(&s->lat, (double)(t1 - t0) / 1000.0) != 0) {
			direct_fail(s, "too many latency samples", 0);
			break;
		}
		if (s->ops == 0) {
			memcpy(s->first_digest, digest, dlen);
			memcpy(s->first_sig, sig, slen);
			s->first_len = slen;
		}
		memcpy(s->last_digest, digest, dlen);
		memcpy(s->last_sig, sig, slen);
		s->last_len = slen;
		s->ops++;
		s->last_done_us = t1;
	}
 out:
	if (sh != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(sh);
	qes_buf_free(in);
	return NULL;
}

static int
verify_direct(struct direct_run *dr, const uint8_t *digest, const uint8_t *sig,
    CK_ULONG slen)
{
	qes_buf *der;
	int r;

	if (dr->c.scheme != QES_SIG_ECDSA)
		return verify_one(dr->c.pub, dr->c.scheme, dr->c.md, digest,
		    qes_md_len(dr->c.md), sig, slen);
	if ((der = qes_buf_new()) == NULL)
		return -1;
	r = qes_ecdsa_raw_to_der(sig, slen, der) != 0 ? -1 :
	    verify_one(dr->c.pub, dr->c.scheme, dr->c.md, digest, qes_md_len(dr->c.md),
	    qes_buf_data(der), qes_buf_len(der));
	qes_buf_free(der);
	return r;
}

/* The slot whose token has this serial (CK_TOKEN_INFO pads it with blanks). */
static int
find_slot(struct direct_run *dr)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	size_t sl = strlen(dr->token), k;
	CK_RV rv;

	if ((rv = dr->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
		fprintf(stderr, "%s: C_GetSlotList: CKR 0x%lx\n", prog, (unsigned long)rv);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (dr->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (sl > sizeof(ti.serialNumber) ||
		    memcmp(ti.serialNumber, dr->token, sl) != 0)
			continue;
		for (k = sl; k < sizeof(ti.serialNumber) && ti.serialNumber[k] == ' '; k++)
			;
		if (k == sizeof(ti.serialNumber)) {
			dr->slot = slots[i];
			return 0;
		}
	}
	fprintf(stderr, "%s: no token with serial %s in %s\n", prog, dr->token, dr->module);
	return -1;
}

static void
direct_usage(void)
{
	fprintf(stderr,
	    "usage: qes-bench-sign direct --module PATH --token SERIAL --key-id HEX --cert PEM\n"
	    "           [--scheme ecdsa|rsa-pkcs1|rsa-pss] [--md sha256|sha384|sha512]\n"
	    "           [--concurrency THREADS] [--warmup S] [--duration S] [--min SIGNATURES]\n"
	    "           [--max-seconds S] [--login-each]\n"
	    "The user PIN is read from QES_BENCH_PIN. --login-each (one thread only):\n"
	    "C_Login and C_Logout around every signature, as the agent does per job.\n");
}

static int
run_direct(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "module", required_argument, NULL, OPT_MODULE },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "key-id", required_argument, NULL, OPT_KEY_ID },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "scheme", required_argument, NULL, OPT_SCHEME },
		{ "md", required_argument, NULL, OPT_MD },
		{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "min", required_argument, NULL, OPT_MIN },
		{ "max-seconds", required_argument, NULL, OPT_MAX },
		{ "login-each", no_argument, NULL, OPT_LOGIN_EACH },
		{ NULL, 0, NULL, 0 },
	};
	struct direct_run dr;
	struct signer *ss = NULL;
	struct samples all = { 0 };
	CK_C_GetFunctionList getfl;
	CK_C_INITIALIZE_ARGS ia;
	CK_SESSION_HANDLE login = CK_INVALID_HANDLE;
	qes_secret *pin = NULL;
	long ops = 0;
	int64_t last = 0;
	int ch, r, i, started = 0, rc = 1, initialized = 0, failed = 0;
	double secs;
	CK_RV rv;

	memset(&dr, 0, sizeof(dr));
	common_init(&dr.c);
	pthread_mutex_init(&dr.err_mu, NULL);
	if ((dr.key_id = qes_buf_new()) == NULL)
		goto out;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if ((r = common_opt(&dr.c, ch, optarg)) < 0)
			goto out;
		if (r > 0)
			continue;
		switch (ch) {
		case OPT_MODULE:
			dr.module = optarg;
			break;
		case OPT_TOKEN:
			dr.token = optarg;
			break;
		case OPT_LOGIN_EACH:
			dr.login_each = 1;
			break;
		case OPT_KEY_ID:
			qes_buf_reset(dr.key_id);
			if (qes_hex_decode(optarg, dr.key_id) != 0 ||
			    qes_buf_len(dr.key_id) == 0 || qes_buf_len(dr.key_id) > 128) {
				fprintf(stderr, "%s: --key-id takes 1..128 bytes in hex\n", prog);
				goto out;
			}
			break;
		default:
			direct_usage();
			goto out;
		}
	}
	if (optind != argc || dr.module == NULL || dr.token == NULL ||
	    qes_buf_len(dr.key_id) == 0) {
		direct_usage();
		goto out;
	}
	if (dr.login_each && dr.c.concurrency != 1) {
		/* the login state is the application's, shared by all its sessions */
		fprintf(stderr, "%s: --login-each needs --concurrency 1\n", prog);
		goto out;
	}
	if (common_finish(&dr.c) != 0)
		goto out;
	if ((pin = qes_secret_new(PIN_MAX)) == NULL ||
	    secret_from_env("QES_BENCH_PIN", pin) != 0)
		goto out;
	if ((dr.dl = dlopen(dr.module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "%s: cannot load %s: %s\n", prog, dr.module, dlerror());
		goto out;
	}
	if ((getfl = (CK_C_GetFunctionList)dlsym(dr.dl, "C_GetFunctionList")) == NULL ||
	    getfl(&dr.f) != CKR_OK || dr.f == NULL) {
		fprintf(stderr, "%s: %s has no usable C_GetFunctionList\n", prog, dr.module);
		goto out;
	}
	memset(&ia, 0, sizeof(ia));
	ia.flags = CKF_OS_LOCKING_OK;
	if ((rv = dr.f->C_Initialize(&ia)) != CKR_OK) {
		fprintf(stderr, "%s: C_Initialize: CKR 0x%lx\n", prog, (unsigned long)rv);
		goto out;
	}
	initialized = 1;
	if (find_slot(&dr) != 0)
		goto out;
	/* one login for the application: every session of the token shares it */
	if (dr.login_each)
		dr.pin = pin;
	else if ((rv = dr.f->C_OpenSession(dr.slot, CKF_SERIAL_SESSION, NULL, NULL,
	    &login)) != CKR_OK || (rv = dr.f->C_Login(login, CKU_USER,
	    (CK_UTF8CHAR_PTR)qes_secret_data(pin), qes_secret_len(pin))) != CKR_OK) {
		fprintf(stderr, "%s: C_OpenSession/C_Login: CKR 0x%lx\n", prog,
		    (unsigned long)rv);
		goto out;
	} else {
		qes_secret_free(pin);
		pin = NULL;
	}
	if ((ss = calloc((size_t)dr.c.concurrency, sizeof(*ss))) == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	window_init(&dr.w, &dr.c);
	for (i = 0; i < dr.c.concurrency; i++) {
		ss[i].dr = &dr;
		if (pthread_create(&ss[i].th, NULL, signer_main, &ss[i]) != 0) {
			fprintf(stderr, "%s: cannot start thread %d\n", prog, i);
			atomic_store(&dr.w.stop, 1);
			break;
		}
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(ss[i].th, NULL);
	if (started < dr.c.concurrency)
		goto out;
	for (i = 0; i < started; i++) {
		failed |= ss[i].failed;
		ops += ss[i].ops;
		if (ss[i].last_done_us > last)
			last = ss[i].last_done_us;
		if (samples_merge(&all, &ss[i].lat) != 0) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto out;
		}
	}
	if (failed) {
		fprintf(stderr, "%s: direct: %s\n", prog, dr.first_error);
		goto out;
	}
	if (ops == 0) {
		fprintf(stderr, "%s: direct: no signature in the window\n", prog);
		goto out;
	}
	for (i = 0; i < started; i++) {
		if (ss[i].ops == 0)
			continue;
		if (verify_direct(&dr, ss[i].first_digest, ss[i].first_sig, ss[i].first_len) != 0 ||
		    verify_direct(&dr, ss[i].last_digest, ss[i].last_sig, ss[i].last_len) != 0) {
			fprintf(stderr, "%s: direct: a C_Sign value does not verify against %s\n",
			    prog, dr.c.cert_path);
			goto out;
		}
	}
	secs = (double)(last - dr.w.start_us) / 1e6;
	printf("result mode=direct concurrency=%d login_each=%d scheme=%s md=%s "
	    "signatures=%ld seconds=%.3f sigs_per_s=%.1f", dr.c.concurrency, dr.login_each,
	    qes_sig_scheme_name(dr.c.scheme), qes_md_name(dr.c.md), ops, secs,
	    (double)ops / secs);
	print_latency("sig", &all);
	printf(" verified_sample=%d failures=0\n", 2 * started);
	rc = 0;
 out:
	if (ss != NULL) {
		for (i = 0; i < dr.c.concurrency; i++)
			free(ss[i].lat.v);
		free(ss);
	}
	free(all.v);
	if (login != CK_INVALID_HANDLE) {
		(void)dr.f->C_Logout(login);
		(void)dr.f->C_CloseSession(login);
	}
	if (initialized)
		(void)dr.f->C_Finalize(NULL);
	if (dr.dl != NULL)
		dlclose(dr.dl);
	qes_secret_free(pin);
	qes_buf_free(dr.key_id);
	EVP_PKEY_free(dr.c.pub);
	pthread_mutex_destroy(&dr.err_mu);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "path") == 0)
		return run_path(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "direct") == 0)
		return run_direct(argc - 1, argv + 1);
	fprintf(stderr, "usage: qes-bench-sign path|direct [options]; see docs/benchmarks.md\n");
	return 2;
}
