/*
 * jobs_ades.c - documents the gateway signs (AdES: PAdES, CAdES, XAdES,
 * JAdES), on top of the signature jobs (jobs.h).
 *
 * A document job is an ordinary job with one digest: the digest to sign
 * that qes_ades_prepare() makes from the document (sign.h). Its life:
 *
 *  1. submit (jobs_submit.c): the job's id and creation time are fixed
 *     first, the document is prepared here with signing_time = the
 *     creation time and id_seed = the job id, and the job is inserted with
 *     the sealed document (store_docs.c, kind INPUT) and the AdES
 *     parameters in its stored request, in one transaction.
 *  2. the signer's device signs the digest like any other (the dialog
 *     shows the title and the verification code); the value is verified
 *     and the job moves to signed (jobs_device.c), not to completed.
 *  3. the finisher, a thread of its own (a TSA or an OCSP responder may
 *     take seconds: never on the event loop or a hub worker), takes a
 *     signed job, decrypts the document, prepares it again with the same
 *     parameters (prepare is deterministic: sign.h), checks that the digest
 *     is the one the signer signed, finishes (timestamp, validation data,
 *     document timestamp as the level asks) into memory and, in one
 *     transaction with signature.completed, stores the sealed result
 *     (kind RESULT), drops the input and completes the job.
 *  4. GET .../result (qesd_jobs_result_take) hands the result out once
 *     and purges it in the same transaction.
 *
 * Replicas and restarts: the finisher claims nothing up front; its final
 * transaction is a compare-and-set on the version of the signed job it
 * read, so when two replicas finish the same job only one commits (the
 * other's work is dropped), a cancel meanwhile wins, and a restart finds
 * signed jobs left behind by its scan (every FINISH_SCAN_MS; the sweeper
 * and the restart recovery leave signed jobs alone). The regular scan
 * takes only jobs signed FINISH_STALE_MS ago, so that the replica that
 * got the signer's value (and was kicked) normally finishes alone.
 *
 * A TSA or OCSP/CRL responder that cannot be reached (not one that answers
 * wrongly) leaves the job signed for the next scans, up to FINISH_RETRY_MS
 * after the signature; then it fails (timestamp_failed,
 * revocation_failed). A signed job that
 * cannot be finished for FINISH_GRACE_MS past its expiry (a store that
 * keeps failing) fails with gateway_error.
 *
 * The plaintext document lives only in memory (the request body, the
 * decrypted copy of the finisher, the result buffer, wiped where we own
 * it) and sealed in the store; nothing of it is logged or put in a record
 * (sizes and ids only).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "qes/ades.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/revocation.h"
#include "qes/secret.h"
#include "qes/sign.h"
#include "qes/tsp.h"
#include "app.h"
#include "config.h"
#include "jobs.h"
#include "jobs_priv.h"
#include "log.h"
#include "store.h"
#include "store_jobs.h"

/* room for what a signature adds to a document (signature, certificates,
 * timestamps, validation data) under the store's QESD_JOB_DOC_MAX */
#define RESULT_OVERHEAD_MAX (1024 * 1024)
#define CHAIN_FILE_MAX (1024 * 1024)
#define DEFAULT_DOC_NAME "document"

/* ------------------------------------------------------------------------- */
/* configuration */

/*
 * The certificates of a PEM bundle (OpenSSL's PEM reader; qes_cert takes
 * DER), at most JOBS_CHAIN_MAX, into chain[] (*n of them; the caller frees
 * them, also after a failure); chain NULL: only checked and counted, any
 * number (a trust bundle). what names the configuration key in err.
 */
static int
load_bundle(const char *path, const char *what, qes_cert **chain, size_t *n,
    char *err, size_t errlen)
{
	qes_buf *pem = NULL;
	BIO *bio = NULL;
	X509 *x = NULL;
	unsigned char *der = NULL;
	int len, r;

	*n = 0;
	if ((r = qes_buf_read_file(path, CHAIN_FILE_MAX, &pem)) != 0) {
		snprintf(err, errlen, "%s %s cannot be read: %s", what, path,
		    qes_strerror(r));
		return r;
	}
	r = QES_ERR_ALLOC;
	snprintf(err, errlen, "%s %s: out of memory", what, path);
	if ((bio = BIO_new_mem_buf(qes_buf_data(pem),
	    (int)qes_buf_len(pem))) == NULL)
		goto out;
	for (;;) {
		if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL)
			break;
		if (chain != NULL && *n == JOBS_CHAIN_MAX) {
			snprintf(err, errlen, "%s %s holds more than %d "
			    "certificates", what, path, JOBS_CHAIN_MAX);
			r = QES_ERR_LIMIT;
			goto out;
		}
		if ((len = i2d_X509(x, &der)) <= 0 || (chain != NULL &&
		    qes_cert_from_der(der, (size_t)len, &chain[*n]) != 0)) {
			snprintf(err, errlen, "certificate %zu of %s %s does "
			    "not parse", *n, what, path);
			r = QES_ERR_FORMAT;
			goto out;
		}
		(*n)++;
		OPENSSL_free(der);
		der = NULL;
		X509_free(x);
		x = NULL;
	}
	ERR_clear_error();
	if (*n == 0) {
		snprintf(err, errlen, "%s %s holds no PEM certificate", what,
		    path);
		r = QES_ERR_FORMAT;
		goto out;
	}
	r = 0;
 out:
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(bio);
	qes_buf_free(pem);
	return r;
}

int
qesd_jobs_documents_check_config(const struct qesd_config *cfg, char *err,
    size_t errlen)
{
	qes_cert *certs[JOBS_CHAIN_MAX];
	size_t n = 0, i;
	int r = 0;

	if (cfg->document_key_file == NULL)
		return 0;
	if (cfg->chain_file != NULL) {
		r = load_bundle(cfg->chain_file, "chain_file", certs, &n, err,
		    errlen);
		for (i = 0; i < n; i++)
			qes_cert_free(certs[i]);
	}
	if (r == 0 && cfg->tsa_ca_file != NULL)
		r = load_bundle(cfg->tsa_ca_file, "tsa_ca_file", NULL, &n, err,
		    errlen);
	return r;
}

int
jobs_ades_init(qesd_jobs *j)
{
	struct jobs_ades *a = &j->ades;
	const qesd_config *cfg = j->app->cfg;
	pthread_condattr_t ca;
	char err[256];
	int r;

	if (pthread_mutex_init(&a->mu, NULL) != 0)
		return QES_ERR_INTERNAL;
	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&a->cv, &ca) != 0) {
		pthread_mutex_destroy(&a->mu);
		return QES_ERR_INTERNAL;
	}
	pthread_condattr_destroy(&ca);
	if (cfg == NULL || cfg->document_key_file == NULL)
		return 0;	/* documents off: 501 documents_disabled */
	a->document_max = cfg->document_max_bytes;
	if (a->document_max > QESD_JOB_DOC_MAX - RESULT_OVERHEAD_MAX)
		a->document_max = QESD_JOB_DOC_MAX - RESULT_OVERHEAD_MAX;
	if ((r = qesd_doc_key_load(cfg->document_key_file, a->doc_key, err,
	    sizeof(err))) != 0) {
		qesd_log(QESD_LOG_ERROR, "document_key_file cannot be used",
		    QLS("file", cfg->document_key_file), QLS("error", err));
		goto fail;
	}
	if (cfg->chain_file != NULL && (r = load_bundle(cfg->chain_file,
	    "chain_file", a->chain, &a->nchain, err, sizeof(err))) != 0) {
		qesd_log(QESD_LOG_ERROR, "chain_file cannot be used",
		    QLS("error", err));
		goto fail;
	}
	if (cfg->tsa_url != NULL) {
		a->has_tsa = 1;
		a->tsa.url = cfg->tsa_url;
		a->tsa.ca_file = cfg->tsa_ca_file;
		a->tsa.policy_oid = cfg->tsa_policy;
	}
	/* revocation: the certificates' own AIA and CDP, libqes's limits */
	memset(&a->rev, 0, sizeof(a->rev));
	a->enabled = 1;
	qesd_log(QESD_LOG_INFO, "document signing on",
	    QLI("document_max_bytes", a->document_max),
	    QLI("chain_certificates", a->nchain),
	    QLS("tsa_url", a->has_tsa ? a->tsa.url : "none (B-B only)"));
	return 0;
 fail:
	jobs_ades_destroy(j);
	return r;
}

static void
finisher_stop(struct jobs_ades *a)
{
	pthread_mutex_lock(&a->mu);
	a->stop = 1;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	if (a->started)
		pthread_join(a->thread, NULL);
	a->started = 0;
}

void
jobs_ades_destroy(qesd_jobs *j)
{
	struct jobs_ades *a = &j->ades;
	size_t i;

	finisher_stop(a);
	qes_wipe(a->doc_key, sizeof(a->doc_key));
	for (i = 0; i < a->nchain; i++)
		qes_cert_free(a->chain[i]);
	a->nchain = 0;
	a->enabled = 0;
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
}

size_t
qesd_jobs_document_max(const qesd_jobs *j)
{
	return j != NULL && j->ades.enabled ? j->ades.document_max : 0;
}

qesd_submit_outcome
qesd_jobs_document_check(qesd_jobs *j, const qesd_sign_document *doc,
    char *detail, size_t detail_len)
{
	if (!j->ades.enabled) {
		snprintf(detail, detail_len, "this gateway signs no documents "
		    "(no document_key_file configured); send digests instead");
		return QESD_SUBMIT_DOCUMENTS_DISABLED;
	}
	if (doc->level >= QES_ADES_B_T && !j->ades.has_tsa) {
		snprintf(detail, detail_len, "level %s needs a timestamp and this "
		    "gateway has no tsa_url configured; ask for B-B",
		    qes_ades_level_name(doc->level));
		return QESD_SUBMIT_TIMESTAMP_UNAVAILABLE;
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* the signing parameters */

/* The TSA hook, remembering that the TSA failed (timestamp_failed rather
 * than revocation_failed when both kinds of fetch happen in one finish). */
struct tsa_hook {
	const qes_tsp_config *cfg;
	int failed;
};

static int
tsa_hook_fn(void *arg, qes_md md, const uint8_t *digest, size_t digest_len,
    qes_buf *token_out, char *err, size_t errlen)
{
	struct tsa_hook *h = arg;
	int r;

	r = qes_tsp_timestamp_fn((void *)(uintptr_t)h->cfg, md, digest,
	    digest_len, token_out, err, errlen);
	if (r != 0)
		h->failed = 1;
	return r;
}

/* Everything qes_ades_sign_params borrows, kept together. */
struct ades_run {
	qes_ades_sign_params p;
	const qes_cert *chain[QES_REV_MAX_CHAIN];
	const qes_cert *embed[QES_ADES_SIGN_MAX_CHAIN];
	struct tsa_hook hook;
	qes_timestamper ts;
	qes_rev_config rev;
};

static int
self_signed(const qes_cert *c)
{
	const qes_cert_info *ci = qes_cert_get_info(c);

	return ci != NULL && strcmp(ci->subject, ci->issuer) == 0;
}

/*
 * The parameters of one document, the same at submit and at finish: the
 * signer's chain from chain_file (its CAs embedded, the root not), the
 * whole of chain_file for building chains, the TSA, the revocation
 * defaults.
 */
static int
run_params(qesd_jobs *j, struct ades_run *a, const qesd_sign_document *doc,
    const qes_cert *signer, qes_md md, qes_sig_scheme scheme,
    int64_t signing_time_s, const char *job_id, qes_buf *out_buf)
{
	struct jobs_ades *ad = &j->ades;
	size_t n = 0, i;
	int r;

	memset(a, 0, sizeof(*a));
	if (ad->nchain > 0 && (r = qes_chain_build(signer,
	    (const qes_cert *const *)ad->chain, ad->nchain, a->chain,
	    QES_REV_MAX_CHAIN, &n)) != 0)
		return r;
	for (i = 1; i < n && a->p.nchain < QES_ADES_SIGN_MAX_CHAIN; i++)
		if (!self_signed(a->chain[i]))
			a->embed[a->p.nchain++] = a->chain[i];
	a->hook.cfg = &ad->tsa;
	a->ts.fn = tsa_hook_fn;
	a->ts.arg = &a->hook;
	a->rev = ad->rev;
	a->p.format = doc->format;
	a->p.level = doc->level;
	a->p.packaging = doc->packaging;
	a->p.in_data = doc->data;
	a->p.in_len = doc->len;
	a->p.doc_name = doc->name != NULL ? doc->name : DEFAULT_DOC_NAME;
	a->p.mime_type = doc->mime_type;
	a->p.out_buf = out_buf;
	a->p.signer = signer;
	a->p.chain = a->embed;
	a->p.md = md;
	a->p.scheme = scheme;
	a->p.signing_time = signing_time_s;
	a->p.id_seed = job_id;
	a->p.tsa = doc->level >= QES_ADES_B_T && ad->has_tsa ? &a->ts : NULL;
	a->p.rev = &a->rev;
	a->p.extra = (const qes_cert *const *)ad->chain;
	a->p.nextra = ad->nchain < QES_ADES_SIGN_MAX_EXTRA ? ad->nchain :
	    QES_ADES_SIGN_MAX_EXTRA;
	return 0;
}

/* What a failed prepare means for the relying party. */
static int
prepare_refusal(int r)
{
	switch (r) {
	case QES_ERR_UNSUPPORTED:
	case QES_ERR_INVALID_ARG:
		return QESD_SUBMIT_FORMAT_UNSUPPORTED;
	case QES_ERR_FORMAT:
	case QES_ERR_TRUNCATED:
	case QES_ERR_LIMIT:
	case QES_ERR_PDF_MALFORMED:
	case QES_ERR_PDF_ENCRYPTED:
	case QES_ERR_XML_MALFORMED:
		return QESD_SUBMIT_DOCUMENT_INVALID;
	default:
		return 0;
	}
}

int
jobs_ades_prepare(qesd_jobs *j, const qesd_sign_document *doc,
    const qes_cert *signer, qes_md md, qes_sig_scheme scheme,
    int64_t signing_time_s, const char *job_id, qes_buf *digest_out,
    qes_md *md_out, qesd_submit_outcome *outcome, char *detail,
    size_t detail_len)
{
	struct ades_run *a = NULL;
	qes_ades_ctx *ctx = NULL;
	qes_buf *unused = NULL;
	const uint8_t *d;
	size_t dlen;
	int r;

	*outcome = 0;
	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (unused = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = run_params(j, a, doc, signer, md, scheme, signing_time_s,
	    job_id, unused)) != 0)
		goto out;
	r = qes_ades_prepare(&a->p, &ctx);
	if (r == 0)
		r = qes_ades_tbs(ctx, md_out, NULL, &d, &dlen);
	if (r != 0) {
		if ((*outcome = prepare_refusal(r)) != 0) {
			/* the sentence is about the document's structure, for
			 * its sender; it is not logged */
			snprintf(detail, detail_len, "%s: %s", qes_strerror(r),
			    qes_ades_errmsg(ctx));
			r = 0;
		} else
			qesd_log(QESD_LOG_ERROR, "a document could not be prepared",
			    QLS("job_id", job_id), QLS("error", qes_strerror(r)));
		goto out;
	}
	r = qes_buf_put(digest_out, d, dlen);
 out:
	qes_ades_free(ctx);
	qes_buf_free(unused);
	free(a);
	return r;
}

/* ------------------------------------------------------------------------- */
/* the finisher */

/* A document job's AdES parameters as stored (jobs_format.c). */
static int
stored_document(const struct jobs_request *q, qesd_sign_document *doc,
    int64_t *signing_time_s)
{
	const json_t *d = q->document;
	const char *pkg;

	memset(doc, 0, sizeof(*doc));
	if (d == NULL ||
	    qes_ades_format_from_name(json_string_value(json_object_get(d,
	    "format")), &doc->format) != 0 ||
	    qes_ades_level_from_name(json_string_value(json_object_get(d,
	    "level")), &doc->level) != 0 ||
	    (pkg = json_string_value(json_object_get(d, "packaging"))) == NULL ||
	    (pkg[0] != '\0' && qes_ades_packaging_from_name(pkg,
	    &doc->packaging) != 0) ||
	    !json_is_integer(json_object_get(d, "signing_time")))
		return QES_ERR_FORMAT;
	doc->name = json_string_value(json_object_get(d, "name"));
	doc->mime_type = json_string_value(json_object_get(d, "mime_type"));
	*signing_time_s = (int64_t)json_integer_value(json_object_get(d,
	    "signing_time"));
	return 0;
}

/* The value the device returned, as the job's result keeps it. */
static int
stored_signature(const qesd_job *job, qes_buf *out)
{
	json_t *res = job->result != NULL ? json_loads(job->result,
	    JSON_REJECT_DUPLICATES, NULL) : NULL;
	const char *s = json_string_value(json_array_get(json_object_get(res,
	    "signatures"), 0));
	int r = s != NULL ? qesd_b64_decode(s, strlen(s), out) : QES_ERR_FORMAT;

	json_decref(res);
	return r;
}

/* The reason a failed finish gives the job. */
static const char *
finish_reason(int r, const struct ades_run *a)
{
	if (a->hook.failed || r == QES_ERR_TIMESTAMP)
		return "timestamp_failed";
	if (r == QES_ERR_REVOCATION || r == QES_ERR_FETCH)
		return "revocation_failed";
	return "gateway_error";
}

/*
 * Store the result and complete the job, in one transaction with its
 * record, if the job is still the signed one we read (version).
 * *applied 0: it moved on meanwhile (another replica, a cancel).
 */
static int
complete(qesd_jobs *j, const qesd_job *read, const qes_buf *result,
    const qesd_sign_document *doc, int *applied)
{
	qesd_job job;
	qesd_tx *tx = NULL;
	json_t *res = NULL;
	char *details = NULL;
	int64_t now = qesd_now_ms(j->app);
	int r;

	*applied = 0;
	memset(&job, 0, sizeof(job));
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_job_get(tx, read->tenant_id, read->id, &job)) != 0)
		goto out;
	if (job.state != QESD_JOB_SIGNED || job.version != read->version)
		goto out;
	r = QES_ERR_ALLOC;
	if ((res = json_loads(job.result, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    json_object_set_new(res, "result_bytes",
	    json_integer((json_int_t)qes_buf_len(result))) != 0)
		goto out;
	free(job.result);
	if ((job.result = json_dumps(res, JSON_COMPACT)) == NULL)
		goto out;
	if ((r = qesd_job_doc_purge(tx, job.tenant_id, job.id, NULL)) != 0 ||
	    (r = qesd_job_doc_put(tx, j->ades.doc_key, job.tenant_id, job.id,
	    QESD_JOB_DOC_RESULT, qes_buf_data(result), qes_buf_len(result),
	    now)) != 0 ||
	    (r = qesd_job_update(tx, &job, QESD_JOB_COMPLETED, NULL, now)) != 0)
		goto out;
	if ((details = jobs_details(&job, NULL, json_pack("{s:I, s:s, s:s}",
	    "result_bytes", (json_int_t)qes_buf_len(result),
	    "format", qes_ades_format_name(doc->format),
	    "level", qes_ades_level_name(doc->level)))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = jobs_audit(j, tx, NULL, &job, "signature.completed", 0,
	    details)) != 0 || (r = qesd_tx_commit(tx)) != 0)
		goto out;
	*applied = 1;
 out:
	if (r == QES_ERR_CONFLICT)
		r = 0;		/* moved on meanwhile: not ours */
	qesd_tx_end(tx);
	json_decref(res);
	free(details);
	qesd_job_clear(&job);
	return r;
}

static int
fail_signed(qesd_jobs *j, const qesd_job *job, const char *reason,
    int *moved)
{
	int applied = 0, r;

	r = jobs_fail(j, job->tenant_id, job->id, BIT(QESD_JOB_SIGNED), reason,
	    NULL, &applied, NULL, NULL);
	if (r == 0 && applied) {
		(*moved)++;
		qesd_log(QESD_LOG_WARN, "a signed document job failed",
		    QLS("tenant", job->tenant_id), QLS("job_id", job->id),
		    QLS("reason", reason));
	}
	return r;
}

/*
 * Finish one job if it is a signed document job. 0 when it moved or was
 * not ours (*moved counts it), or an error that leaves it signed for the
 * next round (store busy, out of memory).
 */
static int
finish_one(qesd_jobs *j, const char *tenant_id, const char *job_id,
    int *moved)
{
	struct jobs_request q;
	struct jobs_cert *entry = NULL;
	struct ades_run *a = NULL;
	qesd_sign_document doc;
	qes_ades_ctx *ctx = NULL;
	qesd_job job;
	qesd_tx *tx = NULL;
	qes_buf *sig = NULL, *out = NULL;
	uint8_t *data = NULL;
	size_t len = 0, dlen;
	const uint8_t *d;
	int64_t signing_time_s = 0;
	int r, applied = 0;

	memset(&job, 0, sizeof(job));
	memset(&q, 0, sizeof(q));
	if (!j->ades.enabled)
		return 0;
	if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) != 0)
		goto out;
	if ((r = qesd_job_get(tx, tenant_id, job_id, &job)) != 0) {
		if (r == QES_ERR_NOT_FOUND)
			r = 0;
		goto out;
	}
	if (job.state != QESD_JOB_SIGNED)
		goto out;
	if (jobs_request_parse(job.request, &q) != 0 || q.document == NULL ||
	    stored_document(&q, &doc, &signing_time_s) != 0) {
		qesd_tx_end(tx);
		tx = NULL;
		qesd_log(QESD_LOG_ERROR, "a signed job's stored request is unusable",
		    QLS("tenant", tenant_id), QLS("job_id", job_id));
		r = fail_signed(j, &job, "gateway_error", moved);
		goto out;
	}
	r = qesd_job_doc_get(tx, j->ades.doc_key, tenant_id, job_id,
	    QESD_JOB_DOC_INPUT, &data, &len);
	qesd_tx_end(tx);
	tx = NULL;
	if (r == QES_ERR_NOT_FOUND || r == QES_ERR_SIGNATURE_INVALID) {
		qesd_log(QESD_LOG_ERROR, r == QES_ERR_NOT_FOUND ?
		    "a signed job's document is missing" :
		    "a signed job's document does not decrypt (another "
		    "document_key_file?)",
		    QLS("tenant", tenant_id), QLS("job_id", job_id));
		r = fail_signed(j, &job, "gateway_error", moved);
		goto out;
	}
	if (r != 0)
		goto out;
	doc.data = data;
	doc.len = len;

	r = QES_ERR_ALLOC;
	if ((a = calloc(1, sizeof(*a))) == NULL || (sig = qes_buf_new()) == NULL ||
	    (out = qes_buf_new_secret()) == NULL)
		goto out;
	qes_buf_set_max(out, QESD_JOB_DOC_MAX);
	if (stored_signature(&job, sig) != 0 ||
	    jobs_cert_acquire(&j->certs, qes_buf_data(q.cert_der),
	    qes_buf_len(q.cert_der), &entry) != 0) {
		qesd_log(QESD_LOG_ERROR, "a signed job's signature or certificate is unusable",
		    QLS("tenant", tenant_id), QLS("job_id", job_id));
		r = fail_signed(j, &job, "gateway_error", moved);
		goto out;
	}
	if ((r = run_params(j, a, &doc, jobs_cert_get(entry), q.md, q.scheme,
	    signing_time_s, job.id, out)) != 0 ||
	    (r = qes_ades_prepare(&a->p, &ctx)) != 0 ||
	    (r = qes_ades_tbs(ctx, NULL, NULL, &d, &dlen)) != 0) {
		qesd_log(QESD_LOG_ERROR, "a signed job's document no longer prepares",
		    QLS("tenant", tenant_id), QLS("job_id", job_id),
		    QLS("error", qes_strerror(r)));
		r = fail_signed(j, &job, prepare_refusal(r) ==
		    QESD_SUBMIT_DOCUMENT_INVALID ? "document_invalid" :
		    "gateway_error", moved);
		goto out;
	}
	/* the signer approved this digest and no other */
	if (dlen != qes_buf_len(q.digests) ||
	    CRYPTO_memcmp(d, qes_buf_data(q.digests), dlen) != 0) {
		qesd_log(QESD_LOG_ERROR, "the document prepared again does not give "
		    "the digest the signer signed: job failed, nothing written "
		    "(a libqes prepare that is not deterministic, or a changed "
		    "chain_file)",
		    QLS("tenant", tenant_id), QLS("job_id", job_id));
		r = fail_signed(j, &job, "gateway_error", moved);
		goto out;
	}
	if ((r = qes_ades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig))) != 0) {
		const char *reason = finish_reason(r, a);

		/* the TSA or a responder out of reach: a moment's outage must
		 * not cost the signer another PIN entry; the scan tries again
		 * until FINISH_RETRY_MS after the signature */
		if ((r == QES_ERR_FETCH || r == QES_ERR_TIMEOUT) &&
		    qesd_now_ms(j->app) - job.updated_at_ms < FINISH_RETRY_MS) {
			qesd_log(QESD_LOG_WARN, "a signed document could not be "
			    "finished yet: the job stays signed and is tried again",
			    QLS("tenant", tenant_id), QLS("job_id", job_id),
			    QLS("would_be", reason), QLS("error", qes_strerror(r)),
			    QLS("detail", qes_ades_errmsg(ctx)));
			r = 0;
			goto out;
		}

		qesd_log(QESD_LOG_WARN, "a signed document could not be finished",
		    QLS("tenant", tenant_id), QLS("job_id", job_id),
		    QLS("reason", reason), QLS("error", qes_strerror(r)),
		    QLS("detail", qes_ades_errmsg(ctx)));
		r = fail_signed(j, &job, reason, moved);
		goto out;
	}
	if ((r = complete(j, &job, out, &doc, &applied)) != 0)
		goto out;
	if (applied) {
		(*moved)++;
		qesd_log(QESD_LOG_INFO, "signature job completed: document signed",
		    QLS("tenant", tenant_id), QLS("job_id", job_id),
		    QLS("format", qes_ades_format_name(doc.format)),
		    QLS("level", qes_ades_level_name(doc.level)),
		    QLI("result_bytes", qes_buf_len(out)));
		qesd_jobs_changed(j, tenant_id, job_id);
	}
 out:
	qesd_tx_end(tx);
	qes_ades_free(ctx);
	if (data != NULL) {
		qes_wipe(data, len);
		free(data);
	}
	qes_buf_free(out);
	qes_buf_free(sig);
	free(a);
	jobs_cert_release(&j->certs, entry);
	jobs_request_free(&q);
	qesd_job_clear(&job);
	return r;
}

/*
 * Finish the signed jobs of one batch of live jobs that have been signed
 * for at least min_age_ms (0: all). The thread's regular scan leaves
 * fresh ones to the replica the signer's value reached, which was kicked
 * and is finishing them, so that replicas seldom ask the TSA twice for one
 * job; its first scan after a start takes every one.
 */
static int
finish_scan(qesd_jobs *j, int64_t min_age_ms, uint64_t *count)
{
	qesd_job *items = NULL;
	qesd_tx *tx = NULL;
	size_t n = 0, i;
	int64_t now;
	int r, moved = 0, first = 0;

	if (count != NULL)
		*count = 0;
	if (!j->ades.enabled)
		return 0;
	/*
	 * The jobs resting in signed, longest waiting first: document jobs
	 * (a hash-only job never rests in signed), however many other jobs
	 * are open. One batch a round.
	 */
	now = qesd_now_ms(j->app);
	if ((r = qesd_store_begin(j->app->store, QESD_TX_READ, &tx)) == 0)
		r = qesd_job_list_signed_before(tx, min_age_ms > 0 ?
		    now - min_age_ms + 1 : INT64_MAX, SWEEP_BATCH, &items, &n);
	qesd_tx_end(tx);
	if (r != 0)
		return r;
	for (i = 0; i < n; i++) {
		int ri;

		if (items[i].state != QESD_JOB_SIGNED)
			continue;
		if (items[i].expires_at_ms + FINISH_GRACE_MS < now) {
			ri = fail_signed(j, &items[i], "gateway_error", &moved);
		} else
			ri = finish_one(j, items[i].tenant_id, items[i].id, &moved);
		if (ri != 0 && first == 0)
			first = ri;
	}
	qesd_job_list_free(items, n);
	if (count != NULL)
		*count = (uint64_t)moved;
	return first;
}

int
qesd_jobs_finish_pending(qesd_jobs *j, uint64_t *count)
{
	if (count != NULL)
		*count = 0;
	if (j == NULL)
		return QES_ERR_INVALID_ARG;
	return finish_scan(j, 0, count);
}

void
jobs_ades_kick(qesd_jobs *j, const char *tenant_id, const char *job_id)
{
	struct jobs_ades *a = &j->ades;
	size_t at;

	pthread_mutex_lock(&a->mu);
	if (a->qlen < FINISH_QUEUE) {
		at = (a->qhead + a->qlen) % FINISH_QUEUE;
		snprintf(a->queue[at].tenant, sizeof(a->queue[at].tenant), "%s",
		    tenant_id);
		snprintf(a->queue[at].job, sizeof(a->queue[at].job), "%s", job_id);
		a->qlen++;
	}
	/* full: the next scan finds it */
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

static void *
finisher_main(void *arg)
{
	qesd_jobs *j = arg;
	struct jobs_ades *a = &j->ades;
	char tenant[QESD_ID_SIZE], job[QESD_ID_SIZE];
	struct timespec ts;
	int64_t next_scan = 0, min_age_ms = 0;
	int r, moved;

	pthread_mutex_lock(&a->mu);
	while (!a->stop) {
		if (a->qlen > 0) {
			memcpy(tenant, a->queue[a->qhead].tenant, sizeof(tenant));
			memcpy(job, a->queue[a->qhead].job, sizeof(job));
			a->qhead = (a->qhead + 1) % FINISH_QUEUE;
			a->qlen--;
			pthread_mutex_unlock(&a->mu);
			moved = 0;
			if ((r = finish_one(j, tenant, job, &moved)) != 0)
				qesd_log(QESD_LOG_WARN, "a signed document job could not be "
				    "finished now; the finisher tries again shortly",
				    QLS("job_id", job), QLS("error", qes_strerror(r)));
			pthread_mutex_lock(&a->mu);
			continue;
		}
		if (qesd_mono_ms() >= next_scan) {
			pthread_mutex_unlock(&a->mu);
			if ((r = finish_scan(j, min_age_ms, NULL)) != 0)
				qesd_log(r == QES_ERR_BUSY ? QESD_LOG_WARN : QESD_LOG_ERROR,
				    "the document finisher could not run; it tries again shortly",
				    QLS("error", qes_strerror(r)));
			next_scan = qesd_mono_ms() + FINISH_SCAN_MS;
			min_age_ms = FINISH_STALE_MS;
			pthread_mutex_lock(&a->mu);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += FINISH_SCAN_MS / 1000;
		pthread_cond_timedwait(&a->cv, &a->mu, &ts);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

int
jobs_ades_start(qesd_jobs *j)
{
	struct jobs_ades *a = &j->ades;

	if (!a->enabled || a->started)
		return 0;
	if (pthread_create(&a->thread, NULL, finisher_main, j) != 0)
		return QES_ERR_INTERNAL;
	a->started = 1;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* the result, once */

int
qesd_jobs_result_take(qesd_jobs *j, qesd_request *req, const char *job_id,
    qesd_result_outcome *outcome, qesd_job *job, uint8_t **data, size_t *len)
{
	struct jobs_request q;
	qesd_tx *tx = NULL;
	char *details = NULL;
	int r;

	if (j == NULL || req == NULL || outcome == NULL || job == NULL ||
	    data == NULL || len == NULL || !req->auth.authenticated)
		return QES_ERR_INVALID_ARG;
	*data = NULL;
	*len = 0;
	*outcome = 0;
	memset(job, 0, sizeof(*job));
	memset(&q, 0, sizeof(q));
	if ((r = qesd_store_begin(j->app->store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_job_get(tx, req->auth.tenant_id, job_id, job)) != 0)
		goto out;
	if (jobs_request_parse(job->request, &q) != 0 || q.document == NULL) {
		*outcome = QESD_RESULT_NO_DOCUMENT;
		goto out;
	}
	switch (job->state) {
	case QESD_JOB_COMPLETED:
		break;
	case QESD_JOB_FAILED:
	case QESD_JOB_CANCELLED:
		*outcome = QESD_RESULT_UNAVAILABLE;
		goto out;
	case QESD_JOB_EXPIRED:
		*outcome = QESD_RESULT_GONE;
		goto out;
	default:
		*outcome = QESD_RESULT_NOT_READY;
		goto out;
	}
	if (!j->ades.enabled) {
		r = QES_ERR_UNSUPPORTED;
		goto out;
	}
	r = qesd_job_doc_take(tx, j->ades.doc_key, job->tenant_id, job->id,
	    QESD_JOB_DOC_RESULT, data, len);
	if (r == QES_ERR_NOT_FOUND) {
		*outcome = QESD_RESULT_GONE;
		r = 0;
		goto out;
	}
	if (r != 0)
		goto out;
	if ((details = jobs_details(job, NULL, json_pack("{s:I}",
	    "result_bytes", (json_int_t)*len))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = jobs_audit(j, tx, req, job, "signature.result_fetched", 200,
	    details)) != 0 || (r = jobs_commit(tx, req)) != 0)
		goto out;
	*outcome = QESD_RESULT_OK;
	qesd_log(QESD_LOG_INFO, "a signed document was fetched and purged",
	    QLS("request_id", req->request_id), QLS("tenant", job->tenant_id),
	    QLS("job_id", job->id), QLI("result_bytes", *len));
 out:
	if (r != 0 || *outcome != QESD_RESULT_OK) {
		if (*data != NULL) {
			qes_wipe(*data, *len);
			free(*data);
		}
		*data = NULL;
		*len = 0;
	}
	if (r != 0)
		qesd_job_clear(job);
	qesd_tx_end(tx);
	jobs_request_free(&q);
	free(details);
	return r;
}
