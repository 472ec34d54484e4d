/*
 * secret.h - fixed-capacity buffers for PINs and other secrets.
 *
 * A qes_secret is allocated once at its final capacity (so it never moves),
 * locked in memory where the OS allows (mlock; failure is tolerated, since an
 * unprivileged process may have a small RLIMIT_MEMLOCK), excluded from core
 * dumps, and wiped with OPENSSL_cleanse on clear and free. Never pass its
 * contents to a formatting or logging function.
 */
#ifndef QES_SECRET_H
#define QES_SECRET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QES_PIN_MAX 256	/* longest PIN/passphrase qes accepts, in bytes */

typedef struct qes_secret qes_secret;

/* NULL on allocation failure. Free with qes_secret_free(). */
qes_secret *qes_secret_new(size_t capacity);
/* Wipes and frees; NULL is a no-op. */
void qes_secret_free(qes_secret *s);

/* Replace the contents; QES_ERR_LIMIT when len exceeds the capacity. */
int qes_secret_set(qes_secret *s, const void *data, size_t len);
int qes_secret_append(qes_secret *s, const void *data, size_t len);
/* Copy another secret into s. */
int qes_secret_copy(qes_secret *s, const qes_secret *from);
void qes_secret_clear(qes_secret *s);

const uint8_t *qes_secret_data(const qes_secret *s);
size_t qes_secret_len(const qes_secret *s);
size_t qes_secret_capacity(const qes_secret *s);
/* 1 when s holds mlock'ed memory (for diagnostics and tests). */
int qes_secret_locked(const qes_secret *s);

/* Wipe any memory (OPENSSL_cleanse). */
void qes_wipe(void *p, size_t len);

#ifdef __cplusplus
}
#endif
#endif
