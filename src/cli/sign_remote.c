/*
 * sign_remote.c - `qes sign --remote --credential crd_...`: an AdES
 * signature made with a credential on a signer's desktop, through qesd in
 * hash-only mode.
 *
 * The certificate comes from GET /v1/credentials, the signature is
 * prepared here (sign_ades.c), only its digest is sent (POST
 * /v1/signatures with a fresh Idempotency-Key), the verification code is
 * shown, the job is long-polled until final and the returned value
 * finishes the signature here (timestamp and validation data fetched by
 * this process). The document never leaves this machine; nothing is
 * written unless the job completed and the value verified.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "api.h"
#include "sign_ades.h"
#include "sign_remote.h"
#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/tool.h"

#define PROG "qes sign"
#define CRED_PAGES_MAX 100		/* 100 pages of credentials is a loop, not a tenant */
#define CERT_B64_MAX ((size_t)64 * 1024)	/* a certificate's base64 */
#define SIG_B64_MAX ((size_t)4096)	/* a signature value's base64 (RSA-16384 fits) */
#define POLLS_MAX 1000			/* ~8 h of 30 s waits; the job expires first */

static const char *
str_field(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Standard base64 with padding (the API's form) into b; QES_ERR_FORMAT. */
static int
b64_decode(const char *s, size_t max, qes_buf *b)
{
	size_t len = strlen(s), pad = 0;
	uint8_t *tmp;
	int n, r = 0;

	if (len == 0 || len > max || len % 4 != 0)
		return QES_ERR_FORMAT;
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	if ((tmp = malloc(len / 4 * 3)) == NULL)
		return QES_ERR_ALLOC;
	/* EVP_DecodeBlock refuses anything outside the alphabet */
	n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad)
		r = QES_ERR_FORMAT;
	else
		r = qes_buf_put(b, tmp, (size_t)n - pad);
	free(tmp);
	return r;
}

/* The credential's certificate from GET /v1/credentials, paged. */
static int
find_credential(cli_api *api, const char *id, qes_cert **cert)
{
	char cursor[128] = "";
	json_t *page = NULL, *items, *it;
	cli_response resp = { 0 };
	qes_buf *path = NULL, *der = NULL;
	const char *nc, *b64;
	size_t i, pages = 0;
	int rc = QES_EXIT_FAILURE, found = 0;

	do {
		rc = QES_EXIT_FAILURE;
		qes_buf_free(path);
		if ((path = qes_buf_new()) == NULL ||
		    qes_buf_put_str(path, "/v1/credentials?limit=100") != 0 ||
		    (cursor[0] != '\0' && (qes_buf_put_str(path, "&cursor=") != 0 ||
		    cli_api_escape(path, cursor) != 0)) ||
		    qes_buf_put_u8(path, '\0') != 0)
			goto out;
		cli_response_clear(&resp);
		json_decref(page);
		page = NULL;
		if ((rc = cli_api_request(api, "GET", (const char *)qes_buf_data(path),
		    NULL, NULL, 0, &resp)) != 0 ||
		    (rc = cli_api_json(PROG, &resp, &page)) != 0)
			goto out;
		rc = QES_EXIT_FAILURE;
		if (!json_is_array(items = json_object_get(page, "items"))) {
			fprintf(stderr, PROG ": the server's answer has no credential list\n");
			goto out;
		}
		json_array_foreach(items, i, it) {
			if ((nc = str_field(it, "id")) == NULL || strcmp(nc, id) != 0)
				continue;
			if ((b64 = str_field(it, "certificate")) == NULL ||
			    (der = qes_buf_new()) == NULL ||
			    b64_decode(b64, CERT_B64_MAX, der) != 0 ||
			    qes_cert_from_der(qes_buf_data(der), qes_buf_len(der), cert) != 0) {
				fprintf(stderr, PROG ": credential %s: the server sent a "
				    "certificate qes cannot read\n", id);
				goto out;
			}
			found = 1;
			break;
		}
		if (found)
			break;
		nc = str_field(page, "next_cursor");
		if (nc != NULL && (strlen(nc) >= sizeof(cursor) ||
		    strcmp(nc, cursor) == 0 || ++pages >= CRED_PAGES_MAX)) {
			fprintf(stderr, PROG ": the server's paging does not end\n");
			goto out;
		}
		snprintf(cursor, sizeof(cursor), "%s", nc != NULL ? nc : "");
	} while (cursor[0] != '\0');
	if (!found) {
		fprintf(stderr, PROG ": no credential %s among the signing certificates "
		    "of the tenant's connected devices (is the signer's desktop "
		    "running qes-agent?)\n", id);
		rc = QES_EXIT_NOT_FOUND;
		goto out;
	}
	rc = 0;
 out:
	json_decref(page);
	cli_response_clear(&resp);
	qes_buf_free(path);
	qes_buf_free(der);
	return rc;
}

struct remote {
	cli_api *api;
	const cli_remote_opts *ro;
	long wait_s;
	qes_buf *sig;
	int exit_code;		/* when the signing step failed */
};

/* Exit code and sentence for a failed job's reason. */
static int
reason_exit(const char *reason, const json_t *job)
{
	const json_t *fl = json_object_get(job, "token_flags");
	int low = json_is_true(json_object_get(fl, "user_pin_count_low"));
	int final = json_is_true(json_object_get(fl, "user_pin_final_try"));
	int locked = json_is_true(json_object_get(fl, "user_pin_locked"));

	if (reason == NULL)
		reason = "unknown";
	if (strcmp(reason, "declined") == 0) {
		fprintf(stderr, PROG ": the signer declined the request\n");
		return QES_EXIT_CANCELLED;
	}
	if (strcmp(reason, "pin_incorrect") == 0 || strcmp(reason, "pin_locked") == 0) {
		fprintf(stderr, PROG ": %s on the signer's token; it now reports:%s%s%s\n",
		    strcmp(reason, "pin_locked") == 0 ? "PIN locked" : "PIN incorrect",
		    low ? " PIN count low" : "", final ? " PIN final try" : "",
		    locked ? " PIN locked" : (low || final) ? "" : " no retry warning");
		return strcmp(reason, "pin_locked") == 0 ? QES_EXIT_PIN_BLOCKED :
		    QES_EXIT_PIN_INCORRECT;
	}
	if (strcmp(reason, "device_offline") == 0 ||
	    strcmp(reason, "device_disconnected") == 0) {
		fprintf(stderr, PROG ": the signer's device went offline during the job "
		    "(%s); nothing was signed\n", reason);
		return QES_EXIT_DEVICE;
	}
	if (strcmp(reason, "token_not_present") == 0 ||
	    strcmp(reason, "token_removed") == 0 || strcmp(reason, "device_error") == 0 ||
	    strcmp(reason, "key_not_found") == 0) {
		fprintf(stderr, PROG ": the signer's device failed: %s\n", reason);
		return QES_EXIT_DEVICE;
	}
	if (strcmp(reason, "bad_signature") == 0) {
		fprintf(stderr, PROG ": the device returned a value that does not verify\n");
		return QES_EXIT_BAD_SIGNATURE;
	}
	if (strcmp(reason, "timeout") == 0)
		fprintf(stderr, PROG ": the signer did not answer in time\n");
	else
		fprintf(stderr, PROG ": the signature job failed: %s\n", reason);
	return QES_EXIT_FAILURE;
}

static int
job_path(qes_buf *b, const char *id, long wait_s)
{
	char q[32];

	snprintf(q, sizeof(q), "?wait=%ld", wait_s);
	qes_buf_reset(b);
	if (qes_buf_put_str(b, "/v1/signatures/") != 0 || cli_api_escape(b, id) != 0 ||
	    qes_buf_put_str(b, q) != 0 || qes_buf_put_u8(b, '\0') != 0)
		return QES_ERR_ALLOC;
	return 0;
}

static int
remote_sign(void *arg, qes_md md, qes_sig_scheme scheme, const uint8_t *digest,
    size_t len, const uint8_t **sig, size_t *siglen)
{
	struct remote *rm = arg;
	const cli_remote_opts *ro = rm->ro;
	unsigned char b64[2 * QES_MD_MAX_LEN + 4], rnd[16];
	char idem[64], id[160];
	json_t *body = NULL, *job = NULL, *sigs;
	cli_response resp = { 0 };
	qes_buf *path = NULL;
	const char *state, *s;
	size_t i, polls = 0;
	int rc = QES_EXIT_FAILURE;

	if (len > QES_MD_MAX_LEN || RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto out;
	EVP_EncodeBlock(b64, digest, (int)len);
	/* a fresh key per run: a retried POST of this run is not a second job */
	memcpy(idem, "Idempotency-Key: qes-sign-", 26);
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(idem + 26 + 2 * i, 3, "%02x", rnd[i]);
	body = json_pack("{s:s, s:s, s:[s], s:s, s:s}",
	    "credential_id", ro->credential, "digest_algorithm", qes_md_name(md),
	    "digests", (const char *)b64, "signature_scheme", qes_sig_scheme_name(scheme),
	    "title", ro->title);
	if (body == NULL || (ro->description != NULL && json_object_set_new(body,
	    "description", json_string(ro->description)) != 0) ||
	    (path = qes_buf_new()) == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	if ((rc = cli_api_request_hdr(rm->api, "POST", "/v1/signatures", body, idem,
	    NULL, 0, &resp)) != 0)
		goto out;
	if ((rc = cli_api_json(PROG, &resp, &job)) != 0) {
		/* 409: device_offline or device_revoked, the problem says which */
		if (resp.status == 409)
			fprintf(stderr, PROG ": the signer's desktop must be running qes-agent "
			    "and connected; nothing was signed\n");
		goto out;
	}
	rc = QES_EXIT_FAILURE;
	if ((s = str_field(job, "id")) == NULL || !cli_api_id_ok(s) ||
	    (state = str_field(job, "verification_code")) == NULL ||
	    strspn(state, "0123456789") != 4 || state[4] != '\0') {
		fprintf(stderr, PROG ": the server's answer is not a signature job\n");
		goto out;
	}
	snprintf(id, sizeof(id), "%s", s);
	printf("Verification code: %s \xe2\x80\x94 check that your desktop shows the same\n",
	    state);
	fflush(stdout);
	for (;;) {
		state = str_field(job, "state");
		if (state == NULL) {
			fprintf(stderr, PROG ": the server's answer has no job state\n");
			goto out;
		}
		if (strcmp(state, "completed") == 0)
			break;
		if (strcmp(state, "failed") == 0) {
			rc = reason_exit(str_field(job, "reason"), job);
			goto out;
		}
		if (strcmp(state, "cancelled") == 0) {
			fprintf(stderr, PROG ": the job %s was cancelled\n", id);
			rc = QES_EXIT_CANCELLED;
			goto out;
		}
		if (strcmp(state, "expired") == 0) {
			fprintf(stderr, PROG ": the job %s expired before its result was "
			    "fetched\n", id);
			goto out;
		}
		if (++polls > POLLS_MAX) {
			fprintf(stderr, PROG ": the job %s does not end\n", id);
			goto out;
		}
		json_decref(job);
		job = NULL;
		cli_response_clear(&resp);
		if (job_path(path, id, rm->wait_s) != 0 ||
		    (rc = cli_api_request(rm->api, "GET", (const char *)qes_buf_data(path),
		    NULL, NULL, 0, &resp)) != 0 ||
		    (rc = cli_api_json(PROG, &resp, &job)) != 0)
			goto out;
		rc = QES_EXIT_FAILURE;
	}
	sigs = json_object_get(job, "signatures");
	if (!json_is_array(sigs) || json_array_size(sigs) != 1 ||
	    !json_is_string(json_array_get(sigs, 0)) ||
	    b64_decode(json_string_value(json_array_get(sigs, 0)), SIG_B64_MAX,
	    rm->sig) != 0) {
		fprintf(stderr, PROG ": the completed job %s carries no signature value\n", id);
		goto out;
	}
	*sig = qes_buf_data(rm->sig);
	*siglen = qes_buf_len(rm->sig);
	rc = 0;
 out:
	rm->exit_code = rc;
	json_decref(body);
	json_decref(job);
	cli_response_clear(&resp);
	qes_buf_free(path);
	return rc != 0 ? QES_ERR_DEVICE : 0;	/* rm->exit_code says more */
}

int
cli_sign_remote(const cli_ades_opts *o, const cli_remote_opts *ro)
{
	struct remote rm = { 0 };
	cli_api *api = NULL;
	qes_cert *cert = NULL;
	qes_sig_scheme scheme;
	char by[200];
	int rc, r, failed = 0;

	if (!cli_api_id_ok(ro->credential) || strncmp(ro->credential, "crd_", 4) != 0) {
		fprintf(stderr, PROG ": --credential is an id crd_... (GET /v1/credentials)\n");
		return QES_EXIT_USAGE;
	}
	if ((rc = cli_api_open(ro->api, PROG, &api)) != 0)
		return rc;
	if ((rc = find_credential(api, ro->credential, &cert)) != 0)
		goto out;
	if (ro->scheme_set)
		scheme = ro->scheme;
	else
		scheme = qes_cert_get_info(cert)->key_type == QES_KEY_EC ? QES_SIG_ECDSA :
		    QES_SIG_RSA_PKCS1;
	rm.api = api;
	rm.ro = ro;
	/* the long poll must end before the request's own timeout */
	rm.wait_s = ro->api->timeout_s > 0 ? ro->api->timeout_s - 5 :
	    CLI_API_DEFAULT_TIMEOUT_S - 5;
	if (rm.wait_s > 30)
		rm.wait_s = 30;
	if (rm.wait_s < 1)
		rm.wait_s = 1;
	if ((rm.sig = qes_buf_new()) == NULL) {
		rc = QES_EXIT_FAILURE;
		goto out;
	}
	snprintf(by, sizeof(by), "through credential %s", ro->credential);
	r = cli_sign_ades_with(o, cert, ro->md, scheme, remote_sign, &rm, by, &failed);
	if (r == 0)
		rc = QES_EXIT_OK;
	else if (failed)
		rc = rm.exit_code;
	else
		rc = qes_tool_exit_code(r);
 out:
	qes_buf_free(rm.sig);
	qes_cert_free(cert);
	cli_api_free(api);
	return rc;
}
