/*
 * xades.c - XAdES baseline signatures (ETSI EN 319 132-1) in two phases.
 *
 * prepare builds the whole ds:Signature with libxml2's tree API: the
 * reference to the document (enveloped: URI="" with the enveloped-signature
 * transform; detached: the document's name), the reference to
 * xades:SignedProperties (SigningTime, SigningCertificateV2,
 * DataObjectFormat), KeyInfo with the certificates; digests the references'
 * canonical octets and then the canonical SignedInfo, which is what the
 * caller gets to sign. The private key is never here, which is why
 * xmlsec1's own signing (it wants the key) is not used: canonicalisation is
 * libxml2's xmlC14NExecute, the same code xmlsec1 runs when it verifies.
 *
 * finish checks the value against the certificate, fills ds:SignatureValue
 * and adds the unsigned properties of the level asked:
 *   B-T   xades:SignatureTimeStamp over the canonical ds:SignatureValue
 *         element (EN 319 132-1 clause 5.3)
 *   B-LT  xades:CertificateValues, xades:RevocationValues and, for the
 *         TSA's data, xades141:TimeStampValidationData
 *   B-LTA xades141:ArchiveTimeStamp over the references' octets, the
 *         canonical SignedInfo, SignatureValue, KeyInfo and every unsigned
 *         signature property before it (EN 319 132-1 clause 5.5.2)
 *
 * The Id attributes are not random: they are derived from a hash of
 * everything prepare is given (id_seed, signing time, signer, document), so
 * that preparing twice with the same parameters gives the same digest to
 * sign (a gateway prepares and finishes in different processes), and two
 * different signatures still get different Ids.
 *
 * Parsing untrusted XML (no DTD, no network, limits) and the C14N node sets
 * are in xml.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/uri.h>
#include <libxml/xmlsave.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cert_priv.h"
#include "xml_priv.h"
#include "qes/err.h"
#include "qes/xades.h"

#define NS_DS		"http://www.w3.org/2000/09/xmldsig#"
#define NS_XADES	"http://uri.etsi.org/01903/v1.3.2#"
#define NS_XADES141	"http://uri.etsi.org/01903/v1.4.1#"
#define URI_EXC_C14N	"http://www.w3.org/2001/10/xml-exc-c14n#"
#define URI_C14N	"http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
#define URI_ENVELOPED	"http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#define URI_SIGNED_PROPS "http://uri.etsi.org/01903#SignedProperties"

#define MAX_NAME_BYTES	1024
#define MAX_MIME_BYTES	255
#define MAX_VDATA_ITEMS	64
#define MAX_BLOB_BYTES	((size_t)4 * 1024 * 1024)

struct qes_xades_ctx {
	xmlDocPtr doc;
	xmlNodePtr sig;			/* ds:Signature */
	xmlNodePtr signed_info;
	xmlNodePtr sigvalue;
	xmlNodePtr keyinfo;
	xmlNodePtr qprops;		/* xades:QualifyingProperties */
	xmlNodePtr unsigned_props;	/* added by finish; removed again if it fails */
	xmlNsPtr ns_ds;
	xmlNsPtr ns_xades;
	const qes_cert *signer;
	qes_sig_scheme scheme;
	qes_md md;
	qes_xades_c14n c14n;
	qes_ades_level level;
	const qes_timestamper *tsa;
	const qes_ades_vdata *vdata;
	const qes_ades_vdata *tsa_vdata;
	EVP_MD_CTX *archive;		/* B-LTA: the references' octets so far */
	uint8_t tbs[QES_MD_MAX_LEN];
	size_t tbs_len;
	int64_t signing_time;		/* the one time prepare uses */
	uint8_t id_key[32];		/* what the Ids are derived from */
	unsigned nids;			/* Ids made so far */
	int finished;
	char errmsg[256];
};

static int
fail(qes_xades_ctx *ctx, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(qes_xades_ctx *ctx, int err, const char *fmt, ...)
{
	va_list ap;

	if (ctx != NULL) {
		va_start(ap, fmt);
		vsnprintf(ctx->errmsg, sizeof(ctx->errmsg), fmt, ap);
		va_end(ap);
	}
	return err;
}

static const EVP_MD *
md_evp(qes_md md)
{
	switch (md) {
	case QES_MD_SHA256: return EVP_sha256();
	case QES_MD_SHA384: return EVP_sha384();
	case QES_MD_SHA512: return EVP_sha512();
	}
	return NULL;
}

static const char *
md_uri(qes_md md)
{
	switch (md) {
	case QES_MD_SHA256: return "http://www.w3.org/2001/04/xmlenc#sha256";
	case QES_MD_SHA384: return "http://www.w3.org/2001/04/xmldsig-more#sha384";
	case QES_MD_SHA512: return "http://www.w3.org/2001/04/xmlenc#sha512";
	}
	return NULL;
}

static const char *
sig_uri(qes_sig_scheme scheme, qes_md md)
{
	static const char *const uris[3][3] = {
		{ "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
		  "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
		  "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" },
		{ "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
		  "http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1",
		  "http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1" },
		{ "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
		  "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
		  "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" },
	};

	if (scheme < QES_SIG_RSA_PKCS1 || scheme > QES_SIG_ECDSA ||
	    md < QES_MD_SHA256 || md > QES_MD_SHA512)
		return NULL;
	return uris[scheme - 1][md - 1];
}

static const char *
c14n_uri(qes_xades_c14n c)
{
	return c == QES_XADES_C14N_INCLUSIVE ? URI_C14N : URI_EXC_C14N;
}

struct digest_sink {
	EVP_MD_CTX *md;
	EVP_MD_CTX *also;
};

static int
digest_write(void *arg, const uint8_t *data, size_t len)
{
	struct digest_sink *d = arg;

	if (EVP_DigestUpdate(d->md, data, len) != 1 ||
	    (d->also != NULL && EVP_DigestUpdate(d->also, data, len) != 1))
		return QES_ERR_CRYPTO;
	return 0;
}

/* The digest of a node set's canonical octets, which also go to also when given. */
static int
c14n_digest(qes_xades_ctx *ctx, xmlNodePtr top, int whole_doc_but, uint8_t *md_out,
    EVP_MD_CTX *also)
{
	struct digest_sink d = { EVP_MD_CTX_new(), also };
	unsigned int len;
	int r;

	if (d.md == NULL)
		return QES_ERR_ALLOC;
	if (EVP_DigestInit_ex(d.md, md_evp(ctx->md), NULL) != 1) {
		r = QES_ERR_CRYPTO;
		goto out;
	}
	if ((r = qes_xml_c14n(ctx->doc, top, whole_doc_but,
	    ctx->c14n == QES_XADES_C14N_INCLUSIVE, digest_write, &d, ctx->errmsg,
	    sizeof(ctx->errmsg))) != 0)
		goto out;
	if (EVP_DigestFinal_ex(d.md, md_out, &len) != 1)
		r = QES_ERR_CRYPTO;
out:
	EVP_MD_CTX_free(d.md);
	return r;
}

/* ---- tree building ---- */

static int
b64(const uint8_t *data, size_t len, char **out)
{
	char *s;

	*out = NULL;
	if (len > MAX_BLOB_BYTES * 4)
		return QES_ERR_LIMIT;
	if ((s = malloc(4 * ((len + 2) / 3) + 1)) == NULL)
		return QES_ERR_ALLOC;
	EVP_EncodeBlock((unsigned char *)s, data, (int)len);
	*out = s;
	return 0;
}

static xmlNodePtr
add(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
	return xmlNewTextChild(parent, ns, (const xmlChar *)name, (const xmlChar *)text);
}

static int
add_b64(xmlNodePtr parent, xmlNsPtr ns, const char *name, const uint8_t *data,
    size_t len, xmlNodePtr *out)
{
	xmlNodePtr n;
	char *s;
	int r;

	if ((r = b64(data, len, &s)) != 0)
		return r;
	n = add(parent, ns, name, s);
	free(s);
	if (n == NULL)
		return QES_ERR_ALLOC;
	if (out != NULL)
		*out = n;
	return 0;
}

static int
set_attr(xmlNodePtr n, const char *name, const char *value)
{
	return xmlSetProp(n, (const xmlChar *)name, (const xmlChar *)value) != NULL ?
	    0 : QES_ERR_ALLOC;
}

static int
add_alg(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *uri,
    xmlNodePtr *out)
{
	xmlNodePtr n;

	if ((n = add(parent, ns, name, NULL)) == NULL)
		return QES_ERR_ALLOC;
	if (out != NULL)
		*out = n;
	return set_attr(n, "Algorithm", uri);
}

/* One field of the Id key: its length (8 bytes, big-endian), then its bytes. */
static int
id_field(EVP_MD_CTX *h, const void *data, uint64_t len)
{
	uint8_t n[8];
	size_t i;

	for (i = 0; i < 8; i++)
		n[i] = (uint8_t)(len >> (56 - 8 * i));
	if (EVP_DigestUpdate(h, n, sizeof(n)) != 1 ||
	    (data != NULL && len > 0 && EVP_DigestUpdate(h, data, (size_t)len) != 1))
		return QES_ERR_CRYPTO;
	return 0;
}

/*
 * The key of the Ids: SHA-256 over the id_seed and every input of the
 * signed data, each field preceded by its length so no two run together.
 */
static int
id_key(qes_xades_ctx *ctx, const qes_xades_params *p, int64_t when)
{
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	const char *seed = p->id_seed != NULL ? p->id_seed : "";
	const uint8_t *der;
	size_t der_len;
	unsigned int len;
	int r = QES_ERR_CRYPTO;

	der = qes_cert_der(p->signer, &der_len);
	if (h == NULL || EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1)
		goto out;
	if ((r = id_field(h, "qes-xades-id", 12)) != 0 ||
	    (r = id_field(h, seed, strlen(seed))) != 0 ||
	    (r = id_field(h, NULL, (uint64_t)when)) != 0 ||
	    (r = id_field(h, NULL, ((uint64_t)p->packaging << 16) |
	    ((uint64_t)p->level << 8) | (uint64_t)p->md)) != 0 ||
	    (r = id_field(h, der, der_len)) != 0 ||
	    (r = id_field(h, p->doc, p->doc != NULL ? p->doc_len : 0)) != 0 ||
	    (r = id_field(h, p->detached_digest, p->detached_digest != NULL ?
	    qes_md_len(p->md) : 0)) != 0 ||
	    (r = id_field(h, p->detached_name, p->detached_name != NULL ?
	    strlen(p->detached_name) : 0)) != 0)
		goto out;
	r = EVP_DigestFinal_ex(h, ctx->id_key, &len) == 1 ? 0 : QES_ERR_CRYPTO;
 out:
	EVP_MD_CTX_free(h);
	return r;
}

/* prefix-<16 hex digits>: the first 8 bytes of SHA-256(key, n, prefix) */
static int
make_id(qes_xades_ctx *ctx, const char *prefix, char *out, size_t outlen)
{
	uint8_t d[32], n[4];
	size_t i, k;

	n[0] = (uint8_t)(ctx->nids >> 24);
	n[1] = (uint8_t)(ctx->nids >> 16);
	n[2] = (uint8_t)(ctx->nids >> 8);
	n[3] = (uint8_t)ctx->nids;
	ctx->nids++;
	{
		EVP_MD_CTX *h = EVP_MD_CTX_new();
		unsigned int len;
		int ok = h != NULL && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
		    EVP_DigestUpdate(h, ctx->id_key, sizeof(ctx->id_key)) == 1 &&
		    EVP_DigestUpdate(h, n, sizeof(n)) == 1 &&
		    EVP_DigestUpdate(h, prefix, strlen(prefix)) == 1 &&
		    EVP_DigestFinal_ex(h, d, &len) == 1;

		EVP_MD_CTX_free(h);
		if (!ok)
			return QES_ERR_CRYPTO;
	}
	k = (size_t)snprintf(out, outlen, "%s-", prefix);
	for (i = 0; i < 8 && k + 2 < outlen; i++, k += 2)
		snprintf(out + k, outlen - k, "%02x", d[i]);
	return 0;
}

/* DER length octets for len, appended to b. */
static int
der_len(qes_buf *b, size_t len)
{
	uint8_t tmp[5];
	size_t n = 0, v = len;

	if (len < 0x80)
		return qes_buf_put_u8(b, (uint8_t)len);
	while (v > 0 && n < 4) {
		tmp[4 - n] = (uint8_t)(v & 0xff);
		v >>= 8;
		n++;
	}
	if (v != 0)
		return QES_ERR_LIMIT;
	tmp[4 - n] = (uint8_t)(0x80 | n);
	return qes_buf_put(b, tmp + 4 - n, n + 1);
}

/*
 * IssuerSerial (RFC 5035) of the certificate, DER: SEQUENCE { GeneralNames
 * { [4] issuer Name }, serialNumber }. OpenSSL 3 keeps ESS_ISSUER_SERIAL
 * opaque, so the two encodings it does give us are wrapped here.
 */
static int
issuer_serial_der(X509 *x, qes_buf *out)
{
	GENERAL_NAMES *gns = NULL;
	GENERAL_NAME *gn = NULL;
	X509_NAME *name = NULL;
	unsigned char *gder = NULL, *sder = NULL;
	int glen, slen, r = QES_ERR_CRYPTO;

	if ((gns = GENERAL_NAMES_new()) == NULL || (gn = GENERAL_NAME_new()) == NULL ||
	    (name = X509_NAME_dup(X509_get_issuer_name(x))) == NULL)
		goto out;
	GENERAL_NAME_set0_value(gn, GEN_DIRNAME, name);
	name = NULL;
	if (!sk_GENERAL_NAME_push(gns, gn))
		goto out;
	gn = NULL;
	if ((glen = i2d_GENERAL_NAMES(gns, &gder)) <= 0 ||
	    (slen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &sder)) <= 0)
		goto out;
	if ((r = qes_buf_put_u8(out, 0x30)) != 0 ||
	    (r = der_len(out, (size_t)glen + (size_t)slen)) != 0 ||
	    (r = qes_buf_put(out, gder, (size_t)glen)) != 0 ||
	    (r = qes_buf_put(out, sder, (size_t)slen)) != 0)
		goto out;
	r = 0;
out:
	OPENSSL_free(gder);
	OPENSSL_free(sder);
	X509_NAME_free(name);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(gns);
	return r;
}

static void
utc_time(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* xades:SignedProperties with SigningTime, SigningCertificateV2, DataObjectFormat. */
static int
build_signed_props(qes_xades_ctx *ctx, const qes_xades_params *p, const char *sp_id,
    const char *ref_id, xmlNodePtr *out)
{
	xmlNsPtr xa = ctx->ns_xades, ds = ctx->ns_ds;
	xmlNodePtr sp, ssp, scv2, cert, cd, sdop, dof;
	uint8_t cdig[QES_MD_MAX_LEN];
	const uint8_t *der;
	size_t der_len;
	qes_buf *is = NULL;
	char when[32], ref[80];
	int r;

	if ((sp = add(ctx->qprops, xa, "SignedProperties", NULL)) == NULL)
		return QES_ERR_ALLOC;
	if ((r = set_attr(sp, "Id", sp_id)) != 0)
		return r;
	if ((ssp = add(sp, xa, "SignedSignatureProperties", NULL)) == NULL)
		return QES_ERR_ALLOC;
	utc_time(ctx->signing_time, when,
	    sizeof(when));
	if (add(ssp, xa, "SigningTime", when) == NULL ||
	    (scv2 = add(ssp, xa, "SigningCertificateV2", NULL)) == NULL ||
	    (cert = add(scv2, xa, "Cert", NULL)) == NULL ||
	    (cd = add(cert, xa, "CertDigest", NULL)) == NULL)
		return QES_ERR_ALLOC;
	der = qes_cert_der(ctx->signer, &der_len);
	if ((r = qes_md_digest(ctx->md, der, der_len, cdig)) != 0 ||
	    (r = add_alg(cd, ds, "DigestMethod", md_uri(ctx->md), NULL)) != 0 ||
	    (r = add_b64(cd, ds, "DigestValue", cdig, qes_md_len(ctx->md), NULL)) != 0)
		return r;
	if ((is = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if ((r = issuer_serial_der(qes_cert_x509(ctx->signer), is)) == 0)
		r = add_b64(cert, xa, "IssuerSerialV2", qes_buf_data(is), qes_buf_len(is),
		    NULL);
	qes_buf_free(is);
	if (r != 0)
		return r;
	if ((sdop = add(sp, xa, "SignedDataObjectProperties", NULL)) == NULL ||
	    (dof = add(sdop, xa, "DataObjectFormat", NULL)) == NULL)
		return QES_ERR_ALLOC;
	snprintf(ref, sizeof(ref), "#%s", ref_id);
	if ((r = set_attr(dof, "ObjectReference", ref)) != 0)
		return r;
	if (add(dof, xa, "MimeType", p->mime_type != NULL ? p->mime_type :
	    p->packaging == QES_XADES_ENVELOPED ? "text/xml" :
	    "application/octet-stream") == NULL)
		return QES_ERR_ALLOC;
	*out = sp;
	return 0;
}

static int
add_reference(qes_xades_ctx *ctx, const char *id, const char *uri, const char *type,
    int enveloped, const uint8_t *digest)
{
	xmlNsPtr ds = ctx->ns_ds;
	xmlNodePtr ref, tr;
	int r;

	if ((ref = add(ctx->signed_info, ds, "Reference", NULL)) == NULL)
		return QES_ERR_ALLOC;
	if ((id != NULL && (r = set_attr(ref, "Id", id)) != 0) ||
	    (type != NULL && (r = set_attr(ref, "Type", type)) != 0) ||
	    (r = set_attr(ref, "URI", uri)) != 0)
		return r;
	if (enveloped >= 0) {
		if ((tr = add(ref, ds, "Transforms", NULL)) == NULL)
			return QES_ERR_ALLOC;
		if (enveloped > 0 &&
		    (r = add_alg(tr, ds, "Transform", URI_ENVELOPED, NULL)) != 0)
			return r;
		if ((r = add_alg(tr, ds, "Transform", c14n_uri(ctx->c14n), NULL)) != 0)
			return r;
	}
	if ((r = add_alg(ref, ds, "DigestMethod", md_uri(ctx->md), NULL)) != 0)
		return r;
	return add_b64(ref, ds, "DigestValue", digest, qes_md_len(ctx->md), NULL);
}

static int
check_params(const qes_xades_params *p, char *errmsg, size_t errlen)
{
	size_t i;

#define BAD(...) do { snprintf(errmsg, errlen, __VA_ARGS__); return QES_ERR_INVALID_ARG; } while (0)
	if (p->signer == NULL)
		BAD("no signer certificate");
	if (md_evp(p->md) == NULL || sig_uri(p->scheme, p->md) == NULL)
		BAD("unknown digest or signature scheme");
	if (!(qes_cert_schemes(p->signer) & (1u << p->scheme)))
		BAD("the certificate's key cannot make %s signatures",
		    qes_sig_scheme_name(p->scheme));
	if (p->level < QES_ADES_B_B || p->level > QES_ADES_B_LTA)
		BAD("unknown level");
	if (p->c14n != QES_XADES_C14N_EXCLUSIVE && p->c14n != QES_XADES_C14N_INCLUSIVE)
		BAD("unknown canonicalisation");
	if (p->level >= QES_ADES_B_T && (p->tsa == NULL || p->tsa->fn == NULL))
		BAD("%s needs a timestamper", qes_ades_level_name(p->level));
	if (p->level >= QES_ADES_B_LT && p->vdata == NULL)
		BAD("%s needs validation data", qes_ades_level_name(p->level));
	if (p->nchain > QES_XADES_MAX_CHAIN || (p->nchain > 0 && p->chain == NULL))
		BAD("at most %d chain certificates", QES_XADES_MAX_CHAIN);
	for (i = 0; i < p->nchain; i++)
		if (p->chain[i].data == NULL || p->chain[i].len == 0 ||
		    p->chain[i].len > MAX_BLOB_BYTES)
			BAD("chain certificate %zu is empty or too large", i);
	if (p->mime_type != NULL && (p->mime_type[0] == '\0' ||
	    strlen(p->mime_type) > MAX_MIME_BYTES))
		BAD("MIME type empty or longer than %d bytes", MAX_MIME_BYTES);
	if (p->packaging == QES_XADES_ENVELOPED) {
		if (p->doc == NULL || p->detached_digest != NULL)
			BAD("enveloped needs the XML document itself");
	} else if (p->packaging == QES_XADES_DETACHED) {
		if (p->detached_name == NULL || p->detached_name[0] == '\0' ||
		    strlen(p->detached_name) > MAX_NAME_BYTES)
			BAD("detached needs a document name of 1..%d bytes", MAX_NAME_BYTES);
		if ((p->doc == NULL) == (p->detached_digest == NULL))
			BAD("detached needs the document or its digest (one of them)");
		if (p->doc == NULL && p->level >= QES_ADES_B_LTA)
			BAD("B-LTA covers the document's bytes: give the document, not its digest");
	} else
		BAD("unknown packaging");
#undef BAD
	return 0;
}

static int
detached_uri(const char *name, char **out)
{
	/* a name is a relative URI reference: escape what URIs do not allow */
	xmlChar *esc = xmlURIEscapeStr((const xmlChar *)name, (const xmlChar *)"/");

	*out = (char *)esc;
	return esc != NULL ? 0 : QES_ERR_ALLOC;
}

int
qes_xades_prepare(const qes_xades_params *p, qes_xades_ctx **out)
{
	qes_xades_ctx *ctx = NULL;
	xmlNodePtr root, obj, sp, kinfo, x509d;
	uint8_t dig[QES_MD_MAX_LEN];
	char sig_id[40], sp_id[40], ref_id[40], sv_id[40], sp_uri[48];
	char *uri = NULL;
	const uint8_t *der;
	size_t i, der_len;
	int r;

	if (out == NULL || p == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return QES_ERR_ALLOC;
	/* from here on the caller gets the context even on failure, for the reason */
	*out = ctx;
	if ((r = check_params(p, ctx->errmsg, sizeof(ctx->errmsg))) != 0)
		return r;
	ctx->signer = p->signer;
	ctx->scheme = p->scheme;
	ctx->md = p->md;
	ctx->c14n = p->c14n;
	ctx->level = p->level;
	ctx->tsa = p->tsa;
	ctx->vdata = p->vdata;
	ctx->tsa_vdata = p->tsa_vdata;
	ctx->signing_time = p->signing_time != 0 ? p->signing_time : (int64_t)time(NULL);
	if ((r = id_key(ctx, p, ctx->signing_time)) != 0)
		goto out;
	if (p->level >= QES_ADES_B_LTA) {
		if ((ctx->archive = EVP_MD_CTX_new()) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		if (EVP_DigestInit_ex(ctx->archive, md_evp(p->md), NULL) != 1) {
			r = QES_ERR_CRYPTO;
			goto out;
		}
	}

	if (p->packaging == QES_XADES_ENVELOPED) {
		if ((r = qes_xml_parse(p->doc, p->doc_len, &ctx->doc, ctx->errmsg,
		    sizeof(ctx->errmsg))) != 0)
			goto out;
		root = xmlDocGetRootElement(ctx->doc);
		if ((ctx->sig = xmlNewChild(root, NULL, (const xmlChar *)"Signature",
		    NULL)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
	} else {
		xmlInitParser();
		if ((ctx->doc = xmlNewDoc((const xmlChar *)"1.0")) == NULL ||
		    (ctx->sig = xmlNewDocNode(ctx->doc, NULL, (const xmlChar *)"Signature",
		    NULL)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		xmlDocSetRootElement(ctx->doc, ctx->sig);
	}
	if ((ctx->ns_ds = xmlNewNs(ctx->sig, (const xmlChar *)NS_DS,
	    (const xmlChar *)"ds")) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	xmlSetNs(ctx->sig, ctx->ns_ds);
	if ((r = make_id(ctx, "S", sig_id, sizeof(sig_id))) != 0 ||
	    (r = make_id(ctx, "SP", sp_id, sizeof(sp_id))) != 0 ||
	    (r = make_id(ctx, "R", ref_id, sizeof(ref_id))) != 0 ||
	    (r = make_id(ctx, "SV", sv_id, sizeof(sv_id))) != 0 ||
	    (r = set_attr(ctx->sig, "Id", sig_id)) != 0)
		goto out;

	r = QES_ERR_ALLOC;
	if ((ctx->signed_info = add(ctx->sig, ctx->ns_ds, "SignedInfo", NULL)) == NULL ||
	    (ctx->sigvalue = add(ctx->sig, ctx->ns_ds, "SignatureValue", NULL)) == NULL ||
	    (kinfo = add(ctx->sig, ctx->ns_ds, "KeyInfo", NULL)) == NULL ||
	    (x509d = add(kinfo, ctx->ns_ds, "X509Data", NULL)) == NULL ||
	    (obj = add(ctx->sig, ctx->ns_ds, "Object", NULL)) == NULL ||
	    (ctx->qprops = add(obj, NULL, "QualifyingProperties", NULL)) == NULL ||
	    (ctx->ns_xades = xmlNewNs(ctx->qprops, (const xmlChar *)NS_XADES,
	    (const xmlChar *)"xades")) == NULL)
		goto out;
	ctx->keyinfo = kinfo;
	xmlSetNs(ctx->qprops, ctx->ns_xades);
	snprintf(sp_uri, sizeof(sp_uri), "#%s", sig_id);
	if ((r = set_attr(ctx->qprops, "Target", sp_uri)) != 0 ||
	    (r = set_attr(ctx->sigvalue, "Id", sv_id)) != 0)
		goto out;
	if ((r = add_alg(ctx->signed_info, ctx->ns_ds, "CanonicalizationMethod",
	    c14n_uri(ctx->c14n), NULL)) != 0 ||
	    (r = add_alg(ctx->signed_info, ctx->ns_ds, "SignatureMethod",
	    sig_uri(ctx->scheme, ctx->md), NULL)) != 0)
		goto out;

	der = qes_cert_der(ctx->signer, &der_len);
	if ((r = add_b64(x509d, ctx->ns_ds, "X509Certificate", der, der_len, NULL)) != 0)
		goto out;
	for (i = 0; i < p->nchain; i++)
		if ((r = add_b64(x509d, ctx->ns_ds, "X509Certificate", p->chain[i].data,
		    p->chain[i].len, NULL)) != 0)
			goto out;
	if ((r = build_signed_props(ctx, p, sp_id, ref_id, &sp)) != 0)
		goto out;

	/* the document reference, then the SignedProperties one */
	if (p->packaging == QES_XADES_ENVELOPED) {
		if ((r = c14n_digest(ctx, ctx->sig, 1, dig, ctx->archive)) != 0)
			goto out;
		r = add_reference(ctx, ref_id, "", NULL, 1, dig);
	} else {
		if (p->doc != NULL) {
			if ((r = qes_md_digest(ctx->md, p->doc, p->doc_len, dig)) != 0)
				goto out;
			if (ctx->archive != NULL && p->doc_len > 0 &&
			    EVP_DigestUpdate(ctx->archive, p->doc, p->doc_len) != 1) {
				r = QES_ERR_CRYPTO;
				goto out;
			}
		} else
			memcpy(dig, p->detached_digest, qes_md_len(ctx->md));
		if ((r = detached_uri(p->detached_name, &uri)) != 0)
			goto out;
		r = add_reference(ctx, ref_id, uri, NULL, -1, dig);
	}
	if (r != 0)
		goto out;
	snprintf(sp_uri, sizeof(sp_uri), "#%s", sp_id);
	if ((r = c14n_digest(ctx, sp, 0, dig, ctx->archive)) != 0 ||
	    (r = add_reference(ctx, NULL, sp_uri, URI_SIGNED_PROPS, 0, dig)) != 0)
		goto out;

	if ((r = c14n_digest(ctx, ctx->signed_info, 0, ctx->tbs, NULL)) != 0)
		goto out;
	ctx->tbs_len = qes_md_len(ctx->md);
	r = 0;
out:
	xmlFree(uri);
	if (r != 0 && ctx->errmsg[0] == '\0')
		fail(ctx, r, "%s", qes_strerror(r));
	return r;
}

int
qes_xades_tbs(const qes_xades_ctx *ctx, const uint8_t **digest, size_t *digest_len,
    qes_md *md, qes_sig_scheme *scheme)
{
	if (ctx == NULL || digest == NULL || digest_len == NULL || md == NULL ||
	    scheme == NULL || ctx->tbs_len == 0)
		return QES_ERR_INVALID_ARG;
	*digest = ctx->tbs;
	*digest_len = ctx->tbs_len;
	*md = ctx->md;
	*scheme = ctx->scheme;
	return 0;
}

/* ---- unsigned properties ---- */

static int
add_timestamp(qes_xades_ctx *ctx, xmlNodePtr parent, xmlNsPtr ns, const char *name,
    const uint8_t *imprint)
{
	xmlNodePtr ts;
	qes_buf *tok = NULL;
	char id[40], err[200];
	int r;

	err[0] = '\0';
	if ((tok = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	qes_buf_set_max(tok, MAX_BLOB_BYTES);
	r = ctx->tsa->fn(ctx->tsa->arg, ctx->md, imprint, qes_md_len(ctx->md), tok,
	    err, sizeof(err));
	if (r != 0) {
		fail(ctx, r, "timestamp for %s: %s", name, err[0] != '\0' ? err :
		    qes_strerror(r));
		goto out;
	}
	if (qes_buf_len(tok) == 0) {
		r = fail(ctx, QES_ERR_TIMESTAMP, "the timestamper returned no token");
		goto out;
	}
	r = QES_ERR_ALLOC;
	if ((ts = add(parent, ns, name, NULL)) == NULL)
		goto out;
	if ((r = make_id(ctx, "TS", id, sizeof(id))) != 0 ||
	    (r = set_attr(ts, "Id", id)) != 0 ||
	    (r = add_alg(ts, ctx->ns_ds, "CanonicalizationMethod", c14n_uri(ctx->c14n),
	    NULL)) != 0 ||
	    (r = add_b64(ts, ctx->ns_xades, "EncapsulatedTimeStamp", qes_buf_data(tok),
	    qes_buf_len(tok), NULL)) != 0)
		goto out;
out:
	qes_buf_free(tok);
	return r;
}

static int
check_vdata(qes_xades_ctx *ctx, const qes_ades_vdata *v)
{
	const struct {
		const qes_ades_blob *b;
		size_t n;
	} lists[3] = { { v->certs, v->ncerts }, { v->ocsps, v->nocsps },
	    { v->crls, v->ncrls } };
	size_t i, j;

	for (i = 0; i < 3; i++) {
		if (lists[i].n > MAX_VDATA_ITEMS)
			return fail(ctx, QES_ERR_LIMIT, "more than %d validation items",
			    MAX_VDATA_ITEMS);
		if (lists[i].n > 0 && lists[i].b == NULL)
			return fail(ctx, QES_ERR_INVALID_ARG, "validation data list is NULL");
		for (j = 0; j < lists[i].n; j++)
			if (lists[i].b[j].data == NULL || lists[i].b[j].len == 0 ||
			    lists[i].b[j].len > MAX_BLOB_BYTES)
				return fail(ctx, QES_ERR_INVALID_ARG,
				    "validation item empty or larger than %zu bytes",
				    MAX_BLOB_BYTES);
	}
	return 0;
}

/* xades:CertificateValues and xades:RevocationValues (each only when non-empty). */
static int
add_values(qes_xades_ctx *ctx, xmlNodePtr parent, const qes_ades_vdata *v)
{
	xmlNsPtr xa = ctx->ns_xades;
	xmlNodePtr cv, rv, list;
	size_t i;
	int r;

	if ((r = check_vdata(ctx, v)) != 0)
		return r;
	if (v->ncerts > 0) {
		if ((cv = add(parent, xa, "CertificateValues", NULL)) == NULL)
			return QES_ERR_ALLOC;
		for (i = 0; i < v->ncerts; i++)
			if ((r = add_b64(cv, xa, "EncapsulatedX509Certificate",
			    v->certs[i].data, v->certs[i].len, NULL)) != 0)
				return r;
	}
	if (v->nocsps + v->ncrls == 0)
		return 0;
	if ((rv = add(parent, xa, "RevocationValues", NULL)) == NULL)
		return QES_ERR_ALLOC;
	if (v->ncrls > 0) {
		if ((list = add(rv, xa, "CRLValues", NULL)) == NULL)
			return QES_ERR_ALLOC;
		for (i = 0; i < v->ncrls; i++)
			if ((r = add_b64(list, xa, "EncapsulatedCRLValue", v->crls[i].data,
			    v->crls[i].len, NULL)) != 0)
				return r;
	}
	if (v->nocsps > 0) {
		if ((list = add(rv, xa, "OCSPValues", NULL)) == NULL)
			return QES_ERR_ALLOC;
		for (i = 0; i < v->nocsps; i++)
			if ((r = add_b64(list, xa, "EncapsulatedOCSPValue", v->ocsps[i].data,
			    v->ocsps[i].len, NULL)) != 0)
				return r;
	}
	return 0;
}

static int
archive_add(qes_xades_ctx *ctx, xmlNodePtr n)
{
	uint8_t ignored[QES_MD_MAX_LEN];

	return c14n_digest(ctx, n, 0, ignored, ctx->archive);
}

static int archive_fold(qes_xades_ctx *ctx, xmlNodePtr usp, uint8_t *imprint,
    unsigned int *len);

/* EN 319 132-1 clause 5.5.2: what xades141:ArchiveTimeStamp's imprint covers. */
static int
archive_imprint(qes_xades_ctx *ctx, xmlNodePtr usp, uint8_t *imprint)
{
	EVP_MD_CTX *refs = ctx->archive;
	unsigned int len;
	int r;

	/* work on a copy: a failed finish may be retried with the references intact */
	if ((ctx->archive = EVP_MD_CTX_new()) == NULL) {
		ctx->archive = refs;
		return QES_ERR_ALLOC;
	}
	if (EVP_MD_CTX_copy_ex(ctx->archive, refs) != 1) {
		EVP_MD_CTX_free(ctx->archive);
		ctx->archive = refs;
		return QES_ERR_CRYPTO;
	}
	r = archive_fold(ctx, usp, imprint, &len);
	EVP_MD_CTX_free(ctx->archive);
	ctx->archive = refs;
	return r;
}

static int
archive_fold(qes_xades_ctx *ctx, xmlNodePtr usp, uint8_t *imprint, unsigned int *len)
{
	xmlNodePtr n;
	int r;

	if ((r = archive_add(ctx, ctx->signed_info)) != 0 ||
	    (r = archive_add(ctx, ctx->sigvalue)) != 0 ||
	    (r = archive_add(ctx, ctx->keyinfo)) != 0)
		return r;
	for (n = usp->children; n != NULL; n = n->next)
		if (n->type == XML_ELEMENT_NODE && (r = archive_add(ctx, n)) != 0)
			return r;
	if (EVP_DigestFinal_ex(ctx->archive, imprint, len) != 1)
		return QES_ERR_CRYPTO;
	return 0;
}

static int
add_unsigned(qes_xades_ctx *ctx)
{
	xmlNodePtr up, usp, tvd;
	xmlNsPtr x141 = NULL;
	uint8_t imprint[QES_MD_MAX_LEN];
	int r;

	if ((up = add(ctx->qprops, ctx->ns_xades, "UnsignedProperties", NULL)) == NULL)
		return QES_ERR_ALLOC;
	ctx->unsigned_props = up;
	if ((usp = add(up, ctx->ns_xades, "UnsignedSignatureProperties", NULL)) == NULL)
		return QES_ERR_ALLOC;
	if (ctx->level >= QES_ADES_B_LT || ctx->tsa_vdata != NULL) {
		if ((x141 = xmlNewNs(usp, (const xmlChar *)NS_XADES141,
		    (const xmlChar *)"xades141")) == NULL)
			return QES_ERR_ALLOC;
	}
	if ((r = c14n_digest(ctx, ctx->sigvalue, 0, imprint, NULL)) != 0 ||
	    (r = add_timestamp(ctx, usp, ctx->ns_xades, "SignatureTimeStamp", imprint)) != 0)
		return r;
	if (ctx->level < QES_ADES_B_LT)
		return 0;
	if ((r = add_values(ctx, usp, ctx->vdata)) != 0)
		return r;
	if (ctx->tsa_vdata != NULL) {
		if ((tvd = add(usp, x141, "TimeStampValidationData", NULL)) == NULL)
			return QES_ERR_ALLOC;
		if ((r = add_values(ctx, tvd, ctx->tsa_vdata)) != 0)
			return r;
	}
	if (ctx->level < QES_ADES_B_LTA)
		return 0;
	if ((r = archive_imprint(ctx, usp, imprint)) != 0)
		return r;
	return add_timestamp(ctx, usp, x141, "ArchiveTimeStamp", imprint);
}

int
qes_xades_finish(qes_xades_ctx *ctx, const uint8_t *sig, size_t sig_len, qes_buf *out)
{
	const qes_cert_info *ci;
	qes_buf *raw = NULL;
	xmlChar *mem = NULL;
	int r, mem_len = 0;

	if (ctx == NULL || sig == NULL || sig_len == 0 || out == NULL)
		return QES_ERR_INVALID_ARG;
	if (ctx->tbs_len == 0)
		return fail(ctx, QES_ERR_INVALID_ARG, "prepare did not succeed");
	if (ctx->finished)
		return fail(ctx, QES_ERR_INVALID_ARG, "the signature is already finished");
	if (sig_len > 1024)
		return fail(ctx, QES_ERR_SIGNATURE_INVALID, "signature value of %zu bytes",
		    sig_len);
	if ((r = qes_cert_verify_digest(ctx->signer, ctx->scheme, ctx->md, ctx->tbs,
	    ctx->tbs_len, sig, sig_len)) != 0)
		return fail(ctx, QES_ERR_SIGNATURE_INVALID,
		    "the signature value does not verify with the signer's certificate");
	ctx->finished = 1;
	if ((raw = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	if (ctx->scheme == QES_SIG_ECDSA) {
		/* XML DSig wants r||s, each as wide as the curve's order */
		ci = qes_cert_get_info(ctx->signer);
		if (sig_len == 2 * (((size_t)ci->key_bits + 7) / 8))
			r = qes_buf_put(raw, sig, sig_len);
		else
			r = qes_ecdsa_der_to_raw(sig, sig_len, ((size_t)ci->key_bits + 7) / 8,
			    raw);
	} else
		r = qes_buf_put(raw, sig, sig_len);
	if (r != 0)
		goto out;
	{
		char *s;

		if ((r = b64(qes_buf_data(raw), qes_buf_len(raw), &s)) != 0)
			goto out;
		xmlNodeSetContent(ctx->sigvalue, (const xmlChar *)s);
		free(s);
	}
	if (ctx->level >= QES_ADES_B_T && (r = add_unsigned(ctx)) != 0) {
		/* a TSA hiccup must not cost the signer's value: finish may be retried */
		if (ctx->unsigned_props != NULL) {
			xmlUnlinkNode(ctx->unsigned_props);
			xmlFreeNode(ctx->unsigned_props);
			ctx->unsigned_props = NULL;
		}
		ctx->finished = 0;
		goto out;
	}
	xmlDocDumpMemoryEnc(ctx->doc, &mem, &mem_len, "UTF-8");
	if (mem == NULL || mem_len <= 0) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	r = qes_buf_put(out, mem, (size_t)mem_len);
out:
	xmlFree(mem);
	qes_buf_free(raw);
	return r;
}

const char *
qes_xades_errmsg(const qes_xades_ctx *ctx)
{
	return ctx != NULL ? ctx->errmsg : "";
}

void
qes_xades_free(qes_xades_ctx *ctx)
{
	if (ctx == NULL)
		return;
	xmlFreeDoc(ctx->doc);
	EVP_MD_CTX_free(ctx->archive);
	free(ctx);
}
