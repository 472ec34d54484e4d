/*
 * fuzz_ecdsa.c - libFuzzer target for the ECDSA signature encodings of
 * sig.c. The first input byte picks the field length (0..69, so invalid
 * lengths are exercised too), the rest is the signature. Two properties
 * must hold, else abort():
 *   DER accepted by qes_ecdsa_der_to_raw converts back to the same bytes
 *   (the strict parser admits exactly one encoding per value), and
 *   raw r||s accepted by qes_ecdsa_raw_to_der converts back to the same raw.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qes_buf *raw = NULL, *der = NULL;
	size_t field_len;

	if (size < 1)
		return 0;
	field_len = data[0] % 70;
	data++;
	size--;
	if ((raw = qes_buf_new()) == NULL || (der = qes_buf_new()) == NULL)
		abort();

	/* DER -> raw -> DER */
	if (qes_ecdsa_der_to_raw(data, size, field_len, raw) == 0) {
		if (qes_buf_len(raw) != 2 * field_len)
			abort();
		if (qes_ecdsa_raw_to_der(qes_buf_data(raw), qes_buf_len(raw), der) != 0)
			abort();
		if (qes_buf_len(der) != size ||
		    memcmp(qes_buf_data(der), data, size) != 0)
			abort();
	} else if (qes_buf_len(raw) != 0)
		abort();	/* nothing may be appended on failure */

	/* raw -> DER -> raw */
	qes_buf_reset(raw);
	qes_buf_reset(der);
	if (qes_ecdsa_raw_to_der(data, size, der) == 0) {
		if (qes_ecdsa_der_to_raw(qes_buf_data(der), qes_buf_len(der),
		    size / 2, raw) != 0)
			abort();
		if (qes_buf_len(raw) != size ||
		    memcmp(qes_buf_data(raw), data, size) != 0)
			abort();
	}
	qes_buf_free(raw);
	qes_buf_free(der);
	return 0;
}
