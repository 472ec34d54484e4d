/*
 * cert_priv.h - OpenSSL views of a qes_cert for other libqes code (CMS,
 * PAdES, chain building). Not part of the public API: programs see only
 * qes/cert.h and never OpenSSL types.
 */
#ifndef QES_CERT_PRIV_H
#define QES_CERT_PRIV_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "qes/cert.h"

/* Borrowed; valid until qes_cert_free(). Do not modify or free. */
X509 *qes_cert_x509(const qes_cert *c);
/* The certificate's public key. Borrowed; valid until qes_cert_free(). */
EVP_PKEY *qes_cert_pkey(const qes_cert *c);

#endif
