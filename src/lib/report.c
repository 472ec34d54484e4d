/*
 * report.c - inventory and diagnosis documents (JSON and text).
 *
 * Built from a qes_p11_inventory snapshot only, so rendering never talks to
 * a token again. The JSON field names are the wire contract of the device
 * channel's inventory and diagnose_result messages (see docs/protocol.md);
 * the text form is for a person at a terminal and may change freely.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include <openssl/crypto.h>

#include "qes/err.h"
#include "qes/report.h"

/* CKM_* values (PKCS#11 2.40) of the mechanisms qes uses; pkcs11.h stays out of reports */
#define QES_CKM_RSA_PKCS 0x1ul
#define QES_CKM_RSA_PKCS_PSS 0xdul
#define QES_CKM_ECDSA 0x1041ul

#ifndef QES_VERSION
#define QES_VERSION "0"
#endif

static const struct {
	qes_verdict v;
	const char *name;
	const char *text;
} verdicts[] = {
	{ QES_VERDICT_READY, "ready", "ready to sign" },
	{ QES_VERDICT_READY_PIN_COUNT_LOW, "ready_pin_count_low",
	    "ready to sign; the token reports a wrong PIN was entered before: take care, few tries are left" },
	{ QES_VERDICT_READY_PIN_FINAL_TRY, "ready_pin_final_try",
	    "ready to sign; ONE PIN attempt left: a wrong PIN locks the token" },
	{ QES_VERDICT_NO_TOKEN, "no_token", "no token in this slot: insert the token or card" },
	{ QES_VERDICT_ERROR, "error", "the token could not be read: see the error above" },
	{ QES_VERDICT_NOT_INITIALIZED, "not_initialized",
	    "token not initialised: it was never personalised by its issuer" },
	{ QES_VERDICT_PIN_LOCKED, "pin_locked",
	    "PIN locked: unblock it with the token vendor's tool (PUK), qes never asks for a PUK" },
	{ QES_VERDICT_PIN_TO_BE_CHANGED, "pin_to_be_changed",
	    "PIN must be changed first: use the token vendor's tool to set your own PIN" },
	{ QES_VERDICT_NO_SIGNING_CERT, "no_signing_certificate",
	    "no certificate with a matching private key on this token" },
	{ QES_VERDICT_NO_QUALIFIED_CERT, "no_qualified_certificate",
	    "no valid qualified signing certificate on this token" },
};

const char *
qes_verdict_name(qes_verdict v)
{
	size_t i;

	for (i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++)
		if (verdicts[i].v == v)
			return verdicts[i].name;
	return "unknown";
}

const char *
qes_verdict_text(qes_verdict v)
{
	size_t i;

	for (i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++)
		if (verdicts[i].v == v)
			return verdicts[i].text;
	return "unknown";
}

qes_verdict
qes_token_verdict(const qes_p11_token *t)
{
	size_t i;
	int signing = 0, qualified = 0;

	if (t->err != 0)
		return QES_VERDICT_ERROR;
	if (!t->present)
		return QES_VERDICT_NO_TOKEN;
	if (!(t->flags & QES_TOK_INITIALIZED))
		return QES_VERDICT_NOT_INITIALIZED;
	if (t->flags & QES_TOK_PIN_LOCKED)
		return QES_VERDICT_PIN_LOCKED;
	if (t->flags & QES_TOK_PIN_TO_BE_CHANGED)
		return QES_VERDICT_PIN_TO_BE_CHANGED;
	for (i = 0; i < t->n_creds; i++) {
		if (t->creds[i].has_key == 0)
			continue;
		signing = 1;
		if (t->creds[i].cls == QES_CERT_QUALIFIED)
			qualified = 1;
	}
	if (!signing)
		return QES_VERDICT_NO_SIGNING_CERT;
	if (!qualified)
		return QES_VERDICT_NO_QUALIFIED_CERT;
	if (t->flags & QES_TOK_PIN_FINAL_TRY)
		return QES_VERDICT_READY_PIN_FINAL_TRY;
	if (t->flags & QES_TOK_PIN_COUNT_LOW)
		return QES_VERDICT_READY_PIN_COUNT_LOW;
	return QES_VERDICT_READY;
}

int
qes_report_cred_ref(const qes_p11_token *t, const qes_p11_cred *c, char *out,
    size_t out_len)
{
	int n = snprintf(out, out_len, "%s:%s", t->serial, c->id_hex);

	return n < 0 || (size_t)n >= out_len ? -1 : 0;
}

static void
iso_time(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "%lld", (long long)t);
}

static const char *
source_name(qes_p11_source s)
{
	switch (s) {
	case QES_P11_SRC_EXPLICIT:
		return "explicit";
	case QES_P11_SRC_P11KIT:
		return "p11-kit";
	case QES_P11_SRC_WELL_KNOWN:
		return "well-known";
	}
	return "unknown";
}

static const char *
key_type_name(qes_key_type k)
{
	return k == QES_KEY_RSA ? "RSA" : k == QES_KEY_EC ? "EC" : "unknown";
}

/*
 * Token and module fields arrive from the PKCS#11 module as bytes; one that
 * is not valid UTF-8 is shown with '?' for its non-ASCII bytes instead of
 * making the whole report fail.
 */
static json_t *
jstr(const char *s)
{
	json_t *v;
	char *copy;
	size_t i;

	if (s == NULL)
		s = "";
	if ((v = json_string(s)) != NULL)
		return v;
	if ((copy = strdup(s)) == NULL)
		return NULL;
	for (i = 0; copy[i] != '\0'; i++)
		if ((unsigned char)copy[i] >= 0x80)
			copy[i] = '?';
	v = json_string(copy);
	free(copy);
	return v;
}

/* json_object_set_new that tolerates a NULL value from a failed constructor */
static int
jset(json_t *o, const char *k, json_t *v)
{
	if (v == NULL)
		return -1;
	return json_object_set_new(o, k, v);
}

static json_t *
flags_json(unsigned flags)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ QES_TOK_LOGIN_REQUIRED, "login_required" },
		{ QES_TOK_PROTECTED_AUTH, "protected_authentication_path" },
		{ QES_TOK_PIN_COUNT_LOW, "user_pin_count_low" },
		{ QES_TOK_PIN_FINAL_TRY, "user_pin_final_try" },
		{ QES_TOK_PIN_LOCKED, "user_pin_locked" },
		{ QES_TOK_PIN_TO_BE_CHANGED, "user_pin_to_be_changed" },
		{ QES_TOK_INITIALIZED, "token_initialized" },
		{ QES_TOK_USER_PIN_INITIALIZED, "user_pin_initialized" },
		{ QES_TOK_WRITE_PROTECTED, "write_protected" },
		{ QES_TOK_SO_PIN_LOCKED, "so_pin_locked" },
	};
	json_t *o = json_object();
	size_t i;

	if (o == NULL)
		return NULL;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (jset(o, names[i].name, json_boolean(flags & names[i].bit)) != 0) {
			json_decref(o);
			return NULL;
		}
	return o;
}

static json_t *
cert_json(const qes_p11_token *t, const qes_p11_cred *c)
{
	const qes_cert_info *ci = qes_cert_get_info(c->cert);
	json_t *o = json_object(), *qc = json_array(), *ku = json_array();
	char nb[32], na[32], ref[256];
	int r = 0;

	if (o == NULL || qc == NULL || ku == NULL)
		goto fail;
	iso_time(ci->not_before, nb, sizeof(nb));
	iso_time(ci->not_after, na, sizeof(na));
	if (qes_report_cred_ref(t, c, ref, sizeof(ref)) != 0)
		goto fail;
	if (ci->key_usage & QES_KU_DIGITAL_SIGNATURE)
		r |= json_array_append_new(ku, jstr("digitalSignature"));
	if (ci->key_usage & QES_KU_NON_REPUDIATION)
		r |= json_array_append_new(ku, jstr("nonRepudiation"));
	if (ci->key_usage & QES_KU_KEY_ENCIPHERMENT)
		r |= json_array_append_new(ku, jstr("keyEncipherment"));
	if (ci->key_usage & QES_KU_KEY_AGREEMENT)
		r |= json_array_append_new(ku, jstr("keyAgreement"));
	if (ci->qc & QES_QC_COMPLIANCE)
		r |= json_array_append_new(qc, jstr("QcCompliance"));
	if (ci->qc & QES_QC_SSCD)
		r |= json_array_append_new(qc, jstr("QcSSCD"));
	if (ci->qc & QES_QC_TYPE_ESIGN)
		r |= json_array_append_new(qc, jstr("QcType-esign"));
	if (ci->qc & QES_QC_TYPE_ESEAL)
		r |= json_array_append_new(qc, jstr("QcType-eseal"));
	if (ci->qc & QES_QC_TYPE_WEB)
		r |= json_array_append_new(qc, jstr("QcType-web"));
	r |= jset(o, "credential", jstr(ref));
	r |= jset(o, "id", jstr(c->id_hex));
	r |= jset(o, "label", jstr(c->label));
	r |= jset(o, "classification", jstr(qes_cert_class_name(c->cls)));
	r |= jset(o, "subject", jstr(ci->subject));
	r |= jset(o, "subject_cn", jstr(ci->subject_cn));
	r |= jset(o, "issuer", jstr(ci->issuer));
	r |= jset(o, "serial", jstr(ci->serial_hex));
	r |= jset(o, "not_before", jstr(nb));
	r |= jset(o, "not_after", jstr(na));
	r |= jset(o, "key_type", jstr(key_type_name(ci->key_type)));
	r |= jset(o, "key_bits", json_integer(ci->key_bits));
	r |= jset(o, "curve", jstr(ci->curve));
	r |= jset(o, "key_usage", ku);
	ku = NULL;
	r |= jset(o, "qc_statements", qc);
	qc = NULL;
	r |= jset(o, "qcp_n_qscd", json_boolean(ci->policies & QES_POLICY_QCP_N_QSCD));
	r |= jset(o, "sha256", jstr(ci->sha256_hex));
	r |= jset(o, "has_private_key", c->has_key < 0 ? json_null() : json_boolean(c->has_key));
	r |= jset(o, "always_authenticate", json_boolean(c->always_authenticate));
	if (r != 0)
		goto fail;
	return o;
 fail:
	json_decref(o);
	json_decref(qc);
	json_decref(ku);
	return NULL;
}

static json_t *
token_json(const qes_p11 *p, const qes_p11_token *t, int with_verdict)
{
	const qes_p11_module_info *mi = qes_p11_module_get(p, t->module_index);
	json_t *o = json_object(), *mechs = json_array(), *certs = json_array(), *m;
	char fw[32], hw[32];
	size_t i;
	int r = 0;

	if (o == NULL || mechs == NULL || certs == NULL)
		goto fail;
	snprintf(fw, sizeof(fw), "%u.%u", t->fw_major, t->fw_minor);
	snprintf(hw, sizeof(hw), "%u.%u", t->hw_major, t->hw_minor);
	r |= jset(o, "module", jstr(mi != NULL ? mi->path : ""));
	r |= jset(o, "slot_id", json_integer((json_int_t)t->slot_id));
	r |= jset(o, "slot_description", jstr(t->slot_description));
	r |= jset(o, "slot_manufacturer", jstr(t->slot_manufacturer));
	r |= jset(o, "hardware_slot", json_boolean(t->hardware_slot));
	r |= jset(o, "removable", json_boolean(t->removable));
	r |= jset(o, "present", json_boolean(t->present));
	if (t->err != 0) {
		r |= jset(o, "error", jstr(qes_errname(t->err)));
		r |= jset(o, "error_detail", jstr(t->errmsg));
	}
	if (t->present) {
		r |= jset(o, "label", jstr(t->label));
		r |= jset(o, "manufacturer", jstr(t->manufacturer));
		r |= jset(o, "model", jstr(t->model));
		r |= jset(o, "serial", jstr(t->serial));
		r |= jset(o, "firmware_version", jstr(fw));
		r |= jset(o, "hardware_version", jstr(hw));
		r |= jset(o, "flags", flags_json(t->flags));
		r |= jset(o, "min_pin_len", json_integer((json_int_t)t->min_pin));
		r |= jset(o, "max_pin_len", json_integer((json_int_t)t->max_pin));
		for (i = 0; i < t->n_mechs; i++) {
			if ((m = json_object()) == NULL)
				goto fail;
			r |= json_array_append_new(mechs, m);
			r |= jset(m, "name", jstr(t->mechs[i].name));
			r |= jset(m, "min_key", json_integer((json_int_t)t->mechs[i].min_key));
			r |= jset(m, "max_key", json_integer((json_int_t)t->mechs[i].max_key));
		}
		for (i = 0; i < t->n_creds; i++)
			r |= json_array_append_new(certs, cert_json(t, &t->creds[i]));
	}
	r |= jset(o, "mechanisms", mechs);
	mechs = NULL;
	r |= jset(o, "certificates", certs);
	certs = NULL;
	if (with_verdict) {
		qes_verdict v = qes_token_verdict(t);

		r |= jset(o, "verdict", jstr(qes_verdict_name(v)));
		r |= jset(o, "verdict_text", jstr(qes_verdict_text(v)));
	}
	if (r != 0)
		goto fail;
	return o;
 fail:
	json_decref(o);
	json_decref(mechs);
	json_decref(certs);
	return NULL;
}

static json_t *
module_json(const qes_p11_module_info *mi)
{
	json_t *o = json_object();
	char v[32];
	int r = 0;

	if (o == NULL)
		return NULL;
	r |= jset(o, "path", jstr(mi->path));
	r |= jset(o, "name", jstr(mi->name));
	r |= jset(o, "source", jstr(source_name(mi->source)));
	r |= jset(o, "loaded", json_boolean(mi->err == 0));
	if (mi->err != 0) {
		r |= jset(o, "error", jstr(qes_errname(mi->err)));
		r |= jset(o, "error_detail", jstr(mi->errmsg));
	} else {
		snprintf(v, sizeof(v), "%u.%u", mi->cryptoki_major, mi->cryptoki_minor);
		r |= jset(o, "cryptoki_version", jstr(v));
		snprintf(v, sizeof(v), "%u.%u", mi->interface_major, mi->interface_minor);
		r |= jset(o, "interface_version", jstr(v));
		snprintf(v, sizeof(v), "%u.%u", mi->lib_major, mi->lib_minor);
		r |= jset(o, "library_version", jstr(v));
		r |= jset(o, "manufacturer", jstr(mi->manufacturer));
		r |= jset(o, "description", jstr(mi->description));
	}
	if (r != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *
build(const qes_p11 *p, const qes_p11_inventory *inv, int diagnose)
{
	json_t *o = json_object(), *mods = json_array(), *toks = json_array();
	size_t i;
	int r = 0;

	if (o == NULL || mods == NULL || toks == NULL)
		goto fail;
	for (i = 0; i < qes_p11_module_count(p); i++)
		r |= json_array_append_new(mods, module_json(qes_p11_module_get(p, i)));
	for (i = 0; i < inv->n_tokens; i++)
		r |= json_array_append_new(toks, token_json(p, &inv->tokens[i], diagnose));
	r |= jset(o, "modules", mods);
	mods = NULL;
	r |= jset(o, "tokens", toks);
	toks = NULL;
	if (r != 0)
		goto fail;
	return o;
 fail:
	json_decref(o);
	json_decref(mods);
	json_decref(toks);
	return NULL;
}

json_t *
qes_report_inventory(const qes_p11 *p, const qes_p11_inventory *inv)
{
	return build(p, inv, 0);
}

json_t *
qes_report_diagnose(const qes_p11 *p, const qes_p11_inventory *inv)
{
	json_t *o = build(p, inv, 1), *sys;
	struct utsname u;
	char now[32];
	int r = 0;

	if (o == NULL || (sys = json_object()) == NULL) {
		json_decref(o);
		return NULL;
	}
	iso_time((int64_t)time(NULL), now, sizeof(now));
	r |= jset(sys, "agent_version", jstr(QES_VERSION));
	r |= jset(sys, "openssl_version", jstr(OpenSSL_version(OPENSSL_VERSION)));
	if (uname(&u) == 0) {
		r |= jset(sys, "os", jstr(u.sysname));
		r |= jset(sys, "os_release", jstr(u.release));
		r |= jset(sys, "machine", jstr(u.machine));
	}
	r |= jset(sys, "time", jstr(now));
	r |= jset(o, "system", sys);
	if (r != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void
flags_text(FILE *f, unsigned flags)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ QES_TOK_LOGIN_REQUIRED, "login-required" },
		{ QES_TOK_PROTECTED_AUTH, "protected-authentication-path (PIN pad)" },
		{ QES_TOK_PIN_COUNT_LOW, "PIN-count-low" },
		{ QES_TOK_PIN_FINAL_TRY, "PIN-final-try" },
		{ QES_TOK_PIN_LOCKED, "PIN-LOCKED" },
		{ QES_TOK_PIN_TO_BE_CHANGED, "PIN-to-be-changed" },
		{ QES_TOK_USER_PIN_INITIALIZED, "user-PIN-initialised" },
		{ QES_TOK_WRITE_PROTECTED, "write-protected" },
		{ QES_TOK_SO_PIN_LOCKED, "SO-PIN-locked" },
	};
	const char *sep = "";
	size_t i;

	fputs("      flags:", f);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (flags & names[i].bit) {
			fprintf(f, "%s %s", sep, names[i].name);
			sep = ",";
		}
	fputc('\n', f);
}

static void
token_text(FILE *f, const qes_p11_token *t, int diagnose)
{
	size_t i;

	fprintf(f, "  slot %lu: %s\n", t->slot_id, t->slot_description);
	if (t->err != 0)
		fprintf(f, "    error: %s (%s)\n", qes_strerror(t->err), t->errmsg);
	if (!t->present) {
		fputs("    (no token)\n", f);
		return;
	}
	if (!(t->flags & QES_TOK_INITIALIZED)) {
		fprintf(f, "    uninitialised token, %s %s\n", t->manufacturer, t->model);
		if (diagnose)
			fprintf(f, "    verdict: slot %lu: %s\n", t->slot_id,
			    qes_verdict_text(qes_token_verdict(t)));
		return;
	}
	fprintf(f, "    token \"%s\" serial %s, %s %s, firmware %u.%u\n",
	    t->label, t->serial, t->manufacturer, t->model, t->fw_major, t->fw_minor);
	flags_text(f, t->flags);
	if (diagnose) {
		/* the full list is in --json; a person needs the ones qes signs with */
		const char *sep = " ";

		fprintf(f, "      mechanisms qes signs with (of %zu):", t->n_mechs);
		for (i = 0; i < t->n_mechs; i++) {
			if (t->mechs[i].type != QES_CKM_RSA_PKCS &&
			    t->mechs[i].type != QES_CKM_RSA_PKCS_PSS &&
			    t->mechs[i].type != QES_CKM_ECDSA)
				continue;
			fprintf(f, "%s%s (keys %lu-%lu)", sep, t->mechs[i].name,
			    t->mechs[i].min_key, t->mechs[i].max_key);
			sep = ", ";
		}
		if (sep[0] == ' ')
			fputs(" none", f);
		fputc('\n', f);
	}
	for (i = 0; i < t->n_creds; i++) {
		const qes_p11_cred *c = &t->creds[i];
		const qes_cert_info *ci = qes_cert_get_info(c->cert);
		char nb[32], na[32];

		iso_time(ci->not_before, nb, sizeof(nb));
		iso_time(ci->not_after, na, sizeof(na));
		fprintf(f, "      certificate id %s \"%s\": %s, %s-%u%s%s, private key %s%s\n",
		    c->id_hex, c->label, qes_cert_class_name(c->cls),
		    key_type_name(ci->key_type), ci->key_bits,
		    ci->curve[0] ? " " : "", ci->curve,
		    c->has_key > 0 ? "yes" : c->has_key == 0 ? "no" : "not visible before login",
		    c->always_authenticate ? " (PIN for every signature)" : "");
		fprintf(f, "        subject: %s\n", ci->subject);
		fprintf(f, "        issuer:  %s\n", ci->issuer);
		fprintf(f, "        valid:   %s .. %s\n", nb, na);
		fprintf(f, "        credential: %s:%s\n", t->serial, c->id_hex);
	}
	if (diagnose) {
		qes_verdict v = qes_token_verdict(t);

		fprintf(f, "    verdict: %s: %s\n", t->label, qes_verdict_text(v));
	}
}

static void
text(FILE *f, const qes_p11 *p, const qes_p11_inventory *inv, int diagnose)
{
	size_t m, i;

	for (m = 0; m < qes_p11_module_count(p); m++) {
		const qes_p11_module_info *mi = qes_p11_module_get(p, m);

		fprintf(f, "module %s (%s%s%s)\n", mi->path, source_name(mi->source),
		    mi->name[0] ? ", " : "", mi->name);
		if (mi->err != 0) {
			fprintf(f, "  not usable: %s (%s)\n", qes_strerror(mi->err), mi->errmsg);
			continue;
		}
		if (diagnose)
		{
			if (mi->interface_major != 0)
				fprintf(f, "  %s %s, library %u.%u, cryptoki %u.%u, "
				    "C_GetInterface %u.%u\n", mi->manufacturer,
				    mi->description, mi->lib_major, mi->lib_minor,
				    mi->cryptoki_major, mi->cryptoki_minor,
				    mi->interface_major, mi->interface_minor);
			else
				fprintf(f, "  %s %s, library %u.%u, cryptoki %u.%u, "
				    "C_GetFunctionList\n", mi->manufacturer,
				    mi->description, mi->lib_major, mi->lib_minor,
				    mi->cryptoki_major, mi->cryptoki_minor);
		}
		for (i = 0; i < inv->n_tokens; i++)
			if (inv->tokens[i].module_index == m)
				token_text(f, &inv->tokens[i], diagnose);
	}
}

void
qes_report_inventory_text(FILE *f, const qes_p11 *p, const qes_p11_inventory *inv)
{
	text(f, p, inv, 0);
}

void
qes_report_diagnose_text(FILE *f, const qes_p11 *p, const qes_p11_inventory *inv)
{
	struct utsname u;

	fprintf(f, "qes-agent %s\n", QES_VERSION);
	if (uname(&u) == 0)
		fprintf(f, "system: %s %s %s\n", u.sysname, u.release, u.machine);
	fprintf(f, "%s\n", OpenSSL_version(OPENSSL_VERSION));
	text(f, p, inv, 1);
}
