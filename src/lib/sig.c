/*
 * sig.c - digests and the encodings signers exchange (sig.h).
 *
 * Every signing path goes through here: a token's CKM_RSA_PKCS gets the
 * DigestInfo built below, an ECDSA value from PKCS#11 (raw r||s) becomes the
 * DER Ecdsa-Sig-Value that CMS, PAdES and XAdES carry. The ECDSA DER parser
 * is strict (canonical DER only, no trailing bytes, integers no longer than
 * the field) because its input can come from outside: a DER value that only
 * round-trips canonically cannot be malleated into a second valid encoding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/sig.h"

/* largest ECDSA field/order size we handle: P-521 */
#define ECDSA_MAX_FIELD_LEN	66
/* a DER Ecdsa-Sig-Value is at most 2 * field + 9 bytes; anything longer is not one */
#define ECDSA_DER_SLACK		16
/* qes_md_file() reads in chunks of this size, so memory stays constant */
#define MD_FILE_CHUNK		((size_t)1024 * 1024)

/*
 * The DER DigestInfo prefixes of RFC 8017 section 9.2, note 1: the encoding
 * of SEQUENCE { AlgorithmIdentifier { hash OID, NULL }, OCTET STRING (len) },
 * after which the digest follows. Written out as the RFC lists them.
 */
static const uint8_t di_sha256[] = {
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
	0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};
static const uint8_t di_sha384[] = {
	0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
	0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30,
};
static const uint8_t di_sha512[] = {
	0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
	0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40,
};

struct md_entry {
	qes_md md;
	size_t len;
	const char *name;
	const char *aliases[3];
	const uint8_t *di_prefix;
	size_t di_prefix_len;
};

static const struct md_entry mds[] = {
	{ QES_MD_SHA256, 32, "sha256", { "sha256", "sha-256", "sha2-256" },
	    di_sha256, sizeof(di_sha256) },
	{ QES_MD_SHA384, 48, "sha384", { "sha384", "sha-384", "sha2-384" },
	    di_sha384, sizeof(di_sha384) },
	{ QES_MD_SHA512, 64, "sha512", { "sha512", "sha-512", "sha2-512" },
	    di_sha512, sizeof(di_sha512) },
};

static const struct md_entry *
md_lookup(qes_md md)
{
	size_t i;

	for (i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		if (mds[i].md == md)
			return &mds[i];
	}
	return NULL;
}

static const EVP_MD *
md_evp(qes_md md)
{
	switch (md) {
	case QES_MD_SHA256:
		return EVP_sha256();
	case QES_MD_SHA384:
		return EVP_sha384();
	case QES_MD_SHA512:
		return EVP_sha512();
	}
	return NULL;
}

size_t
qes_md_len(qes_md md)
{
	const struct md_entry *e = md_lookup(md);

	return e != NULL ? e->len : 0;
}

const char *
qes_md_name(qes_md md)
{
	const struct md_entry *e = md_lookup(md);

	return e != NULL ? e->name : NULL;
}

int
qes_md_from_name(const char *name, qes_md *out)
{
	size_t i, j;

	if (name == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		for (j = 0; j < sizeof(mds[i].aliases) / sizeof(mds[i].aliases[0]); j++) {
			if (strcasecmp(name, mds[i].aliases[j]) == 0) {
				*out = mds[i].md;
				return 0;
			}
		}
	}
	return QES_ERR_UNSUPPORTED;
}

const char *
qes_sig_scheme_name(qes_sig_scheme s)
{
	switch (s) {
	case QES_SIG_RSA_PKCS1:
		return "rsa-pkcs1";
	case QES_SIG_RSA_PSS:
		return "rsa-pss";
	case QES_SIG_ECDSA:
		return "ecdsa";
	}
	return NULL;
}

int
qes_sig_scheme_from_name(const char *name, qes_sig_scheme *out)
{
	static const qes_sig_scheme all[] = {
		QES_SIG_RSA_PKCS1, QES_SIG_RSA_PSS, QES_SIG_ECDSA,
	};
	size_t i;

	if (name == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcasecmp(name, qes_sig_scheme_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return QES_ERR_UNSUPPORTED;
}

int
qes_md_digest(qes_md md, const void *data, size_t len, uint8_t *out)
{
	const EVP_MD *evp = md_evp(md);
	unsigned int out_len = 0;

	if (evp == NULL)
		return QES_ERR_UNSUPPORTED;
	if (out == NULL || (data == NULL && len > 0))
		return QES_ERR_INVALID_ARG;
	if (EVP_Digest(len > 0 ? data : "", len, out, &out_len, evp, NULL) != 1 ||
	    out_len != qes_md_len(md)) {
		ERR_clear_error();
		return QES_ERR_CRYPTO;
	}
	return 0;
}

int
qes_md_file(qes_md md, const char *path, uint8_t *out)
{
	const EVP_MD *evp = md_evp(md);
	EVP_MD_CTX *ctx = NULL;
	uint8_t *chunk = NULL;
	unsigned int out_len = 0;
	ssize_t n;
	int fd = -1, r = QES_ERR_INTERNAL;

	if (evp == NULL)
		return QES_ERR_UNSUPPORTED;
	if (path == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = errno == ENOENT ? QES_ERR_NOT_FOUND : QES_ERR_IO;
		goto out;
	}
	if ((chunk = malloc(MD_FILE_CHUNK)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (EVP_DigestInit_ex(ctx, evp, NULL) != 1) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	for (;;) {
		n = read(fd, chunk, MD_FILE_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = QES_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(ctx, chunk, (size_t)n) != 1) {
			r = QES_ERR_CRYPTO;
			goto out;
		}
	}
	if (EVP_DigestFinal_ex(ctx, out, &out_len) != 1 ||
	    out_len != qes_md_len(md)) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	r = 0;
 out:
	if (r == QES_ERR_CRYPTO)
		ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	free(chunk);
	if (fd >= 0)
		close(fd);
	return r;
}

int
qes_digest_info(qes_md md, const uint8_t *digest, size_t len, qes_buf *out)
{
	const struct md_entry *e = md_lookup(md);
	int r;

	if (e == NULL)
		return QES_ERR_UNSUPPORTED;
	if (digest == NULL || out == NULL || len != e->len)
		return QES_ERR_INVALID_ARG;
	/* reserve first so that out is never left with half a DigestInfo */
	if ((r = qes_buf_reserve(out, e->di_prefix_len + len)) != 0)
		return r;
	if ((r = qes_buf_put(out, e->di_prefix, e->di_prefix_len)) != 0 ||
	    (r = qes_buf_put(out, digest, len)) != 0)
		return QES_ERR_INTERNAL;
	return 0;
}

int
qes_ecdsa_raw_to_der(const uint8_t *raw, size_t len, qes_buf *out)
{
	ECDSA_SIG *sig = NULL;
	BIGNUM *r_bn = NULL, *s_bn = NULL;
	unsigned char *der = NULL;
	size_t half;
	int der_len, r = QES_ERR_INTERNAL;

	if (raw == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	if (len == 0 || len % 2 != 0)
		return QES_ERR_FORMAT;
	if (len > 2 * ECDSA_MAX_FIELD_LEN)
		return QES_ERR_LIMIT;
	half = len / 2;
	if ((sig = ECDSA_SIG_new()) == NULL ||
	    (r_bn = BN_bin2bn(raw, (int)half, NULL)) == NULL ||
	    (s_bn = BN_bin2bn(raw + half, (int)half, NULL)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (ECDSA_SIG_set0(sig, r_bn, s_bn) != 1) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	r_bn = s_bn = NULL;	/* owned by sig now */
	if ((der_len = i2d_ECDSA_SIG(sig, &der)) <= 0) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	if ((r = qes_buf_put(out, der, (size_t)der_len)) != 0)
		goto out;
	r = 0;
 out:
	if (r == QES_ERR_CRYPTO || r == QES_ERR_ALLOC)
		ERR_clear_error();
	OPENSSL_free(der);
	BN_free(r_bn);
	BN_free(s_bn);
	ECDSA_SIG_free(sig);
	return r;
}

int
qes_ecdsa_der_to_raw(const uint8_t *der, size_t len, size_t field_len, qes_buf *out)
{
	ECDSA_SIG *sig = NULL;
	const BIGNUM *r_bn, *s_bn;
	const unsigned char *p = der;
	unsigned char *reenc = NULL;
	uint8_t raw[2 * ECDSA_MAX_FIELD_LEN];
	int reenc_len, r = QES_ERR_FORMAT;

	if (der == NULL || out == NULL || field_len == 0 ||
	    field_len > ECDSA_MAX_FIELD_LEN)
		return QES_ERR_INVALID_ARG;
	if (len == 0)
		return QES_ERR_FORMAT;
	if (len > 2 * field_len + ECDSA_DER_SLACK)
		return QES_ERR_LIMIT;
	if ((sig = d2i_ECDSA_SIG(NULL, &p, (long)len)) == NULL)
		goto out;
	if ((size_t)(p - der) != len)
		goto out;	/* trailing bytes */
	/*
	 * Canonical DER only: re-encode and compare, which rejects non-minimal
	 * lengths and integers with redundant leading bytes that OpenSSL's
	 * decoder tolerates.
	 */
	if ((reenc_len = i2d_ECDSA_SIG(sig, &reenc)) <= 0) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	if ((size_t)reenc_len != len || memcmp(reenc, der, len) != 0)
		goto out;
	ECDSA_SIG_get0(sig, &r_bn, &s_bn);
	if (r_bn == NULL || s_bn == NULL ||
	    BN_is_negative(r_bn) || BN_is_negative(s_bn))
		goto out;
	if ((size_t)BN_num_bytes(r_bn) > field_len ||
	    (size_t)BN_num_bytes(s_bn) > field_len)
		goto out;
	if (BN_bn2binpad(r_bn, raw, (int)field_len) != (int)field_len ||
	    BN_bn2binpad(s_bn, raw + field_len, (int)field_len) != (int)field_len) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	if ((r = qes_buf_put(out, raw, 2 * field_len)) != 0)
		goto out;
	r = 0;
 out:
	if (r != 0)
		ERR_clear_error();
	OPENSSL_free(reenc);
	ECDSA_SIG_free(sig);
	return r;
}
