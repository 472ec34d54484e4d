/*
 * signer.c - run one signing job on a local token with the signer in the loop.
 *
 * The order of steps is the security argument, so it is kept in one place:
 * check the token's PIN state before anything else (a locked token is never
 * tried), show the signer what is signed, get one PIN for the whole batch
 * (or none on a protected authentication path), sign, check each value with
 * the certificate's public key, and always log out and wipe the PIN, on
 * every path out.
 *
 * A remembered PIN (req->pin_source) slots into the PIN step only: it is
 * looked up after the locked/expired checks, used only while the token
 * shows no retry warning (read again after the consent dialog, which may
 * have stayed open for minutes), tried exactly once, and on rejection
 * handed back to the source to delete before the signer is asked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/secret.h"
#include "qes/signer.h"

#define QES_SIGN_MAX_BATCH 1000
#define QES_SIGN_DEFAULT_ATTEMPTS 3
#define QES_SIGN_TITLE "qes: sign with your qualified certificate"
/* token states in which a remembered PIN is never tried */
#define QES_TOK_STORED_PIN_UNSAFE \
	(QES_TOK_PIN_COUNT_LOW | QES_TOK_PIN_FINAL_TRY | QES_TOK_PIN_LOCKED)

void
qes_sign_result_clear(qes_sign_result *result)
{
	size_t i;

	if (result->sigs != NULL) {
		for (i = 0; i < result->n_sigs; i++)
			qes_buf_free(result->sigs[i]);
		free(result->sigs);
	}
	result->sigs = NULL;
	result->n_sigs = 0;
}

int
qes_sign_describe(const qes_p11_token *t, const qes_p11_cred *c,
    const qes_sign_request *req, qes_buf *out)
{
	const qes_cert_info *ci = qes_cert_get_info(c->cert);
	size_t n = qes_md_len(req->md);
	int r = 0;

	r |= qes_buf_putf(out, "%s asks you to sign:\n  %s\n",
	    req->requester != NULL ? req->requester : "An application",
	    req->title != NULL ? req->title : "(untitled)");
	if (req->description != NULL && req->description[0] != '\0')
		r |= qes_buf_putf(out, "  %s\n", req->description);
	r |= qes_buf_putf(out, "%zu document%s, %s digest ", req->n_digests,
	    req->n_digests == 1 ? "" : "s", qes_md_name(req->md));
	if (req->n_digests > 0 && n >= 8)
		r |= qes_buf_put_hex(out, req->digests[0], 8);
	r |= qes_buf_putf(out, "%s\n", req->n_digests > 1 ? "... (first)" : "...");
	if (req->verification_code != NULL)
		r |= qes_buf_putf(out, "Verification code: %s\n", req->verification_code);
	r |= qes_buf_putf(out, "Certificate: %s (%s)\nIssuer: %s\nToken: \"%s\" serial %s\n",
	    ci->subject_cn[0] ? ci->subject_cn : ci->subject,
	    qes_cert_class_name(c->cls), ci->issuer, t->label, t->serial);
	return r != 0 ? QES_ERR_ALLOC : 0;
}

static int
check_request(const qes_p11_cred *c, const qes_sign_request *req, char *err, size_t len)
{
	size_t i, dlen = qes_md_len(req->md);

	if (dlen == 0 || req->n_digests == 0 || req->digests == NULL) {
		snprintf(err, len, "no digest or unknown digest algorithm");
		return QES_ERR_INVALID_ARG;
	}
	if (req->n_digests > QES_SIGN_MAX_BATCH) {
		snprintf(err, len, "batch of %zu digests exceeds the limit of %d",
		    req->n_digests, QES_SIGN_MAX_BATCH);
		return QES_ERR_LIMIT;
	}
	for (i = 0; i < req->n_digests; i++)
		if (req->digests[i] == NULL) {
			snprintf(err, len, "digest %zu is missing", i);
			return QES_ERR_INVALID_ARG;
		}
	if (!(qes_cert_schemes(c->cert) & (1u << req->scheme))) {
		snprintf(err, len, "the certificate's key cannot make %s signatures",
		    qes_sig_scheme_name(req->scheme) != NULL ?
		    qes_sig_scheme_name(req->scheme) : "such");
		return QES_ERR_KEY_UNSUITABLE;
	}
	if (c->has_key == 0) {
		snprintf(err, len, "no private key with id %s on the token", c->id_hex);
		return QES_ERR_KEY_NOT_FOUND;
	}
	return 0;
}

static const char *
pin_error_text(unsigned flags)
{
	if (flags & QES_TOK_PIN_FINAL_TRY)
		return "PIN incorrect. ONE attempt left: another wrong PIN locks the token.";
	if (flags & QES_TOK_PIN_COUNT_LOW)
		return "PIN incorrect. The token reports that few attempts are left.";
	return "PIN incorrect.";
}

/* Can the token accept a PIN of this length at all? */
static int
pin_length_ok(const qes_p11_token *t, const qes_secret *pin)
{
	return qes_secret_len(pin) > 0 &&
	    (t->min_pin == 0 || qes_secret_len(pin) >= t->min_pin) &&
	    (t->max_pin == 0 || qes_secret_len(pin) <= t->max_pin);
}

/*
 * Ask for the PIN and log in, once, or up to max attempts on a wrong PIN.
 * first_error (may be NULL) is shown with the first prompt.
 */
static int
login_with_pin(qes_p11_session *s, const qes_p11_token *t, qes_pinentry *pe,
    const char *desc, int max_attempts, const char *first_error,
    unsigned *flags, qes_sign_result *res)
{
	qes_secret *pin = NULL;
	const char *error = first_error;
	char prompt_desc[64];
	int attempt, r = QES_ERR_INTERNAL;

	if ((pin = qes_secret_new(QES_PIN_MAX)) == NULL)
		return QES_ERR_ALLOC;
	for (attempt = 1; attempt <= max_attempts; attempt++) {
		if (error == NULL && (*flags & QES_TOK_PIN_FINAL_TRY))
			error = "Careful: the token reports ONE PIN attempt left.";
		snprintf(prompt_desc, sizeof(prompt_desc), "PIN for \"%s\":", t->label);
		r = qes_pinentry_getpin(pe, QES_SIGN_TITLE, desc, prompt_desc,
		    error, pin);
		if (r != 0) {
			snprintf(res->errmsg, sizeof(res->errmsg), "PIN entry: %s",
			    qes_pinentry_errmsg(pe));
			goto out;
		}
		if (!pin_length_ok(t, pin)) {
			/* never spend one of the token's tries on a PIN it must refuse */
			error = "This PIN has the wrong length for this token.";
			r = QES_ERR_PIN_INVALID;
			continue;
		}
		r = qes_p11_session_login(s, pin);
		qes_secret_clear(pin);
		if (r != QES_ERR_PIN_INCORRECT)
			break;
		(void)qes_p11_session_token_flags(s, flags);
		if (*flags & QES_TOK_PIN_LOCKED) {
			r = QES_ERR_PIN_LOCKED;
			break;
		}
		error = pin_error_text(*flags);
	}
	if (r == QES_ERR_PIN_INVALID)
		snprintf(res->errmsg, sizeof(res->errmsg), "token \"%s\": the PIN must "
		    "have %lu to %lu characters", t->label, t->min_pin, t->max_pin);
	else if (r != 0)
		snprintf(res->errmsg, sizeof(res->errmsg), "%s", qes_p11_session_errmsg(s));
 out:
	qes_secret_free(pin);
	return r;
}

/*
 * Log in with a remembered PIN, if the source has one and the token is in a
 * state where trying it cannot hurt; the signer's consent is asked first,
 * with the same dialog text, so a remembered PIN never signs unseen.
 * Returns 0 with *logged_in set when it worked; 0 with *logged_in clear when
 * the caller should ask the signer instead (nothing remembered, a retry
 * warning, or the PIN was rejected: then *ask_error is the first error line,
 * and a PIN the token refused has used one of *max_attempts, leaving at
 * least one); or an error that ends the job (declined, locked, device).
 */
static int
login_with_stored_pin(qes_p11_session *s, const qes_p11_token *t,
    const qes_sign_pin_source *src, qes_pinentry *pe, const char *desc,
    unsigned *flags, int *max_attempts, int *logged_in,
    const char **ask_error, qes_sign_result *res)
{
	qes_secret *pin = NULL;
	int r;

	*logged_in = 0;
	if (src == NULL || src->lookup == NULL || src->rejected == NULL ||
	    (*flags & QES_TOK_STORED_PIN_UNSAFE))
		return 0;
	if ((pin = qes_secret_new(QES_PIN_MAX)) == NULL)
		return QES_ERR_ALLOC;
	if (src->lookup(src->arg, t->serial, pin) != 0 || qes_secret_len(pin) == 0) {
		r = 0;	/* nothing remembered (or storage off): ask */
		goto out;
	}
	if (!pin_length_ok(t, pin)) {
		/* the token must refuse it: never spend one of its tries on it */
		src->rejected(src->arg, t->serial);
		*ask_error = "The remembered PIN does not fit this token and has "
		    "been forgotten.";
		r = 0;
		goto out;
	}
	if ((r = qes_pinentry_confirm(pe, QES_SIGN_TITLE, desc,
	    "Sign (remembered PIN)", "Cancel")) != 0) {
		snprintf(res->errmsg, sizeof(res->errmsg), "consent: %s",
		    qes_pinentry_errmsg(pe));
		goto out;
	}
	/* the dialog may have been open for minutes: the token's state now */
	if ((r = qes_p11_session_token_flags(s, flags)) != 0) {
		snprintf(res->errmsg, sizeof(res->errmsg), "token \"%s\": %s",
		    t->label, qes_p11_session_errmsg(s));
		goto out;
	}
	if (*flags & QES_TOK_STORED_PIN_UNSAFE) {
		r = 0;
		goto out;
	}
	r = qes_p11_session_login(s, pin);
	qes_secret_clear(pin);
	if (r == 0) {
		*logged_in = 1;
		goto out;
	}
	if (r == QES_ERR_PIN_INCORRECT || r == QES_ERR_PIN_INVALID) {
		/* forget it at once; a second try could lock the token */
		src->rejected(src->arg, t->serial);
		/* it used one of the job's attempts */
		if (*max_attempts > 1)
			(*max_attempts)--;
		(void)qes_p11_session_token_flags(s, flags);
		if (*flags & QES_TOK_PIN_LOCKED) {
			snprintf(res->errmsg, sizeof(res->errmsg), "token \"%s\": "
			    "PIN locked: unblock it with the token vendor's tool",
			    t->label);
			r = QES_ERR_PIN_LOCKED;
			goto out;
		}
		*ask_error = (*flags & QES_TOK_PIN_FINAL_TRY) ?
		    "The token refused the remembered PIN, which has been "
		    "forgotten. ONE attempt left: another wrong PIN locks the token." :
		    "The token refused the remembered PIN, which has been "
		    "forgotten. Enter the PIN.";
		r = 0;
		goto out;
	}
	snprintf(res->errmsg, sizeof(res->errmsg), "%s", qes_p11_session_errmsg(s));
 out:
	qes_secret_free(pin);
	return r;
}

int
qes_sign_local(qes_p11 *p, const qes_p11_token *t, const qes_p11_cred *c,
    const qes_sign_request *req, const qes_pinentry_opts *opts,
    qes_sign_result *res)
{
	qes_p11_session *s = NULL;
	qes_pinentry *pe = NULL;
	qes_buf *desc = NULL;
	const char *desc_str, *ask_error = NULL;
	unsigned flags = 0;
	size_t i;
	int r, stored_ok = 0, max_attempts = req->max_pin_attempts > 0 ?
	    req->max_pin_attempts : QES_SIGN_DEFAULT_ATTEMPTS;

	memset(res, 0, sizeof(*res));
	if ((r = check_request(c, req, res->errmsg, sizeof(res->errmsg))) != 0)
		return r;
	if ((desc = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = qes_sign_describe(t, c, req, desc)) != 0 ||
	    (r = qes_buf_cstr(desc, &desc_str)) != 0)
		goto out;
	if ((r = qes_p11_session_open(p, t->module_index, t->serial, &s)) != 0 ||
	    (r = qes_p11_session_token_flags(s, &flags)) != 0) {
		snprintf(res->errmsg, sizeof(res->errmsg), "token \"%s\": %s",
		    t->label, s != NULL ? qes_p11_session_errmsg(s) : qes_strerror(r));
		goto out;
	}
	if (flags & QES_TOK_PIN_LOCKED) {
		snprintf(res->errmsg, sizeof(res->errmsg), "token \"%s\": PIN locked: "
		    "unblock it with the token vendor's tool", t->label);
		r = QES_ERR_PIN_LOCKED;
		goto out;
	}
	if (flags & QES_TOK_PIN_TO_BE_CHANGED) {
		snprintf(res->errmsg, sizeof(res->errmsg), "token \"%s\": the PIN must "
		    "be changed first with the token vendor's tool", t->label);
		r = QES_ERR_PIN_EXPIRED;
		goto out;
	}
	if ((r = qes_pinentry_open(opts, &pe)) != 0) {
		snprintf(res->errmsg, sizeof(res->errmsg), "PIN entry: %s",
		    pe != NULL ? qes_pinentry_errmsg(pe) : qes_strerror(r));
		goto out;
	}
	if (flags & QES_TOK_PROTECTED_AUTH) {
		/* the reader or the vendor middleware asks for the PIN: one prompt, theirs */
		if ((r = qes_pinentry_confirm(pe, QES_SIGN_TITLE,
		    desc_str, "Sign, then enter the PIN on the reader", "Cancel")) != 0) {
			snprintf(res->errmsg, sizeof(res->errmsg), "consent: %s",
			    qes_pinentry_errmsg(pe));
			goto out;
		}
		qes_pinentry_free(pe);
		pe = NULL;
		if ((r = qes_p11_session_login(s, NULL)) != 0) {
			snprintf(res->errmsg, sizeof(res->errmsg), "%s", qes_p11_session_errmsg(s));
			goto out;
		}
	} else if (flags & QES_TOK_LOGIN_REQUIRED) {
		if ((r = login_with_stored_pin(s, t, req->pin_source, pe, desc_str,
		    &flags, &max_attempts, &stored_ok, &ask_error, res)) != 0)
			goto out;
		if (!stored_ok && (r = login_with_pin(s, t, pe, desc_str,
		    max_attempts, ask_error, &flags, res)) != 0)
			goto out;
	} else if ((r = qes_pinentry_confirm(pe, "qes: sign", desc_str, "Sign", "Cancel")) != 0) {
		snprintf(res->errmsg, sizeof(res->errmsg), "consent: %s", qes_pinentry_errmsg(pe));
		goto out;
	}
	qes_pinentry_free(pe);	/* the dialog is gone before the token works */
	pe = NULL;
	if (req->consented != NULL)
		req->consented(req->consented_arg);

	if ((res->sigs = calloc(req->n_digests, sizeof(*res->sigs))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < req->n_digests; i++) {
		if ((res->sigs[i] = qes_buf_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		res->n_sigs = i + 1;
		r = qes_p11_session_sign(s, c->id, c->id_len, req->scheme, req->md,
		    req->digests[i], qes_md_len(req->md), req->ecdsa_raw, res->sigs[i]);
		if (r != 0) {
			snprintf(res->errmsg, sizeof(res->errmsg), "%s", qes_p11_session_errmsg(s));
			goto out;
		}
		/* a wrong value never leaves this function */
		r = qes_cert_verify_digest(c->cert, req->scheme, req->md, req->digests[i],
		    qes_md_len(req->md), qes_buf_data(res->sigs[i]), qes_buf_len(res->sigs[i]));
		if (r != 0) {
			snprintf(res->errmsg, sizeof(res->errmsg), "the token returned a "
			    "signature that does not verify with the certificate %s", c->id_hex);
			r = QES_ERR_SIGNATURE_INVALID;
			goto out;
		}
	}
	r = 0;
 out:
	if (s != NULL) {
		(void)qes_p11_session_logout(s);
		if (qes_p11_session_token_flags(s, &flags) == 0)
			res->token_flags = flags;
	}
	qes_p11_session_free(s);
	qes_pinentry_free(pe);
	qes_buf_free(desc);
	if (r != 0)
		qes_sign_result_clear(res);
	return r;
}
