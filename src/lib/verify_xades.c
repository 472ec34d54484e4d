/*
 * verify_xades.c - qes verify's reading of XAdES: xmlsec1 verifies every
 * ds:Signature (each Reference's digest, then SignatureValue over the
 * canonical SignedInfo with the key of the certificate in KeyInfo); the
 * qualifying properties are read here (SigningTime, SignatureTimeStamp,
 * CertificateValues, RevocationValues, ArchiveTimeStamp).
 *
 * What xmlsec1 may dereference is closed down: same-document and empty
 * URIs, and - only when the caller names a detached content file - local
 * URIs, all of which our own input callbacks answer with that one file.
 * Nothing is fetched and no other file is opened: libxml2's and xmlsec1's
 * default callbacks are unregistered while a verification runs (they are
 * process-wide, hence the mutex).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/io.h>
#include <xmlsec/keysmngr.h>
#include <xmlsec/version.h>
#include <xmlsec/openssl/x509.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#include "qes/err.h"
#include "verify_priv.h"
#include "xml_priv.h"

#define NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define URI_C14N "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"

static pthread_mutex_t xs_lock = PTHREAD_MUTEX_INITIALIZER;
static int xs_ready;
static const char *xs_content;	/* the detached file, under xs_lock */
static int xs_detached;		/* a non-fragment URI was refused */
static char xs_last[160];	/* xmlsec1's last error, under xs_lock */
static char xs_href[128];	/* an algorithm it does not know, under xs_lock */

/* xmlsec1 reports to stderr by default; keep the reason for the report */
static void
xs_errors(const char *file, int line, const char *func, const char *obj,
    const char *subj, int reason, const char *msg)
{
	(void)file;
	(void)line;
	(void)obj;
	if (reason == XMLSEC_ERRORS_R_INVALID_URI_TYPE)
		xs_detached = 1;
	if (func != NULL && strcmp(func, "xmlSecTransformNodeRead") == 0 &&
	    msg != NULL && strncmp(msg, "href=", 5) == 0 && xs_href[0] == '\0')
		snprintf(xs_href, sizeof(xs_href), "%s", msg + 5);
	if (xs_last[0] == '\0')
		snprintf(xs_last, sizeof(xs_last), "%s%s%s", subj != NULL &&
		    strcmp(subj, "unknown") != 0 ? subj : "", subj != NULL &&
		    strcmp(subj, "unknown") != 0 ? ": " : "",
		    msg != NULL ? msg : "?");
}

static int
io_match(const char *uri)
{
	(void)uri;
	return 1;	/* every URI xmlsec1 is allowed to open is ours */
}

static void *
io_open(const char *uri)
{
	(void)uri;
	return xs_content != NULL ? fopen(xs_content, "rb") : NULL;
}

static int
io_read(void *ctx, char *buf, int len)
{
	size_t n = fread(buf, 1, len > 0 ? (size_t)len : 0, ctx);

	return ferror((FILE *)ctx) ? -1 : (int)n;
}

static int
io_close(void *ctx)
{
	return fclose(ctx) == 0 ? 0 : -1;
}

static int
xs_init(void)
{
	if (xs_ready)
		return 0;
	if (xmlSecInit() < 0 || xmlSecCryptoAppInit(NULL) < 0 || xmlSecCryptoInit() < 0)
		return QES_ERR_CRYPTO;
	xmlSecIOCleanupCallbacks();
	if (xmlSecIORegisterCallbacks(io_match, io_open, io_read, io_close) < 0)
		return QES_ERR_CRYPTO;
	xmlSecErrorsSetCallback(xs_errors);
	xs_ready = 1;
	return 0;
}

static int
is_el(const xmlNode *n, const char *name)
{
	return n != NULL && n->type == XML_ELEMENT_NODE &&
	    xmlStrEqual(n->name, (const xmlChar *)name);
}

/* First descendant element (depth-first, bounded by the parser's limits)
 * with that local name. */
static xmlNodePtr
find(xmlNodePtr top, const char *name)
{
	xmlNodePtr c, f;

	for (c = top != NULL ? top->children : NULL; c != NULL; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (is_el(c, name))
			return c;
		if ((f = find(c, name)) != NULL)
			return f;
	}
	return NULL;
}

static size_t
count(xmlNodePtr top, const char *name)
{
	xmlNodePtr c;
	size_t n = 0;

	for (c = top != NULL ? top->children : NULL; c != NULL; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			n += (is_el(c, name) ? 1 : 0) + count(c, name);
	return n;
}

/* base64 element content (whitespace dropped) appended to out */
static int
node_b64(xmlNodePtr n, qes_buf *out)
{
	xmlChar *t = xmlNodeGetContent(n);
	size_t i, o = 0;
	int r;

	if (t == NULL)
		return QES_ERR_FORMAT;
	for (i = 0; t[i] != 0; i++)
		if (t[i] != ' ' && t[i] != '\n' && t[i] != '\r' && t[i] != '\t')
			t[o++] = t[i];
	r = verify_b64_decode((const char *)t, o, out);
	xmlFree(t);
	return r;
}

static int
md_sink(void *arg, const uint8_t *data, size_t len)
{
	return EVP_DigestUpdate(arg, data, len) == 1 ? 0 : QES_ERR_CRYPTO;
}

/* The signature timestamp: its token, and md(C14N(ds:SignatureValue)). */
static void
read_timestamp(xmlDocPtr doc, xmlNodePtr sig, xmlNodePtr sts, qes_verify_report *r)
{
	xmlNodePtr enc = find(sts, "EncapsulatedTimeStamp"), cm, sv;
	xmlChar *alg = NULL;
	EVP_MD_CTX *c = NULL;
	const EVP_MD *evp;
	char err[128];
	int inclusive = 0;

	if (enc == NULL || (r->ts_token = qes_buf_new()) == NULL ||
	    node_b64(enc, r->ts_token) != 0 ||
	    verify_ts_digest(r, (const uint8_t *)"", 0) != 0)
		return;		/* ts_md stays 0: the caller reports it unreadable */
	if ((cm = find(sts, "CanonicalizationMethod")) != NULL &&
	    (alg = xmlGetProp(cm, (const xmlChar *)"Algorithm")) != NULL)
		inclusive = xmlStrEqual(alg, (const xmlChar *)URI_C14N);
	xmlFree(alg);
	sv = find(sig, "SignatureValue");
	if (sv == NULL || (evp = EVP_get_digestbyname(qes_md_name(r->ts_md))) == NULL ||
	    (c = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(c, evp, NULL) != 1 ||
	    qes_xml_c14n(doc, sv, 0, inclusive, md_sink, c, err, sizeof(err)) != 0 ||
	    EVP_DigestFinal_ex(c, r->ts_digest, NULL) != 1)
		r->ts_md = (qes_md)0;
	EVP_MD_CTX_free(c);
}

static void
read_props(xmlDocPtr doc, xmlNodePtr sig, qes_verify_report *r)
{
	xmlNodePtr n, cv, rv, sts;
	xmlChar *t;

	if ((n = find(sig, "SigningTime")) != NULL && (t = xmlNodeGetContent(n)) != NULL) {
		snprintf(r->signing_time, sizeof(r->signing_time), "%s", (const char *)t);
		xmlFree(t);
	}
	r->level = QES_ADES_B_B;
	if ((sts = find(sig, "SignatureTimeStamp")) != NULL) {
		r->level = QES_ADES_B_T;
		read_timestamp(doc, sig, sts, r);
	}
	if ((cv = find(sig, "CertificateValues")) != NULL)
		r->vd_certs = count(cv, "EncapsulatedX509Certificate");
	if ((rv = find(sig, "RevocationValues")) != NULL) {
		r->vd_crls = count(rv, "EncapsulatedCRLValue");
		r->vd_ocsps = count(rv, "EncapsulatedOCSPValue");
	}
	r->has_archive_ts = find(sig, "ArchiveTimeStamp") != NULL;
	if (r->level == QES_ADES_B_T && (cv != NULL || rv != NULL))
		r->level = QES_ADES_B_LT;
	if (r->level == QES_ADES_B_LT && r->has_archive_ts)
		r->level = QES_ADES_B_LTA;
}

/* Certificates of KeyInfo, the one whose key xmlsec1 used first. */
static int
read_certs(xmlNodePtr sig, xmlSecKeyPtr key, qes_verify_report *r)
{
	xmlNodePtr ki = find(sig, "KeyInfo"), c;
	xmlSecKeyDataPtr xd;
	X509 *x = NULL;
	unsigned char *der = NULL;
	qes_buf *b;
	int n = 0, e = 0;

	if (key != NULL && (xd = xmlSecKeyGetData(key, xmlSecOpenSSLKeyDataX509Id)) != NULL &&
	    (x = xmlSecOpenSSLKeyDataX509GetKeyCert(xd)) != NULL &&
	    (n = i2d_X509(x, &der)) > 0) {
		e = verify_add_cert(r, der, (size_t)n);
		r->signer_found = e == 0;
	}
	if ((b = qes_buf_new()) == NULL)
		e = QES_ERR_ALLOC;
	for (c = ki; c != NULL && e == 0 && (c = find(c, "X509Data")) != NULL; c = NULL) {
		xmlNodePtr k;

		for (k = c->children; k != NULL && e == 0; k = k->next) {
			if (!is_el(k, "X509Certificate"))
				continue;
			qes_buf_reset(b);
			if (node_b64(k, b) != 0)
				continue;
			if (der != NULL && (size_t)n == qes_buf_len(b) &&
			    memcmp(der, qes_buf_data(b), qes_buf_len(b)) == 0)
				continue;	/* the signer's, already first */
			e = verify_add_cert(r, qes_buf_data(b), qes_buf_len(b));
		}
	}
	OPENSSL_free(der);
	qes_buf_free(b);
	return e;
}

static void
explain(xmlSecDSigCtxPtr d, qes_verify_report *r)
{
	xmlSecSize i, n = xmlSecPtrListGetSize(&d->signedInfoReferences);

	for (i = 0; i < n; i++) {
		xmlSecDSigReferenceCtxPtr ref = xmlSecPtrListGetItem(&d->signedInfoReferences, i);

		if (ref != NULL && ref->status != xmlSecDSigStatusSucceeded) {
			verify_fail(r, "ds:Reference URI=\"%.100s\": the digest of what it "
			    "covers does not match", ref->uri != NULL ?
			    (const char *)ref->uri : "");
			return;
		}
	}
	verify_fail(r, "ds:SignatureValue does not verify over the canonical ds:SignedInfo");
}

/*
 * Only what XAdES baseline signatures use: canonicalisation, the enveloped
 * transform, SHA-2 digests, RSA and ECDSA with SHA-2. XSLT, XPath and
 * everything else that could reach outside the document is refused.
 */
static int
allow_transforms(xmlSecDSigCtxPtr d)
{
	const xmlSecTransformId common[] = {
		xmlSecTransformInclC14NId, xmlSecTransformInclC14NWithCommentsId,
		xmlSecTransformInclC14N11Id, xmlSecTransformInclC14N11WithCommentsId,
		xmlSecTransformExclC14NId, xmlSecTransformExclC14NWithCommentsId,
		xmlSecTransformSha256Id, xmlSecTransformSha384Id, xmlSecTransformSha512Id,
	};
	const xmlSecTransformId sigs[] = {
		xmlSecTransformRsaSha256Id, xmlSecTransformRsaSha384Id,
		xmlSecTransformRsaSha512Id, xmlSecTransformEcdsaSha256Id,
		xmlSecTransformEcdsaSha384Id, xmlSecTransformEcdsaSha512Id,
	};
	size_t i;

	for (i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		if (xmlSecDSigCtxEnableReferenceTransform(d, common[i]) < 0 ||
		    xmlSecDSigCtxEnableSignatureTransform(d, common[i]) < 0)
			return QES_ERR_CRYPTO;
	if (xmlSecDSigCtxEnableReferenceTransform(d, xmlSecTransformEnvelopedId) < 0)
		return QES_ERR_CRYPTO;
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (xmlSecDSigCtxEnableSignatureTransform(d, sigs[i]) < 0)
			return QES_ERR_CRYPTO;
	return 0;
}

static int
verify_one(xmlDocPtr doc, xmlNodePtr sig, const char *content_path,
    qes_verify_report *r)
{
	xmlSecKeysMngrPtr mngr = NULL;
	xmlSecDSigCtxPtr d = NULL;
	xmlChar *id;
	int e = 0;

	r->format = QES_ADES_XADES;
	if ((id = xmlGetProp(sig, (const xmlChar *)"Id")) != NULL) {
		snprintf(r->name, sizeof(r->name), "%s", (const char *)id);
		xmlFree(id);
	}
	read_props(doc, sig, r);
	xs_last[0] = '\0';
	xs_href[0] = '\0';
	xs_detached = 0;
	if ((mngr = xmlSecKeysMngrCreate()) == NULL ||
	    xmlSecCryptoAppDefaultKeysMngrInit(mngr) < 0 ||
	    (d = xmlSecDSigCtxCreate(mngr)) == NULL) {
		e = QES_ERR_CRYPTO;
		goto out;
	}
	if ((e = allow_transforms(d)) != 0)
		goto out;
	/* the chain is the caller's check, against its own trust anchors */
	d->keyInfoReadCtx.flags |= XMLSEC_KEYINFO_FLAGS_X509DATA_DONT_VERIFY_CERTS;
	/* any non-fragment URI (xmlsec1 calls a bare name "remote") is answered
	 * by io_open with the content file, or not at all */
	d->enabledReferenceUris = xmlSecTransformUriTypeEmpty |
	    xmlSecTransformUriTypeSameDocument |
	    (content_path != NULL ? xmlSecTransformUriTypeLocal |
	    xmlSecTransformUriTypeRemote : 0);
	if (xmlSecDSigCtxVerify(d, sig) < 0) {
		if (xs_detached && content_path == NULL) {
			r->needs_content = 1;
			verify_fail(r, "detached signature: the signed content is needed "
			    "(--content)");
		} else if (xs_href[0] != '\0') {
			r->unsupported = 1;
			verify_fail(r, "xmlsec1 %s does not support the algorithm %s",
			    XMLSEC_VERSION, xs_href);
		} else {
			verify_fail(r, "xmlsec1 could not process the signature: %s",
			    xs_last[0] != '\0' ? xs_last : "no reason given");
		}
	} else if (d->status != xmlSecDSigStatusSucceeded) {
		explain(d, r);
	}
	if (d->signMethod != NULL && d->signMethod->id != NULL &&
	    d->signMethod->id->href != NULL) {
		const char *h = (const char *)d->signMethod->id->href, *p = strrchr(h, '#');

		snprintf(r->algorithm, sizeof(r->algorithm), "%s", p != NULL ? p + 1 : h);
	}
	e = read_certs(sig, d->signKey, r);
out:
	if (d != NULL)
		xmlSecDSigCtxDestroy(d);
	if (mngr != NULL)
		xmlSecKeysMngrDestroy(mngr);
	return e;
}

static int
collect(xmlNodePtr top, xmlNodePtr *sigs, size_t *n)
{
	xmlNodePtr c;
	int e;

	for (c = top->children; c != NULL; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (is_el(c, "Signature") && c->ns != NULL &&
		    xmlStrEqual(c->ns->href, (const xmlChar *)NS_DS)) {
			if (*n >= QES_VERIFY_MAX_SIGS)
				return QES_ERR_LIMIT;
			sigs[(*n)++] = c;
			continue;	/* no signatures inside signatures */
		}
		if ((e = collect(c, sigs, n)) != 0)
			return e;
	}
	return 0;
}

int
qes_verify_xades(const uint8_t *doc, size_t len, const char *content_path,
    qes_verify_report **out, size_t *n, char *err, size_t errlen)
{
	static const xmlChar *ids[] = { (const xmlChar *)"Id", (const xmlChar *)"ID",
	    (const xmlChar *)"id", NULL };
	xmlDocPtr x = NULL;
	xmlNodePtr sigs[QES_VERIFY_MAX_SIGS], root;
	qes_verify_report *arr = NULL, *r;
	size_t nsig = 0, cnt = 0, i;
	int e;

	if (doc == NULL || out == NULL || n == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	*n = 0;
	if ((e = qes_xml_parse(doc, len, &x, err, errlen)) != 0)
		return e;
	if ((root = xmlDocGetRootElement(x)) == NULL) {
		xmlFreeDoc(x);
		return QES_ERR_XML_MALFORMED;
	}
	if (is_el(root, "Signature") && root->ns != NULL &&
	    xmlStrEqual(root->ns->href, (const xmlChar *)NS_DS))
		sigs[nsig++] = root;
	else if ((e = collect(root, sigs, &nsig)) != 0) {
		snprintf(err, errlen, "more than %d ds:Signature elements", QES_VERIFY_MAX_SIGS);
		xmlFreeDoc(x);
		return e;
	}
	if (nsig == 0) {
		snprintf(err, errlen, "no ds:Signature element in the document");
		xmlFreeDoc(x);
		return QES_ERR_NOT_FOUND;
	}
	xmlSecAddIDs(x, root, ids);
	pthread_mutex_lock(&xs_lock);
	if ((e = xs_init()) != 0)
		snprintf(err, errlen, "xmlsec1 could not be initialised");
	xs_content = content_path;
	for (i = 0; i < nsig && e == 0; i++)
		if ((e = verify_push(&arr, &cnt, &r)) == 0)
			e = verify_one(x, sigs[i], content_path, r);
	xs_content = NULL;
	pthread_mutex_unlock(&xs_lock);
	xmlFreeDoc(x);
	if (e != 0) {
		verify_free_all(arr, cnt);
		return e;
	}
	*out = arr;
	*n = cnt;
	return 0;
}
