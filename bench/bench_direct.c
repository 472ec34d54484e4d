/*
 * bench_direct.c - `qes-bench-sign direct`: the baseline, C_Sign on the
 * same key through the PKCS#11 module itself (bench.h,
 * docs/benchmarks.md).
 *
 * The module is loaded with dlopen and initialised with OS locking; one
 * C_Login serves every session of the process (PKCS#11 keeps the login
 * state per application), then N threads, one session each, run
 * C_SignInit + C_Sign in a loop on the input libqes would give the token
 * (sig.h: a DigestInfo for PKCS#1 v1.5, the bare digest otherwise). With
 * --login-each (one thread) every signature is C_Login, find the key,
 * C_Sign, C_Logout: the token work the agent does for every job, as its
 * login lasts one job. The first and the last value of every thread are
 * verified against the certificate.
 */
#include <dlfcn.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "qes/sig.h"

#include "bench.h"

#define PIN_MAX			256
#define KEY_ID_MAX		128
#define SLOTS_MAX		64

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
	uint8_t first_sig[BENCH_SIG_MAX], last_sig[BENCH_SIG_MAX];
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
	uint8_t digest[QES_MD_MAX_LEN], sig[BENCH_SIG_MAX];
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
	CK_SLOT_ID slots[SLOTS_MAX];
	CK_ULONG n = SLOTS_MAX, i;
	CK_TOKEN_INFO ti;
	size_t sl = strlen(dr->token), k;
	CK_RV rv;

	if ((rv = dr->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
		fprintf(stderr, "%s: C_GetSlotList: CKR 0x%lx\n", BENCH_PROG, (unsigned long)rv);
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
	fprintf(stderr, "%s: no token with serial %s in %s\n", BENCH_PROG, dr->token, dr->module);
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

int
bench_run_direct(int argc, char **argv)
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
	int ch, r, i, started = 0, rc = 1, initialized = 0, failed = 0, verified = 0;
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
			    qes_buf_len(dr.key_id) == 0 || qes_buf_len(dr.key_id) > KEY_ID_MAX) {
				fprintf(stderr, "%s: --key-id takes 1..128 bytes in hex\n", BENCH_PROG);
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
		fprintf(stderr, "%s: --login-each needs --concurrency 1\n", BENCH_PROG);
		goto out;
	}
	if (common_finish(&dr.c) != 0)
		goto out;
	if ((pin = qes_secret_new(PIN_MAX)) == NULL ||
	    secret_from_env("QES_BENCH_PIN", pin) != 0)
		goto out;
	if ((dr.dl = dlopen(dr.module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "%s: cannot load %s: %s\n", BENCH_PROG, dr.module, dlerror());
		goto out;
	}
	if ((getfl = (CK_C_GetFunctionList)dlsym(dr.dl, "C_GetFunctionList")) == NULL ||
	    getfl(&dr.f) != CKR_OK || dr.f == NULL) {
		fprintf(stderr, "%s: %s has no usable C_GetFunctionList\n", BENCH_PROG, dr.module);
		goto out;
	}
	memset(&ia, 0, sizeof(ia));
	ia.flags = CKF_OS_LOCKING_OK;
	if ((rv = dr.f->C_Initialize(&ia)) != CKR_OK) {
		fprintf(stderr, "%s: C_Initialize: CKR 0x%lx\n", BENCH_PROG, (unsigned long)rv);
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
		fprintf(stderr, "%s: C_OpenSession/C_Login: CKR 0x%lx\n", BENCH_PROG,
		    (unsigned long)rv);
		goto out;
	} else {
		qes_secret_free(pin);
		pin = NULL;
	}
	if ((ss = calloc((size_t)dr.c.concurrency, sizeof(*ss))) == NULL) {
		fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
		goto out;
	}
	window_init(&dr.w, &dr.c);
	for (i = 0; i < dr.c.concurrency; i++) {
		ss[i].dr = &dr;
		if (pthread_create(&ss[i].th, NULL, signer_main, &ss[i]) != 0) {
			fprintf(stderr, "%s: cannot start thread %d\n", BENCH_PROG, i);
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
			fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
			goto out;
		}
	}
	if (failed) {
		fprintf(stderr, "%s: direct: %s\n", BENCH_PROG, dr.first_error);
		goto out;
	}
	if (ops == 0) {
		fprintf(stderr, "%s: direct: no signature in the window\n", BENCH_PROG);
		goto out;
	}
	for (i = 0; i < started; i++) {
		if (ss[i].ops == 0)
			continue;
		verified += 2;
		if (verify_direct(&dr, ss[i].first_digest, ss[i].first_sig, ss[i].first_len) != 0 ||
		    verify_direct(&dr, ss[i].last_digest, ss[i].last_sig, ss[i].last_len) != 0) {
			fprintf(stderr, "%s: direct: a C_Sign value does not verify against %s\n",
			    BENCH_PROG, dr.c.cert_path);
			goto out;
		}
	}
	secs = (double)(last - dr.w.start_us) / 1e6;
	printf("result mode=direct concurrency=%d login_each=%d scheme=%s md=%s "
	    "signatures=%ld seconds=%.3f sigs_per_s=%.1f", dr.c.concurrency, dr.login_each,
	    qes_sig_scheme_name(dr.c.scheme), qes_md_name(dr.c.md), ops, secs,
	    (double)ops / secs);
	print_latency("sig", &all);
	printf(" verified_sample=%d failures=0\n", verified);
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

