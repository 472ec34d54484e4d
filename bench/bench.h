/*
 * bench.h - what the two halves of qes-bench-sign share (bench_util.c):
 * the clock, latency samples and their percentiles, the options both modes
 * take, the measuring window, secrets from the environment and the OpenSSL
 * check of a signature value. bench_path.c drives the API, bench_direct.c
 * the PKCS#11 module; qes-bench-sign.c picks one.
 */
#ifndef QES_BENCH_H
#define QES_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "qes/secret.h"
#include "qes/sig.h"

#define BENCH_PROG		"qes-bench-sign"
#define BENCH_CONCURRENCY_MAX	1024	/* clients or threads */
#define BENCH_SAMPLES_MAX	((size_t)50 * 1000 * 1000)
#define BENCH_SIG_MAX		1024	/* one signature value (RSA-8192) */

/* Monotonic microseconds. */
int64_t now_us(void);

/* Latency samples in milliseconds; at most BENCH_SAMPLES_MAX (QES_ERR_LIMIT). */
struct samples {
	double *v;
	size_t n, cap;
};
int samples_push(struct samples *s, double ms);
int samples_merge(struct samples *dst, const struct samples *src);
/* Sorts s, then prints " WHAT_p50_ms=... WHAT_p99_ms=... WHAT_max_ms=..." (nearest rank). */
void print_latency(const char *what, struct samples *s);

/* The options both modes take (getopt_long values). */
enum {
	OPT_SCHEME = 0x100, OPT_MD, OPT_CERT, OPT_WARMUP, OPT_DURATION, OPT_MAX,
	OPT_MIN, OPT_CONCURRENCY, OPT_SERVER, OPT_CA, OPT_CREDENTIAL, OPT_BATCH,
	OPT_MODULE, OPT_TOKEN, OPT_KEY_ID, OPT_LOGIN_EACH, OPT_BUSY_BACKOFF,
};

struct common {
	qes_sig_scheme scheme;
	qes_md md;
	const char *cert_path;
	EVP_PKEY *pub;		/* the certificate's key, after common_finish() */
	int concurrency;
	double warmup_s, duration_s, max_s;
	long min_count;
};
void common_init(struct common *c);
/* 1 when ch was a common option (taken), 0 when not, -1 on a bad value. */
int common_opt(struct common *c, int ch, const char *arg);
/* Checks the options and loads the certificate's key; -1 with a message. */
int common_finish(struct common *c);
int parse_long(const char *what, const char *s, long lo, long hi, long *out);
int parse_seconds(const char *what, const char *s, double lo, double hi, double *out);

/*
 * The measuring window: a warm-up that is not counted, then work started in
 * [start, start + duration) is counted, and after that as long as fewer than
 * min_count units were started, but never past start + max_s.
 */
struct window {
	int64_t start_us, end_us, hard_end_us;
	long min_count;
	atomic_long started;	/* counted units started */
	atomic_int stop;	/* a failure stops everyone */
};
void window_init(struct window *w, const struct common *c);
/* -1: stop; 0: go, not counted (warm-up); 1: go, counted (units added). */
int window_next(struct window *w, int64_t t, long units);

/* Copy the variable into s, wipe it in the environment and unset it. */
int secret_from_env(const char *name, qes_secret *s);

/* 0 when sig (DER for ECDSA) is a valid signature of digest under pub. */
int verify_one(EVP_PKEY *pub, qes_sig_scheme scheme, qes_md md, const uint8_t *digest,
    size_t dlen, const uint8_t *sig, size_t slen);

int bench_run_path(int argc, char **argv);
int bench_run_direct(int argc, char **argv);

#endif
