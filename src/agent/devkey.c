/*
 * devkey.c - generate, keep, load and use the device key (see devkey.h).
 *
 * OpenSSL 3 EVP throughout. The only serialised form of the private key is
 * PKCS#8 DER, and it only ever exists in memory that is wiped: OpenSSL's
 * PKCS8_PRIV_KEY_INFO cleanses its key octets when freed, the DER encoding
 * is made in a buffer released with OPENSSL_clear_free, and the copy the
 * stores see is a qes_secret.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "qes/err.h"
#include "qes/secret.h"

#include "devkey.h"

struct agent_devkey {
	EVP_PKEY *pkey;
};

int
agent_devkey_generate(agent_devkey **out)
{
	agent_devkey *k;

	*out = NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return QES_ERR_ALLOC;
	if ((k->pkey = EVP_EC_gen("P-256")) == NULL) {
		free(k);
		return QES_ERR_CRYPTO;
	}
	*out = k;
	return 0;
}

void
agent_devkey_free(agent_devkey *k)
{
	if (k == NULL)
		return;
	/* EC private scalars are freed with BN_clear_free inside OpenSSL */
	EVP_PKEY_free(k->pkey);
	free(k);
}

/* 1 when pkey is an EC key on P-256. */
static int
is_p256(EVP_PKEY *pkey)
{
	char group[64];
	size_t len = 0;

	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
		return 0;
	if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
	    group, sizeof(group), &len))
		return 0;
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

int
agent_devkey_to_pkcs8(const agent_devkey *k, qes_secret *out)
{
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	unsigned char *der = NULL, *p;
	int len = 0, r = QES_ERR_CRYPTO;

	qes_secret_clear(out);
	if ((p8 = EVP_PKEY2PKCS8(k->pkey)) == NULL ||
	    (len = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL)) <= 0)
		goto out;
	if ((der = OPENSSL_malloc((size_t)len)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	p = der;
	if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != len)
		goto out;
	if ((r = qes_secret_set(out, der, (size_t)len)) != 0)
		goto out;
	r = 0;
 out:
	OPENSSL_clear_free(der, len > 0 ? (size_t)len : 0);
	PKCS8_PRIV_KEY_INFO_free(p8);	/* cleanses the key octets */
	return r;
}

int
agent_devkey_from_pkcs8(const qes_secret *der, agent_devkey **out)
{
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	const unsigned char *p = qes_secret_data(der);
	agent_devkey *k = NULL;
	EVP_PKEY *pkey = NULL;
	int r = QES_ERR_FORMAT;

	*out = NULL;
	if (qes_secret_len(der) == 0 || qes_secret_len(der) > AGENT_SECRET_MAX)
		return QES_ERR_FORMAT;
	if ((p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)qes_secret_len(der))) == NULL ||
	    p != qes_secret_data(der) + qes_secret_len(der))
		goto out;	/* not DER, or bytes after it */
	if ((pkey = EVP_PKCS82PKEY(p8)) == NULL)
		goto out;
	if (!is_p256(pkey)) {
		r = QES_ERR_UNSUPPORTED;
		goto out;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	k->pkey = pkey;
	pkey = NULL;
	*out = k;
	r = 0;
 out:
	EVP_PKEY_free(pkey);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return r;
}

static int
key_label(const char *name, char *label, size_t len)
{
	if ((size_t)snprintf(label, len, "qes: device key for %s", name) >= len)
		return QES_ERR_LIMIT;
	return 0;
}

int
agent_devkey_save(const agent_devkey *k, agent_secretstore *s, const char *name,
    const char **where_out)
{
	qes_secret *der = NULL;
	char label[AGENT_SECRET_KEY_MAX + 64];
	int r;

	if (k == NULL || s == NULL || name == NULL)
		return QES_ERR_INVALID_ARG;
	if ((r = key_label(name, label, sizeof(label))) != 0)
		return r;
	if ((der = qes_secret_new(AGENT_SECRET_MAX)) == NULL)
		return QES_ERR_ALLOC;
	if ((r = agent_devkey_to_pkcs8(k, der)) == 0)
		r = agent_secret_store(s, AGENT_SECRET_DEVICE_KEY, name, label, der,
		    where_out);
	qes_secret_free(der);
	return r;
}

int
agent_devkey_load(agent_secretstore *s, const char *name, agent_devkey **out)
{
	qes_secret *der = NULL;
	int r;

	*out = NULL;
	if (s == NULL || name == NULL)
		return QES_ERR_INVALID_ARG;
	if ((der = qes_secret_new(AGENT_SECRET_MAX)) == NULL)
		return QES_ERR_ALLOC;
	if ((r = agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY, name, der)) == 0)
		r = agent_devkey_from_pkcs8(der, out);
	qes_secret_free(der);
	return r;
}

int
agent_devkey_delete(agent_secretstore *s, const char *name)
{
	return agent_secret_delete(s, AGENT_SECRET_DEVICE_KEY, name);
}

int
agent_devkey_public_der(const agent_devkey *k, qes_buf *out)
{
	unsigned char *der = NULL;
	int len, r;

	if ((len = i2d_PUBKEY(k->pkey, &der)) <= 0)
		return QES_ERR_CRYPTO;
	r = qes_buf_put(out, der, (size_t)len);
	OPENSSL_free(der);
	return r;
}

int
agent_devkey_public_pem(const agent_devkey *k, qes_buf *out)
{
	BIO *bio = NULL;
	BUF_MEM *mem;
	int r = QES_ERR_CRYPTO;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return QES_ERR_ALLOC;
	if (!PEM_write_bio_PUBKEY(bio, k->pkey) || BIO_get_mem_ptr(bio, &mem) != 1)
		goto out;
	r = qes_buf_put(out, mem->data, mem->length);
 out:
	BIO_free(bio);
	return r;
}

int
agent_devkey_sign(const agent_devkey *k, const uint8_t *msg, size_t msg_len,
    qes_buf *sig_out)
{
	EVP_MD_CTX *md = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	int r = QES_ERR_CRYPTO;

	if (k == NULL || (msg == NULL && msg_len > 0) || sig_out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((md = EVP_MD_CTX_new()) == NULL)
		return QES_ERR_ALLOC;
	if (EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, k->pkey, NULL) != 1 ||
	    EVP_DigestSign(md, NULL, &sig_len, msg, msg_len) != 1)
		goto out;
	if ((sig = OPENSSL_malloc(sig_len)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (EVP_DigestSign(md, sig, &sig_len, msg, msg_len) != 1)
		goto out;
	r = qes_buf_put(sig_out, sig, sig_len);
 out:
	OPENSSL_free(sig);
	EVP_MD_CTX_free(md);
	return r;
}

int
agent_devkey_name_for_url(const char *url, char *name, size_t name_len)
{
	const char *p, *host, *end;
	size_t i, n;

	if (url == NULL || name == NULL || name_len == 0)
		return QES_ERR_INVALID_ARG;
	if ((p = strstr(url, "://")) == NULL || p == url)
		return QES_ERR_FORMAT;
	host = p + 3;
	end = host + strcspn(host, "/?#");
	n = (size_t)(end - host);
	/* no user info, no IPv6 brackets games: a plain host[:port] */
	if (n == 0 || n >= name_len || n > AGENT_SECRET_KEY_MAX ||
	    memchr(host, '@', n) != NULL)
		return QES_ERR_FORMAT;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (!(isalnum(ch) || ch == '.' || ch == '-' || ch == ':' ||
		    ch == '[' || ch == ']'))
			return QES_ERR_FORMAT;
		name[i] = (char)tolower(ch);
	}
	name[n] = '\0';
	return 0;
}
