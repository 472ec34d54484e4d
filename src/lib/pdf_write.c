/*
 * pdf_write.c - incremental updates (ISO 32000-1, 7.5.6) for PAdES: a
 * signature or document timestamp field with its dictionary and /Contents
 * placeholder, and the /DSS dictionary of B-LT.
 *
 * The original bytes are copied unchanged to a temporary file beside the
 * output by the kernel (copy_file_range: no pass through user space, a
 * shared extent where the file system can), followed by the update, built
 * in memory: the new and changed objects, a cross-reference section of the
 * kind the file already uses (table or stream) and a trailer with /Prev.
 * For a signature the first byte range is hashed from the reader's mapping
 * of the input, so a large file is read once (from the page cache) and
 * never copied through a buffer; the second range is in the update. Finish
 * puts the DER in the placeholder with pwrite and renames.
 *
 * A document in memory, or an output buffer instead of a file (the
 * gateway's case: no plaintext on disk), takes the same path, except that
 * a signature's prepare only hashes (the input and the update, kept) and
 * its finish appends the copy and the update, with the DER in place, to
 * the buffer: a prepare whose only use is the digest (a gateway computing
 * what the signer signs) copies nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "qes/err.h"
#include "pdf_priv.h"

#define COPY_CHUNK ((size_t)1024 * 1024)
/*
 * The input mapping is hashed and written (where the kernel cannot copy)
 * in steps of this size, each step's pages dropped from our address space
 * afterwards, so the resident set stays bounded whatever the file's size.
 * A multiple of any page size.
 */
#define MAP_STEP ((size_t)2 * 1024 * 1024)
/* room for "[0 N N N]" with three 20-digit numbers */
#define BYTERANGE_WIDTH 70
#define MAX_FIELD_NAME 256

typedef struct upd_ent {
	uint32_t num, gen;
	uint64_t off;
} upd_ent;

/* An incremental update being built in memory. */
typedef struct upd {
	qes_pdf *pdf;
	qes_buf *body;
	uint64_t base;		/* file offset of body[0] */
	uint32_t next_num;
	upd_ent *ents;
	size_t nents, cap;
	const char *seed;	/* mixed into the new /ID; NULL: none */
} upd;

struct qes_pdf_sign_ctx {
	qes_pdf *pdf;
	char *tmp_path, *out_path;
	int fd;
	qes_buf *obuf;		/* the output buffer instead of a file */
	qes_buf *body;		/* with obuf: the update, written by finish */
	bool done;
	uint64_t br[4];
	size_t contents_bytes;
	uint8_t digest[EVP_MAX_MD_SIZE];
	size_t digest_len;
	char field[MAX_FIELD_NAME * 2 + 16];
};

static int
upd_init(upd *u, qes_pdf *pdf)
{
	uint8_t last = pdf->map[pdf->size - 1];

	memset(u, 0, sizeof(*u));
	u->pdf = pdf;
	if ((u->body = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	u->base = pdf->size;
	u->next_num = pdf->nxref;
	if (u->next_num == 0)
		u->next_num = 1;
	/* objects must start on a line of their own (body[0] is at base) */
	if (last != '\n' && last != '\r')
		return qes_buf_put_u8(u->body, '\n') ? QES_ERR_ALLOC : 0;
	return 0;
}

static void
upd_free(upd *u)
{
	qes_buf_free(u->body);
	free(u->ents);
}

static int
upd_new_num(upd *u, uint32_t *num)
{
	if (u->next_num >= u->pdf->lim.max_objects)
		return pdf_err(u->pdf, QES_ERR_LIMIT, "no object number left");
	*num = u->next_num++;
	return 0;
}

static int
upd_begin(upd *u, uint32_t num, uint32_t gen)
{
	upd_ent *e;

	if (u->nents == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 16;

		if ((e = realloc(u->ents, cap * sizeof(*e))) == NULL)
			return QES_ERR_ALLOC;
		u->ents = e;
		u->cap = cap;
	}
	u->ents[u->nents].num = num;
	u->ents[u->nents].gen = gen;
	u->ents[u->nents].off = u->base + qes_buf_len(u->body);
	u->nents++;
	return qes_buf_putf(u->body, "%u %u obj\n", num, gen);
}

static int
upd_obj(upd *u, uint32_t num, uint32_t gen, const pdf_obj *o)
{
	int r;

	if ((r = upd_begin(u, num, gen)) != 0 || (r = pdf_obj_write(u->body, o)) != 0)
		return r;
	return qes_buf_put_str(u->body, "\nendobj\n");
}

static int
upd_stream(upd *u, uint32_t num, const uint8_t *data, size_t len)
{
	int r;

	if ((r = upd_begin(u, num, 0)) != 0 ||
	    (r = qes_buf_putf(u->body, "<</Length %zu>>\nstream\n", len)) != 0 ||
	    (r = qes_buf_put(u->body, data, len)) != 0)
		return r;
	return qes_buf_put_str(u->body, "\nendstream\nendobj\n");
}

static int
ent_cmp(const void *a, const void *b)
{
	const upd_ent *x = a, *y = b;

	return x->num < y->num ? -1 : x->num > y->num;
}

/*
 * The second /ID of this update (14.4: it changes with every update). It is
 * derived, not random, so that preparing the same signature twice writes
 * the same bytes and so the same digest to sign: SHA-256 over the seed, the
 * original's size and last cross-reference offset and the update's objects
 * so far (the new dictionaries: /M, field name, DSS data), first 16 bytes.
 */
static int
update_id(const upd *u, uint8_t id[16])
{
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	uint8_t d[EVP_MAX_MD_SIZE];
	char pos[64];
	unsigned int len;
	int ok, n;

	n = snprintf(pos, sizeof(pos), "qes-pdf-id %zu %llu %zu ", u->pdf->size,
	    (unsigned long long)u->pdf->startxref, u->seed != NULL ? strlen(u->seed) : 0);
	ok = h != NULL && n > 0 && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(h, pos, (size_t)n) == 1 &&
	    (u->seed == NULL || EVP_DigestUpdate(h, u->seed, strlen(u->seed)) == 1) &&
	    EVP_DigestUpdate(h, qes_buf_data(u->body), qes_buf_len(u->body)) == 1 &&
	    EVP_DigestFinal_ex(h, d, &len) == 1;
	EVP_MD_CTX_free(h);
	if (!ok)
		return QES_ERR_CRYPTO;
	memcpy(id, d, 16);
	return 0;
}

/* /Size /Root /Info /ID /Prev, shared by both kinds of section. */
static int
trailer_entries(upd *u, qes_buf *b)
{
	const pdf_obj *info = pdf_dict_get(u->pdf->trailer, "Info");
	const pdf_obj *id = pdf_dict_get(u->pdf->trailer, "ID");
	uint8_t fresh[16];
	uint32_t size = u->next_num > u->pdf->nxref ? u->next_num : u->pdf->nxref;
	int r;

	if ((r = update_id(u, fresh)) != 0)
		return r;
	if ((r = qes_buf_putf(b, "/Size %u/Root %u %u R/Prev %llu", size,
	    u->pdf->root_num, u->pdf->root_gen,
	    (unsigned long long)u->pdf->startxref)) != 0)
		return r;
	if (info != NULL && info->type == PDF_REF &&
	    (r = qes_buf_putf(b, "/Info %u %u R", info->u.r.num, info->u.r.gen)) != 0)
		return r;
	/* the first /ID stays, the second changes with every update (14.4) */
	if ((r = qes_buf_put_str(b, "/ID[")) != 0)
		return r;
	if (id != NULL && id->type == PDF_ARRAY && id->u.a.n == 2 &&
	    id->u.a.items[0]->type == PDF_STRING)
		r = pdf_obj_write(b, id->u.a.items[0]);
	else
		r = qes_buf_put_u8(b, '<') || qes_buf_put_hex(b, fresh, 16) ||
		    qes_buf_put_u8(b, '>') ? QES_ERR_ALLOC : 0;
	if (r != 0 || qes_buf_put_u8(b, '<') || qes_buf_put_hex(b, fresh, 16) ||
	    qes_buf_put_str(b, ">]"))
		return r ? r : QES_ERR_ALLOC;
	return 0;
}

static int
upd_xref_table(upd *u)
{
	size_t i, j;
	uint64_t xoff = u->base + qes_buf_len(u->body);
	int r;

	if ((r = qes_buf_put_str(u->body, "xref\n")) != 0)
		return r;
	for (i = 0; i < u->nents; i = j) {
		for (j = i + 1; j < u->nents && u->ents[j].num == u->ents[j - 1].num + 1; j++)
			;
		if ((r = qes_buf_putf(u->body, "%u %zu\n", u->ents[i].num, j - i)) != 0)
			return r;
		for (; i < j; i++)
			if ((r = qes_buf_putf(u->body, "%010llu %05u n\r\n",
			    (unsigned long long)u->ents[i].off, u->ents[i].gen)) != 0)
				return r;
	}
	if ((r = qes_buf_put_str(u->body, "trailer\n<<")) != 0 ||
	    (r = trailer_entries(u, u->body)) != 0)
		return r;
	return qes_buf_putf(u->body, ">>\nstartxref\n%llu\n%%%%EOF\n",
	    (unsigned long long)xoff);
}

static int
upd_xref_stream(upd *u)
{
	qes_buf *data = qes_buf_new();
	uint32_t num = 0;
	uint64_t xoff;
	size_t i, j;
	int r, k, w = 1;

	if (data == NULL)
		return QES_ERR_ALLOC;
	if ((r = upd_new_num(u, &num)) != 0)
		goto out;
	xoff = u->base + qes_buf_len(u->body);
	/* the stream lists itself */
	if ((r = upd_begin(u, num, 0)) != 0)
		goto out;
	qsort(u->ents, u->nents, sizeof(*u->ents), ent_cmp);
	while (w < 8 && (xoff >> (8 * w)) != 0)
		w++;
	for (i = 0; i < u->nents; i++) {
		if ((r = qes_buf_put_u8(data, 1)) != 0)
			goto out;
		for (k = w - 1; k >= 0; k--)
			if ((r = qes_buf_put_u8(data,
			    (uint8_t)(u->ents[i].off >> (8 * k)))) != 0)
				goto out;
		if ((r = qes_buf_put_u8(data, (uint8_t)(u->ents[i].gen >> 8))) != 0 ||
		    (r = qes_buf_put_u8(data, (uint8_t)u->ents[i].gen)) != 0)
			goto out;
	}
	if ((r = qes_buf_putf(u->body, "<</Type/XRef/W[1 %d 2]/Index[", w)) != 0)
		goto out;
	for (i = 0; i < u->nents; i = j) {
		for (j = i + 1; j < u->nents && u->ents[j].num == u->ents[j - 1].num + 1; j++)
			;
		if ((r = qes_buf_putf(u->body, "%s%u %zu", i ? " " : "",
		    u->ents[i].num, j - i)) != 0)
			goto out;
	}
	if ((r = qes_buf_put_u8(u->body, ']')) != 0 ||
	    (r = trailer_entries(u, u->body)) != 0 ||
	    (r = qes_buf_putf(u->body, "/Length %zu>>\nstream\n", qes_buf_len(data))) != 0 ||
	    (r = qes_buf_put(u->body, qes_buf_data(data), qes_buf_len(data))) != 0)
		goto out;
	r = qes_buf_putf(u->body, "\nendstream\nendobj\nstartxref\n%llu\n%%%%EOF\n",
	    (unsigned long long)xoff);
 out:
	qes_buf_free(data);
	return r;
}

static int
upd_xref(upd *u)
{
	qsort(u->ents, u->nents, sizeof(*u->ents), ent_cmp);
	return u->pdf->xref_stream ? upd_xref_stream(u) : upd_xref_table(u);
}

/* ---- temporary output ---- */

static int
write_all(int fd, const uint8_t *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return QES_ERR_IO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
hash_update(EVP_MD_CTX *md, const uint8_t *p, size_t len)
{
	if (md != NULL && len > 0 && EVP_DigestUpdate(md, p, len) != 1)
		return QES_ERR_CRYPTO;
	return 0;
}

/*
 * Drop [off, off+len) of the input mapping from our resident set once it
 * has been read. The mapping is private, read-only and never written, so
 * no page of it is a private copy: a later access reads the file again.
 * Advice only, its failure changes nothing.
 */
static void
map_done(const qes_pdf *pdf, size_t off, size_t len)
{
	if (pdf->borrowed)	/* the caller's memory: DONTNEED could zero it */
		return;
	(void)madvise((void *)(uintptr_t)(pdf->map + off), len, MADV_DONTNEED);
}

/* Write the input from offset off on from its mapping, a step at a time. */
static int
copy_from_map(qes_pdf *pdf, int fd, size_t off)
{
	size_t step, n;
	int r;

	/* steps end on MAP_STEP boundaries, off need not start on one */
	for (; off < pdf->size; off += n) {
		step = off - off % MAP_STEP;
		n = pdf->size - off < step + MAP_STEP - off ?
		    pdf->size - off : step + MAP_STEP - off;
		if ((r = write_all(fd, pdf->map + off, n)) != 0)
			return r;
		map_done(pdf, step, off + n - step);
	}
	return 0;
}

/*
 * Copy the input's bytes to fd at its file offset (which advances). The
 * kernel copies with copy_file_range; where it cannot for this pair of
 * files (EXDEV between file systems, ENOSYS, EINVAL or EOPNOTSUPP for a
 * file system or descriptor it does not handle, or 0 bytes from a file
 * system that reports no data) the rest is written from the mapping.
 */
static int
copy_original(qes_pdf *pdf, int fd, const char *out_path)
{
	struct stat st;
	loff_t in = 0;
	ssize_t n;
	int r;

	if (pdf->fd < 0)	/* in memory */
		return copy_from_map(pdf, fd, 0) != 0 ? pdf_err(pdf, QES_ERR_IO,
		    "cannot write beside %s: %s", out_path, strerror(errno)) : 0;
	/* the mapping and the copy must be the bytes the reader parsed */
	if (fstat(pdf->fd, &st) != 0 || (uint64_t)st.st_size != pdf->size)
		return pdf_err(pdf, QES_ERR_IO, "the input PDF changed or cannot be read");
	while ((size_t)in < pdf->size) {
		n = copy_file_range(pdf->fd, &in, fd, NULL, pdf->size - (size_t)in, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			continue;
		if (n == 0 || errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
		    errno == EOPNOTSUPP)
			break;
		return pdf_err(pdf, QES_ERR_IO, "cannot copy the PDF beside %s: %s",
		    out_path, strerror(errno));
	}
	if ((size_t)in < pdf->size && (r = copy_from_map(pdf, fd, (size_t)in)) != 0)
		return pdf_err(pdf, r, "cannot write beside %s: %s", out_path,
		    strerror(errno));
	/*
	 * Start writing the copy to disk now, while the input is hashed and
	 * signed, so that the fsync before the rename finds little left to do.
	 * Advice only: the fsync is what guarantees durability.
	 */
	(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	return 0;
}

/* Hash the whole input from its mapping, a step at a time. */
static int
hash_original(qes_pdf *pdf, EVP_MD_CTX *md)
{
	size_t off, n;
	int r = 0;

	if (!pdf->borrowed)
		(void)madvise((void *)(uintptr_t)pdf->map, pdf->size, MADV_SEQUENTIAL);
	for (off = 0; r == 0 && off < pdf->size; off += n) {
		n = pdf->size - off < MAP_STEP ? pdf->size - off : MAP_STEP;
		r = hash_update(md, pdf->map + off, n);
		map_done(pdf, off, n);
	}
	/* the reader goes on reading objects here and there */
	if (!pdf->borrowed)
		(void)madvise((void *)(uintptr_t)pdf->map, pdf->size, MADV_NORMAL);
	return r;
}

/*
 * Create tmp beside out_path, copy the original bytes (hashed when md is
 * set) and the update body except [skip_from, skip_to) of the hash.
 */
static int
write_tmp(qes_pdf *pdf, const char *out_path, const qes_buf *body,
    EVP_MD_CTX *md, size_t skip_from, size_t skip_to, char **tmp_out, int *fd_out)
{
	char *tmp = NULL;
	int fd = -1, r;

	if ((r = qes_file_tmp_beside(out_path, &tmp, &fd)) != 0)
		return r == QES_ERR_IO ? pdf_err(pdf, r,
		    "cannot create a file beside %s: %s", out_path,
		    strerror(errno)) : r;
	/* copied first: a file that shrank since it was opened fails here,
	 * before its mapping is read */
	if ((r = copy_original(pdf, fd, out_path)) != 0)
		goto fail;
	if (md != NULL && ((r = hash_original(pdf, md)) != 0 ||
	    (r = hash_update(md, qes_buf_data(body), skip_from)) != 0 ||
	    (r = hash_update(md, qes_buf_data(body) + skip_to,
	    qes_buf_len(body) - skip_to)) != 0))
		goto fail;
	if ((r = write_all(fd, qes_buf_data(body), qes_buf_len(body))) != 0) {
		r = pdf_err(pdf, QES_ERR_IO, "cannot write beside %s: %s", out_path,
		    strerror(errno));
		goto fail;
	}
	*tmp_out = tmp;
	*fd_out = fd;
	return 0;
 fail:
	close(fd);
	unlink(tmp);
	free(tmp);
	return r;
}

/* The same into memory: the original bytes and the update appended to
 * out; out is as it was on failure. */
static int
write_buf(qes_pdf *pdf, qes_buf *out, const qes_buf *body)
{
	size_t base = qes_buf_len(out);
	int r;

	if ((r = qes_buf_reserve(out, pdf->size + qes_buf_len(body))) != 0 ||
	    (r = qes_buf_put(out, pdf->map, pdf->size)) != 0 ||
	    (r = qes_buf_put(out, qes_buf_data(body), qes_buf_len(body))) != 0) {
		(void)qes_buf_truncate(out, base);
		return r == QES_ERR_LIMIT ? pdf_err(pdf, r, "the signed PDF would be "
		    "larger than the output buffer's limit") : r;
	}
	return 0;
}

/* The output replaces out_path atomically (qes_file_commit), mode 0644. */
static int
commit_tmp(int fd, const char *tmp, const char *out_path)
{
	return qes_file_commit(fd, tmp, out_path, 0644);
}

/* ---- text strings ---- */

/*
 * A UTF-8 string as a PDF text string: as is when ASCII (PDFDocEncoding
 * agrees there), else UTF-16BE with a byte order mark. Invalid UTF-8 is
 * refused.
 */
static int
text_string(const char *s, pdf_obj **out)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t len = strlen(s), i, n;
	qes_buf *b;
	uint32_t cp;
	bool ascii = true;
	int r = 0;

	for (i = 0; i < len; i++)
		if (p[i] >= 0x80 || p[i] < 0x20)
			ascii = false;
	if (ascii)
		return (*out = pdf_new_string(s, len)) ? 0 : QES_ERR_ALLOC;
	if ((b = qes_buf_new()) == NULL)
		return QES_ERR_ALLOC;
	r = qes_buf_put(b, "\xfe\xff", 2);
	for (i = 0; r == 0 && i < len; i += n) {
		if (p[i] < 0x80) {
			cp = p[i];
			n = 1;
		} else if ((p[i] & 0xe0) == 0xc0 && i + 1 < len) {
			cp = (uint32_t)(p[i] & 0x1f) << 6 | (p[i + 1] & 0x3f);
			n = 2;
		} else if ((p[i] & 0xf0) == 0xe0 && i + 2 < len) {
			cp = (uint32_t)(p[i] & 0x0f) << 12 |
			    (uint32_t)(p[i + 1] & 0x3f) << 6 | (p[i + 2] & 0x3f);
			n = 3;
		} else if ((p[i] & 0xf8) == 0xf0 && i + 3 < len) {
			cp = (uint32_t)(p[i] & 0x07) << 18 |
			    (uint32_t)(p[i + 1] & 0x3f) << 12 |
			    (uint32_t)(p[i + 2] & 0x3f) << 6 | (p[i + 3] & 0x3f);
			n = 4;
		} else {
			r = QES_ERR_INVALID_ARG;
			break;
		}
		for (size_t k = 1; k < n; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				r = QES_ERR_INVALID_ARG;
		if (r != 0 || (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
		    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff)) {
			r = QES_ERR_INVALID_ARG;
			break;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			uint32_t hi = 0xd800 | (cp >> 10), lo = 0xdc00 | (cp & 0x3ff);

			r = qes_buf_put_u8(b, (uint8_t)(hi >> 8)) ||
			    qes_buf_put_u8(b, (uint8_t)hi) ||
			    qes_buf_put_u8(b, (uint8_t)(lo >> 8)) ||
			    qes_buf_put_u8(b, (uint8_t)lo) ? QES_ERR_ALLOC : 0;
		} else {
			r = qes_buf_put_u8(b, (uint8_t)(cp >> 8)) ||
			    qes_buf_put_u8(b, (uint8_t)cp) ? QES_ERR_ALLOC : 0;
		}
	}
	if (r == 0)
		r = (*out = pdf_new_string(qes_buf_data(b), qes_buf_len(b))) ?
		    0 : QES_ERR_ALLOC;
	qes_buf_free(b);
	return r;
}

static int
put_text_entry(qes_buf *b, const char *key, const char *val)
{
	pdf_obj *s = NULL;
	int r;

	if (val == NULL || val[0] == 0)
		return 0;
	if (strlen(val) > 4096)
		return QES_ERR_INVALID_ARG;
	if ((r = text_string(val, &s)) != 0)
		return r;
	if ((r = qes_buf_putf(b, "/%s", key)) == 0)
		r = pdf_obj_write(b, s);
	pdf_obj_free(s);
	return r;
}

/* ---- the AcroForm and the page ---- */

/*
 * One pass over the top-level fields: does one carry the name (when given),
 * and the largest N of the names "SignatureN" (to generate a free one
 * without a pass per candidate).
 */
static int
scan_field_names(qes_pdf *pdf, const pdf_obj *fields, const pdf_obj *name,
    bool *used, uint64_t *max_n)
{
	pdf_obj *f = NULL;
	const pdf_obj *t;
	uint64_t n;
	size_t i, k;
	int r;

	*used = false;
	*max_n = 0;
	for (i = 0; i < fields->u.a.n; i++) {
		if ((r = pdf_resolve(pdf, fields->u.a.items[i], &f)) != 0)
			return r;
		t = pdf_dict_get(f, "T");
		if (t != NULL && t->type == PDF_STRING) {
			if (name != NULL && t->u.s.len == name->u.s.len &&
			    memcmp(t->u.s.p, name->u.s.p, name->u.s.len) == 0)
				*used = true;
			if (t->u.s.len > 9 && t->u.s.len <= 9 + 18 &&
			    memcmp(t->u.s.p, "Signature", 9) == 0) {
				for (n = 0, k = 9; k < t->u.s.len &&
				    t->u.s.p[k] >= '0' && t->u.s.p[k] <= '9'; k++)
					n = n * 10 + (uint64_t)(t->u.s.p[k] - '0');
				if (k == t->u.s.len && n > *max_n)
					*max_n = n;
			}
		}
		pdf_obj_free(f);
		f = NULL;
	}
	return 0;
}

/*
 * Add field_ref to the AcroForm's /Fields (the form made when missing,
 * existing fields kept), set /SigFlags 3 and write what changed: the form
 * or its /Fields array when indirect, else the catalog.
 */
static int
add_to_acroform(upd *u, pdf_obj *catalog, bool *catalog_changed,
    uint32_t field_num, const pdf_obj *name, char *field_out, size_t field_outsz)
{
	qes_pdf *pdf = u->pdf;
	const pdf_obj *form_ref = pdf_dict_get(catalog, "AcroForm"), *fields_ref;
	pdf_obj *form = NULL, *fields = NULL;
	uint64_t max_n;
	bool used;
	int r;

	if (form_ref != NULL && form_ref->type != PDF_REF && form_ref->type != PDF_DICT)
		form_ref = NULL;
	if (form_ref == NULL) {
		if ((form = pdf_obj_new(PDF_DICT)) == NULL)
			return QES_ERR_ALLOC;
	} else if ((r = pdf_resolve(pdf, form_ref, &form)) != 0) {
		return r;
	}
	if (form->type != PDF_DICT) {
		pdf_obj_free(form);
		if ((form = pdf_obj_new(PDF_DICT)) == NULL)
			return QES_ERR_ALLOC;
		form_ref = NULL;
	}
	fields_ref = pdf_dict_get(form, "Fields");
	if (fields_ref != NULL && fields_ref->type == PDF_REF) {
		if ((r = pdf_resolve(pdf, fields_ref, &fields)) != 0)
			goto out;
	} else if (fields_ref != NULL && fields_ref->type == PDF_ARRAY) {
		fields = pdf_obj_clone(fields_ref);
	} else {
		fields = pdf_obj_new(PDF_ARRAY);
		fields_ref = NULL;
	}
	if (fields == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if (fields->type != PDF_ARRAY) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "the AcroForm's /Fields is not an array");
		goto out;
	}
	/* the field name: the caller's, or SignatureN not yet used */
	if ((r = scan_field_names(pdf, fields, name, &used, &max_n)) != 0)
		goto out;
	if (name != NULL && used) {
		r = pdf_err(pdf, QES_ERR_INVALID_ARG,
		    "a field with that name exists already");
		goto out;
	}
	if (name == NULL)
		snprintf(field_out, field_outsz, "Signature%llu",
		    (unsigned long long)((max_n > pdf->nsig ? max_n : pdf->nsig) + 1));
	if ((r = pdf_array_push(fields, pdf_new_ref(field_num, 0))) != 0)
		goto out;
	if (fields_ref != NULL && fields_ref->type == PDF_REF) {
		if ((r = upd_obj(u, fields_ref->u.r.num, fields_ref->u.r.gen, fields)) != 0)
			goto out;
	} else {
		r = pdf_dict_set(form, "Fields", fields);
		fields = NULL;
		if (r != 0)
			goto out;
	}
	if ((r = pdf_dict_set(form, "SigFlags", pdf_new_int(3))) != 0)
		goto out;
	if (form_ref != NULL && form_ref->type == PDF_REF) {
		r = upd_obj(u, form_ref->u.r.num, form_ref->u.r.gen, form);
	} else {
		r = pdf_dict_set(catalog, "AcroForm", form);
		form = NULL;
		*catalog_changed = true;
	}
 out:
	pdf_obj_free(fields);
	pdf_obj_free(form);
	return r;
}

/* Add the widget to the first page's /Annots. */
static int
add_to_page(upd *u, uint32_t widget_num)
{
	qes_pdf *pdf = u->pdf;
	pdf_obj *page = NULL, *annots = NULL;
	const pdf_obj *aref;
	int r;

	if ((r = pdf_load(pdf, pdf->page_num, &page)) != 0)
		return r;
	if (page->type != PDF_DICT) {
		r = pdf_err(pdf, QES_ERR_PDF_MALFORMED, "the first page is not a dictionary");
		goto out;
	}
	aref = pdf_dict_get(page, "Annots");
	if (aref != NULL && aref->type == PDF_REF) {
		if ((r = pdf_resolve(pdf, aref, &annots)) != 0)
			goto out;
		if (annots->type == PDF_ARRAY) {
			if ((r = pdf_array_push(annots, pdf_new_ref(widget_num, 0))) == 0)
				r = upd_obj(u, aref->u.r.num, aref->u.r.gen, annots);
			goto out;
		}
		/* a broken /Annots reference: replaced by a direct array */
		pdf_obj_free(annots);
		annots = NULL;
	}
	if (aref != NULL && aref->type == PDF_ARRAY)
		annots = pdf_obj_clone(aref);
	else
		annots = pdf_obj_new(PDF_ARRAY);
	if (annots == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	if ((r = pdf_array_push(annots, pdf_new_ref(widget_num, 0))) != 0)
		goto out;
	r = pdf_dict_set(page, "Annots", annots);
	annots = NULL;
	if (r == 0)
		r = upd_obj(u, pdf->page_num, pdf->page_gen, page);
 out:
	pdf_obj_free(annots);
	pdf_obj_free(page);
	return r;
}

/* ---- signing ---- */

static int
sig_dict(upd *u, uint32_t num, const qes_pdf_sign_params *p, size_t *br_pos,
    size_t *lt_pos)
{
	qes_buf *b = u->body;
	char when[64];
	struct tm tm;
	time_t t = p->signing_time ? p->signing_time : time(NULL);
	int r;

	if ((r = upd_begin(u, num, 0)) != 0)
		return r;
	if (p->subfilter == QES_PDF_RFC3161)
		r = qes_buf_put_str(b, "<</Type/DocTimeStamp/Filter/Adobe.PPKLite"
		    "/SubFilter/ETSI.RFC3161");
	else
		r = qes_buf_put_str(b, "<</Type/Sig/Filter/Adobe.PPKLite"
		    "/SubFilter/ETSI.CAdES.detached");
	if (r != 0 || (r = qes_buf_put_str(b, "/ByteRange")) != 0)
		return r;
	*br_pos = qes_buf_len(b);
	if ((r = qes_buf_putf(b, "%*s", BYTERANGE_WIDTH, "")) != 0 ||
	    (r = qes_buf_put_str(b, "/Contents")) != 0)
		return r;
	*lt_pos = qes_buf_len(b);
	if ((r = qes_buf_put_u8(b, '<')) != 0 ||
	    (r = qes_buf_reserve(b, 2 * p->contents_bytes + 1)) != 0)
		return r;
	for (size_t i = 0; i < 2 * p->contents_bytes; i++)
		if ((r = qes_buf_put_u8(b, '0')) != 0)
			return r;
	if ((r = qes_buf_put_u8(b, '>')) != 0)
		return r;
	if (p->subfilter != QES_PDF_RFC3161) {
		if (gmtime_r(&t, &tm) == NULL ||
		    strftime(when, sizeof(when), "D:%Y%m%d%H%M%S+00'00'", &tm) == 0)
			return QES_ERR_INVALID_ARG;
		if ((r = put_text_entry(b, "M", when)) != 0 ||
		    (r = put_text_entry(b, "Name", p->name)) != 0 ||
		    (r = put_text_entry(b, "Reason", p->reason)) != 0 ||
		    (r = put_text_entry(b, "Location", p->location)) != 0 ||
		    (r = put_text_entry(b, "ContactInfo", p->contact_info)) != 0)
			return r;
	}
	return qes_buf_put_str(b, ">>\nendobj\n");
}

/*
 * A document certified with DocMDP permission 1 allows no change: a new
 * approval signature would invalidate the certification, so it is refused.
 * (DSS and document timestamps stay allowed, as PAdES B-LT/B-LTA need.)
 */
static int
check_docmdp(qes_pdf *pdf)
{
	pdf_obj *perms = NULL, *sig = NULL, *ref = NULL, *tp = NULL;
	const pdf_obj *refs, *p;
	size_t i;
	int r;

	if ((r = pdf_resolve(pdf, pdf_dict_get(pdf->catalog, "Perms"), &perms)) != 0 ||
	    (r = pdf_resolve(pdf, pdf_dict_get(perms, "DocMDP"), &sig)) != 0)
		goto out;
	refs = pdf_dict_get(sig, "Reference");
	for (i = 0; refs != NULL && refs->type == PDF_ARRAY && i < refs->u.a.n; i++) {
		pdf_obj_free(ref);
		pdf_obj_free(tp);
		ref = tp = NULL;
		if ((r = pdf_resolve(pdf, refs->u.a.items[i], &ref)) != 0 ||
		    (r = pdf_resolve(pdf, pdf_dict_get(ref, "TransformParams"), &tp)) != 0)
			goto out;
		p = pdf_dict_get(tp, "P");
		if (pdf_is_name(pdf_dict_get(ref, "TransformMethod"), "DocMDP") &&
		    p != NULL && p->type == PDF_INT && p->u.i == 1) {
			r = pdf_err(pdf, QES_ERR_INVALID_ARG,
			    "the document is certified with no changes allowed (DocMDP P=1)");
			goto out;
		}
	}
 out:
	pdf_obj_free(tp);
	pdf_obj_free(ref);
	pdf_obj_free(sig);
	pdf_obj_free(perms);
	return r;
}

static const EVP_MD *
evp_md(qes_md md)
{
	switch (md) {
	case QES_MD_SHA256: return EVP_sha256();
	case QES_MD_SHA384: return EVP_sha384();
	case QES_MD_SHA512: return EVP_sha512();
	}
	return NULL;
}

static int
sign_prepare(qes_pdf *pdf, const qes_pdf_sign_params *params,
    const char *out_path, qes_buf *obuf, qes_md md, qes_pdf_sign_ctx **out)
{
	qes_pdf_sign_ctx *ctx = NULL;
	pdf_obj *catalog = NULL, *name = NULL, *widget = NULL;
	EVP_MD_CTX *mdctx = NULL;
	const EVP_MD *evp = evp_md(md);
	bool catalog_changed = false;
	uint32_t sig_num = 0, field_num = 0;
	size_t br_pos, lt_pos, skip_to;
	char brtext[BYTERANGE_WIDTH + 1];
	unsigned int dlen;
	upd u;
	int r, n;

	*out = NULL;
	memset(&u, 0, sizeof(u));
	pdf->err[0] = 0;
	if (params == NULL || (out_path == NULL) == (obuf == NULL) || evp == NULL ||
	    (params->subfilter != QES_PDF_CADES_DETACHED &&
	    params->subfilter != QES_PDF_RFC3161))
		return pdf_err(pdf, QES_ERR_INVALID_ARG, "bad signing parameters");
	if (params->contents_bytes == 0 ||
	    params->contents_bytes > QES_PDF_MAX_CONTENTS_BYTES)
		return pdf_err(pdf, QES_ERR_INVALID_ARG,
		    "contents_bytes must be 1..%zu", QES_PDF_MAX_CONTENTS_BYTES);
	if (params->subfilter == QES_PDF_CADES_DETACHED &&
	    (r = check_docmdp(pdf)) != 0)
		return r;
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return QES_ERR_ALLOC;
	ctx->fd = -1;
	ctx->pdf = pdf;
	ctx->contents_bytes = params->contents_bytes;
	if (params->field_name != NULL && params->field_name[0] != 0) {
		if (strlen(params->field_name) > MAX_FIELD_NAME ||
		    strchr(params->field_name, '.') != NULL) {
			r = pdf_err(pdf, QES_ERR_INVALID_ARG,
			    "a field name has at most %d bytes and no '.'", MAX_FIELD_NAME);
			goto fail;
		}
		if ((r = text_string(params->field_name, &name)) != 0) {
			if (r == QES_ERR_INVALID_ARG)
				pdf_err(pdf, r, "the field name is not valid UTF-8");
			goto fail;
		}
		snprintf(ctx->field, sizeof(ctx->field), "%s", params->field_name);
	}
	if ((r = upd_init(&u, pdf)) != 0)
		goto fail;
	u.seed = params->id_seed;
	if ((r = upd_new_num(&u, &sig_num)) != 0 ||
	    (r = upd_new_num(&u, &field_num)) != 0)
		goto fail;
	if ((catalog = pdf_obj_clone(pdf->catalog)) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	if ((r = add_to_acroform(&u, catalog, &catalog_changed, field_num, name,
	    ctx->field, sizeof(ctx->field))) != 0)
		goto fail;
	if ((r = add_to_page(&u, field_num)) != 0)
		goto fail;
	if (catalog_changed &&
	    (r = upd_obj(&u, pdf->root_num, pdf->root_gen, catalog)) != 0)
		goto fail;
	/* the field and its widget in one dictionary (12.7.3.1) */
	if ((widget = pdf_obj_new(PDF_DICT)) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	/* a generated name is ASCII */
	if (name == NULL &&
	    (name = pdf_new_string(ctx->field, strlen(ctx->field))) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	{
		pdf_obj *rect = pdf_obj_new(PDF_ARRAY);

		r = pdf_dict_set(widget, "Type", pdf_new_name("Annot"));
		if (r == 0) r = pdf_dict_set(widget, "Subtype", pdf_new_name("Widget"));
		if (r == 0) r = pdf_dict_set(widget, "FT", pdf_new_name("Sig"));
		if (r == 0) r = pdf_dict_set(widget, "T", pdf_obj_clone(name));
		if (r == 0) r = pdf_dict_set(widget, "V", pdf_new_ref(sig_num, 0));
		if (r == 0) r = pdf_dict_set(widget, "F", pdf_new_int(132));
		if (r == 0) r = pdf_dict_set(widget, "P",
		    pdf_new_ref(pdf->page_num, pdf->page_gen));
		for (int i = 0; r == 0 && i < 4; i++)
			r = rect ? pdf_array_push(rect, pdf_new_int(0)) : QES_ERR_ALLOC;
		if (r == 0)
			r = pdf_dict_set(widget, "Rect", rect);
		else
			pdf_obj_free(rect);
		if (r != 0)
			goto fail;
	}
	if ((r = upd_obj(&u, field_num, 0, widget)) != 0)
		goto fail;
	if ((r = sig_dict(&u, sig_num, params, &br_pos, &lt_pos)) != 0) {
		if (r == QES_ERR_INVALID_ARG)
			pdf_err(pdf, r, "/Name, /Reason, /Location or /ContactInfo is "
			    "not valid UTF-8 or longer than 4096 bytes");
		goto fail;
	}
	if ((r = upd_xref(&u)) != 0)
		goto fail;
	/* the byte ranges, now that every length is known */
	skip_to = lt_pos + 2 + 2 * params->contents_bytes;
	ctx->br[0] = 0;
	ctx->br[1] = u.base + lt_pos;
	ctx->br[2] = u.base + skip_to;
	ctx->br[3] = qes_buf_len(u.body) - skip_to;
	n = snprintf(brtext, sizeof(brtext), "[0 %llu %llu %llu]",
	    (unsigned long long)ctx->br[1], (unsigned long long)ctx->br[2],
	    (unsigned long long)ctx->br[3]);
	if (n < 0 || n > BYTERANGE_WIDTH) {
		r = QES_ERR_INTERNAL;
		goto fail;
	}
	memcpy(qes_buf_mutable(u.body) + br_pos, brtext, (size_t)n);
	if ((mdctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(mdctx, evp, NULL) != 1) {
		r = QES_ERR_CRYPTO;
		goto fail;
	}
	if (obuf != NULL) {
		/* hashed now, written by finish */
		if ((r = hash_original(pdf, mdctx)) != 0 ||
		    (r = hash_update(mdctx, qes_buf_data(u.body), lt_pos)) != 0 ||
		    (r = hash_update(mdctx, qes_buf_data(u.body) + skip_to,
		    qes_buf_len(u.body) - skip_to)) != 0)
			goto fail;
		ctx->obuf = obuf;
		ctx->body = u.body;
		u.body = NULL;
	} else if ((r = write_tmp(pdf, out_path, u.body, mdctx, lt_pos, skip_to,
	    &ctx->tmp_path, &ctx->fd)) != 0)
		goto fail;
	if (EVP_DigestFinal_ex(mdctx, ctx->digest, &dlen) != 1) {
		r = QES_ERR_CRYPTO;
		goto fail;
	}
	ctx->digest_len = dlen;
	if (out_path != NULL && (ctx->out_path = strdup(out_path)) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	*out = ctx;
	ctx = NULL;
	r = 0;
 fail:
	EVP_MD_CTX_free(mdctx);
	pdf_obj_free(widget);
	pdf_obj_free(name);
	pdf_obj_free(catalog);
	upd_free(&u);
	qes_pdf_sign_free(ctx);
	return r;
}

int
qes_pdf_sign_prepare(qes_pdf *pdf, const qes_pdf_sign_params *params,
    const char *out_path, qes_md md, qes_pdf_sign_ctx **out)
{
	if (out_path == NULL) {
		*out = NULL;
		return pdf_err(pdf, QES_ERR_INVALID_ARG, "no output path");
	}
	return sign_prepare(pdf, params, out_path, NULL, md, out);
}

int
qes_pdf_sign_prepare_buf(qes_pdf *pdf, const qes_pdf_sign_params *params,
    qes_buf *out, qes_md md, qes_pdf_sign_ctx **out_ctx)
{
	if (out == NULL) {
		*out_ctx = NULL;
		return pdf_err(pdf, QES_ERR_INVALID_ARG, "no output buffer");
	}
	return sign_prepare(pdf, params, NULL, out, md, out_ctx);
}

int
qes_pdf_sign_digest(const qes_pdf_sign_ctx *ctx, uint8_t *out, size_t outsz,
    size_t *len)
{
	if (ctx == NULL || outsz < ctx->digest_len)
		return QES_ERR_INVALID_ARG;
	memcpy(out, ctx->digest, ctx->digest_len);
	*len = ctx->digest_len;
	return 0;
}

void
qes_pdf_sign_byte_range(const qes_pdf_sign_ctx *ctx, uint64_t br[4])
{
	memcpy(br, ctx->br, sizeof(ctx->br));
}

int
qes_pdf_sign_write_signed(const qes_pdf_sign_ctx *ctx, int fd)
{
	uint8_t *chunk;
	uint64_t off, end;
	size_t want;
	ssize_t n;
	int i, r = 0;

	if (ctx == NULL || (ctx->fd < 0 && ctx->obuf == NULL))
		return QES_ERR_INVALID_ARG;
	if (ctx->obuf != NULL) {
		/* the input, the update up to /Contents, the update after it */
		const uint8_t *body = qes_buf_data(ctx->body);
		size_t size = ctx->pdf->size;

		if ((r = write_all(fd, ctx->pdf->map, size)) != 0 ||
		    (r = write_all(fd, body, (size_t)ctx->br[1] - size)) != 0)
			return r;
		return write_all(fd, body + (ctx->br[2] - size), (size_t)ctx->br[3]);
	}
	if ((chunk = malloc(COPY_CHUNK)) == NULL)
		return QES_ERR_ALLOC;
	for (i = 0; r == 0 && i < 4; i += 2) {
		off = ctx->br[i];
		end = ctx->br[i] + ctx->br[i + 1];
		while (r == 0 && off < end) {
			want = end - off < COPY_CHUNK ? (size_t)(end - off) : COPY_CHUNK;
			n = pread(ctx->fd, chunk, want, (off_t)off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 || write_all(fd, chunk, (size_t)n) != 0)
				r = QES_ERR_IO;
			else
				off += (uint64_t)n;
		}
	}
	free(chunk);
	return r;
}

const char *
qes_pdf_sign_field_name(const qes_pdf_sign_ctx *ctx)
{
	return ctx->field;
}

int
qes_pdf_sign_finish(qes_pdf_sign_ctx *ctx, const uint8_t *der, size_t len)
{
	qes_buf *hex = NULL;
	size_t off = 0;
	ssize_t n;
	int r;

	if (ctx == NULL || ctx->done || (ctx->fd < 0 && ctx->obuf == NULL) ||
	    der == NULL || len == 0)
		return QES_ERR_INVALID_ARG;
	ctx->done = true;	/* one attempt: a failure removes the file */
	if (len > ctx->contents_bytes) {
		r = pdf_err(ctx->pdf, QES_ERR_LIMIT,
		    "the signature needs %zu bytes, %zu were reserved", len,
		    ctx->contents_bytes);
		goto fail;
	}
	if ((hex = qes_buf_new()) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	if ((r = qes_buf_put_hex(hex, der, len)) != 0)
		goto fail;
	if (ctx->obuf != NULL) {
		/* the placeholder of the update, then the whole document out */
		memcpy(qes_buf_mutable(ctx->body) + (ctx->br[1] - ctx->pdf->size) + 1,
		    qes_buf_data(hex), qes_buf_len(hex));
		r = write_buf(ctx->pdf, ctx->obuf, ctx->body);
		goto out;
	}
	while (off < qes_buf_len(hex)) {
		n = pwrite(ctx->fd, qes_buf_data(hex) + off, qes_buf_len(hex) - off,
		    (off_t)(ctx->br[1] + 1 + off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = pdf_err(ctx->pdf, QES_ERR_IO, "cannot write the signature");
			goto fail;
		}
		off += (size_t)n;
	}
	r = commit_tmp(ctx->fd, ctx->tmp_path, ctx->out_path);
	ctx->fd = -1;
	if (r != 0) {
		r = pdf_err(ctx->pdf, r, "cannot move the signed PDF to %s",
		    ctx->out_path);
		goto out;
	}
	free(ctx->tmp_path);
	ctx->tmp_path = NULL;
	goto out;
 fail:
	if (ctx->obuf != NULL)	/* nothing was written to it */
		goto out;
	close(ctx->fd);
	ctx->fd = -1;
	unlink(ctx->tmp_path);
 out:
	qes_buf_free(hex);
	return r;
}

void
qes_pdf_sign_free(qes_pdf_sign_ctx *ctx)
{
	if (ctx == NULL)
		return;
	qes_buf_free(ctx->body);
	if (ctx->fd >= 0)
		close(ctx->fd);
	if (ctx->tmp_path != NULL)
		unlink(ctx->tmp_path);
	free(ctx->tmp_path);
	free(ctx->out_path);
	free(ctx);
}

/* ---- /DSS ---- */

static int
dss_array(upd *u, pdf_obj *dss, const char *key, const qes_ades_blob *blobs,
    size_t n)
{
	pdf_obj *arr = NULL;
	uint32_t num = 0;
	size_t i;
	int r;

	if (n == 0)
		return 0;
	if ((r = pdf_resolve(u->pdf, pdf_dict_get(dss, key), &arr)) != 0)
		return r;
	if (arr->type != PDF_ARRAY) {
		pdf_obj_free(arr);
		if ((arr = pdf_obj_new(PDF_ARRAY)) == NULL)
			return QES_ERR_ALLOC;
	}
	for (i = 0; i < n; i++) {
		if (blobs[i].data == NULL || blobs[i].len == 0) {
			r = QES_ERR_INVALID_ARG;
			goto fail;
		}
		if ((r = upd_new_num(u, &num)) != 0 ||
		    (r = upd_stream(u, num, blobs[i].data, blobs[i].len)) != 0 ||
		    (r = pdf_array_push(arr, pdf_new_ref(num, 0))) != 0)
			goto fail;
	}
	return pdf_dict_set(dss, key, arr);
 fail:
	pdf_obj_free(arr);
	return r;
}

static int
add_dss(qes_pdf *pdf, const qes_ades_vdata *vd, const char *out_path, qes_buf *obuf)
{
	pdf_obj *catalog = NULL, *dss = NULL;
	char *tmp = NULL;
	uint32_t dss_num = 0;
	upd u;
	int fd = -1, r;

	memset(&u, 0, sizeof(u));
	pdf->err[0] = 0;
	if (vd == NULL || vd->ncerts + vd->nocsps + vd->ncrls == 0)
		return pdf_err(pdf, QES_ERR_INVALID_ARG, "no validation data to add");
	if ((r = upd_init(&u, pdf)) != 0)
		goto out;
	if ((catalog = pdf_obj_clone(pdf->catalog)) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	/* an existing /DSS is kept and extended (its /VRI too) */
	if ((r = pdf_resolve(pdf, pdf_dict_get(catalog, "DSS"), &dss)) != 0)
		goto out;
	if (dss->type != PDF_DICT) {
		pdf_obj_free(dss);
		if ((dss = pdf_obj_new(PDF_DICT)) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
	}
	if ((r = dss_array(&u, dss, "Certs", vd->certs, vd->ncerts)) != 0 ||
	    (r = dss_array(&u, dss, "OCSPs", vd->ocsps, vd->nocsps)) != 0 ||
	    (r = dss_array(&u, dss, "CRLs", vd->crls, vd->ncrls)) != 0 ||
	    (r = upd_new_num(&u, &dss_num)) != 0 ||
	    (r = upd_obj(&u, dss_num, 0, dss)) != 0 ||
	    (r = pdf_dict_set(catalog, "DSS", pdf_new_ref(dss_num, 0))) != 0 ||
	    (r = upd_obj(&u, pdf->root_num, pdf->root_gen, catalog)) != 0 ||
	    (r = upd_xref(&u)) != 0)
		goto out;
	if (obuf != NULL) {
		r = write_buf(pdf, obuf, u.body);
		goto out;
	}
	if ((r = write_tmp(pdf, out_path, u.body, NULL, 0, 0, &tmp, &fd)) != 0)
		goto out;
	if ((r = commit_tmp(fd, tmp, out_path)) != 0)
		r = pdf_err(pdf, r, "cannot move the PDF to %s", out_path);
 out:
	free(tmp);
	pdf_obj_free(dss);
	pdf_obj_free(catalog);
	upd_free(&u);
	return r;
}

int
qes_pdf_add_dss(qes_pdf *pdf, const qes_ades_vdata *vd, const char *out_path)
{
	if (out_path == NULL)
		return pdf_err(pdf, QES_ERR_INVALID_ARG, "no output path");
	return add_dss(pdf, vd, out_path, NULL);
}

int
qes_pdf_add_dss_buf(qes_pdf *pdf, const qes_ades_vdata *vd, qes_buf *out)
{
	if (out == NULL)
		return pdf_err(pdf, QES_ERR_INVALID_ARG, "no output buffer");
	return add_dss(pdf, vd, NULL, out);
}
