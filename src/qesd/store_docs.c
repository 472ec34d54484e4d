/*
 * store_docs.c - the documents of AdES jobs, encrypted at rest
 * (store_jobs.h, migration 4): the key file, AES-256-GCM sealing through
 * OpenSSL's EVP interface, and the argument checks, so that neither
 * backend ever sees a document in the clear.
 *
 * Sealed form, as stored: nonce (12 bytes, RAND_bytes per write) ||
 * ciphertext (as long as the document) || tag (16 bytes). The additional
 * authenticated data is "qesd-doc-v1\0" tenant_id "\0" job_id "\0" kind,
 * so a row moved to another job, tenant or kind fails to open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "qes/err.h"
#include "qes/secret.h"
#include "store.h"
#include "store_jobs.h"

#define JOBS(tx) (qesd_tx_ops(tx)->jobs)
#define SEALED_MAX ((size_t)QESD_JOB_DOC_MAX + QESD_DOC_NONCE_LEN + \
	QESD_DOC_TAG_LEN)
#define KEY_FILE_MAX 128	/* 64 hex digits and blanks, with room */

static const char aad_label[] = "qesd-doc-v1";

static const char *
kind_name(qesd_job_doc_kind kind)
{
	switch (kind) {
	case QESD_JOB_DOC_INPUT:
		return "document";
	case QESD_JOB_DOC_RESULT:
		return "result";
	}
	return NULL;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
qesd_doc_key_load(const char *path, uint8_t key[QESD_DOC_KEY_LEN],
    char *err, size_t err_len)
{
	uint8_t raw[KEY_FILE_MAX + 1];
	struct stat st;
	ssize_t got;
	size_t n = 0, i;
	int fd, r = QES_ERR_FORMAT;

	if (path == NULL || key == NULL || err == NULL || err_len == 0)
		return QES_ERR_INVALID_ARG;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		snprintf(err, err_len, "document_key_file %s: %s", path,
		    strerror(errno));
		return QES_ERR_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "document_key_file %s: not a regular "
		    "file", path);
		close(fd);
		return QES_ERR_IO;
	}
	if ((st.st_mode & 077) != 0 || st.st_uid != geteuid()) {
		snprintf(err, err_len, "document_key_file %s: must be owned by "
		    "qesd's user and mode 0600 (is %04o)", path,
		    (unsigned)(st.st_mode & 07777));
		close(fd);
		return QES_ERR_IO;
	}
	while (n < sizeof(raw) && (got = read(fd, raw + n,
	    sizeof(raw) - n)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, err_len, "document_key_file %s: %s", path,
			    strerror(errno));
			close(fd);
			qes_wipe(raw, sizeof(raw));
			return QES_ERR_IO;
		}
		n += (size_t)got;
	}
	close(fd);
	if (n == QESD_DOC_KEY_LEN) {
		memcpy(key, raw, QESD_DOC_KEY_LEN);
		r = 0;
	} else {
		/* 64 hex digits, then at most one line end */
		size_t len = n;

		if (len > 0 && raw[len - 1] == '\n')
			len--;
		if (len > 0 && raw[len - 1] == '\r')
			len--;
		if (len == 2 * QESD_DOC_KEY_LEN) {
			r = 0;
			for (i = 0; i < QESD_DOC_KEY_LEN && r == 0; i++) {
				int hi = hexval(raw[2 * i]);
				int lo = hexval(raw[2 * i + 1]);

				if (hi < 0 || lo < 0)
					r = QES_ERR_FORMAT;
				else
					key[i] = (uint8_t)(hi << 4 | lo);
			}
		}
	}
	qes_wipe(raw, sizeof(raw));
	if (r != 0) {
		qes_wipe(key, QESD_DOC_KEY_LEN);
		snprintf(err, err_len, "document_key_file %s: must hold 32 "
		    "random bytes or 64 hex digits (openssl rand -hex 32)", path);
	}
	return r;
}

/* The additional authenticated data of one document: len or 0. */
static size_t
make_aad(char *dst, size_t size, const char *tenant_id, const char *job_id,
    const char *kind)
{
	int n = snprintf(dst, size, "%s%c%s%c%s%c%s", aad_label, '\0',
	    tenant_id, '\0', job_id, '\0', kind);

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/*
 * AES-256-GCM, one shot. encrypt: in -> out (same length) and tag written;
 * decrypt: in -> out and tag checked. 0, QES_ERR_CRYPTO, or (decrypt)
 * QES_ERR_SIGNATURE_INVALID when the tag does not match.
 */
static int
gcm(int encrypt, const uint8_t key[QESD_DOC_KEY_LEN],
    const uint8_t nonce[QESD_DOC_NONCE_LEN], const char *aad, size_t aad_len,
    const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[QESD_DOC_TAG_LEN])
{
	EVP_CIPHER_CTX *c;
	size_t done = 0;
	int outl, r = QES_ERR_CRYPTO;

	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		return QES_ERR_ALLOC;
	if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL,
	    encrypt) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, QESD_DOC_NONCE_LEN,
	    NULL) != 1 ||
	    EVP_CipherInit_ex(c, NULL, NULL, key, nonce, encrypt) != 1 ||
	    EVP_CipherUpdate(c, NULL, &outl, (const uint8_t *)aad,
	    (int)aad_len) != 1)
		goto out;
	/* EVP takes int lengths: feed the document in 1 MiB pieces */
	while (done < len) {
		size_t piece = len - done < (1u << 20) ? len - done : (1u << 20);

		if (EVP_CipherUpdate(c, out + done, &outl, in + done,
		    (int)piece) != 1 || (size_t)outl != piece)
			goto out;
		done += piece;
	}
	if (!encrypt && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG,
	    QESD_DOC_TAG_LEN, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, out + len, &outl) != 1) {
		r = encrypt ? QES_ERR_CRYPTO : QES_ERR_SIGNATURE_INVALID;
		goto out;
	}
	if (encrypt && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG,
	    QESD_DOC_TAG_LEN, tag) != 1)
		goto out;
	r = 0;
 out:
	EVP_CIPHER_CTX_free(c);
	return r;
}

/* The common checks: 0, or what the call returns. */
static int
doc_args(qesd_tx *tx, int write, const char *tenant_id, const char *job_id,
    qesd_job_doc_kind kind, const char **kname)
{
	int r;

	if ((r = qesd_tx_check(tx, write)) != 0)
		return r;
	if (kname != NULL && (*kname = kind_name(kind)) == NULL)
		return QES_ERR_INVALID_ARG;
	if (!qesd_id_valid("ten", tenant_id) || !qesd_id_valid("job", job_id))
		return QES_ERR_NOT_FOUND;
	return 0;
}

int
qesd_job_doc_put(qesd_tx *tx, const uint8_t key[QESD_DOC_KEY_LEN],
    const char *tenant_id, const char *job_id, qesd_job_doc_kind kind,
    const uint8_t *data, size_t len, int64_t now_ms)
{
	char aad[sizeof(aad_label) + 3 * QESD_ID_SIZE + 16];
	const char *kname;
	uint8_t *sealed;
	size_t aad_len, sealed_len;
	int r;

	if ((r = doc_args(tx, 1, tenant_id, job_id, kind, &kname)) != 0)
		return r;
	if (key == NULL || data == NULL || now_ms <= 0)
		return QES_ERR_INVALID_ARG;
	if (len == 0 || len > QESD_JOB_DOC_MAX)
		return qesd_tx_refuse(tx, QES_ERR_LIMIT,
		    "a job document is 1 byte to 64 MiB");
	if ((aad_len = make_aad(aad, sizeof(aad), tenant_id, job_id,
	    kname)) == 0)
		return QES_ERR_INTERNAL;
	sealed_len = QESD_DOC_NONCE_LEN + len + QESD_DOC_TAG_LEN;
	if ((sealed = malloc(sealed_len)) == NULL)
		return QES_ERR_ALLOC;
	if (RAND_bytes(sealed, QESD_DOC_NONCE_LEN) != 1)
		r = QES_ERR_CRYPTO;
	else
		r = gcm(1, key, sealed, aad, aad_len, data, len,
		    sealed + QESD_DOC_NONCE_LEN,
		    sealed + QESD_DOC_NONCE_LEN + len);
	if (r == 0)
		r = qesd_tx_result(tx, JOBS(tx)->doc_put(tx, tenant_id, job_id,
		    kname, sealed, sealed_len, now_ms));
	free(sealed);	/* ciphertext only: nothing to wipe */
	return r;
}

int
qesd_job_doc_get(qesd_tx *tx, const uint8_t key[QESD_DOC_KEY_LEN],
    const char *tenant_id, const char *job_id, qesd_job_doc_kind kind,
    uint8_t **data, size_t *len)
{
	char aad[sizeof(aad_label) + 3 * QESD_ID_SIZE + 16];
	const char *kname;
	uint8_t *sealed = NULL, *plain;
	size_t aad_len, sealed_len = 0, n;
	int r;

	if (data == NULL || len == NULL)
		return QES_ERR_INVALID_ARG;
	*data = NULL;
	*len = 0;
	if ((r = doc_args(tx, 0, tenant_id, job_id, kind, &kname)) != 0)
		return r;
	if (key == NULL)
		return QES_ERR_INVALID_ARG;
	if ((aad_len = make_aad(aad, sizeof(aad), tenant_id, job_id,
	    kname)) == 0)
		return QES_ERR_INTERNAL;
	if ((r = qesd_tx_result(tx, JOBS(tx)->doc_get(tx, tenant_id, job_id,
	    kname, SEALED_MAX, &sealed, &sealed_len))) != 0)
		return r;
	if (sealed_len <= QESD_DOC_NONCE_LEN + QESD_DOC_TAG_LEN) {
		free(sealed);
		return QES_ERR_SIGNATURE_INVALID;
	}
	n = sealed_len - QESD_DOC_NONCE_LEN - QESD_DOC_TAG_LEN;
	/* +1: gcm() lets the final call write at out + len */
	if ((plain = malloc(n + 1)) == NULL) {
		free(sealed);
		return QES_ERR_ALLOC;
	}
	r = gcm(0, key, sealed, aad, aad_len, sealed + QESD_DOC_NONCE_LEN, n,
	    plain, sealed + QESD_DOC_NONCE_LEN + n);
	free(sealed);
	if (r != 0) {
		qes_wipe(plain, n + 1);
		free(plain);
		return r;
	}
	*data = plain;
	*len = n;
	return 0;
}

int
qesd_job_doc_purge(qesd_tx *tx, const char *tenant_id, const char *job_id,
    uint64_t *n)
{
	uint64_t dummy;
	int r;

	if (n == NULL)
		n = &dummy;
	*n = 0;
	if ((r = doc_args(tx, 1, tenant_id, job_id, QESD_JOB_DOC_INPUT,
	    NULL)) != 0)
		return r == QES_ERR_NOT_FOUND ? 0 : r;
	return qesd_tx_result(tx, JOBS(tx)->doc_purge(tx, tenant_id, job_id,
	    n));
}

int
qesd_job_doc_take(qesd_tx *tx, const uint8_t key[QESD_DOC_KEY_LEN],
    const char *tenant_id, const char *job_id, qesd_job_doc_kind kind,
    uint8_t **data, size_t *len)
{
	int r;

	if (data == NULL || len == NULL)
		return QES_ERR_INVALID_ARG;
	*data = NULL;
	*len = 0;
	if ((r = qesd_tx_check(tx, 1)) != 0 ||
	    (r = qesd_job_doc_get(tx, key, tenant_id, job_id, kind, data,
	    len)) != 0)
		return r;
	if ((r = qesd_job_doc_purge(tx, tenant_id, job_id, NULL)) != 0) {
		qes_wipe(*data, *len);
		free(*data);
		*data = NULL;
		*len = 0;
	}
	return r;
}
