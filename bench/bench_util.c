/*
 * bench_util.c - the clock, samples, options, window and checks that both
 * modes of qes-bench-sign share (bench.h).
 *
 * Hand-written because no Debian library has it in this form: the
 * percentile is the nearest rank over a sorted array (the definition the
 * printed p50/p99 mean).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "qes/err.h"

#include "bench.h"

int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


int
samples_push(struct samples *s, double ms)
{
	double *nv;
	size_t ncap;

	if (s->n == s->cap) {
		if (s->cap >= BENCH_SAMPLES_MAX)
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

int
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


int
parse_long(const char *what, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "%s: %s takes a whole number in %ld..%ld\n", BENCH_PROG,
		    what, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

int
parse_seconds(const char *what, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
		fprintf(stderr, "%s: %s takes seconds in %g..%g\n", BENCH_PROG, what, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

int
secret_from_env(const char *name, qes_secret *s)
{
	char *v = getenv(name);
	size_t len;
	int r;

	if (v == NULL || v[0] == '\0') {
		fprintf(stderr, "%s: %s is not set\n", BENCH_PROG, name);
		return -1;
	}
	len = strlen(v);
	r = qes_secret_set(s, v, len);
	qes_wipe(v, len);
	unsetenv(name);
	if (r != 0) {
		fprintf(stderr, "%s: %s is too long\n", BENCH_PROG, name);
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
		fprintf(stderr, "%s: cannot open %s: %s\n", BENCH_PROG, path, strerror(errno));
		return NULL;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL || (pk = X509_get_pubkey(x)) == NULL)
		fprintf(stderr, "%s: %s holds no PEM certificate with a public key\n",
		    BENCH_PROG, path);
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

int
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


int
common_opt(struct common *c, int ch, const char *arg)
{
	long v;

	switch (ch) {
	case OPT_SCHEME:
		if (qes_sig_scheme_from_name(arg, &c->scheme) != 0) {
			fprintf(stderr, "%s: --scheme: rsa-pkcs1, rsa-pss or ecdsa\n", BENCH_PROG);
			return -1;
		}
		return 1;
	case OPT_MD:
		if (qes_md_from_name(arg, &c->md) != 0) {
			fprintf(stderr, "%s: --md: sha256, sha384 or sha512\n", BENCH_PROG);
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
		if (parse_long("--concurrency", arg, 1, BENCH_CONCURRENCY_MAX, &v) != 0)
			return -1;
		c->concurrency = (int)v;
		return 1;
	default:
		return 0;
	}
}

int
common_finish(struct common *c)
{
	if (c->cert_path == NULL) {
		fprintf(stderr, "%s: --cert PEM is required (the signer's certificate)\n", BENCH_PROG);
		return -1;
	}
	if (c->max_s < c->duration_s)
		c->max_s = c->duration_s;
	if ((c->pub = load_cert_key(c->cert_path)) == NULL)
		return -1;
	if (!key_fits_scheme(c->pub, c->scheme)) {
		fprintf(stderr, "%s: the certificate's key does not fit --scheme %s\n",
		    BENCH_PROG, qes_sig_scheme_name(c->scheme));
		return -1;
	}
	return 0;
}

void
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


void
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
int
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

void
print_latency(const char *what, struct samples *s)
{
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	printf(" %s_p50_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f", what,
	    percentile(s, 0.50), what, percentile(s, 0.99), what,
	    s->n > 0 ? s->v[s->n - 1] : NAN);
}
