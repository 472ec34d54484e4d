/*
 * cms_priv.h - the CMS SignedData DER layer under cades.c (and the CMS that
 * PAdES embeds), private to libqes.
 *
 * Why by hand and not with OpenSSL's CMS API: the signature value comes
 * from outside (a token, an agent, a relying party) after the signed
 * attributes have been fixed, and OpenSSL's CMS_add1_signer() wants a
 * private key and computes the attributes itself at CMS_final(); the level
 * extensions need an "other" RevocationInfoChoice (id-ri-ocsp-response),
 * which OpenSSL's public API cannot create; and an enveloping signature of
 * a large file should be written with the content copied once. SignedData
 * with one SignerInfo is a small, fixed structure, so it is written here
 * with a few DER helpers and read back with the bounded reader in der.h.
 * The cryptography stays in OpenSSL (digests, verification in cert.c).
 */
#ifndef QES_CMS_PRIV_H
#define QES_CMS_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "der.h"
#include "qes/buf.h"
#include "qes/sig.h"

/* a byte range inside a parsed CMS (borrowed) */
typedef struct cms_span {
	const uint8_t *p;
	size_t len;
} cms_span;

/* A SignedData with exactly one SignerInfo, as byte ranges of whole TLVs
 * unless said otherwise. */
typedef struct cms_parts {
	long sd_version;
	cms_span digest_algs;		/* SET TLV */
	cms_span encap;			/* EncapsulatedContentInfo SEQUENCE TLV */
	cms_span econtent_type;		/* OID content octets */
	int has_econtent;
	cms_span econtent;		/* the content octets (primitive OCTET STRING) */
	int has_certs, has_crls;
	cms_span certs;			/* content of [0]: concatenated TLVs */
	cms_span crls;			/* content of [1]: concatenated TLVs */
	cms_span signer_infos;		/* SET TLV */
	/* the SignerInfo */
	cms_span si_version;		/* INTEGER TLV */
	cms_span si_sid;		/* SignerIdentifier TLV */
	cms_span si_digest_alg;		/* AlgorithmIdentifier TLV */
	int has_signed_attrs;
	cms_span si_signed_attrs;	/* [0] TLV (re-tag 0x31 to hash it) */
	cms_span si_signed_attrs_val;	/* its content */
	cms_span si_sig_alg;		/* AlgorithmIdentifier TLV */
	cms_span si_sig;		/* OCTET STRING TLV */
	cms_span si_sig_val;		/* its content: the signature value */
	int has_unsigned_attrs;
	cms_span si_unsigned_attrs_val;	/* content of [1] */
} cms_parts;

/* Parse a DER ContentInfo holding SignedData (untrusted input). */
int cms_parse(const uint8_t *der, size_t len, cms_parts *p);

/* DER writing */
size_t cms_hdr_size(size_t len);
int cms_put_hdr(qes_buf *b, uint8_t tag, size_t len);
int cms_put_tlv(qes_buf *b, uint8_t tag, const void *v, size_t len);
/* a TLV with tag around the whole content of inner */
int cms_put_wrapped(qes_buf *b, uint8_t tag, const qes_buf *inner);
/* OBJECT IDENTIFIER TLV from dotted text */
int cms_put_oid(qes_buf *b, const char *dotted);
/* OID content octets (no tag/length) of dotted into out (<= 32 bytes) */
int cms_oid_content(const char *dotted, uint8_t *out, size_t max, size_t *len);
/* 1 when the OID content octets in s equal dotted */
int cms_oid_is(const uint8_t *p, size_t len, const char *dotted);

/* A DER SET OF: the element TLVs sorted (X.690 11.6), under tag. */
int cms_put_set_of(qes_buf *b, uint8_t tag, const cms_span *elems, size_t n);
/* Split concatenated TLVs into spans (at most max); QES_ERR_LIMIT past it. */
int cms_split_tlvs(const uint8_t *p, size_t len, cms_span *out, size_t max,
    size_t *n);

/* AlgorithmIdentifiers */
int cms_put_digest_alg(qes_buf *b, qes_md md);
int cms_put_sig_alg(qes_buf *b, qes_sig_scheme scheme, qes_md md);
/* md from a digest AlgorithmIdentifier TLV; 0 when unknown */
qes_md cms_digest_alg_md(const uint8_t *tlv, size_t len);
/* scheme and md from a signature AlgorithmIdentifier TLV (md 0 when only
 * the digest algorithm tells it, as with rsaEncryption) */
int cms_sig_alg_parse(const uint8_t *tlv, size_t len, qes_sig_scheme *scheme,
    qes_md *md);

/* where the eContent octets come from when writing a ContentInfo */
struct cms_econtent {
	const uint8_t *mem;
	const char *path;		/* a file: streamed, re-hashed, compared */
	size_t len;
	qes_md md;			/* for path */
	const uint8_t *expect;		/* for path: the digest it must still have */
};

/*
 * Append ContentInfo { signedData, [0] SignedData { version, digest_algs,
 * encap, [0] certs, [1] crls, signer_infos } } to out. encap_prefix is the
 * EncapsulatedContentInfo up to the eContent octets, which come from ec
 * (or the whole EncapsulatedContentInfo when ec is NULL); certs and crls
 * (NULL: absent) are the contents of [0] and [1]. Lengths are computed up
 * front so the content is copied once. A file that changed since its
 * digest was taken is QES_ERR_DATA_INVALID.
 */
int cms_assemble(qes_buf *out, long version, const cms_span *digest_algs,
    const cms_span *encap_prefix, const struct cms_econtent *ec,
    const qes_buf *certs, const qes_buf *crls, const qes_buf *signer_infos);

/* The same, written to fd as it is produced (memory stays constant). */
int cms_assemble_fd(int fd, long version, const cms_span *digest_algs,
    const cms_span *encap_prefix, const struct cms_econtent *ec,
    const qes_buf *certs, const qes_buf *crls, const qes_buf *signer_infos);

#define CMS_OID_DATA		"1.2.840.113549.1.7.1"
#define CMS_OID_SIGNED_DATA	"1.2.840.113549.1.7.2"
#define CMS_OID_CONTENT_TYPE	"1.2.840.113549.1.9.3"
#define CMS_OID_MESSAGE_DIGEST	"1.2.840.113549.1.9.4"
#define CMS_OID_SIGNING_TIME	"1.2.840.113549.1.9.5"
#define CMS_OID_SIGNING_CERT_V2	"1.2.840.113549.1.9.16.2.47"
#define CMS_OID_SIGNING_CERT	"1.2.840.113549.1.9.16.2.12"
#define CMS_OID_TIMESTAMP_TOKEN	"1.2.840.113549.1.9.16.2.14"
#define CMS_OID_RI_OCSP		"1.3.6.1.5.5.7.16.2"

#endif
