/*
 * devices.c - the devices service (devices.h): enrollment codes and their
 * keyed hash, device key checks, stable credential ids (hub.h), and turning
 * an agent's inventory into stored credentials.
 *
 * Trust: an inventory is the agent's word. What a credential says about
 * its certificate (subject, issuer, validity, key, classification) is
 * therefore read from the DER by libqes here, not copied from the agent's
 * description; what only the token knows (serial, CKA_ID, labels, whether
 * a private key is there) is taken as reported, because that is what the
 * agent will be asked to sign with - a lie there only makes its own jobs
 * fail, and every signature value is verified against the certificate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "qes/sig.h"
#include "devices.h"
#include "hub.h"
#include "log.h"
#include "rfc3339.h"
#include "store.h"

#define CODE_LABEL "qes-enrollment-code"

static const char b32_upper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char b32_lower[] = "abcdefghijklmnopqrstuvwxyz234567";

/* ---- credentials for the jobs service ---- */

int
qesd_devices_credentials(qesd_tx *tx, const char *tenant_id, int64_t now_ms,
    const char *cursor, size_t limit, qesd_credential **items, size_t *n,
    char next_cursor[QESD_CURSOR_SIZE])
{
	return qesd_credential_list(tx, tenant_id, NULL, 1, now_ms, cursor,
	    limit, items, n, next_cursor);
}

int
qesd_devices_credential_lookup(qesd_tx *tx, const char *tenant_id,
    const char *credential_id, int64_t now_ms, qesd_credential *out)
{
	return qesd_credential_get(tx, tenant_id, credential_id, now_ms, out);
}

/* The public view of a credential (GET /v1/credentials, GET
 * /v1/devices/{id}): facts and ids, the certificate by its hash. */
static const char *
key_type_name(qes_key_type t)
{
	return t == QES_KEY_RSA ? "RSA" : t == QES_KEY_EC ? "EC" : "unknown";
}

static json_t *
time_json(int64_t ms)
{
	char text[QESD_TIME_TEXT_SIZE];

	if (ms <= 0 || qesd_time_format(ms, text) != 0)
		return json_null();
	return json_string(text);
}

json_t *
qesd_credential_json(const qesd_credential *c)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s,"
	    " s:o, s:o, s:s, s:I, s:s?, s:s, s:b, s:b, s:o}",
	    "id", c->id,
	    "device_id", c->device_id,
	    "device_name", c->device_name,
	    "token_serial", c->serial,
	    "token_label", c->token_label != NULL ? c->token_label : "",
	    "key_id", c->key_id_hex,
	    "label", c->label != NULL ? c->label : "",
	    "subject", c->subject != NULL ? c->subject : "",
	    "subject_cn", c->subject_cn != NULL ? c->subject_cn : "",
	    "issuer", c->issuer != NULL ? c->issuer : "",
	    "not_before", time_json(c->not_before_ms),
	    "not_after", time_json(c->not_after_ms),
	    "key_type", key_type_name(c->key_type),
	    "key_bits", (json_int_t)c->key_bits,
	    "curve", c->curve[0] ? c->curve : NULL,
	    "classification", c->classification,
	    "device_live", c->device_live && c->device_revoked_at_ms == 0,
	    "always_authenticate", c->always_authenticate != 0,
	    "certificate_sha256", json_string(c->cert_sha256_hex));
}

/* ---- credential ids (hub.h) ---- */

static void
put_lp(EVP_MD_CTX *ctx, const char *s, int *ok)
{
	size_t len = strlen(s);
	uint8_t be[4];

	be[0] = (uint8_t)(len >> 24);
	be[1] = (uint8_t)(len >> 16);
	be[2] = (uint8_t)(len >> 8);
	be[3] = (uint8_t)len;
	if (EVP_DigestUpdate(ctx, be, sizeof(be)) != 1 ||
	    (len > 0 && EVP_DigestUpdate(ctx, s, len) != 1))
		*ok = 0;
}

int
qesd_credential_id(const char *device_id, const char *serial,
    const char *key_id_hex, const char *cert_sha256_hex, char out[QESD_ID_SIZE])
{
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned hl = 0;
	uint32_t acc = 0;
	EVP_MD_CTX *ctx;
	size_t i, o = 0;
	int ok = 1, bits = 0;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	out[0] = '\0';
	if (device_id == NULL || serial == NULL || key_id_hex == NULL ||
	    cert_sha256_hex == NULL || serial[0] == '\0' ||
	    strlen(device_id) > 64 || strlen(serial) > QES_PROTO_SERIAL_MAX ||
	    strlen(key_id_hex) > QESD_KEY_ID_HEX_MAX ||
	    strlen(cert_sha256_hex) != 64)
		return QES_ERR_INVALID_ARG;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return QES_ERR_ALLOC;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		ok = 0;
	put_lp(ctx, device_id, &ok);
	put_lp(ctx, serial, &ok);
	put_lp(ctx, key_id_hex, &ok);
	put_lp(ctx, cert_sha256_hex, &ok);
	if (ok && EVP_DigestFinal_ex(ctx, h, &hl) != 1)
		ok = 0;
	EVP_MD_CTX_free(ctx);
	if (!ok || hl < 16) {
		ERR_clear_error();
		return QES_ERR_CRYPTO;
	}
	/* 16 bytes in the id alphabet of ids.c, so qesd_id_valid("crd") holds */
	memcpy(out, "crd_", 4);
	o = 4;
	for (i = 0; i < 16; i++) {
		acc = (acc << 8) | h[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = b32_lower[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	out[o++] = b32_lower[(acc << (5 - bits)) & 31];
	out[o] = '\0';
	return 0;
}

/* ---- enrollment codes ---- */

static int
code_hmac(const qes_secret *pepper, const char code[QESD_ENROLL_CODE_CHARS],
    uint8_t hash[QESD_HMAC_LEN])
{
	uint8_t msg[sizeof(CODE_LABEL) + QESD_ENROLL_CODE_CHARS];
	unsigned len = 0;
	int r = 0;

	if (pepper == NULL || qes_secret_len(pepper) == 0)
		return QES_ERR_INVALID_ARG;
	/* the label (with its NUL) keeps these hashes apart from API keys' */
	memcpy(msg, CODE_LABEL, sizeof(CODE_LABEL));
	memcpy(msg + sizeof(CODE_LABEL), code, QESD_ENROLL_CODE_CHARS);
	if (HMAC(EVP_sha256(), qes_secret_data(pepper),
	    (int)qes_secret_len(pepper), msg, sizeof(msg), hash, &len) == NULL ||
	    len != QESD_HMAC_LEN) {
		ERR_clear_error();
		qes_wipe(hash, QESD_HMAC_LEN);
		r = QES_ERR_CRYPTO;
	}
	qes_wipe(msg, sizeof(msg));
	return r;
}

int
qesd_enroll_code_new(const qes_secret *pepper, char code[QESD_ENROLL_CODE_SIZE],
    uint8_t hash[QESD_HMAC_LEN])
{
	uint8_t rnd[QESD_ENROLL_CODE_CHARS];
	char raw[QESD_ENROLL_CODE_CHARS];
	size_t i, o = 0;
	int r;

	if (code == NULL || hash == NULL)
		return QES_ERR_INVALID_ARG;
	/* one random byte per character, 5 bits of it used: no bias */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		ERR_clear_error();
		return QES_ERR_CRYPTO;
	}
	for (i = 0; i < QESD_ENROLL_CODE_CHARS; i++) {
		raw[i] = b32_upper[rnd[i] & 31];
		if (i > 0 && i % 5 == 0)
			code[o++] = '-';
		code[o++] = raw[i];
	}
	code[o] = '\0';
	r = code_hmac(pepper, raw, hash);
	qes_wipe(rnd, sizeof(rnd));
	qes_wipe(raw, sizeof(raw));
	if (r != 0)
		qes_wipe(code, QESD_ENROLL_CODE_SIZE);
	return r;
}

int
qesd_enroll_code_hash(const qes_secret *pepper, const char *code,
    uint8_t hash[QESD_HMAC_LEN])
{
	char raw[QESD_ENROLL_CODE_CHARS];
	const char *p;
	size_t n = 0;
	int r = QES_ERR_FORMAT;

	if (code == NULL || hash == NULL)
		return QES_ERR_INVALID_ARG;
	for (p = code; *p != '\0'; p++) {
		char ch = *p;

		if (ch == '-' || ch == ' ')
			continue;
		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		if (strchr(b32_upper, ch) == NULL || n == sizeof(raw))
			goto out;
		raw[n++] = ch;
	}
	if (n != sizeof(raw))
		goto out;
	r = code_hmac(pepper, raw, hash);
 out:
	qes_wipe(raw, sizeof(raw));
	return r;
}

/* ---- device keys ---- */

int
qesd_device_key_check(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	unsigned char *re = NULL;
	char group[32];
	EVP_PKEY *k = NULL;
	int n, r = QES_ERR_FORMAT;

	/* parse anything key-sized, so another key type is named as such */
	if (der == NULL || len == 0 || len > 4096)
		return QES_ERR_FORMAT;
	if ((k = d2i_PUBKEY(NULL, &p, (long)len)) == NULL || p != der + len)
		goto out;
	/* canonical: the stored bytes are the bytes every replica re-reads */
	if ((n = i2d_PUBKEY(k, &re)) <= 0 || (size_t)n != len ||
	    memcmp(re, der, len) != 0)
		goto out;
	r = QES_ERR_KEY_UNSUITABLE;
	if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
	    EVP_PKEY_get_group_name(k, group, sizeof(group), NULL) != 1 ||
	    (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0))
		goto out;
	r = len <= QESD_DEVICE_KEY_MAX ? 0 : QES_ERR_FORMAT;
 out:
	ERR_clear_error();
	OPENSSL_free(re);
	EVP_PKEY_free(k);
	return r;
}

/* ---- inventories ---- */

static char *
dup_or_empty(const char *s)
{
	return strdup(s != NULL ? s : "");
}

/* One credential from one certificate entry; 1 skipped (no private key),
 * 0 made, QES_ERR_FORMAT (DER does not parse), QES_ERR_ALLOC. */
static int
make_credential(const char *device_id, const qes_proto_token *t,
    const qes_proto_cert *ce, qesd_credential *out)
{
	const qes_cert_info *info;
	qes_cert *cert = NULL;
	int64_t mid;
	int r;

	memset(out, 0, sizeof(*out));
	if (ce->has_private_key == 0 || ce->certificate.len == 0 ||
	    t->serial == NULL)
		return 1;
	if (strlen(ce->id) > QESD_KEY_ID_HEX_MAX ||
	    strlen(t->serial) > QES_PROTO_SERIAL_MAX)
		return QES_ERR_FORMAT;
	if ((r = qes_cert_from_der(ce->certificate.data, ce->certificate.len,
	    &cert)) != 0)
		return r == QES_ERR_ALLOC ? r : QES_ERR_FORMAT;
	info = qes_cert_get_info(cert);
	if (info == NULL || info->sha256_hex == NULL ||
	    strlen(info->sha256_hex) != 64 || info->not_after < info->not_before ||
	    info->serial_hex == NULL ||
	    strlen(info->serial_hex) >= sizeof(out->cert_serial_hex)) {
		r = QES_ERR_FORMAT;
		goto out;
	}
	if ((r = qesd_credential_id(device_id, t->serial, ce->id,
	    info->sha256_hex, out->id)) != 0)
		goto out;
	snprintf(out->serial, sizeof(out->serial), "%s", t->serial);
	snprintf(out->key_id_hex, sizeof(out->key_id_hex), "%s", ce->id);
	snprintf(out->cert_serial_hex, sizeof(out->cert_serial_hex), "%s",
	    info->serial_hex);
	snprintf(out->cert_sha256_hex, sizeof(out->cert_sha256_hex), "%s",
	    info->sha256_hex);
	snprintf(out->curve, sizeof(out->curve), "%s",
	    info->curve != NULL ? info->curve : "");
	/* the class a valid certificate has; validity is judged when read */
	mid = info->not_before + (info->not_after - info->not_before) / 2;
	snprintf(out->classification, sizeof(out->classification), "%s",
	    qes_cert_class_name(qes_cert_classify(cert, mid)));
	out->not_before_ms = info->not_before * 1000;
	out->not_after_ms = info->not_after * 1000;
	out->key_type = info->key_type;
	out->key_bits = info->key_bits;
	out->key_usage = info->has_key_usage ? info->key_usage : 0;
	out->qc = info->qc;
	out->has_private_key = ce->has_private_key > 0 ? 1 : -1;
	out->always_authenticate = ce->always_authenticate != 0;
	r = QES_ERR_ALLOC;
	if ((out->label = dup_or_empty(ce->label)) == NULL ||
	    (out->token_label = dup_or_empty(t->label)) == NULL ||
	    (out->subject = dup_or_empty(info->subject)) == NULL ||
	    (out->subject_cn = dup_or_empty(info->subject_cn)) == NULL ||
	    (out->issuer = dup_or_empty(info->issuer)) == NULL ||
	    (out->cert_der = malloc(ce->certificate.len)) == NULL)
		goto out;
	memcpy(out->cert_der, ce->certificate.data, ce->certificate.len);
	out->cert_der_len = ce->certificate.len;
	r = 0;
 out:
	qes_cert_free(cert);
	if (r != 0)
		qesd_credential_clear(out);
	return r;
}

/* The report without certificate DERs (they live in the credentials),
 * as canonical JSON text (sorted keys), so equal documents compare equal. */
static char *
stored_inventory_text(const json_t *report)
{
	json_t *copy, *tokens, *token, *certs, *cert;
	size_t i, k;
	char *text;

	if ((copy = json_deep_copy(report)) == NULL)
		return NULL;
	tokens = json_object_get(copy, "tokens");
	json_array_foreach(tokens, i, token) {
		certs = json_object_get(token, "certificates");
		json_array_foreach(certs, k, cert)
			(void)json_object_del(cert, "certificate");
	}
	text = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(copy);
	return text;
}

int
qesd_devices_store_inventory(qesd_store *store, const char *tenant_id,
    const char *device_id, const char *session_id, const qes_proto_msg *msg,
    int64_t now_ms, int *changed)
{
	const qes_proto_report *rep;
	qesd_credential *creds = NULL;
	qesd_audit_event ev;
	qesd_tx *tx = NULL;
	char *text = NULL, *old = NULL, details[256];
	size_t n = 0, cap = 0, i, k, skipped = 0, n_tokens = 0;
	int64_t old_at = 0;
	int r;

	if (changed != NULL)
		*changed = 0;
	if (store == NULL || msg == NULL || msg->type != QES_PROTO_INVENTORY ||
	    msg->u.inventory.report.json == NULL)
		return QES_ERR_INVALID_ARG;
	rep = &msg->u.inventory.report;
	for (i = 0; i < rep->n_tokens; i++)
		cap += rep->tokens[i].n_certificates;
	if (cap > QESD_CREDENTIALS_MAX)
		return QES_ERR_LIMIT;
	if (cap > 0 && (creds = calloc(cap, sizeof(*creds))) == NULL)
		return QES_ERR_ALLOC;
	for (i = 0; i < rep->n_tokens; i++) {
		const qes_proto_token *t = &rep->tokens[i];

		if (t->present)
			n_tokens++;
		for (k = 0; k < t->n_certificates; k++) {
			r = make_credential(device_id, t, &t->certificates[k],
			    &creds[n]);
			if (r == 0)
				n++;
			else if (r == QES_ERR_ALLOC)
				goto out;
			else if (r != 1)
				skipped++;
		}
	}
	if ((text = stored_inventory_text(rep->json)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (strlen(text) > QESD_INVENTORY_MAX) {
		r = QES_ERR_LIMIT;
		goto out;
	}
	if ((r = qesd_store_begin(store, QESD_TX_WRITE, &tx)) != 0 ||
	    (r = qesd_device_get_inventory(tx, tenant_id, device_id, &old,
	    &old_at)) != 0 ||
	    (r = qesd_device_set_inventory(tx, tenant_id, device_id, text, creds,
	    n, now_ms)) != 0)
		goto out;
	if (old == NULL || strcmp(old, text) != 0) {
		snprintf(details, sizeof(details), "{\"credentials\":%zu,"
		    "\"session_id\":\"%s\",\"skipped_certificates\":%zu,"
		    "\"tokens\":%zu}", n, session_id != NULL ? session_id : "",
		    skipped, n_tokens);
		memset(&ev, 0, sizeof(ev));
		ev.time_ms = now_ms;
		ev.type = "device.inventory_changed";
		ev.device_id = device_id;
		ev.details = details;
		if ((r = qesd_audit_append(tx, tenant_id, &ev, NULL)) != 0)
			goto out;
		if (changed != NULL)
			*changed = 1;
	}
	if ((r = qesd_tx_commit(tx)) != 0)
		goto out;
	if (skipped > 0)
		qesd_log(QESD_LOG_WARN,
		    "inventory: certificates whose DER does not parse were left out",
		    QLS("tenant", tenant_id), QLS("device_id", device_id),
		    QLI("skipped", skipped));
 out:
	if (r != 0 && tx != NULL)
		qesd_log(QESD_LOG_WARN, "inventory could not be stored",
		    QLS("tenant", tenant_id), QLS("device_id", device_id),
		    QLS("error", qes_strerror(r)), QLS("detail", qesd_tx_errmsg(tx)));
	qesd_tx_end(tx);
	qesd_credentials_free(creds, n);
	free(text);
	free(old);
	return r;
}
