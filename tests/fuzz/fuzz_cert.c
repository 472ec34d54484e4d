/*
 * fuzz_cert.c - libFuzzer target for certificate parsing: qes_cert_from_der
 * (OpenSSL's decoder plus our qcStatements, keyUsage, policies and name
 * handling) followed by everything a caller reads from the result.
 * Seeds in corpus/cert/ carry qcStatements, so mutations reach our own DER
 * reader inside the extension (signatures are not checked when parsing).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/cert.h"
#include "qes/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
touch(const char *s)
{
	/* every string the info exposes must be a readable C string */
	if (s == NULL || strlen(s) > 64 * 1024 * 4)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const qes_cert_info *info;
	const uint8_t *der;
	qes_cert *c = NULL;
	qes_cert_class cls;
	size_t der_len;
	int r;

	r = qes_cert_from_der(data, size, &c);
	if (r != 0) {
		if (c != NULL || r > 0)
			abort();
		return 0;
	}
	if (c == NULL || (info = qes_cert_get_info(c)) == NULL)
		abort();
	touch(info->subject);
	touch(info->subject_cn);
	touch(info->issuer);
	touch(info->serial_hex);
	touch(info->curve);
	touch(info->sha256_hex);
	if (strlen(info->sha256_hex) != 64)
		abort();
	der = qes_cert_der(c, &der_len);
	if (der_len != size || memcmp(der, data, size) != 0)
		abort();
	cls = qes_cert_classify(c, 0);
	(void)qes_cert_class_name(cls);
	cls = qes_cert_classify(c, info->not_before);
	/* qualified needs the full qcStatements set and nonRepudiation */
	if (cls == QES_CERT_QUALIFIED && (!info->has_key_usage ||
	    !(info->key_usage & QES_KU_NON_REPUDIATION) ||
	    !(info->qc & QES_QC_COMPLIANCE) || !(info->qc & QES_QC_SSCD)))
		abort();
	(void)qes_cert_classify(c, INT64_MAX);
	(void)qes_cert_classify(c, INT64_MIN);
	(void)qes_cert_schemes(c);
	qes_cert_free(c);
	return 0;
}
