/*
 * buf.h - growable byte buffers and bounded read cursors.
 *
 * qes_buf owns memory that grows up to a maximum (QES_ERR_LIMIT past it).
 * A buffer made with qes_buf_new_secret() is wiped whenever its memory is
 * released or moved, so secrets can pass through it.
 *
 * qes_cursor is the only way libqes reads untrusted bytes: every read is
 * length-checked and returns QES_ERR_TRUNCATED instead of reading past the
 * end. A cursor borrows its bytes; it owns nothing.
 */
#ifndef QES_BUF_H
#define QES_BUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QES_BUF_DEFAULT_MAX ((size_t)256 * 1024 * 1024)

typedef struct qes_buf qes_buf;

/* New empty buffer; NULL on allocation failure. Free with qes_buf_free(). */
qes_buf *qes_buf_new(void);
/* Same, but contents are wiped on free, reset and reallocation. */
qes_buf *qes_buf_new_secret(void);
void qes_buf_free(qes_buf *b);

/* Largest size the buffer may grow to (default QES_BUF_DEFAULT_MAX). */
void qes_buf_set_max(qes_buf *b, size_t max_bytes);

const uint8_t *qes_buf_data(const qes_buf *b);	/* borrowed; may be NULL when empty */
uint8_t *qes_buf_mutable(qes_buf *b);
size_t qes_buf_len(const qes_buf *b);

/* Drop the contents (wiped for secret buffers), keep the memory. */
void qes_buf_reset(qes_buf *b);
/* Make sure len + extra bytes fit. */
int qes_buf_reserve(qes_buf *b, size_t extra);
int qes_buf_put(qes_buf *b, const void *data, size_t len);
int qes_buf_put_u8(qes_buf *b, uint8_t v);
int qes_buf_put_str(qes_buf *b, const char *s);
/* printf-style append; never use it with secrets. */
int qes_buf_putf(qes_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Shorten to new_len (<= len). */
int qes_buf_truncate(qes_buf *b, size_t new_len);
/* Lower-case hex of data appended to b. */
int qes_buf_put_hex(qes_buf *b, const uint8_t *data, size_t len);
/* Append a NUL that is not counted in len, so data reads as a C string. */
int qes_buf_cstr(qes_buf *b, const char **out);

/* Read a whole file (at most max_bytes) into a new buffer. */
int qes_buf_read_file(const char *path, size_t max_bytes, qes_buf **out);
/* Write atomically: temporary file in the same directory, fsync, rename. */
int qes_buf_write_file(const qes_buf *b, const char *path, unsigned mode);

/*
 * Replacing a file atomically, in two steps, for writers that produce
 * their output through a descriptor (qes_buf_write_file() is built on it).
 *
 * qes_file_tmp_beside(): a new, empty file next to path (so that a rename
 * replaces path in one step): path + ".tmp" + six random characters,
 * created with O_EXCL, O_CLOEXEC and mode 0600. *tmp_out is the name
 * (malloc'd: the caller frees it), *fd_out the descriptor. QES_ERR_IO with
 * errno set when it cannot be created.
 *
 * qes_file_commit(): set mode, fsync, close fd, rename tmp onto path and
 * fsync the directory, so path is either its old self or the complete new
 * file, also after a crash. fd is closed in every case; on failure tmp is
 * removed and errno tells why. tmp is not freed.
 *
 * qes_file_discard(): close fd (if >= 0) and remove tmp (if not NULL).
 */
int qes_file_tmp_beside(const char *path, char **tmp_out, int *fd_out);
int qes_file_commit(int fd, const char *tmp, const char *path, unsigned mode);
void qes_file_discard(int fd, const char *tmp);

typedef struct qes_cursor {
	const uint8_t *data;
	size_t len;
	size_t off;
} qes_cursor;

void qes_cursor_init(qes_cursor *c, const void *data, size_t len);
size_t qes_cursor_remaining(const qes_cursor *c);
int qes_cursor_get_u8(qes_cursor *c, uint8_t *out);
int qes_cursor_get_be16(qes_cursor *c, uint16_t *out);
int qes_cursor_get_be32(qes_cursor *c, uint32_t *out);
int qes_cursor_peek_u8(const qes_cursor *c, uint8_t *out);
/* Borrow n bytes (valid as long as the cursor's data). */
int qes_cursor_get_bytes(qes_cursor *c, size_t n, const uint8_t **out);
int qes_cursor_skip(qes_cursor *c, size_t n);
/* A sub-cursor over the next n bytes; the parent skips them. */
int qes_cursor_sub(qes_cursor *c, size_t n, qes_cursor *sub);

/* Decode hex (upper or lower case, even length) into out. */
int qes_hex_decode(const char *hex, qes_buf *out);

#ifdef __cplusplus
}
#endif
#endif
