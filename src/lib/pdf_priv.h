/*
 * pdf_priv.h - what the PDF files of libqes share: the object model, the
 * lexer (pdf_lex.c), the cross-reference reader (pdf_xref.c), the document
 * handle (pdf.c) and the incremental-update writer (pdf_write.c).
 *
 * Objects are small trees owned by whoever parsed them (pdf_obj_free).
 * Strings and names keep their decoded bytes; reals keep their source text,
 * so an object written back reads exactly as before.
 */
#ifndef QES_PDF_PRIV_H
#define QES_PDF_PRIV_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qes/buf.h"
#include "qes/pdf.h"

typedef enum pdf_type {
	PDF_NULL = 0,
	PDF_BOOL,
	PDF_INT,
	PDF_REAL,
	PDF_STRING,
	PDF_NAME,
	PDF_ARRAY,
	PDF_DICT,
	PDF_REF,
	PDF_STREAM,	/* a dict plus where its raw data lies */
} pdf_type;

typedef struct pdf_obj pdf_obj;

typedef struct pdf_kv {
	char *key;	/* decoded name, NUL-terminated (names hold no NUL) */
	pdf_obj *val;
} pdf_kv;

struct pdf_obj {
	pdf_type type;
	union {
		bool b;
		int64_t i;
		struct {
			uint8_t *p;	/* NUL-terminated for convenience */
			size_t len;
		} s;			/* PDF_STRING, PDF_NAME, PDF_REAL text */
		struct {
			pdf_obj **items;
			size_t n, cap;
		} a;
		struct {
			pdf_kv *kv;
			size_t n, cap;
			/* PDF_STREAM: raw data at [data_off, data_off+data_len)
			 * of the buffer the object came from */
			uint64_t data_off, data_len;
		} d;
		struct {
			uint32_t num;
			uint32_t gen;
		} r;
	} u;
};

/* Where parsed bytes come from, for errors and stream data. */
typedef struct pdf_lexer {
	qes_cursor c;
	const qes_pdf_limits *lim;
	char *err;
	size_t errlen;
} pdf_lexer;

/* pdf_lex.c */
int pdf_set_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pdf_skip_ws(qes_cursor *c);
/* Parse one direct object (arrays and dicts nested), refs as PDF_REF. */
int pdf_parse_obj(pdf_lexer *lx, pdf_obj **out);
/* "N G obj" header; returns numbers. */
int pdf_parse_obj_header(pdf_lexer *lx, uint32_t *num, uint32_t *gen);
/* Does the input continue with keyword kw (followed by a delimiter)? */
bool pdf_keyword(qes_cursor *c, const char *kw);
int pdf_parse_int(qes_cursor *c, int64_t *out);

pdf_obj *pdf_obj_new(pdf_type t);
void pdf_obj_free(pdf_obj *o);
pdf_obj *pdf_obj_clone(const pdf_obj *o);
pdf_obj *pdf_dict_get(const pdf_obj *dict, const char *key);
/* Replace or add; takes ownership of val (freed on failure). */
int pdf_dict_set(pdf_obj *dict, const char *key, pdf_obj *val);
void pdf_dict_del(pdf_obj *dict, const char *key);
int pdf_array_push(pdf_obj *arr, pdf_obj *val);
pdf_obj *pdf_new_int(int64_t v);
pdf_obj *pdf_new_ref(uint32_t num, uint32_t gen);
pdf_obj *pdf_new_name(const char *name);
pdf_obj *pdf_new_string(const void *p, size_t len);
bool pdf_is_name(const pdf_obj *o, const char *name);
/* Serialise o (a stream's dictionary only) in PDF syntax. */
int pdf_obj_write(qes_buf *b, const pdf_obj *o);

/* pdf_xref.c: one cross-reference entry per object number */
typedef struct pdf_xent {
	uint8_t type;		/* 0 free/unknown, 1 in file, 2 in object stream */
	uint8_t set;		/* seen in a newer section already */
	uint16_t gen;		/* generation (type 1) */
	uint32_t idx;		/* index inside the object stream (type 2) */
	uint64_t off;		/* offset (type 1) or object stream number */
} pdf_xent;

typedef struct pdf_objstm_cache {
	uint32_t num;
	uint8_t *data;
	size_t len;
	size_t first;
	uint32_t n;
} pdf_objstm_cache;

struct qes_pdf {
	qes_pdf_limits lim;
	int fd;			/* our descriptor of the file (pread copies); -1 in memory */
	const uint8_t *map;	/* the whole file, read-only mapping, or the caller's bytes */
	bool borrowed;		/* map is the caller's memory: no munmap, no madvise */
	size_t size;
	pdf_xent *xref;
	uint32_t nxref;		/* entries allocated (= /Size) */
	uint64_t startxref;	/* newest section's offset (the new /Prev) */
	bool xref_stream;	/* newest section is a stream */
	pdf_obj *trailer;	/* newest trailer dictionary (or xref stream dict) */
	pdf_obj *catalog;	/* resolved /Root */
	uint32_t root_num, root_gen;
	uint32_t page_num, page_gen;	/* first page */
	pdf_objstm_cache ostm;
	size_t nsig;
	uint32_t resolve_depth;
	char err[256];
};

int pdf_xref_load(qes_pdf *pdf);
/* Load object num (any generation); *out owned by the caller. */
int pdf_load(qes_pdf *pdf, uint32_t num, pdf_obj **out);
/* Follow o if it is a reference (loading it); *out owned by caller, a
 * clone when o is direct. */
int pdf_resolve(qes_pdf *pdf, const pdf_obj *o, pdf_obj **out);
/* Decoded data of a stream object (FlateDecode + PNG predictors). */
int pdf_stream_decode(qes_pdf *pdf, const uint8_t *base, size_t base_len,
    const pdf_obj *stm, uint8_t **out, size_t *outlen);
int pdf_err(qes_pdf *pdf, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
