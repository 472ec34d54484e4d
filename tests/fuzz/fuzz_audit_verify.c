/*
 * fuzz_audit_verify.c - libFuzzer target for the audit export verifier that
 * `qes audit verify FILE` runs on files from anywhere: the input is streamed
 * through qes_audit_verify_stream (line splitting, strict JSON, the header,
 * record parsing, canonical encoding and the hash chain) from a memory
 * FILE. Seeds in corpus/audit_verify/ are a small valid export (anchored
 * and from seq 1) and broken variants, so mutations start deep inside the
 * chain logic instead of at the header check.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/audit.h"
#include "qes/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qes_audit_verify_result res;
	uint8_t *copy;
	FILE *fp;
	int r;

	/* fmemopen wants a writable buffer of at least one byte */
	if ((copy = malloc(size + 1)) == NULL)
		return 0;
	copy[0] = 0;
	if (size > 0)
		memcpy(copy, data, size);
	if ((fp = fmemopen(copy, size > 0 ? size : 1, "r")) == NULL) {
		free(copy);
		return 0;
	}
	if (size == 0)
		(void)fgetc(fp);	/* a 1-byte stream of which nothing counts */
	r = qes_audit_verify_stream(fp, &res);
	fclose(fp);
	free(copy);

	/* what the CLI prints must be consistent with the verdict */
	if (r > 0 || memchr(res.reason, '\0', sizeof(res.reason)) == NULL ||
	    memchr(res.tenant_id, '\0', sizeof(res.tenant_id)) == NULL)
		abort();
	if (r == 0 && (res.reason[0] != '\0' || res.broken_seq != 0 ||
	    res.last_seq != res.anchor_seq + res.records))
		abort();
	if (r == QES_ERR_CHAIN_BROKEN && (res.broken_seq == 0 ||
	    res.reason[0] == '\0' || res.line < 2))
		abort();
	if ((r == QES_ERR_FORMAT || r == QES_ERR_LIMIT || r == QES_ERR_TRUNCATED ||
	    r == QES_ERR_UNSUPPORTED) && res.reason[0] == '\0')
		abort();
	return 0;
}
