/*
 * p11_scan.c - qes_p11_scan(): a snapshot of every slot, token, mechanism
 * and certificate of every working module.
 *
 * The snapshot is plain data owned by one allocation tree: every string it
 * points to lives in the inventory's string pool, every certificate is a
 * qes_cert freed with it. Nothing in it refers back to the module, so it can
 * be kept, diffed against the next scan (hot-plug) or sent to the gateway.
 *
 * A problem in one slot (a token pulled out mid-scan, a certificate that
 * does not parse, a module that lists 300 certificates) is written into that
 * slot's err/errmsg and the scan goes on; only running out of memory stops
 * it. What the slot still gave us is kept, so a token with one bad
 * certificate still shows its good ones.
 *
 * Pairing certificates with keys, and why has_key is not a plain boolean:
 * the pair is found by CKA_ID. Private keys are normally CKA_PRIVATE, which
 * hides them until the user logs in (SoftHSM2 does so, and so do the
 * SafeNet and IDPrime middlewares), and a scan never logs in. So:
 *   has_key = 1   a private key with the certificate's CKA_ID is visible,
 *                 or, failing that, a public key with that id is (tokens
 *                 store the public half next to the private one, and it is
 *                 the best evidence available without a PIN);
 *   has_key = 0   neither, and private keys would be visible if there were
 *                 any (the token needs no login, or other private keys do
 *                 show), or the certificate has no CKA_ID to pair by;
 *   has_key = -1  unknown: neither is visible, but private keys may be
 *                 hidden until login.
 * always_authenticate and can_sign are read from the private key when it is
 * visible; otherwise they are 0 and 1 ("does not say"), and the session
 * reads CKA_ALWAYS_AUTHENTICATE again before it signs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/p11.h"

#include "p11_priv.h"

struct str_node {
	struct str_node *next;
	char *s;
};

/* The public inventory is the first member, so the two pointers convert. */
struct inv {
	qes_p11_inventory pub;
	size_t cap;			/* room in pub.tokens */
	struct str_node *strings;	/* every string pub points to */
	int oom;			/* a string could not be kept */
	int64_t now;			/* classification time of this scan */
};

/*
 * Keep a malloc'ed string for the life of the inventory. Out of memory is
 * sticky (inv->oom) and the caller gets "", so the scan code does not need
 * a check after every string; qes_p11_scan() fails at the end instead.
 */
static const char *
pool_take(struct inv *inv, char *s)
{
	struct str_node *n;

	if (s == NULL || (n = malloc(sizeof(*n))) == NULL) {
		free(s);
		inv->oom = 1;
		return "";
	}
	n->s = s;
	n->next = inv->strings;
	inv->strings = n;
	return s;
}

static const char *
pool_str(struct inv *inv, const char *s)
{
	return pool_take(inv, strdup(s));
}

/* A blank-padded fixed-size field of CK_SLOT_INFO / CK_TOKEN_INFO. */
static const char *
pool_field(struct inv *inv, const unsigned char *field, size_t len)
{
	return pool_take(inv, qes_p11_priv_trim(field, len));
}

/* Bytes from the token as text: NUL and control characters become '?'. */
static const char *
pool_text(struct inv *inv, const uint8_t *data, size_t len)
{
	char *s;
	size_t i;

	if ((s = malloc(len + 1)) == NULL)
		return pool_take(inv, NULL);
	for (i = 0; i < len; i++)
		s[i] = data[i] < 0x20 || data[i] == 0x7f ? '?' : (char)data[i];
	s[len] = '\0';
	return pool_take(inv, s);
}

static const char *
pool_hex(struct inv *inv, const uint8_t *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s;
	size_t i;

	if ((s = malloc(len * 2 + 1)) == NULL)
		return pool_take(inv, NULL);
	for (i = 0; i < len; i++) {
		s[2 * i] = digits[data[i] >> 4];
		s[2 * i + 1] = digits[data[i] & 0xf];
	}
	s[len * 2] = '\0';
	return pool_take(inv, s);
}

/* Record the first problem met in a slot; later ones would only repeat it. */
static void
note_err(struct inv *inv, qes_p11_token *t, int err, const char *msg)
{
	if (t->err != 0)
		return;
	t->err = err;
	t->errmsg = pool_str(inv, msg);
}

static void
note_ckr(struct inv *inv, qes_p11_token *t, const char *call, CK_RV rv)
{
	char msg[QES_P11_ERRMSG_MAX];

	qes_p11_priv_ckr_msg(msg, sizeof(msg), call, rv);
	note_err(inv, t, qes_p11_map_ckr(rv), msg);
}

/* The public fields promise strings, never NULL. */
static void
fill_empty(qes_p11_token *t)
{
	const char **fields[] = {
		&t->slot_description, &t->slot_manufacturer, &t->label,
		&t->manufacturer, &t->model, &t->serial, &t->errmsg,
	};
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (*fields[i] == NULL)
			*fields[i] = "";
}

static qes_p11_token *
new_token(struct inv *inv, size_t module_index, CK_SLOT_ID slot)
{
	qes_p11_token *n, *t;
	size_t ncap;

	if (inv->pub.n_tokens == inv->cap) {
		ncap = inv->cap == 0 ? 8 : inv->cap * 2;
		if ((n = reallocarray(inv->pub.tokens, ncap, sizeof(*n))) == NULL)
			return NULL;
		inv->pub.tokens = n;
		inv->cap = ncap;
	}
	t = &inv->pub.tokens[inv->pub.n_tokens++];
	memset(t, 0, sizeof(*t));
	t->module_index = module_index;
	t->slot_id = slot;
	return t;
}

static void
scan_mechs(struct inv *inv, qes_p11_token *t, CK_FUNCTION_LIST *fl,
    CK_SLOT_ID slot)
{
	CK_MECHANISM_TYPE *types = NULL;
	CK_MECHANISM_INFO mi;
	CK_ULONG n = 0, cap, i;
	const char *name;
	char msg[QES_P11_ERRMSG_MAX];
	qes_p11_mech *m;
	CK_RV rv;

	if (fl->C_GetMechanismList == NULL)
		return;
	rv = fl->C_GetMechanismList(slot, NULL, &n);
	if (rv == CKR_FUNCTION_NOT_SUPPORTED)
		return;		/* optional: an empty list, not a fault */
	if (rv != CKR_OK) {
		note_ckr(inv, t, "C_GetMechanismList", rv);
		return;
	}
	if (n > QES_P11_MAX_MECHS) {
		snprintf(msg, sizeof(msg),
		    "C_GetMechanismList: %lu mechanisms, more than %d", n,
		    QES_P11_MAX_MECHS);
		note_err(inv, t, QES_ERR_LIMIT, msg);
		return;
	}
	if (n == 0)
		return;
	if ((types = calloc(n, sizeof(*types))) == NULL) {
		inv->oom = 1;
		return;
	}
	cap = n;
	if ((rv = fl->C_GetMechanismList(slot, types, &n)) != CKR_OK) {
		note_ckr(inv, t, "C_GetMechanismList", rv);
		goto out;
	}
	if (n > cap) {
		note_err(inv, t, QES_ERR_DEVICE,
		    "C_GetMechanismList: module returned more than room");
		goto out;
	}
	if (n == 0)
		goto out;
	if ((t->mechs = calloc(n, sizeof(*t->mechs))) == NULL) {
		inv->oom = 1;
		goto out;
	}
	for (i = 0; i < n; i++) {
		m = &t->mechs[i];
		m->type = types[i];
		name = qes_p11_mech_name(types[i]);
		if (strcmp(name, "CKM_UNKNOWN") == 0 ||
		    strcmp(name, "CKM_VENDOR_DEFINED") == 0) {
			snprintf(msg, sizeof(msg), "0x%lx", types[i]);
			name = pool_str(inv, msg);
		}
		m->name = name;
		/* a mechanism without info is still listed, with zeros */
		memset(&mi, 0, sizeof(mi));
		if (fl->C_GetMechanismInfo != NULL &&
		    fl->C_GetMechanismInfo(slot, types[i], &mi) == CKR_OK) {
			m->min_key = mi.ulMinKeySize;
			m->max_key = mi.ulMaxKeySize;
			m->flags = mi.flags;
		}
	}
	t->n_mechs = n;
 out:
	free(types);
}

/* One object of a class with the given CKA_ID: 1 found, 0 none, <0 error. */
static int
find_by_id(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls,
    const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE *obj,
    char *msg, size_t msg_len)
{
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, (void *)id, id_len },
	};
	size_t found;
	int r;

	r = qes_p11_priv_find(fl, h, tmpl, id != NULL ? 2 : 1, obj, 1, &found,
	    NULL, msg, msg_len);
	if (r != 0)
		return r;
	return found > 0;
}

/* See the top of the file for what has_key = 1 / 0 / -1 mean. */
static void
pair_key(struct inv *inv, qes_p11_token *t, CK_FUNCTION_LIST *fl,
    CK_SESSION_HANDLE h, qes_p11_cred *c, int *keys_visible)
{
	char msg[QES_P11_ERRMSG_MAX];
	CK_OBJECT_HANDLE key;
	int r, v;

	c->has_key = 0;
	c->always_authenticate = 0;
	c->can_sign = 1;
	if (c->id_len == 0)
		return;		/* nothing to pair by, nothing to sign with */
	r = find_by_id(fl, h, CKO_PRIVATE_KEY, c->id, c->id_len, &key, msg,
	    sizeof(msg));
	if (r < 0)
		goto unknown;
	if (r == 1) {
		c->has_key = 1;
		if (qes_p11_priv_get_bool(fl, h, key, CKA_ALWAYS_AUTHENTICATE,
		    &v) == 0)
			c->always_authenticate = v;
		if (qes_p11_priv_get_bool(fl, h, key, CKA_SIGN, &v) == 0)
			c->can_sign = v;
		return;
	}
	r = find_by_id(fl, h, CKO_PUBLIC_KEY, c->id, c->id_len, &key, msg,
	    sizeof(msg));
	if (r < 0)
		goto unknown;
	if (r == 1) {
		c->has_key = 1;
		return;
	}
	if (*keys_visible < 0) {
		if (!(t->raw_flags & CKF_LOGIN_REQUIRED))
			*keys_visible = 1;
		else {
			r = find_by_id(fl, h, CKO_PRIVATE_KEY, NULL, 0, &key,
			    msg, sizeof(msg));
			if (r < 0)
				goto unknown;
			*keys_visible = r;
		}
	}
	c->has_key = *keys_visible ? 0 : -1;
	return;
 unknown:
	note_err(inv, t, r, msg);
	c->has_key = -1;
}

/* Read one certificate object into t->creds[t->n_creds] (or skip it). */
static void
scan_cred(struct inv *inv, qes_p11_token *t, CK_FUNCTION_LIST *fl,
    CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, int *keys_visible)
{
	qes_p11_cred *c = &t->creds[t->n_creds];
	uint8_t *der = NULL, *id = NULL, *label = NULL;
	size_t der_len, id_len = 0, label_len = 0;
	char msg[QES_P11_ERRMSG_MAX];
	qes_cert *cert = NULL;
	int r;

	r = qes_p11_priv_get_attr(fl, h, obj, CKA_VALUE, QES_P11_MAX_CERT_BYTES,
	    &der, &der_len, msg, sizeof(msg));
	if (r == QES_ERR_NOT_FOUND)
		snprintf(msg, sizeof(msg), "certificate object without CKA_VALUE");
	if (r != 0) {
		note_err(inv, t, r, msg);
		goto out;
	}
	r = qes_p11_priv_get_attr(fl, h, obj, CKA_ID, QES_P11_MAX_ID_BYTES,
	    &id, &id_len, msg, sizeof(msg));
	if (r != 0 && r != QES_ERR_NOT_FOUND) {
		note_err(inv, t, r, msg);
		goto out;
	}
	r = qes_p11_priv_get_attr(fl, h, obj, CKA_LABEL, QES_P11_MAX_LABEL_BYTES,
	    &label, &label_len, msg, sizeof(msg));
	if (r != 0 && r != QES_ERR_NOT_FOUND) {
		/* an overlong label costs the label, not the certificate */
		note_err(inv, t, r, msg);
		label_len = 0;
	}
	if ((r = qes_cert_from_der(der, der_len, &cert)) != 0) {
		if (r == QES_ERR_ALLOC) {
			inv->oom = 1;
			goto out;
		}
		snprintf(msg, sizeof(msg),
		    "certificate object is not a valid X.509 certificate");
		note_err(inv, t, r, msg);
		goto out;
	}
	memset(c, 0, sizeof(*c));
	c->cert = cert;
	cert = NULL;
	c->cls = qes_cert_classify(c->cert, inv->now);
	c->label = label != NULL ? pool_text(inv, label, label_len) : "";
	if (id != NULL && id_len > 0)
		memcpy(c->id, id, id_len);
	c->id_len = id != NULL ? id_len : 0;
	c->id_hex = pool_hex(inv, c->id, c->id_len);
	t->n_creds++;
	pair_key(inv, t, fl, h, c, keys_visible);
 out:
	qes_cert_free(cert);
	free(der);
	free(id);
	free(label);
}

static int
cred_cmp(const void *a, const void *b)
{
	const qes_p11_cred *x = a, *y = b;
	size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
	int c = memcmp(x->id, y->id, n);

	if (c != 0)
		return c;
	return x->id_len < y->id_len ? -1 : x->id_len > y->id_len;
}

static void
scan_creds(struct inv *inv, qes_p11_token *t, CK_FUNCTION_LIST *fl,
    CK_SLOT_ID slot)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE type = CKC_X_509;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_CERTIFICATE_TYPE, &type, sizeof(type) },
	};
	CK_OBJECT_HANDLE objs[QES_P11_MAX_OBJECTS];
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	char msg[QES_P11_ERRMSG_MAX];
	size_t n = 0, i;
	int r, more = 0, keys_visible = -1;
	CK_RV rv;

	if ((rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL,
	    &h)) != CKR_OK) {
		note_ckr(inv, t, "C_OpenSession", rv);
		return;
	}
	r = qes_p11_priv_find(fl, h, tmpl, 2, objs, QES_P11_MAX_OBJECTS, &n,
	    &more, msg, sizeof(msg));
	if (r != 0) {
		note_err(inv, t, r, msg);
		goto out;
	}
	if (more) {
		/* listed, but flagged: the token has more than we read */
		snprintf(msg, sizeof(msg),
		    "more than %d certificates; only the first %d are listed",
		    QES_P11_MAX_OBJECTS, QES_P11_MAX_OBJECTS);
		note_err(inv, t, QES_ERR_LIMIT, msg);
	}
	if (n == 0)
		goto out;
	if ((t->creds = calloc(n, sizeof(*t->creds))) == NULL) {
		inv->oom = 1;
		goto out;
	}
	for (i = 0; i < n && !inv->oom; i++)
		scan_cred(inv, t, fl, h, objs[i], &keys_visible);
	/* object handles come in the token's order; people read ids in order */
	qsort(t->creds, t->n_creds, sizeof(*t->creds), cred_cmp);
 out:
	/* a failure to close (token pulled out) leaves nothing to clean up */
	(void)fl->C_CloseSession(h);
}

static void
scan_slot(struct inv *inv, qes_p11_token *t, CK_FUNCTION_LIST *fl,
    CK_SLOT_ID slot)
{
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_RV rv;

	memset(&si, 0, sizeof(si));
	if ((rv = fl->C_GetSlotInfo(slot, &si)) != CKR_OK) {
		note_ckr(inv, t, "C_GetSlotInfo", rv);
		return;
	}
	t->slot_description = pool_field(inv, si.slotDescription,
	    sizeof(si.slotDescription));
	t->slot_manufacturer = pool_field(inv, si.manufacturerID,
	    sizeof(si.manufacturerID));
	t->hardware_slot = (si.flags & CKF_HW_SLOT) != 0;
	t->removable = (si.flags & CKF_REMOVABLE_DEVICE) != 0;
	t->present = (si.flags & CKF_TOKEN_PRESENT) != 0;
	if (!t->present)
		return;
	memset(&ti, 0, sizeof(ti));
	rv = fl->C_GetTokenInfo(slot, &ti);
	if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED) {
		t->present = 0;		/* pulled out between the two calls */
		return;
	}
	if (rv != CKR_OK) {
		note_ckr(inv, t, "C_GetTokenInfo", rv);
		return;
	}
	t->label = pool_field(inv, ti.label, sizeof(ti.label));
	t->manufacturer = pool_field(inv, ti.manufacturerID,
	    sizeof(ti.manufacturerID));
	t->model = pool_field(inv, ti.model, sizeof(ti.model));
	t->serial = pool_field(inv, ti.serialNumber, sizeof(ti.serialNumber));
	t->hw_major = ti.hardwareVersion.major;
	t->hw_minor = ti.hardwareVersion.minor;
	t->fw_major = ti.firmwareVersion.major;
	t->fw_minor = ti.firmwareVersion.minor;
	t->raw_flags = ti.flags;
	t->flags = qes_p11_priv_token_flags(ti.flags);
	t->min_pin = ti.ulMinPinLen;
	t->max_pin = ti.ulMaxPinLen;
	scan_mechs(inv, t, fl, slot);
	/* an uninitialised token holds no objects and refuses sessions */
	if (!inv->oom && (ti.flags & CKF_TOKEN_INITIALIZED))
		scan_creds(inv, t, fl, slot);
}

static void
scan_module(struct inv *inv, size_t module_index, CK_FUNCTION_LIST *fl)
{
	char msg[QES_P11_ERRMSG_MAX];
	CK_SLOT_ID *slots = NULL;
	qes_p11_token *t;
	size_t n = 0, i;
	int r;

	r = qes_p11_priv_slot_list(fl, 0, &slots, &n, msg, sizeof(msg));
	if (r != 0) {
		if (r == QES_ERR_ALLOC) {
			inv->oom = 1;
			return;
		}
		/* one entry that says why the module has no slots to show */
		if ((t = new_token(inv, module_index,
		    CK_UNAVAILABLE_INFORMATION)) == NULL) {
			inv->oom = 1;
			return;
		}
		note_err(inv, t, r, msg);
		fill_empty(t);
		return;
	}
	for (i = 0; i < n && !inv->oom; i++) {
		if ((t = new_token(inv, module_index, slots[i])) == NULL) {
			inv->oom = 1;
			break;
		}
		scan_slot(inv, t, fl, slots[i]);
		fill_empty(t);
	}
	free(slots);
}

int
qes_p11_scan(qes_p11 *p, qes_p11_inventory **out)
{
	CK_FUNCTION_LIST *fl;
	struct inv *inv;
	size_t n_mods, i;

	if (p == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((inv = calloc(1, sizeof(*inv))) == NULL)
		return QES_ERR_ALLOC;
	inv->now = (int64_t)time(NULL);
	n_mods = qes_p11_module_count(p);
	for (i = 0; i < n_mods && !inv->oom; i++) {
		/* failed modules are reported by qes_p11_module_get() */
		if (qes_p11_priv_functions(p, i, &fl) != 0)
			continue;
		scan_module(inv, i, fl);
	}
	if (inv->oom) {
		qes_p11_inventory_free(&inv->pub);
		return QES_ERR_ALLOC;
	}
	*out = &inv->pub;
	return 0;
}

void
qes_p11_inventory_free(qes_p11_inventory *pub)
{
	struct inv *inv = (struct inv *)pub;
	struct str_node *n;
	qes_p11_token *t;
	size_t i, j;

	if (inv == NULL)
		return;
	for (i = 0; i < inv->pub.n_tokens; i++) {
		t = &inv->pub.tokens[i];
		for (j = 0; j < t->n_creds; j++)
			qes_cert_free(t->creds[j].cert);
		free(t->creds);
		free(t->mechs);
	}
	free(inv->pub.tokens);
	while ((n = inv->strings) != NULL) {
		inv->strings = n->next;
		free(n->s);
		free(n);
	}
	free(inv);
}
