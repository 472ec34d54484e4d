/*
 * ades.c - names of the AdES formats and levels (include/qes/ades.h).
 */
#include <stddef.h>
#include <strings.h>

#include "qes/ades.h"
#include "qes/err.h"

static const struct {
	qes_ades_level level;
	const char *aliases[3];		/* [0] is the canonical name */
} levels[] = {
	{ QES_ADES_B_B, { "B-B", "BB", "B" } },
	{ QES_ADES_B_T, { "B-T", "BT", "T" } },
	{ QES_ADES_B_LT, { "B-LT", "BLT", "LT" } },
	{ QES_ADES_B_LTA, { "B-LTA", "BLTA", "LTA" } },
};

static const struct {
	qes_ades_format format;
	const char *name;
} formats[] = {
	{ QES_ADES_CADES, "cades" },
	{ QES_ADES_PADES, "pades" },
	{ QES_ADES_XADES, "xades" },
	{ QES_ADES_JADES, "jades" },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *
qes_ades_level_name(qes_ades_level level)
{
	size_t i;

	for (i = 0; i < NELEM(levels); i++)
		if (levels[i].level == level)
			return levels[i].aliases[0];
	return NULL;
}

int
qes_ades_level_from_name(const char *name, qes_ades_level *out)
{
	size_t i, j;

	if (name == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < NELEM(levels); i++) {
		for (j = 0; j < NELEM(levels[i].aliases); j++) {
			if (strcasecmp(name, levels[i].aliases[j]) == 0) {
				*out = levels[i].level;
				return 0;
			}
		}
	}
	return QES_ERR_INVALID_ARG;
}

const char *
qes_ades_format_name(qes_ades_format f)
{
	size_t i;

	for (i = 0; i < NELEM(formats); i++)
		if (formats[i].format == f)
			return formats[i].name;
	return NULL;
}

int
qes_ades_format_from_name(const char *name, qes_ades_format *out)
{
	size_t i;

	if (name == NULL || out == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < NELEM(formats); i++) {
		if (strcasecmp(name, formats[i].name) == 0) {
			*out = formats[i].format;
			return 0;
		}
	}
	return QES_ERR_INVALID_ARG;
}
