/*
 * bench_path.c - `qes-bench-sign path`: the whole signing path under load
 * (bench.h, docs/benchmarks.md).
 *
 * N client threads, each with its own libcurl handle (one keep-alive TLS
 * 1.3 connection, verified against --ca, as src/cli/api.c sets it up), in a
 * closed loop: POST /v1/signatures with a batch of random digests, then
 * GET /v1/signatures/{id}?wait=30 until the job is final. A job counts only
 * when it completed with one value per digest; the first failure of any
 * kind (transport, status, job state, count, encoding) stops the run and
 * no figure is printed. Every (digest, value) pair is kept and verified
 * with OpenSSL against the certificate after the timed window, so the
 * checks do not take CPU from the system being measured. With --server
 * given for several replicas of one store, client i sends its POSTs and
 * long-polls to replica i mod n (bench/replicas.sh).
 *
 * Hand-written: the strict base64 wrapper around EVP_DecodeBlock, which
 * itself accepts non-canonical text and counts padding as data.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "qes/sig.h"

#include "bench.h"

#define BATCH_MAX		1000	/* QES_PROTO_DIGESTS_MAX */
#define API_KEY_MAX		256
#define URL_MAX			512
#define JOB_ID_MAX		64
#define RESPONSE_MAX		(8u << 20)	/* 1000 RSA-8192 values in base64 are 1.4 MB */
#define RECORDS_MAX		((size_t)1 << 30)	/* kept (digest, value) pairs, all clients */
#define POLL_WAIT_S		30
#define JOB_TIMEOUT_S		300	/* timeout_seconds of every job */
#define CONNECT_TIMEOUT_MS	10000L
#define SERVERS_MAX		8	/* --server given several times: replicas */

struct path_run {
	struct common c;
	const char *servers[SERVERS_MAX], *ca, *credential;
	int n_servers, batch;
	long busy_backoff_ms;	/* > 0: token_busy is a refusal, not a failure */
	qes_secret *api_key;
	struct window w;
	pthread_mutex_t err_mu;
	char first_error[512];
};

struct client {
	struct path_run *pr;
	const char *server;	/* servers[index % n_servers] */
	pthread_t th;
	CURL *curl;
	struct curl_slist *post_hdrs, *get_hdrs;
	char errbuf[CURL_ERROR_SIZE];
	qes_buf *resp;
	struct samples lat;
	qes_buf *records;	/* digest, u16 length, signature; ... */
	long jobs, polls, warmup_jobs, refused;
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
	if ((size_t)snprintf(url, sizeof(url), "%s%s", cl->server, path) >= sizeof(url)) {
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
	uint8_t tmp[BENCH_SIG_MAX + 3];
	char back[((BENCH_SIG_MAX + 2) / 3) * 4 + 1];

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
	uint8_t sig[BENCH_SIG_MAX], len16[2];
	json_t *v;

	json_array_foreach(sigs, i, v) {
		if (!json_is_string(v) ||
		    b64_decode(json_string_value(v), sig, sizeof(sig), &slen) != 0) {
			path_fail(cl, "signatures[%zu] is not canonical base64 of at "
			    "most %d bytes", i, BENCH_SIG_MAX);
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

		if (pr->busy_backoff_ms > 0 && strcmp(st, "failed") == 0 &&
		    reason != NULL && strcmp(reason, "token_busy") == 0) {
			/* the agent's queue for the token is full: back off, go on */
			struct timespec ts = { pr->busy_backoff_ms / 1000,
			    pr->busy_backoff_ms % 1000 * 1000000 };

			if (counted)
				cl->refused++;
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				;
			rc = 0;
			goto out;
		}
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
	    "usage: qes-bench-sign path --server https://HOST:PORT... --ca PEM --credential ID\n"
	    "           --cert PEM [--scheme ecdsa|rsa-pkcs1|rsa-pss] [--md sha256|sha384|sha512]\n"
	    "           [--concurrency N] [--batch N] [--warmup S] [--duration S] [--min JOBS]\n"
	    "           [--max-seconds S] [--busy-backoff-ms MS]\n"
	    "The API key is read from QES_API_KEY (scope sign). With --busy-backoff-ms a\n"
	    "job that fails with token_busy (the agent's queue for the token is full)\n"
	    "is counted as refused and its client waits MS before the next job; without\n"
	    "it, as every other failure, it stops the run. --server given several times\n"
	    "(replicas of one store, at most 8): client i uses the (i mod n)-th.\n");
}

int
bench_run_path(int argc, char **argv)
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
		{ "busy-backoff-ms", required_argument, NULL, OPT_BUSY_BACKOFF },
		{ NULL, 0, NULL, 0 },
	};
	struct path_run pr;
	struct client *cls = NULL;
	struct samples all = { 0 };
	long jobs = 0, polls = 0, warm = 0, verified = 0, refused = 0, v;
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
			if (pr.n_servers == SERVERS_MAX || strncmp(optarg, "https://", 8) != 0 ||
			    strlen(optarg) > URL_MAX) {
				path_usage();
				goto out;
			}
			pr.servers[pr.n_servers++] = optarg;
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
		case OPT_BUSY_BACKOFF:
			if (parse_long("--busy-backoff-ms", optarg, 1, 60000,
			    &pr.busy_backoff_ms) != 0)
				goto out;
			break;
		default:
			path_usage();
			goto out;
		}
	}
	if (optind != argc || pr.n_servers == 0 || pr.ca == NULL || pr.credential == NULL) {
		path_usage();
		goto out;
	}
	if (common_finish(&pr.c) != 0)
		goto out;
	if ((pr.api_key = qes_secret_new(API_KEY_MAX)) == NULL ||
	    secret_from_env("QES_API_KEY", pr.api_key) != 0)
		goto out;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: cannot initialise libcurl\n", BENCH_PROG);
		goto out;
	}
	if ((cls = calloc((size_t)pr.c.concurrency, sizeof(*cls))) == NULL)
		goto nomem;
	for (i = 0; i < pr.c.concurrency; i++) {
		cls[i].pr = &pr;
		cls[i].server = pr.servers[i % pr.n_servers];
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
			fprintf(stderr, "%s: cannot start client thread %d\n", BENCH_PROG, i);
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
		refused += cls[i].refused;
		if (cls[i].last_done_us > last)
			last = cls[i].last_done_us;
		if (samples_merge(&all, &cls[i].lat) != 0)
			goto nomem;
	}
	if (failed) {
		fprintf(stderr, "%s: path: a job failed, no figures: %s\n", BENCH_PROG,
		    pr.first_error);
		goto out;
	}
	if (jobs == 0) {
		fprintf(stderr, "%s: path: no job completed in the window\n", BENCH_PROG);
		goto out;
	}
	/* after the timed window: every value returned, against the certificate */
	for (i = 0; i < started; i++) {
		if ((v = verify_records(&pr, cls[i].records)) < 0) {
			fprintf(stderr, "%s: path: a returned signature does not verify "
			    "against %s\n", BENCH_PROG, pr.c.cert_path);
			goto out;
		}
		verified += v;
	}
	if (verified != (warm + jobs) * pr.batch) {
		fprintf(stderr, "%s: path: %ld signatures verified, %ld expected\n",
		    BENCH_PROG, verified, (warm + jobs) * pr.batch);
		goto out;
	}
	secs = (double)(last - pr.w.start_us) / 1e6;
	printf("result mode=path concurrency=%d batch=%d scheme=%s md=%s jobs=%ld "
	    "signatures=%ld seconds=%.3f jobs_per_s=%.1f sigs_per_s=%.1f "
	    "polls_per_job=%.2f", pr.c.concurrency, pr.batch,
	    qes_sig_scheme_name(pr.c.scheme), qes_md_name(pr.c.md), jobs,
	    jobs * pr.batch, secs, (double)jobs / secs,
	    (double)(jobs * pr.batch) / secs, (double)polls / (double)(jobs + warm + refused));
	print_latency("job", &all);
	printf(" refused=%ld refused_per_s=%.1f verified=%ld warmup_jobs=%ld failures=0\n",
	    refused, (double)refused / secs, verified, warm);
	rc = 0;
	goto out;
 nomem:
	fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
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
