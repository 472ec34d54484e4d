/*
 * h_credentials.c - GET /v1/credentials (scope sign): the signing
 * certificates on the tenant's connected devices, each with the stable
 * credential id that POST /v1/signatures takes.
 *
 * The list and each entry's view come from the devices service (devices.h):
 * only devices that are not revoked and have an open session, certificates
 * whose token reports a private key, facts as the gateway parsed them from
 * the DER (never the agent's description of them). This route adds what
 * signing needs: the certificate itself (base64 DER; a relying party checks
 * the signatures it gets back with it and builds signature formats around
 * them) and the signature schemes its key can make. Cursor pages like
 * every list (?cursor=&limit=). Nothing here is secret.
 */
#include <stdio.h>
#include <string.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/sig.h"
#include "app.h"
#include "devices.h"
#include "jobs.h"
#include "log.h"
#include "h_util.h"
#include "problem.h"
#include "routes.h"
#include "store.h"
#include "store_devices.h"

/* The schemes POST /v1/signatures may ask for, from the certificate. */
static json_t *
schemes_json(const qes_cert *cert)
{
	static const qes_sig_scheme all[] = { QES_SIG_ECDSA, QES_SIG_RSA_PKCS1,
	    QES_SIG_RSA_PSS };
	unsigned can = cert != NULL ? qes_cert_schemes(cert) : 0;
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < sizeof(all) / sizeof(all[0]); i++)
		if ((can & (1u << all[i])) && json_array_append_new(a,
		    json_string(qes_sig_scheme_name(all[i]))) != 0) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

/*
 * The devices service's view of a credential (the same as in GET
 * /v1/devices/{id}) plus what signing needs: the certificate itself and
 * the signature schemes its key can make.
 */
static json_t *
credential_json(const qesd_credential *c)
{
	qes_cert *cert = NULL;
	json_t *o = qesd_credential_json(c);

	if (o == NULL)
		return NULL;
	(void)qes_cert_from_der(c->cert_der, c->cert_der_len, &cert);
	if (json_object_set_new(o, "certificate", qesd_b64_json(c->cert_der,
	    c->cert_der_len)) != 0 ||
	    json_object_set_new(o, "signature_schemes", schemes_json(cert)) != 0) {
		json_decref(o);
		o = NULL;
	}
	qes_cert_free(cert);
	return o;
}

static int
fetch_credentials(qesd_request *req, qesd_tx *tx, const char *cursor,
    size_t limit, json_t *arr, char next[QESD_CURSOR_SIZE])
{
	qesd_credential *items = NULL;
	size_t n = 0, i;
	int r;

	r = qesd_devices_credentials(tx, req->auth.tenant_id,
	    qesd_now_ms(req->app), cursor, limit, &items, &n, next);
	for (i = 0; r == 0 && i < n; i++)
		if (json_array_append_new(arr, credential_json(&items[i])) != 0)
			r = QES_ERR_ALLOC;
	qesd_credentials_free(items, n);
	return r;
}

static qesd_handler_result
credentials_list(qesd_request *req, qesd_response *resp)
{
	return qesd_h_list(req, resp, fetch_credentials, NULL);
}

static const qesd_route credential_routes[] = {
	{ QESD_GET, "/v1/credentials", QESD_SCOPE_SIGN, 0, credentials_list,
	  "credentials.list" },
};
const qesd_route_table qesd_credential_routes = { credential_routes,
	sizeof(credential_routes) / sizeof(credential_routes[0]) };
