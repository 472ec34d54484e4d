/*
 * p11_session.c - one signing job on one token: open by serial, log in once,
 * sign digests, log out and wipe.
 *
 * The token is found by serial number on every open, from a fresh slot list:
 * slot ids are not stable across re-insertion, and the inventory the caller
 * chose from may be minutes old.
 *
 * The PIN is copied into a qes_secret (locked, wiped memory) at login and
 * kept only as long as the session is logged in, because a key marked
 * CKA_ALWAYS_AUTHENTICATE needs it again (CKU_CONTEXT_SPECIFIC) before each
 * signature. It never goes into a message: errors say which call failed and
 * the CKR name, nothing else.
 *
 * What the token signs is built here: a DER DigestInfo under CKM_RSA_PKCS
 * (so the raw RSA mechanism never sees an unwrapped digest), the bare digest
 * under CKM_RSA_PKCS_PSS with MGF1 of the same hash and salt = digest
 * length, the bare digest under CKM_ECDSA (converted from r||s to DER unless
 * the caller wants it raw). The key type is checked against the scheme
 * first, so a wrong pairing is QES_ERR_KEY_UNSUITABLE rather than whatever
 * the module makes of it.
 *
 * If something fails between C_SignInit and the end of the operation (the
 * context-specific login, an oversized answer), the token still has a
 * signing operation active in our session. Closing that session ends it,
 * but closing an application's last session also logs it out; so the
 * session is replaced: a new one is opened first (it shares the login
 * state), then the old one is closed.
 *
 * Login state belongs to the application (this process) and the token, not
 * to a session: every session of the process shares it, and one C_Logout
 * ends it for all. Two jobs on one token at once would therefore sign under
 * each other's login, and the first to finish would log the other out. So
 * at most one qes_p11_session of the process is logged in to a token at a
 * time (login_holds below); another one gets QES_ERR_TOKEN_BUSY. And a
 * CKR_USER_ALREADY_LOGGED_IN answer, which means the PIN was not even
 * looked at (someone else in the process left the token logged in), is
 * followed by C_Logout and a fresh C_Login: every job proves its own PIN.
 *
 * A session borrows its module from the qes_p11: free every session before
 * the qes_p11 that opened it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/p11.h"
#include "qes/secret.h"
#include "qes/sig.h"

#include "p11_priv.h"

struct qes_p11_session {
	CK_FUNCTION_LIST *fl;		/* borrowed from the qes_p11 */
	CK_SLOT_ID slot;
	char serial[sizeof(((CK_TOKEN_INFO *)0)->serialNumber) + 1];
	CK_SESSION_HANDLE h;
	int open;
	int logged_in;			/* holds the token's login_hold */
	int protected_auth;		/* logged in without a PIN */
	qes_secret *pin;		/* the PIN while logged in, else empty */
	/*
	 * The key last found, kept for the rest of one login: a batch signs
	 * many digests with one key, and the search (C_FindObjects* and three
	 * C_GetAttributeValue) cost more than the signature on a software
	 * token. Cleared at every login and logout and after any failure, so
	 * no handle outlives the login it was found under, and a key
	 * removed mid-job fails that job as before (C_SignInit refuses the
	 * stale handle and the next call searches again).
	 */
	struct {
		int valid;
		uint8_t id[QES_P11_MAX_ID_BYTES];
		size_t id_len;
		CK_OBJECT_HANDLE h;
		CK_KEY_TYPE kt;
		int always_auth;
	} key;
	char errmsg[QES_P11_ERRMSG_MAX];
};

/* Tokens (module function list + slot) a qes session is logged in to. */
struct login_hold {
	struct login_hold *next;
	CK_FUNCTION_LIST *fl;
	CK_SLOT_ID slot;
};

static pthread_mutex_t login_lock = PTHREAD_MUTEX_INITIALIZER;
static struct login_hold *login_holds;

/* 0 and the token is ours to log in to, or QES_ERR_TOKEN_BUSY / _ALLOC. */
static int
hold_login(CK_FUNCTION_LIST *fl, CK_SLOT_ID slot)
{
	struct login_hold *h;
	int r = 0;

	pthread_mutex_lock(&login_lock);
	for (h = login_holds; h != NULL; h = h->next)
		if (h->fl == fl && h->slot == slot) {
			r = QES_ERR_TOKEN_BUSY;
			goto out;
		}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	h->fl = fl;
	h->slot = slot;
	h->next = login_holds;
	login_holds = h;
 out:
	pthread_mutex_unlock(&login_lock);
	return r;
}

static void
release_login(CK_FUNCTION_LIST *fl, CK_SLOT_ID slot)
{
	struct login_hold **pp, *h;

	pthread_mutex_lock(&login_lock);
	for (pp = &login_holds; (h = *pp) != NULL; pp = &h->next)
		if (h->fl == fl && h->slot == slot) {
			*pp = h->next;
			free(h);
			break;
		}
	pthread_mutex_unlock(&login_lock);
}

static int
fail_ckr(qes_p11_session *s, const char *call, CK_RV rv)
{
	qes_p11_priv_ckr_msg(s->errmsg, sizeof(s->errmsg), call, rv);
	return qes_p11_map_ckr(rv);
}

/* The slot holding the token with this serial, from a fresh slot list. */
static int
find_slot(CK_FUNCTION_LIST *fl, const char *serial, CK_SLOT_ID *slot_out,
    char *msg, size_t msg_len)
{
	CK_SLOT_ID *slots = NULL;
	CK_TOKEN_INFO ti;
	size_t n, i;
	char *this_serial;
	int r, match;

	if ((r = qes_p11_priv_slot_list(fl, 1, &slots, &n, msg, msg_len)) != 0)
		return r;
	r = QES_ERR_TOKEN_NOT_PRESENT;
	snprintf(msg, msg_len, "no token with serial '%s'", serial);
	for (i = 0; i < n; i++) {
		memset(&ti, 0, sizeof(ti));
		/* a slot that fails now was emptied since the list: skip it */
		if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if ((this_serial = qes_p11_priv_trim(ti.serialNumber,
		    sizeof(ti.serialNumber))) == NULL) {
			r = QES_ERR_ALLOC;
			snprintf(msg, msg_len, "out of memory");
			break;
		}
		match = strcmp(this_serial, serial) == 0;
		free(this_serial);
		if (match) {
			*slot_out = slots[i];
			msg[0] = '\0';
			r = 0;
			break;
		}
	}
	free(slots);
	return r;
}

int
qes_p11_session_open(qes_p11 *p, size_t module_index, const char *serial,
    qes_p11_session **out)
{
	qes_p11_session *s = NULL;
	CK_FUNCTION_LIST *fl;
	CK_RV rv;
	int r;

	if (out != NULL)
		*out = NULL;
	if (p == NULL || serial == NULL || serial[0] == '\0' || out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = qes_p11_priv_functions(p, module_index, &fl)) != 0)
		return r;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->pin = qes_secret_new(QES_PIN_MAX)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	s->fl = fl;
	if ((r = find_slot(fl, serial, &s->slot, s->errmsg,
	    sizeof(s->errmsg))) != 0)
		goto out;
	/* find_slot matched a trimmed 16-byte field: it fits */
	snprintf(s->serial, sizeof(s->serial), "%s", serial);
	/* read-only: signing never writes to the token */
	rv = fl->C_OpenSession(s->slot, CKF_SERIAL_SESSION, NULL, NULL, &s->h);
	if (rv != CKR_OK) {
		r = fail_ckr(s, "C_OpenSession", rv);
		goto out;
	}
	s->open = 1;
	*out = s;
	s = NULL;
	r = 0;
 out:
	qes_p11_session_free(s);
	return r;
}

const char *
qes_p11_session_errmsg(const qes_p11_session *s)
{
	return s != NULL ? s->errmsg : "";
}

static int
read_token_flags(qes_p11_session *s, CK_FLAGS *raw)
{
	CK_TOKEN_INFO ti;
	CK_RV rv;

	memset(&ti, 0, sizeof(ti));
	if ((rv = s->fl->C_GetTokenInfo(s->slot, &ti)) != CKR_OK)
		return fail_ckr(s, "C_GetTokenInfo", rv);
	*raw = ti.flags;
	return 0;
}

int
qes_p11_session_token_flags(qes_p11_session *s, unsigned *flags_out)
{
	CK_FLAGS raw = 0;
	int r;

	if (s == NULL || flags_out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = read_token_flags(s, &raw)) != 0)
		return r;
	*flags_out = qes_p11_priv_token_flags(raw);
	return 0;
}

/*
 * C_Login for user_type with the PIN held in s->pin, or none on a protected
 * authentication path (the reader's PIN pad or the middleware asks).
 */
static CK_RV
do_login(qes_p11_session *s, CK_USER_TYPE user_type)
{
	size_t len = qes_secret_len(s->pin);

	if (s->protected_auth && len == 0)
		return s->fl->C_Login(s->h, user_type, NULL, 0);
	/* the module takes a non-const pointer but only reads the PIN */
	return s->fl->C_Login(s->h, user_type,
	    (CK_UTF8CHAR *)qes_secret_data(s->pin), len);
}

/*
 * One login per job: a second call on a logged-in session is a no-op. On a
 * protected authentication path a PIN, when the caller has one anyway, is
 * still passed on (middlewares for PIN-pad readers accept both); without
 * one, C_Login gets NULL and the reader or middleware asks the user.
 */
int
qes_p11_session_login(qes_p11_session *s, const qes_secret *pin)
{
	CK_FLAGS raw = 0;
	CK_RV rv;
	int r;

	if (s == NULL)
		return QES_ERR_INVALID_ARG;
	s->errmsg[0] = '\0';
	if (s->logged_in)
		return 0;	/* one login per job */
	s->key.valid = 0;	/* nothing found before this login is kept */
	if ((r = read_token_flags(s, &raw)) != 0)
		return r;
	/* a locked PIN would only be counted against: do not even try */
	if (raw & CKF_USER_PIN_LOCKED) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "token reports the user PIN locked");
		return QES_ERR_PIN_LOCKED;
	}
	s->protected_auth = (raw & CKF_PROTECTED_AUTHENTICATION_PATH) != 0;
	if (pin == NULL || qes_secret_len(pin) == 0) {
		if (!s->protected_auth) {
			snprintf(s->errmsg, sizeof(s->errmsg),
			    "a PIN is required: the token has no protected "
			    "authentication path");
			return QES_ERR_INVALID_ARG;
		}
		qes_secret_clear(s->pin);
	} else if ((r = qes_secret_copy(s->pin, pin)) != 0) {
		snprintf(s->errmsg, sizeof(s->errmsg), "PIN too long");
		return QES_ERR_PIN_INVALID;
	}
	if ((r = hold_login(s->fl, s->slot)) != 0) {
		qes_secret_clear(s->pin);
		snprintf(s->errmsg, sizeof(s->errmsg), "%s",
		    r == QES_ERR_TOKEN_BUSY ? "another signing session of this "
		    "process is logged in to the token" : "out of memory");
		return r;
	}
	rv = do_login(s, CKU_USER);
	if (rv == CKR_USER_ALREADY_LOGGED_IN) {
		/* a login we did not make: the PIN was not checked; check it */
		rv = s->fl->C_Logout(s->h);
		if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN) {
			r = fail_ckr(s, "C_Logout", rv);
			goto fail;
		}
		rv = do_login(s, CKU_USER);
	}
	if (rv != CKR_OK) {
		r = fail_ckr(s, "C_Login", rv);
		goto fail;
	}
	s->logged_in = 1;
	return 0;
 fail:
	release_login(s->fl, s->slot);
	qes_secret_clear(s->pin);
	return r;
}

int
qes_p11_session_logout(qes_p11_session *s)
{
	CK_RV rv;
	int r = 0;

	if (s == NULL)
		return QES_ERR_INVALID_ARG;
	if (s->pin != NULL)
		qes_secret_clear(s->pin);
	if (s->logged_in && s->open) {
		rv = s->fl->C_Logout(s->h);
		if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN)
			r = fail_ckr(s, "C_Logout", rv);
	}
	if (s->logged_in)
		release_login(s->fl, s->slot);
	s->key.valid = 0;
	s->logged_in = 0;
	s->protected_auth = 0;
	return r;
}

void
qes_p11_session_free(qes_p11_session *s)
{
	if (s == NULL)
		return;
	(void)qes_p11_session_logout(s);
	/* nothing useful to do when closing fails (token already gone) */
	if (s->open)
		(void)s->fl->C_CloseSession(s->h);
	qes_secret_free(s->pin);
	qes_wipe(s, sizeof(*s));
	free(s);
}

/*
 * Whether the token this session was opened on has gone from its slot:
 * C_GetTokenInfo fails, or another token (serial) sits there now. Asked
 * after a signing step fails, because modules report a pulled token in
 * many ways: real ones mostly with CKR_DEVICE_REMOVED or
 * CKR_SESSION_HANDLE_INVALID, but SoftHSM2 (token directory deleted) keeps
 * the session and the slot, finds no objects any more, answers
 * CKR_OBJECT_HANDLE_INVALID for old handles and CKR_GENERAL_ERROR to
 * C_GetTokenInfo.
 */
static int
token_gone(qes_p11_session *s, char *why, size_t why_len)
{
	CK_TOKEN_INFO ti;
	char *serial;
	CK_RV rv;
	int gone;

	memset(&ti, 0, sizeof(ti));
	if ((rv = s->fl->C_GetTokenInfo(s->slot, &ti)) != CKR_OK) {
		qes_p11_priv_ckr_msg(why, why_len, "C_GetTokenInfo", rv);
		return 1;
	}
	if ((serial = qes_p11_priv_trim(ti.serialNumber,
	    sizeof(ti.serialNumber))) == NULL)
		return 0;
	if ((gone = strcmp(serial, s->serial) != 0))
		snprintf(why, why_len, "another token is in the slot");
	free(serial);
	return gone;
}

/*
 * End a signing operation the token still holds (see the top of the file):
 * open the replacement first so the login survives, then close the old one.
 */
static void
replace_session(qes_p11_session *s)
{
	CK_SESSION_HANDLE h;

	s->key.valid = 0;
	if (s->fl->C_OpenSession(s->slot, CKF_SERIAL_SESSION, NULL, NULL,
	    &h) != CKR_OK) {
		/* then at least end the operation; the login goes with it */
		(void)qes_p11_session_logout(s);
		(void)s->fl->C_CloseSession(s->h);
		s->open = 0;
		return;
	}
	(void)s->fl->C_CloseSession(s->h);
	s->h = h;
}

static const char *
key_type_name(CK_KEY_TYPE kt)
{
	switch (kt) {
	case CKK_RSA:
		return "RSA";
	case CKK_EC:
		return "EC";
	case CKK_DSA:
		return "DSA";
	case CKK_EC_EDWARDS:
		return "EdDSA";
	default:
		return "another type";
	}
}

/* The one private key with this CKA_ID, its type and whether it re-asks. */
static int
find_key(qes_p11_session *s, const uint8_t *key_id, size_t key_id_len,
    CK_OBJECT_HANDLE *key, CK_KEY_TYPE *kt, int *always_auth)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, (void *)key_id, key_id_len },
	};
	CK_OBJECT_HANDLE found[2];
	char hex[2 * QES_P11_MAX_ID_BYTES + 1];
	size_t n, i;
	int r, can_sign;

	for (i = 0; i < key_id_len; i++)
		snprintf(hex + 2 * i, 3, "%02x", key_id[i]);
	hex[2 * key_id_len] = '\0';
	r = qes_p11_priv_find(s->fl, s->h, tmpl, 2, found, 2, &n, NULL,
	    s->errmsg, sizeof(s->errmsg));
	if (r != 0)
		return r;
	if (n == 0 && !s->logged_in) {
		/* private keys are usually hidden until login */
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "no private key with id %s visible: not logged in", hex);
		return QES_ERR_NOT_LOGGED_IN;
	}
	if (n == 0) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "no private key with id %s", hex);
		return QES_ERR_KEY_NOT_FOUND;
	}
	if (n > 1) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "more than one private key with id %s", hex);
		return QES_ERR_KEY_UNSUITABLE;
	}
	*key = found[0];
	r = qes_p11_priv_get_ulong(s->fl, s->h, *key, CKA_KEY_TYPE, kt,
	    s->errmsg, sizeof(s->errmsg));
	if (r == QES_ERR_NOT_FOUND) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "private key with id %s has no CKA_KEY_TYPE", hex);
		return QES_ERR_KEY_UNSUITABLE;
	}
	if (r != 0)
		return r;
	if (qes_p11_priv_get_bool(s->fl, s->h, *key, CKA_SIGN, &can_sign) == 0 &&
	    !can_sign) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "private key with id %s may not sign (CKA_SIGN false)", hex);
		return QES_ERR_KEY_UNSUITABLE;
	}
	*always_auth = 0;
	r = qes_p11_priv_get_bool(s->fl, s->h, *key, CKA_ALWAYS_AUTHENTICATE,
	    always_auth);
	if (r != 0 && r != QES_ERR_NOT_FOUND) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "C_GetAttributeValue(CKA_ALWAYS_AUTHENTICATE): %s",
		    qes_strerror(r));
		return r;
	}
	return 0;
}

/* find_key through the session's one-entry cache (see struct above). */
static int
cached_key(qes_p11_session *s, const uint8_t *key_id, size_t key_id_len,
    CK_OBJECT_HANDLE *key, CK_KEY_TYPE *kt, int *always_auth)
{
	int r;

	if (s->key.valid && s->key.id_len == key_id_len &&
	    memcmp(s->key.id, key_id, key_id_len) == 0) {
		*key = s->key.h;
		*kt = s->key.kt;
		*always_auth = s->key.always_auth;
		return 0;
	}
	s->key.valid = 0;
	if ((r = find_key(s, key_id, key_id_len, key, kt, always_auth)) != 0)
		return r;
	/* only a logged-in search is kept: it is the one that sees the key */
	if (s->logged_in) {
		memcpy(s->key.id, key_id, key_id_len);
		s->key.id_len = key_id_len;
		s->key.h = *key;
		s->key.kt = *kt;
		s->key.always_auth = *always_auth;
		s->key.valid = 1;
	}
	return 0;
}

static int
pss_params(qes_md md, size_t digest_len, CK_RSA_PKCS_PSS_PARAMS *pp)
{
	switch (md) {
	case QES_MD_SHA256:
		pp->hashAlg = CKM_SHA256;
		pp->mgf = CKG_MGF1_SHA256;
		break;
	case QES_MD_SHA384:
		pp->hashAlg = CKM_SHA384;
		pp->mgf = CKG_MGF1_SHA384;
		break;
	case QES_MD_SHA512:
		pp->hashAlg = CKM_SHA512;
		pp->mgf = CKG_MGF1_SHA512;
		break;
	default:
		return QES_ERR_UNSUPPORTED;
	}
	pp->sLen = digest_len;
	return 0;
}

/* C_Sign with the two-call size pattern into a buffer of at most 1 KiB. */
static int
sign_value(qes_p11_session *s, const uint8_t *tbs, size_t tbs_len,
    uint8_t *sig, size_t *sig_len, int *op_active)
{
	CK_ULONG len = 0;
	CK_RV rv;

	*op_active = 1;
	rv = s->fl->C_Sign(s->h, (CK_BYTE *)tbs, tbs_len, NULL, &len);
	if (rv != CKR_OK) {
		*op_active = 0;	/* any error but a short buffer ends it */
		return fail_ckr(s, "C_Sign", rv);
	}
	if (len == 0 || len > QES_P11_MAX_SIG_BYTES) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "C_Sign: signature of %lu bytes, limit %d", len,
		    QES_P11_MAX_SIG_BYTES);
		return QES_ERR_LIMIT;
	}
	rv = s->fl->C_Sign(s->h, (CK_BYTE *)tbs, tbs_len, sig, &len);
	if (rv == CKR_BUFFER_TOO_SMALL) {
		/* the size query under-reported; one more try at the limit */
		len = QES_P11_MAX_SIG_BYTES;
		rv = s->fl->C_Sign(s->h, (CK_BYTE *)tbs, tbs_len, sig, &len);
	}
	if (rv == CKR_BUFFER_TOO_SMALL) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "C_Sign: signature longer than %d bytes",
		    QES_P11_MAX_SIG_BYTES);
		return QES_ERR_LIMIT;
	}
	*op_active = 0;
	if (rv != CKR_OK)
		return fail_ckr(s, "C_Sign", rv);
	if (len == 0 || len > QES_P11_MAX_SIG_BYTES) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "C_Sign: module returned %lu bytes", len);
		return QES_ERR_DEVICE;
	}
	*sig_len = len;
	return 0;
}

int
qes_p11_session_sign(qes_p11_session *s, const uint8_t *key_id,
    size_t key_id_len, qes_sig_scheme scheme, qes_md md, const uint8_t *digest,
    size_t digest_len, int ecdsa_raw, qes_buf *sig_out)
{
	uint8_t sig[QES_P11_MAX_SIG_BYTES];
	char why[QES_P11_ERRMSG_MAX], first[QES_P11_ERRMSG_MAX];
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_MECHANISM mech = { 0, NULL, 0 };
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	CK_KEY_TYPE kt = 0, want;
	const uint8_t *tbs = digest;
	size_t tbs_len = digest_len, sig_len = 0;
	qes_buf *di = NULL, *out = NULL;
	int r, always_auth = 0, op_active = 0;
	CK_RV rv;

	if (s == NULL)
		return QES_ERR_INVALID_ARG;
	s->errmsg[0] = '\0';
	if (key_id == NULL || key_id_len == 0 ||
	    key_id_len > QES_P11_MAX_ID_BYTES || digest == NULL ||
	    sig_out == NULL || qes_md_len(md) == 0 ||
	    digest_len != qes_md_len(md)) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "invalid key id, digest algorithm or digest length");
		return QES_ERR_INVALID_ARG;
	}
	if (!s->open) {
		snprintf(s->errmsg, sizeof(s->errmsg), "session is closed");
		return QES_ERR_TOKEN_REMOVED;
	}
	switch (scheme) {
	case QES_SIG_RSA_PKCS1:
		want = CKK_RSA;
		mech.mechanism = CKM_RSA_PKCS;
		if ((di = qes_buf_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if ((r = qes_digest_info(md, digest, digest_len, di)) != 0) {
			snprintf(s->errmsg, sizeof(s->errmsg),
			    "cannot build the DigestInfo");
			goto out;
		}
		tbs = qes_buf_data(di);
		tbs_len = qes_buf_len(di);
		break;
	case QES_SIG_RSA_PSS:
		want = CKK_RSA;
		if ((r = pss_params(md, digest_len, &pss)) != 0)
			goto out;
		mech.mechanism = CKM_RSA_PKCS_PSS;
		mech.pParameter = &pss;
		mech.ulParameterLen = sizeof(pss);
		break;
	case QES_SIG_ECDSA:
		want = CKK_EC;
		mech.mechanism = CKM_ECDSA;
		break;
	default:
		snprintf(s->errmsg, sizeof(s->errmsg), "unknown signature scheme");
		return QES_ERR_INVALID_ARG;
	}

	if ((r = cached_key(s, key_id, key_id_len, &key, &kt,
	    &always_auth)) != 0)
		goto out;
	if (kt != want) {
		snprintf(s->errmsg, sizeof(s->errmsg),
		    "key is %s, cannot sign %s", key_type_name(kt),
		    qes_sig_scheme_name(scheme));
		r = QES_ERR_KEY_UNSUITABLE;
		goto out;
	}
	if ((rv = s->fl->C_SignInit(s->h, &mech, key)) != CKR_OK) {
		r = fail_ckr(s, "C_SignInit", rv);
		goto out;
	}
	op_active = 1;
	if (always_auth) {
		if (!s->logged_in) {
			snprintf(s->errmsg, sizeof(s->errmsg),
			    "key needs a PIN for each signature: log in first");
			r = QES_ERR_NOT_LOGGED_IN;
			goto out;
		}
		if ((rv = do_login(s, CKU_CONTEXT_SPECIFIC)) != CKR_OK) {
			r = fail_ckr(s, "C_Login(CKU_CONTEXT_SPECIFIC)", rv);
			goto out;
		}
	}
	if ((r = sign_value(s, tbs, tbs_len, sig, &sig_len, &op_active)) != 0)
		goto out;

	if ((out = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (scheme == QES_SIG_ECDSA && !ecdsa_raw) {
		if ((r = qes_ecdsa_raw_to_der(sig, sig_len, out)) != 0) {
			snprintf(s->errmsg, sizeof(s->errmsg),
			    "C_Sign: ECDSA value of %zu bytes is not r||s",
			    sig_len);
			goto out;
		}
	} else if ((r = qes_buf_put(out, sig, sig_len)) != 0)
		goto out;
	/* the caller's buffer only ever sees a complete signature */
	r = qes_buf_put(sig_out, qes_buf_data(out), qes_buf_len(out));
 out:
	if (r != 0)
		s->key.valid = 0;
	/* a failure of the token's own making may be the token leaving */
	if (r != 0 && r != QES_ERR_ALLOC && r != QES_ERR_INVALID_ARG &&
	    r != QES_ERR_TOKEN_REMOVED && token_gone(s, why, sizeof(why))) {
		memcpy(first, s->errmsg, sizeof(first));
		if (snprintf(s->errmsg, sizeof(s->errmsg),
		    "token removed (%s) after %s", why, first) < 0)
			s->errmsg[0] = '\0';
		r = QES_ERR_TOKEN_REMOVED;
	}
	if (op_active)
		replace_session(s);
	if (r == QES_ERR_ALLOC && s->errmsg[0] == '\0')
		snprintf(s->errmsg, sizeof(s->errmsg), "out of memory");
	qes_buf_free(di);
	qes_buf_free(out);
	return r;
}
