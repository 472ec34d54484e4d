/*
 * fuzz_assuan.c - libFuzzer target for the Assuan helpers that read what a
 * pinentry program sends (percent-decoding of D lines straight into a
 * secret) and that escape what we send to it.
 *
 * Properties checked besides memory safety: decoding never yields more bytes
 * than it was given; escaping never emits a raw control character, so
 * dialog text can never inject an Assuan command; escaping then decoding
 * gives the input back (for inputs without NUL).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "assuan.h"
#include "qes/buf.h"
#include "qes/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qes_secret *s = qes_secret_new(QES_PIN_MAX);
	qes_buf *esc = qes_buf_new();
	char *str = NULL;
	size_t i;

	if (s == NULL || esc == NULL || (str = malloc(size + 1)) == NULL)
		abort();
	if (qes_assuan_unescape_into_secret((const char *)data, size, s) == 0 &&
	    qes_secret_len(s) > size)
		abort();
	memcpy(str, data, size);
	str[size] = '\0';
	if (qes_assuan_escape(str, esc) == 0) {
		const uint8_t *e = qes_buf_data(esc);

		for (i = 0; i < qes_buf_len(esc); i++)
			if (e[i] < 0x20 || e[i] == 0x7f)
				abort();
		if (strlen(str) == size && size <= QES_PIN_MAX / 3 && size > 0) {
			qes_secret_clear(s);
			if (qes_assuan_unescape_into_secret((const char *)e,
			    qes_buf_len(esc), s) != 0)
				abort();
			/* a leading space is escaped, every byte comes back */
			if (qes_secret_len(s) != size ||
			    memcmp(qes_secret_data(s), data, size) != 0)
				abort();
		}
	}
	qes_buf_reset(esc);
	(void)qes_assuan_escape_max(str, 200, esc, NULL);
	free(str);
	qes_buf_free(esc);
	qes_secret_free(s);
	return 0;
}
