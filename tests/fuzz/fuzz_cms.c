/*
 * fuzz_cms.c - libFuzzer target for CMS SignedData read back from outside
 * (a CAdES file given to qes verify, the CMS in a PDF's /Contents):
 * qes_cades_inspect() (the DER walk in cms.c, attributes, certificates,
 * revocation entries, the timestamp token, the signature check),
 * qes_cades_verify_integrity(), qes_cades_timestamp_token() and
 * qes_cades_add_vdata(), whose output must parse again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/cades.h"
#include "qes/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t crl[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
	qes_ades_blob blob = { crl, sizeof(crl) };
	/* opaque revocation entries; no certificate, which inspect would parse */
	qes_ades_vdata vd = { NULL, 0, &blob, 1, &blob, 1 };
	qes_cades_report rep, rep2;
	qes_buf *out = qes_buf_new(), *tok = qes_buf_new();

	if (out == NULL || tok == NULL)
		abort();
	if (qes_cades_inspect(data, size, &rep) == 0) {
		if (strlen(rep.signer_subject) >= sizeof(rep.signer_subject) ||
		    rep.message_digest_len > sizeof(rep.message_digest))
			abort();
		(void)qes_cades_verify_integrity(data, size, (const uint8_t *)"x", 1, 0);
		(void)qes_cades_timestamp_token(data, size, tok, NULL);
		if (qes_cades_add_vdata(data, size, &vd, out) == 0) {
			if (qes_cades_inspect(qes_buf_data(out), qes_buf_len(out), &rep2) != 0)
				abort();	/* what we write must read back */
			if (rep2.ncerts < rep.ncerts || rep2.signature_ok != rep.signature_ok)
				abort();
		}
	}
	qes_buf_free(tok);
	qes_buf_free(out);
	return 0;
}
