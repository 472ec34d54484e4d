/*
 * test_xades.c - XAdES two-phase signing (src/lib/xades.c) with the test
 * PKI's software keys standing in for a token.
 *
 * Every signature is checked here independently of xades.c's own
 * canonicalisation code: the output is parsed again and the signed parts
 * are canonicalised through XPath node sets (the XML DSig way, with
 * libxml2's xmlC14NDocSaveTo), then digests and the signature value are
 * verified with OpenSSL. xmlsec1 judges the same outputs in the
 * integration test tests/integration/xades_jades.sh.
 */
#define _GNU_SOURCE	/* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>

#include "qes/cert.h"
#include "qes/err.h"
#include "qes/xades.h"
#include "testtsa.h"

static testades fx;

static int
group_setup(void **state)
{
	(void)state;
	return testades_setup(&fx);
}

static int
group_teardown(void **state)
{
	(void)state;
	testades_teardown(&fx);
	return 0;
}

/* ---- independent checks on the output ---- */

static xmlDocPtr
reparse(const qes_buf *out)
{
	xmlDocPtr d = xmlReadMemory((const char *)qes_buf_data(out), (int)qes_buf_len(out),
	    NULL, NULL, XML_PARSE_NONET);

	assert_non_null(d);
	return d;
}

static xmlXPathObjectPtr
xpath(xmlDocPtr d, const char *expr)
{
	xmlXPathContextPtr xc = xmlXPathNewContext(d);
	xmlXPathObjectPtr o;

	assert_non_null(xc);
	xmlXPathRegisterNs(xc, (const xmlChar *)"ds",
	    (const xmlChar *)"http://www.w3.org/2000/09/xmldsig#");
	xmlXPathRegisterNs(xc, (const xmlChar *)"xades",
	    (const xmlChar *)"http://uri.etsi.org/01903/v1.3.2#");
	xmlXPathRegisterNs(xc, (const xmlChar *)"xades141",
	    (const xmlChar *)"http://uri.etsi.org/01903/v1.4.1#");
	o = xmlXPathEvalExpression((const xmlChar *)expr, xc);
	xmlXPathFreeContext(xc);
	assert_non_null(o);
	return o;
}

/* canonical octets of the XPath node set expr, appended to out */
static void
c14n_set(xmlDocPtr d, const char *expr, int exclusive, qes_buf *out)
{
	xmlXPathObjectPtr o = xpath(d, expr);
	xmlChar *mem = NULL;
	int n;

	n = xmlC14NDocDumpMemory(d, o->nodesetval,
	    exclusive ? XML_C14N_EXCLUSIVE_1_0 : XML_C14N_1_0, NULL, 0, &mem);
	assert_true(n > 0);
	qes_buf_put(out, mem, (size_t)n);
	xmlFree(mem);
	xmlXPathFreeObject(o);
}

/* the subtree of the first element matched by path, as an XML DSig node set */
static void
c14n_subtree(xmlDocPtr d, const char *path, int exclusive, qes_buf *out)
{
	char expr[512];

	/* a node is in the subtree when the element is among its ancestors-or-self */
	snprintf(expr, sizeof(expr),
	    "(//. | //@* | //namespace::*)[count(ancestor-or-self::node() | (%s)[1])"
	    " = count(ancestor-or-self::node())]", path);
	c14n_set(d, expr, exclusive, out);
}

static char *
text_of(xmlDocPtr d, const char *expr)
{
	xmlXPathObjectPtr o = xpath(d, expr);
	char *s;

	assert_non_null(o->nodesetval);
	assert_int_equal(o->nodesetval->nodeNr, 1);
	s = (char *)xmlNodeGetContent(o->nodesetval->nodeTab[0]);
	xmlXPathFreeObject(o);
	assert_non_null(s);
	return s;
}

static int
count(xmlDocPtr d, const char *expr)
{
	xmlXPathObjectPtr o = xpath(d, expr);
	int n = o->nodesetval != NULL ? o->nodesetval->nodeNr : 0;

	xmlXPathFreeObject(o);
	return n;
}

static qes_buf *
b64dec(const char *s)
{
	qes_buf *b = qes_buf_new();
	size_t len = strlen(s), pad = 0;
	unsigned char *tmp = malloc(len + 4);
	int n;

	assert_non_null(tmp);
	n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
	assert_true(n >= 0);
	if (len >= 1 && s[len - 1] == '=')
		pad++;
	if (len >= 2 && s[len - 2] == '=')
		pad++;
	qes_buf_put(b, tmp, (size_t)n - pad);
	free(tmp);
	return b;
}

static void
assert_b64_digest(xmlDocPtr d, const char *expr, qes_md md, const qes_buf *data)
{
	uint8_t dig[QES_MD_MAX_LEN];
	char *v = text_of(d, expr);
	qes_buf *b = b64dec(v);

	assert_int_equal(qes_md_digest(md, qes_buf_data(data), qes_buf_len(data), dig), 0);
	assert_int_equal(qes_buf_len(b), qes_md_len(md));
	assert_memory_equal(qes_buf_data(b), dig, qes_md_len(md));
	qes_buf_free(b);
	xmlFree(v);
}

/* SignedInfo canonicalised independently, its signature checked with OpenSSL */
static void
assert_signature(xmlDocPtr d, const testsigner *s, int exclusive)
{
	qes_buf *si = qes_buf_new(), *sv;
	uint8_t dig[QES_MD_MAX_LEN];
	char *v;

	c14n_subtree(d, "//ds:SignedInfo", exclusive, si);
	assert_int_equal(qes_md_digest(s->md, qes_buf_data(si), qes_buf_len(si), dig), 0);
	v = text_of(d, "//ds:SignatureValue");
	sv = b64dec(v);
	if (s->scheme == QES_SIG_ECDSA)	/* XML DSig: raw r||s */
		assert_int_equal(qes_buf_len(sv),
		    2 * (((size_t)EVP_PKEY_get_bits(s->key) + 7) / 8));
	assert_int_equal(qes_cert_verify_digest(s->cert, s->scheme, s->md, dig,
	    qes_md_len(s->md), qes_buf_data(sv), qes_buf_len(sv)), 0);
	xmlFree(v);
	qes_buf_free(sv);
	qes_buf_free(si);
}

/* ---- the two phases ---- */

static int
sign(const testsigner *s, qes_xades_params *p, int ecdsa_raw, qes_buf *out)
{
	qes_xades_ctx *ctx = NULL;
	const uint8_t *dig;
	size_t dig_len;
	qes_md md;
	qes_sig_scheme scheme;
	qes_buf *sig = qes_buf_new();
	int r;

	p->signer = s->cert;
	p->scheme = s->scheme;
	p->md = s->md;
	if ((r = qes_xades_prepare(p, &ctx)) != 0)
		goto out;
	assert_int_equal(qes_xades_tbs(ctx, &dig, &dig_len, &md, &scheme), 0);
	assert_int_equal(md, s->md);
	assert_int_equal(scheme, s->scheme);
	assert_int_equal(dig_len, qes_md_len(s->md));
	assert_int_equal(testtsa_sign(s->key, scheme, md, dig, dig_len, ecdsa_raw, sig), 0);
	r = qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out);
	if (r != 0)
		fprintf(stderr, "finish: %s\n", qes_xades_errmsg(ctx));
out:
	if (r != 0 && ctx != NULL)
		fprintf(stderr, "xades: %s (%s)\n", qes_xades_errmsg(ctx), qes_errname(r));
	qes_xades_free(ctx);
	qes_buf_free(sig);
	return r;
}

static const char invoice[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!-- a comment the enveloped reference excludes -->\n"
    "<inv:Invoice xmlns:inv=\"urn:example:invoice\" xmlns=\"urn:example:default\""
    " xmlns:unused=\"urn:example:unused\">\n"
    "  <inv:Id>2026-0042</inv:Id>\n"
    "  <Line qty=\"3\" price=\"9.99\">Widgets &amp; gadgets</Line>\n"
    "  <!-- inside -->\n"
    "  <Note><![CDATA[a < b]]></Note>\n"
    "</inv:Invoice>\n";

static void
enveloped_case(const char *name, qes_sig_scheme scheme, qes_md md, int exclusive,
    int raw)
{
	testsigner s;
	qes_xades_params p = { 0 };
	qes_buf *out = qes_buf_new(), *ref = qes_buf_new(), *sp = qes_buf_new();
	xmlDocPtr d;

	assert_int_equal(testsigner_load(&s, fx.pki, name, scheme, md), 0);
	p.packaging = QES_XADES_ENVELOPED;
	p.level = QES_ADES_B_B;
	p.c14n = exclusive ? QES_XADES_C14N_EXCLUSIVE : QES_XADES_C14N_INCLUSIVE;
	p.doc = (const uint8_t *)invoice;
	p.doc_len = strlen(invoice);
	p.chain = &(qes_ades_blob){ qes_buf_data(fx.issuing_der), qes_buf_len(fx.issuing_der) };
	p.nchain = 1;
	assert_int_equal(sign(&s, &p, raw, out), 0);

	d = reparse(out);
	/* the signature is the root's last child */
	assert_int_equal(count(d, "/*/ds:Signature[not(following-sibling::*)]"), 1);
	assert_int_equal(count(d, "//ds:X509Certificate"), 2);
	assert_int_equal(count(d, "//xades:SigningCertificateV2/xades:Cert/xades:IssuerSerialV2"), 1);
	assert_int_equal(count(d, "//xades:SignedProperties/xades:SignedSignatureProperties/xades:SigningTime"), 1);
	assert_int_equal(count(d, "//xades:DataObjectFormat/xades:MimeType[.='text/xml']"), 1);
	/* the document reference: all but the signature, without comments */
	c14n_set(d, "(//. | //@* | //namespace::*)[not(ancestor-or-self::ds:Signature)"
	    " and not(self::comment())]", exclusive, ref);
	assert_non_null(memmem(qes_buf_data(ref), qes_buf_len(ref), "2026-0042", 9));
	assert_null(memmem(qes_buf_data(ref), qes_buf_len(ref), "comment", 7));
	assert_b64_digest(d, "//ds:Reference[@URI='']/ds:DigestValue", md, ref);
	c14n_subtree(d, "//xades:SignedProperties", exclusive, sp);
	assert_b64_digest(d, "//ds:Reference[@Type='http://uri.etsi.org/01903#SignedProperties']"
	    "/ds:DigestValue", md, sp);
	/* SigningCertificateV2's digest is the certificate's */
	{
		size_t der_len;
		const uint8_t *der = qes_cert_der(s.cert, &der_len);
		qes_buf *cb = qes_buf_new();

		qes_buf_put(cb, der, der_len);
		assert_b64_digest(d, "//xades:CertDigest/ds:DigestValue", md, cb);
		qes_buf_free(cb);
	}
	assert_signature(d, &s, exclusive);
	xmlFreeDoc(d);
	qes_buf_free(out);
	qes_buf_free(ref);
	qes_buf_free(sp);
	testsigner_free(&s);
}

static void
test_enveloped_rsa_pkcs1(void **state)
{
	(void)state;
	enveloped_case("qual-rsa2048", QES_SIG_RSA_PKCS1, QES_MD_SHA256, 1, 0);
	enveloped_case("qual-rsa3072", QES_SIG_RSA_PKCS1, QES_MD_SHA512, 0, 0);
}

static void
test_enveloped_rsa_pss(void **state)
{
	(void)state;
	enveloped_case("qual-rsa2048", QES_SIG_RSA_PSS, QES_MD_SHA256, 1, 0);
	enveloped_case("qual-rsa3072", QES_SIG_RSA_PSS, QES_MD_SHA384, 0, 0);
}

static void
test_enveloped_ecdsa(void **state)
{
	(void)state;
	enveloped_case("qual-p256", QES_SIG_ECDSA, QES_MD_SHA256, 1, 1);
	/* a DER value (as OpenSSL gives it) is stored as r||s too */
	enveloped_case("qual-p384", QES_SIG_ECDSA, QES_MD_SHA384, 0, 0);
	enveloped_case("qual-p384", QES_SIG_ECDSA, QES_MD_SHA384, 1, 1);
}

static void
test_detached(void **state)
{
	static const uint8_t data[] = "%PDF-1.7 not really, any bytes \x00\x01\xff";
	testsigner s;
	qes_xades_params p = { 0 };
	qes_buf *a = qes_buf_new(), *b = qes_buf_new(), *raw = qes_buf_new();
	uint8_t dig[QES_MD_MAX_LEN];
	xmlDocPtr d;
	char *v1, *v2;

	(void)state;
	assert_int_equal(testsigner_load(&s, fx.pki, "qual-p256", QES_SIG_ECDSA, QES_MD_SHA256), 0);
	p.packaging = QES_XADES_DETACHED;
	p.level = QES_ADES_B_B;
	p.doc = data;
	p.doc_len = sizeof(data);
	p.detached_name = "contract 1.pdf";
	p.mime_type = "application/pdf";
	assert_int_equal(sign(&s, &p, 1, a), 0);
	d = reparse(a);
	assert_string_equal((const char *)xmlDocGetRootElement(d)->name, "Signature");
	assert_int_equal(count(d, "//ds:Reference[@URI='contract%201.pdf']"), 1);
	assert_int_equal(count(d, "//ds:Reference[@URI='contract%201.pdf']/ds:Transforms"), 0);
	assert_int_equal(count(d, "//xades:MimeType[.='application/pdf']"), 1);
	qes_buf_put(raw, data, sizeof(data));
	assert_b64_digest(d, "//ds:Reference[@URI='contract%201.pdf']/ds:DigestValue",
	    QES_MD_SHA256, raw);
	assert_signature(d, &s, 1);
	v1 = text_of(d, "//ds:Reference[@URI='contract%201.pdf']/ds:DigestValue");
	xmlFreeDoc(d);

	/* hash-only: the same reference from the digest alone */
	assert_int_equal(qes_md_digest(QES_MD_SHA256, data, sizeof(data), dig), 0);
	p.doc = NULL;
	p.doc_len = 0;
	p.detached_digest = dig;
	assert_int_equal(sign(&s, &p, 0, b), 0);
	d = reparse(b);
	v2 = text_of(d, "//ds:Reference[@URI='contract%201.pdf']/ds:DigestValue");
	assert_string_equal(v1, v2);
	assert_signature(d, &s, 1);
	xmlFreeDoc(d);
	xmlFree(v1);
	xmlFree(v2);
	qes_buf_free(a);
	qes_buf_free(b);
	qes_buf_free(raw);
	testsigner_free(&s);
}

static void
test_wrong_value_refused(void **state)
{
	testsigner s, other;
	qes_xades_params p = { 0 };
	qes_xades_ctx *ctx = NULL;
	qes_buf *sig = qes_buf_new(), *out = qes_buf_new();
	const uint8_t *dig;
	size_t dig_len;
	qes_md md;
	qes_sig_scheme scheme;
	uint8_t *m;

	(void)state;
	assert_int_equal(testsigner_load(&s, fx.pki, "qual-rsa2048", QES_SIG_RSA_PKCS1, QES_MD_SHA256), 0);
	assert_int_equal(testsigner_load(&other, fx.pki, "qual-rsa3072", QES_SIG_RSA_PKCS1,
	    QES_MD_SHA256), 0);
	p.packaging = QES_XADES_ENVELOPED;
	p.level = QES_ADES_B_B;
	p.doc = (const uint8_t *)invoice;
	p.doc_len = strlen(invoice);
	p.signer = s.cert;
	p.scheme = s.scheme;
	p.md = s.md;
	assert_int_equal(qes_xades_prepare(&p, &ctx), 0);
	assert_int_equal(qes_xades_tbs(ctx, &dig, &dig_len, &md, &scheme), 0);
	/* another key's value */
	assert_int_equal(testtsa_sign(other.key, scheme, md, dig, dig_len, 0, sig), 0);
	assert_int_equal(qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out),
	    QES_ERR_SIGNATURE_INVALID);
	/* a flipped bit */
	qes_buf_reset(sig);
	assert_int_equal(testtsa_sign(s.key, scheme, md, dig, dig_len, 0, sig), 0);
	m = qes_buf_mutable(sig);
	m[10] ^= 1;
	assert_int_equal(qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out),
	    QES_ERR_SIGNATURE_INVALID);
	assert_int_equal(qes_buf_len(out), 0);
	assert_non_null(strstr(qes_xades_errmsg(ctx), "does not verify"));
	/* the right value still finishes, once */
	m[10] ^= 1;
	assert_int_equal(qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out), 0);
	assert_true(qes_buf_len(out) > 0);
	assert_int_equal(qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig), out),
	    QES_ERR_INVALID_ARG);
	qes_xades_free(ctx);
	qes_buf_free(sig);
	qes_buf_free(out);
	testsigner_free(&s);
	testsigner_free(&other);
}

static int
prepare_doc(const char *doc, size_t len, char *errmsg, size_t errlen)
{
	testsigner s;
	qes_xades_params p = { 0 };
	qes_xades_ctx *ctx = NULL;
	int r;

	assert_int_equal(testsigner_load(&s, fx.pki, "qual-p256", QES_SIG_ECDSA, QES_MD_SHA256), 0);
	p.packaging = QES_XADES_ENVELOPED;
	p.level = QES_ADES_B_B;
	p.doc = (const uint8_t *)doc;
	p.doc_len = len;
	p.signer = s.cert;
	p.scheme = s.scheme;
	p.md = s.md;
	r = qes_xades_prepare(&p, &ctx);
	snprintf(errmsg, errlen, "%s", qes_xades_errmsg(ctx));
	qes_xades_free(ctx);
	testsigner_free(&s);
	return r;
}

static void
test_malformed_input(void **state)
{
	static const char *const bad[] = {
		"<a><b></a>",
		"not xml at all",
		"<a>&undefined;</a>",
		"<?xml version=\"1.0\"?><a/><b/>",
		/* entity expansion bombs and external entities never get that far */
		"<!DOCTYPE a [<!ENTITY x \"xx\"><!ENTITY y \"&x;&x;&x;&x;\">]><a>&y;</a>",
		"<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>",
		"<!DOCTYPE a SYSTEM \"http://127.0.0.1:1/x.dtd\"><a/>",
	};
	char msg[256], *deep;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(prepare_doc(bad[i], strlen(bad[i]), msg, sizeof(msg)),
		    QES_ERR_XML_MALFORMED);
		assert_true(strlen(msg) > 0);
		assert_int_equal(qes_xades_check_xml((const uint8_t *)bad[i], strlen(bad[i]),
		    NULL, 0), QES_ERR_XML_MALFORMED);
	}
	assert_int_equal(prepare_doc(bad[0], strlen(bad[0]), msg, sizeof(msg)),
	    QES_ERR_XML_MALFORMED);
	assert_non_null(strstr(msg, "line 1"));
	assert_int_equal(prepare_doc(bad[4], strlen(bad[4]), msg, sizeof(msg)),
	    QES_ERR_XML_MALFORMED);
	assert_non_null(strstr(msg, "DOCTYPE"));
	assert_int_equal(prepare_doc("", 0, msg, sizeof(msg)), QES_ERR_XML_MALFORMED);
	/* well formed, but C14N forbids relative namespace URIs: refused, quietly */
	assert_int_equal(prepare_doc("<a xmlns=\"rel/ns\"/>", 19, msg, sizeof(msg)),
	    QES_ERR_XML_MALFORMED);
	assert_non_null(strstr(msg, "canonicalise"));
	assert_non_null(strstr(msg, "namespace"));

	/* nesting: the limit is ours, below libxml2's own */
	n = QES_XADES_MAX_DEPTH + 5;
	deep = malloc(n * 7 + 1);
	assert_non_null(deep);
	deep[0] = '\0';
	for (i = 0; i < n; i++)
		strcat(deep, "<a>");
	for (i = 0; i < n; i++)
		strcat(deep, "</a>");
	assert_int_equal(prepare_doc(deep, strlen(deep), msg, sizeof(msg)), QES_ERR_LIMIT);
	assert_non_null(strstr(msg, "deeper"));
	free(deep);
	/* size */
	assert_int_equal(qes_xades_check_xml((const uint8_t *)"<a/>",
	    QES_XADES_MAX_DOC_BYTES + 1, msg, sizeof(msg)), QES_ERR_LIMIT);
	assert_int_equal(qes_xades_check_xml((const uint8_t *)invoice, strlen(invoice),
	    msg, sizeof(msg)), 0);
}

static void
test_bad_params(void **state)
{
	testsigner s;
	qes_xades_params p = { 0 };
	qes_xades_ctx *ctx = NULL;
	uint8_t dig[32] = { 0 };

	(void)state;
	assert_int_equal(testsigner_load(&s, fx.pki, "qual-p256", QES_SIG_ECDSA, QES_MD_SHA256), 0);
	p.packaging = QES_XADES_DETACHED;
	p.level = QES_ADES_B_T;
	p.detached_name = "x.bin";
	p.detached_digest = dig;
	p.signer = s.cert;
	p.scheme = QES_SIG_ECDSA;
	p.md = QES_MD_SHA256;
	/* B-T without a timestamper */
	assert_int_equal(qes_xades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	assert_non_null(strstr(qes_xades_errmsg(ctx), "timestamper"));
	qes_xades_free(ctx);
	/* an RSA scheme for an EC key */
	p.level = QES_ADES_B_B;
	p.scheme = QES_SIG_RSA_PSS;
	assert_int_equal(qes_xades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	qes_xades_free(ctx);
	/* B-LTA from a digest only */
	p.scheme = QES_SIG_ECDSA;
	p.level = QES_ADES_B_LTA;
	p.tsa = &(qes_timestamper){ testtsa_stamp, &fx.tsa };
	p.vdata = &(qes_ades_vdata){ 0 };
	assert_int_equal(qes_xades_prepare(&p, &ctx), QES_ERR_INVALID_ARG);
	qes_xades_free(ctx);
	testsigner_free(&s);
}

/* the imprint of the token in the EncapsulatedTimeStamp at expr */
static void
token_imprint(xmlDocPtr d, const char *expr, uint8_t *out, size_t len)
{
	char *v = text_of(d, expr);
	qes_buf *tok = b64dec(v);
	const unsigned char *pp = qes_buf_data(tok);
	PKCS7 *p7 = d2i_PKCS7(NULL, &pp, (long)qes_buf_len(tok));
	TS_TST_INFO *ti;
	ASN1_OCTET_STRING *os;

	assert_non_null(p7);
	ti = PKCS7_to_TS_TST_INFO(p7);
	assert_non_null(ti);
	os = TS_MSG_IMPRINT_get_msg(TS_TST_INFO_get_msg_imprint(ti));
	assert_int_equal((size_t)ASN1_STRING_length(os), len);
	memcpy(out, ASN1_STRING_get0_data(os), len);
	TS_TST_INFO_free(ti);
	PKCS7_free(p7);
	qes_buf_free(tok);
	xmlFree(v);
}

static void
test_levels(void **state)
{
	testsigner s;
	qes_xades_params p = { 0 };
	qes_timestamper ts = { testtsa_stamp, &fx.tsa };
	qes_ades_blob certs[1], crls[1], ocsps[1];
	static const qes_ades_vdata empty = { 0 };
	qes_ades_vdata vd = { 0 }, tvd = { 0 };
	qes_buf *out = qes_buf_new(), *sv = qes_buf_new(), *arch = qes_buf_new();
	uint8_t want[QES_MD_MAX_LEN], got[QES_MD_MAX_LEN];
	static const uint8_t fake_ocsp[] = { 0x30, 0x03, 0x0a, 0x01, 0x06 };
	xmlXPathObjectPtr o;
	xmlDocPtr d;
	int i;

	(void)state;
	assert_int_equal(testsigner_load(&s, fx.pki, "qual-p384", QES_SIG_ECDSA, QES_MD_SHA384), 0);
	p.packaging = QES_XADES_ENVELOPED;
	p.doc = (const uint8_t *)invoice;
	p.doc_len = strlen(invoice);
	p.tsa = &ts;

	/* B-T: the token covers the canonical ds:SignatureValue element */
	p.level = QES_ADES_B_T;
	fx.tsa.calls = 0;
	assert_int_equal(sign(&s, &p, 1, out), 0);
	assert_int_equal(fx.tsa.calls, 1);
	d = reparse(out);
	c14n_subtree(d, "//ds:SignatureValue", 1, sv);
	assert_int_equal(qes_md_digest(QES_MD_SHA384, qes_buf_data(sv), qes_buf_len(sv),
	    want), 0);
	assert_memory_equal(fx.tsa.last_imprint, want, 48);
	token_imprint(d, "//xades:SignatureTimeStamp/xades:EncapsulatedTimeStamp", got, 48);
	assert_memory_equal(got, want, 48);
	assert_int_equal(count(d, "//xades:SignatureTimeStamp/ds:CanonicalizationMethod"
	    "[@Algorithm='http://www.w3.org/2001/10/xml-exc-c14n#']"), 1);
	assert_signature(d, &s, 1);
	xmlFreeDoc(d);

	/* a failing TSA fails finish precisely, and finish may be retried */
	{
		qes_xades_ctx *ctx = NULL;
		const uint8_t *dig;
		size_t dig_len;
		qes_md md;
		qes_sig_scheme scheme;
		qes_buf *sig = qes_buf_new();

		qes_buf_reset(out);
		p.level = QES_ADES_B_LTA;
		p.vdata = &empty;
		assert_int_equal(qes_xades_prepare(&p, &ctx), 0);
		assert_int_equal(qes_xades_tbs(ctx, &dig, &dig_len, &md, &scheme), 0);
		assert_int_equal(testtsa_sign(s.key, scheme, md, dig, dig_len, 1, sig), 0);
		fx.tsa.fail = 1;
		assert_int_equal(qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig),
		    out), QES_ERR_TIMESTAMP);
		assert_non_null(strstr(qes_xades_errmsg(ctx), "told to fail"));
		assert_int_equal(qes_buf_len(out), 0);
		fx.tsa.fail = 0;
		assert_int_equal(qes_xades_finish(ctx, qes_buf_data(sig), qes_buf_len(sig),
		    out), 0);
		d = reparse(out);
		assert_int_equal(count(d, "//xades:UnsignedProperties"), 1);
		assert_int_equal(count(d, "//xades:SignatureTimeStamp"), 1);
		assert_int_equal(count(d, "//xades141:ArchiveTimeStamp"), 1);
		xmlFreeDoc(d);
		qes_xades_free(ctx);
		qes_buf_free(sig);
		p.vdata = NULL;
	}

	/* B-LT: the values, and the TSA's in TimeStampValidationData */
	certs[0] = (qes_ades_blob){ qes_buf_data(fx.issuing_der), qes_buf_len(fx.issuing_der) };
	crls[0] = (qes_ades_blob){ qes_buf_data(fx.crl_der), qes_buf_len(fx.crl_der) };
	ocsps[0] = (qes_ades_blob){ fake_ocsp, sizeof(fake_ocsp) };
	vd = (qes_ades_vdata){ certs, 1, ocsps, 1, crls, 1 };
	tvd = (qes_ades_vdata){ certs, 1, NULL, 0, NULL, 0 };
	p.vdata = &vd;
	p.tsa_vdata = &tvd;
	p.level = QES_ADES_B_LT;
	qes_buf_reset(out);
	assert_int_equal(sign(&s, &p, 1, out), 0);
	d = reparse(out);
	assert_int_equal(count(d, "//xades:UnsignedSignatureProperties/xades:CertificateValues"
	    "/xades:EncapsulatedX509Certificate"), 1);
	assert_int_equal(count(d, "//xades:UnsignedSignatureProperties/xades:RevocationValues"
	    "/xades:CRLValues/xades:EncapsulatedCRLValue"), 1);
	assert_int_equal(count(d, "//xades:RevocationValues/xades:OCSPValues"
	    "/xades:EncapsulatedOCSPValue[.='MAMKAQY=']"), 1);
	assert_int_equal(count(d, "//xades141:TimeStampValidationData/xades:CertificateValues"), 1);
	assert_int_equal(count(d, "//xades141:ArchiveTimeStamp"), 0);
	{
		char *v = text_of(d, "//xades:EncapsulatedCRLValue");
		qes_buf *b = b64dec(v);

		assert_int_equal(qes_buf_len(b), qes_buf_len(fx.crl_der));
		assert_memory_equal(qes_buf_data(b), qes_buf_data(fx.crl_der), qes_buf_len(b));
		qes_buf_free(b);
		xmlFree(v);
	}
	assert_signature(d, &s, 1);
	xmlFreeDoc(d);

	/*
	 * B-LTA: the archive timestamp covers the references' octets, SignedInfo,
	 * SignatureValue, KeyInfo and the unsigned properties before it.
	 */
	p.level = QES_ADES_B_LTA;
	qes_buf_reset(out);
	fx.tsa.calls = 0;
	assert_int_equal(sign(&s, &p, 1, out), 0);
	assert_int_equal(fx.tsa.calls, 2);
	d = reparse(out);
	c14n_set(d, "(//. | //@* | //namespace::*)[not(ancestor-or-self::ds:Signature)"
	    " and not(self::comment())]", 1, arch);
	c14n_subtree(d, "//xades:SignedProperties", 1, arch);
	c14n_subtree(d, "//ds:SignedInfo", 1, arch);
	c14n_subtree(d, "//ds:SignatureValue", 1, arch);
	c14n_subtree(d, "//ds:KeyInfo", 1, arch);
	o = xpath(d, "//xades:UnsignedSignatureProperties/*[not(self::xades141:ArchiveTimeStamp)]");
	assert_int_equal(o->nodesetval->nodeNr, 4);
	for (i = 0; i < o->nodesetval->nodeNr; i++) {
		char expr[128];

		snprintf(expr, sizeof(expr), "//xades:UnsignedSignatureProperties/*[%d]", i + 1);
		c14n_subtree(d, expr, 1, arch);
	}
	xmlXPathFreeObject(o);
	assert_int_equal(qes_md_digest(QES_MD_SHA384, qes_buf_data(arch), qes_buf_len(arch),
	    want), 0);
	token_imprint(d, "//xades141:ArchiveTimeStamp/xades:EncapsulatedTimeStamp", got, 48);
	assert_memory_equal(got, want, 48);
	assert_memory_equal(fx.tsa.imprints[1], want, 48);
	assert_int_equal(count(d, "//xades:UnsignedSignatureProperties/*[last()]"
	    "[self::xades141:ArchiveTimeStamp]"), 1);
	assert_signature(d, &s, 1);
	xmlFreeDoc(d);

	qes_buf_free(out);
	qes_buf_free(sv);
	qes_buf_free(arch);
	testsigner_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enveloped_rsa_pkcs1),
		cmocka_unit_test(test_enveloped_rsa_pss),
		cmocka_unit_test(test_enveloped_ecdsa),
		cmocka_unit_test(test_detached),
		cmocka_unit_test(test_wrong_value_refused),
		cmocka_unit_test(test_malformed_input),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_levels),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
