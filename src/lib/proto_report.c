/*
 * proto_report.c - the schema of the report documents that travel in the
 * inventory and diagnose_result messages, and the step that puts each
 * certificate's DER into an inventory.
 *
 * The documents are made by report.c (qes_report_inventory and
 * qes_report_diagnose); report.h calls their field names a contract. This
 * file is the gateway's side of that contract: every field with its type
 * and limit, and the rules between fields (a present token has a serial,
 * an unloaded module has an error, a certificate's credential is its
 * token's serial and its CKA_ID, its sha256 is the hash of its DER). A
 * field report.c adds must be added here as well, and gateways upgraded
 * before agents (docs/protocol.md, "Compatibility").
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "qes/err.h"
#include "qes/report.h"
#include "proto_priv.h"

#define NAMES(a) (a), (sizeof(a) / sizeof((a)[0]))
#define N(a) (sizeof(a) / sizeof((a)[0]))
#define STRMAX QES_PROTO_REPORT_STR_MAX

static const struct pf_name source_names[] = {
	{ "explicit", QES_P11_SRC_EXPLICIT },
	{ "p11-kit", QES_P11_SRC_P11KIT },
	{ "well-known", QES_P11_SRC_WELL_KNOWN },
	{ "unknown", 0 },
};

static const struct pf_name class_names[] = {
	{ "qualified", QES_CERT_QUALIFIED },
	{ "advanced", QES_CERT_ADVANCED },
	{ "authentication", QES_CERT_AUTH_ONLY },
	{ "expired", QES_CERT_EXPIRED },
	{ "not_yet_valid", QES_CERT_NOT_YET_VALID },
};

static const struct pf_name key_type_names[] = {
	{ "RSA", QES_KEY_RSA },
	{ "EC", QES_KEY_EC },
	{ "unknown", QES_KEY_UNKNOWN },
};

static const struct pf_name ku_names[] = {
	{ "digitalSignature", QES_KU_DIGITAL_SIGNATURE },
	{ "nonRepudiation", QES_KU_NON_REPUDIATION },
	{ "keyEncipherment", QES_KU_KEY_ENCIPHERMENT },
	{ "keyAgreement", QES_KU_KEY_AGREEMENT },
};

static const struct pf_name qc_names[] = {
	{ "QcCompliance", QES_QC_COMPLIANCE },
	{ "QcSSCD", QES_QC_SSCD },
	{ "QcType-esign", QES_QC_TYPE_ESIGN },
	{ "QcType-eseal", QES_QC_TYPE_ESEAL },
	{ "QcType-web", QES_QC_TYPE_WEB },
};

static const struct pf_name token_flag_names[] = {
	{ "login_required", QES_TOK_LOGIN_REQUIRED },
	{ "protected_authentication_path", QES_TOK_PROTECTED_AUTH },
	{ "user_pin_count_low", QES_TOK_PIN_COUNT_LOW },
	{ "user_pin_final_try", QES_TOK_PIN_FINAL_TRY },
	{ "user_pin_locked", QES_TOK_PIN_LOCKED },
	{ "user_pin_to_be_changed", QES_TOK_PIN_TO_BE_CHANGED },
	{ "token_initialized", QES_TOK_INITIALIZED },
	{ "user_pin_initialized", QES_TOK_USER_PIN_INITIALIZED },
	{ "write_protected", QES_TOK_WRITE_PROTECTED },
	{ "so_pin_locked", QES_TOK_SO_PIN_LOCKED },
};

/* Fields that must all be present when cond holds and all absent when not. */
static int
presence(struct pf_ctx *c, const json_t *j, const char *const *names, size_t n,
    int cond, const char *why_req, const char *why_not)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int has = json_object_get(j, names[i]) != NULL;

		if (cond && !has)
			return pf_fail_at(c, names[i], QES_ERR_FORMAT, "missing (%s)", why_req);
		if (!cond && has)
			return pf_fail_at(c, names[i], QES_ERR_FORMAT, "not allowed (%s)",
			    why_not);
	}
	return 0;
}

/* error and error_detail come together or not at all */
static int
error_pair(struct pf_ctx *c, const json_t *j)
{
	int e = json_object_get(j, "error") != NULL;
	int d = json_object_get(j, "error_detail") != NULL;

	if (e && !d)
		return pf_fail_at(c, "error_detail", QES_ERR_FORMAT, "missing (error is set)");
	if (d && !e)
		return pf_fail_at(c, "error", QES_ERR_FORMAT, "missing (error_detail is set)");
	return 0;
}

/* ---- modules -------------------------------------------------------------- */

static int
module_check(struct pf_ctx *c, const json_t *j, void *obj)
{
	static const char *const loaded_only[] = { "cryptoki_version",
	    "interface_version", "library_version", "manufacturer", "description" };
	static const char *const failed_only[] = { "error", "error_detail" };
	const qes_proto_module *m = obj;
	int r;

	if ((r = presence(c, j, loaded_only, N(loaded_only), m->loaded,
	    "the module is loaded", "the module did not load")) != 0)
		return r;
	return presence(c, j, failed_only, N(failed_only), !m->loaded,
	    "the module did not load", "the module is loaded");
}

#define MF(name, kind, flags, member, min, max) \
	{ name, kind, flags, offsetof(qes_proto_module, member), 0, min, max, 0, 0, NULL, 0, NULL, NULL }

static const struct pf_field module_fields[] = {
	MF("path", PF_STR, PF_REQ, path, 0, STRMAX),
	MF("name", PF_STR, PF_REQ, name, 0, STRMAX),
	{ "source", PF_ENUM, PF_REQ, offsetof(qes_proto_module, source), 0, 0, 0, 0, 0,
	    NAMES(source_names), NULL, NULL },
	MF("loaded", PF_BOOL, PF_REQ, loaded, 0, 0),
	MF("error", PF_CODE, 0, error, 1, 64),
	MF("error_detail", PF_STR, 0, error_detail, 0, STRMAX),
	MF("cryptoki_version", PF_VERSION, 0, cryptoki_version, 1, 32),
	MF("interface_version", PF_VERSION, 0, interface_version, 1, 32),
	MF("library_version", PF_VERSION, 0, library_version, 1, 32),
	MF("manufacturer", PF_STR, 0, manufacturer, 0, STRMAX),
	MF("description", PF_STR, 0, description, 0, STRMAX),
};

static const struct pf_schema module_schema = {
	module_fields, N(module_fields), sizeof(qes_proto_module), module_check,
};

/* ---- mechanisms ----------------------------------------------------------- */

static const struct pf_field mech_fields[] = {
	{ "name", PF_ASCII, PF_REQ, offsetof(qes_proto_mech, name), 0, 1, 64, 0, 0,
	    NULL, 0, NULL, NULL },
	{ "min_key", PF_INT, PF_REQ, offsetof(qes_proto_mech, min_key), 0, 0, 0,
	    INT64_MIN, INT64_MAX, NULL, 0, NULL, NULL },
	{ "max_key", PF_INT, PF_REQ, offsetof(qes_proto_mech, max_key), 0, 0, 0,
	    INT64_MIN, INT64_MAX, NULL, 0, NULL, NULL },
};

static const struct pf_schema mech_schema = {
	mech_fields, N(mech_fields), sizeof(qes_proto_mech), NULL,
};

/* ---- certificates --------------------------------------------------------- */

static int
cert_check(struct pf_ctx *c, const json_t *j, void *obj)
{
	const qes_proto_cert *ce = obj;
	uint8_t h[32];
	char hex[65];
	size_t i;

	(void)j;
	if (c->mode == PF_MODE_INVENTORY && ce->certificate.len == 0)
		return pf_fail_at(c, "certificate", QES_ERR_FORMAT,
		    "missing (an inventory carries every certificate)");
	if (ce->certificate.len == 0)
		return 0;
	if (qes_md_digest(QES_MD_SHA256, ce->certificate.data, ce->certificate.len, h) != 0)
		return pf_fail(c, QES_ERR_CRYPTO, "SHA-256 failed");
	for (i = 0; i < sizeof(h); i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	if (strcmp(hex, ce->sha256) != 0)
		return pf_fail_at(c, "sha256", QES_ERR_FORMAT,
		    "is not the SHA-256 of certificate");
	return 0;
}

#define CF(name, kind, flags, member, min, max) \
	{ name, kind, flags, offsetof(qes_proto_cert, member), 0, min, max, 0, 0, NULL, 0, NULL, NULL }
#define CE(name, member, names) \
	{ name, PF_ENUM, PF_REQ, offsetof(qes_proto_cert, member), 0, 0, 0, 0, 0, NAMES(names), NULL, NULL }

static const struct pf_field cert_fields[] = {
	CF("credential", PF_ASCII, PF_REQ, credential, 1, QES_PROTO_CREDENTIAL_MAX),
	CF("id", PF_HEX, PF_REQ, id, 0, 2 * QES_PROTO_KEY_ID_MAX),
	CF("label", PF_STR, PF_REQ, label, 0, STRMAX),
	CE("classification", classification, class_names),
	CF("subject", PF_STR, PF_REQ, subject, 0, STRMAX),
	CF("subject_cn", PF_STR, PF_REQ, subject_cn, 0, STRMAX),
	CF("issuer", PF_STR, PF_REQ, issuer, 0, STRMAX),
	CF("serial", PF_ASCII, PF_REQ, serial, 1, 512),
	CF("not_before", PF_ASCII, PF_REQ, not_before, 1, 32),
	CF("not_after", PF_ASCII, PF_REQ, not_after, 1, 32),
	CE("key_type", key_type, key_type_names),
	{ "key_bits", PF_INT, PF_REQ, offsetof(qes_proto_cert, key_bits), 0, 0, 0,
	    0, 65536, NULL, 0, NULL, NULL },
	CF("curve", PF_ASCII, PF_REQ, curve, 0, 63),
	{ "key_usage", PF_NAMESET, PF_REQ, offsetof(qes_proto_cert, key_usage), 0, 0, 0,
	    0, 0, NAMES(ku_names), NULL, NULL },
	{ "qc_statements", PF_NAMESET, PF_REQ, offsetof(qes_proto_cert, qc), 0, 0, 0,
	    0, 0, NAMES(qc_names), NULL, NULL },
	CF("qcp_n_qscd", PF_BOOL, PF_REQ, qcp_n_qscd, 0, 0),
	CF("sha256", PF_HEX, PF_REQ, sha256, 64, 64),
	CF("has_private_key", PF_TRIBOOL, PF_REQ, has_private_key, 0, 0),
	CF("always_authenticate", PF_BOOL, PF_REQ, always_authenticate, 0, 0),
	CF("certificate", PF_B64, 0, certificate, 1, QES_PROTO_CERT_DER_MAX),
};

static const struct pf_schema cert_schema = {
	cert_fields, N(cert_fields), sizeof(qes_proto_cert), cert_check,
};

/* ---- tokens --------------------------------------------------------------- */

static int
token_check(struct pf_ctx *c, const json_t *j, void *obj)
{
	static const char *const present_only[] = { "label", "manufacturer", "model",
	    "serial", "firmware_version", "hardware_version", "flags", "min_pin_len",
	    "max_pin_len" };
	static const char *const diag_only[] = { "verdict", "verdict_text" };
	const qes_proto_token *t = obj;
	const qes_proto_cert *ce;
	size_t i, slen, saved;
	int r;

	if ((r = error_pair(c, j)) != 0)
		return r;
	if ((r = presence(c, j, present_only, N(present_only), t->present,
	    "the token is present", "no token in the slot")) != 0)
		return r;
	if ((r = presence(c, j, diag_only, N(diag_only), c->mode == PF_MODE_DIAGNOSE,
	    "a diagnosis has a verdict per token", "only a diagnosis has verdicts")) != 0)
		return r;
	if (!t->present && t->n_mechanisms + t->n_certificates > 0)
		return pf_fail_at(c, t->n_mechanisms > 0 ? "mechanisms" : "certificates",
		    QES_ERR_FORMAT, "not empty, but no token is in the slot");
	/* a certificate's credential is exactly "SERIAL:IDHEX" of this token */
	slen = t->present ? strlen(t->serial) : 0;
	for (i = 0; i < t->n_certificates; i++) {
		ce = &t->certificates[i];
		if (strlen(ce->credential) != slen + 1 + strlen(ce->id) ||
		    memcmp(ce->credential, t->serial, slen) != 0 ||
		    ce->credential[slen] != ':' ||
		    strcmp(ce->credential + slen + 1, ce->id) != 0) {
			saved = pf_push(c, "certificates");
			pf_push_index(c, i);
			r = pf_fail_at(c, "credential", QES_ERR_FORMAT,
			    "is not the token serial and the id joined by ':'");
			pf_pop(c, saved);
			return r;
		}
	}
	return 0;
}

#define TF(name, kind, flags, member, min, max) \
	{ name, kind, flags, offsetof(qes_proto_token, member), 0, min, max, 0, 0, NULL, 0, NULL, NULL }
#define TI(name, member) \
	{ name, PF_INT, 0, offsetof(qes_proto_token, member), 0, 0, 0, INT64_MIN, INT64_MAX, NULL, 0, NULL, NULL }

static const struct pf_field token_fields[] = {
	TF("module", PF_STR, PF_REQ, module, 0, STRMAX),
	{ "slot_id", PF_INT, PF_REQ, offsetof(qes_proto_token, slot_id), 0, 0, 0,
	    INT64_MIN, INT64_MAX, NULL, 0, NULL, NULL },
	TF("slot_description", PF_STR, PF_REQ, slot_description, 0, STRMAX),
	TF("slot_manufacturer", PF_STR, PF_REQ, slot_manufacturer, 0, STRMAX),
	TF("hardware_slot", PF_BOOL, PF_REQ, hardware_slot, 0, 0),
	TF("removable", PF_BOOL, PF_REQ, removable, 0, 0),
	TF("present", PF_BOOL, PF_REQ, present, 0, 0),
	TF("error", PF_CODE, 0, error, 1, 64),
	TF("error_detail", PF_STR, 0, error_detail, 0, STRMAX),
	TF("label", PF_STR, 0, label, 0, STRMAX),
	TF("manufacturer", PF_STR, 0, manufacturer, 0, STRMAX),
	TF("model", PF_STR, 0, model, 0, STRMAX),
	TF("serial", PF_STR, 0, serial, 0, QES_PROTO_SERIAL_MAX),
	TF("firmware_version", PF_VERSION, 0, firmware_version, 1, 32),
	TF("hardware_version", PF_VERSION, 0, hardware_version, 1, 32),
	{ "flags", PF_FLAGOBJ, 0, offsetof(qes_proto_token, flags), 0, 0, 0, 0, 0,
	    NAMES(token_flag_names), NULL, NULL },
	TI("min_pin_len", min_pin_len),
	TI("max_pin_len", max_pin_len),
	{ "mechanisms", PF_ARR_OBJ, PF_REQ, offsetof(qes_proto_token, mechanisms),
	    offsetof(qes_proto_token, n_mechanisms), 0, QES_PROTO_MECHS_MAX, 0, 0,
	    NULL, 0, &mech_schema, NULL },
	{ "certificates", PF_ARR_OBJ, PF_REQ, offsetof(qes_proto_token, certificates),
	    offsetof(qes_proto_token, n_certificates), 0, QES_PROTO_CERTS_MAX, 0, 0,
	    NULL, 0, &cert_schema, NULL },
	TF("verdict", PF_CODE, 0, verdict, 1, 64),
	TF("verdict_text", PF_STR, 0, verdict_text, 0, STRMAX),
};

static const struct pf_schema token_schema = {
	token_fields, N(token_fields), sizeof(qes_proto_token), token_check,
};

/* ---- system (diagnosis) --------------------------------------------------- */

#define SF(name, kind, flags, member, min, max) \
	{ name, kind, flags, offsetof(qes_proto_system, member), 0, min, max, 0, 0, NULL, 0, NULL, NULL }

static const struct pf_field system_fields[] = {
	SF("agent_version", PF_VERSION, PF_REQ, agent_version, 1, 64),
	SF("openssl_version", PF_STR, PF_REQ, openssl_version, 0, STRMAX),
	SF("os", PF_STR, 0, os, 0, STRMAX),
	SF("os_release", PF_STR, 0, os_release, 0, STRMAX),
	SF("machine", PF_STR, 0, machine, 0, STRMAX),
	SF("time", PF_ASCII, PF_REQ, time, 1, 32),
};

static const struct pf_schema system_schema = {
	system_fields, N(system_fields), sizeof(qes_proto_system), NULL,
};

/* ---- the document --------------------------------------------------------- */

static int
report_check(struct pf_ctx *c, const json_t *j, void *obj)
{
	static const char *const diag_only[] = { "system" };

	(void)obj;
	return presence(c, j, diag_only, N(diag_only), c->mode == PF_MODE_DIAGNOSE,
	    "a diagnosis describes the system", "only a diagnosis describes the system");
}

static const struct pf_field report_fields[] = {
	{ "modules", PF_ARR_OBJ, PF_REQ, offsetof(qes_proto_report, modules),
	    offsetof(qes_proto_report, n_modules), 0, QES_PROTO_MODULES_MAX, 0, 0,
	    NULL, 0, &module_schema, NULL },
	{ "tokens", PF_ARR_OBJ, PF_REQ, offsetof(qes_proto_report, tokens),
	    offsetof(qes_proto_report, n_tokens), 0, QES_PROTO_TOKENS_MAX, 0, 0,
	    NULL, 0, &token_schema, NULL },
	{ "system", PF_OBJPTR, 0, offsetof(qes_proto_report, system), 0, 0, 0, 0, 0,
	    NULL, 0, &system_schema, NULL },
};

const struct pf_schema qes_proto_report_schema = {
	report_fields, N(report_fields), sizeof(qes_proto_report), report_check,
};

/* ---- certificates into an inventory --------------------------------------- */

int
qes_proto_inventory_attach_certs(json_t *report, const qes_p11_inventory *inv)
{
	const qes_p11_token *t;
	const qes_p11_cred *cr;
	json_t *toks, *certs, *cj, *cred, *der_json;
	char ref[QES_PROTO_CREDENTIAL_MAX + 2];
	const uint8_t *der;
	size_t i, k, der_len;

	if (report == NULL || inv == NULL)
		return QES_ERR_INVALID_ARG;
	/* report.c writes one token per slot and one entry per credential, in
	 * snapshot order; the credential check catches any other document */
	toks = json_object_get(report, "tokens");
	if (!json_is_array(toks) || json_array_size(toks) != inv->n_tokens)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < inv->n_tokens; i++) {
		t = &inv->tokens[i];
		certs = json_object_get(json_array_get(toks, i), "certificates");
		if (!json_is_array(certs) || json_array_size(certs) != t->n_creds)
			return QES_ERR_INVALID_ARG;
		for (k = 0; k < t->n_creds; k++) {
			cr = &t->creds[k];
			cj = json_array_get(certs, k);
			cred = json_object_get(cj, "credential");
			if (qes_report_cred_ref(t, cr, ref, sizeof(ref)) != 0 ||
			    !json_is_string(cred) || strcmp(json_string_value(cred), ref) != 0)
				return QES_ERR_INVALID_ARG;
			if ((der = qes_cert_der(cr->cert, &der_len)) == NULL || der_len == 0)
				return QES_ERR_INVALID_ARG;
			if (der_len > QES_PROTO_CERT_DER_MAX)
				return QES_ERR_LIMIT;
			if ((der_json = pf_b64_json(der, der_len)) == NULL ||
			    json_object_set_new(cj, "certificate", der_json) != 0)
				return QES_ERR_ALLOC;
		}
	}
	return 0;
}
