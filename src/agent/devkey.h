/*
 * devkey.h - the device key: the ECDSA P-256 key pair that identifies this
 * desktop to qesd.
 *
 * `qes-agent enroll` generates it and registers the public half; every
 * session then proves possession by signing the server's challenge with the
 * private half. The private key lives in the secret store (secretstore.h,
 * kind device-key) as PKCS#8 DER, and in memory only inside OpenSSL's key
 * object and qes_secret buffers, wiped on every path.
 *
 * This is not a signature key of the signer: it never signs documents, and
 * losing it only means enrolling again.
 */
#ifndef QES_AGENT_DEVKEY_H
#define QES_AGENT_DEVKEY_H

#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"

#include "secretstore.h"

typedef struct agent_devkey agent_devkey;

/* A fresh P-256 key pair. Free with agent_devkey_free(). */
int agent_devkey_generate(agent_devkey **out);
/* Wipes the private key. NULL is a no-op. */
void agent_devkey_free(agent_devkey *k);

/*
 * Keep the private key in the secret store under name (the server's host, or
 * the device id). *where_out (may be NULL) names the store that took it
 * ("secret-service" or, where none is reachable, "file").
 */
int agent_devkey_save(const agent_devkey *k, agent_secretstore *s,
    const char *name, const char **where_out);
/* Load the key stored under name; QES_ERR_NOT_FOUND when there is none. */
int agent_devkey_load(agent_secretstore *s, const char *name, agent_devkey **out);
/* Remove it from every store. */
int agent_devkey_delete(agent_secretstore *s, const char *name);

/* The private key as PKCS#8 DER into a qes_secret (for the stores and tests). */
int agent_devkey_to_pkcs8(const agent_devkey *k, qes_secret *out);
/* Parse PKCS#8 DER; anything but an EC P-256 key is QES_ERR_UNSUPPORTED. */
int agent_devkey_from_pkcs8(const qes_secret *der, agent_devkey **out);

/* The public key, SubjectPublicKeyInfo DER / PEM, appended to out. */
int agent_devkey_public_der(const agent_devkey *k, qes_buf *out);
int agent_devkey_public_pem(const agent_devkey *k, qes_buf *out);

/* ECDSA with SHA-256 over msg; the DER signature is appended to sig_out. */
int agent_devkey_sign(const agent_devkey *k, const uint8_t *msg, size_t msg_len,
    qes_buf *sig_out);

/*
 * The store name for a server URL: its host in lower case, plus ":port" when
 * the URL gives a port ("wss://QES.example.com:8443/v1/agent" ->
 * "qes.example.com:8443"). QES_ERR_FORMAT for anything that is not
 * scheme://host[:port][/...] with a plain host name or address.
 */
int agent_devkey_name_for_url(const char *url, char *name, size_t name_len);

#endif
