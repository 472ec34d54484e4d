/*
 * xml_priv.h - XML parsing with limits and C14N for XAdES (src/lib/xml.c).
 * Private to libqes.
 */
#ifndef QES_XML_PRIV_H
#define QES_XML_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <libxml/tree.h>

#include "qes/buf.h"

/*
 * Parse untrusted XML (limits and refusals as in qes/xades.h). On success
 * *out is the document (free with xmlFreeDoc); otherwise the reason is in
 * errmsg and the result QES_ERR_XML_MALFORMED or QES_ERR_LIMIT.
 */
int qes_xml_parse(const uint8_t *data, size_t len, xmlDocPtr *out, char *errmsg,
    size_t errlen);

/* Receives canonical octets piece by piece; a non-zero QES_ERR_* stops C14N. */
typedef int (*qes_xml_sink_fn)(void *arg, const uint8_t *data, size_t len);

/*
 * Stream the canonical octets (C14N 1.0 without comments; exclusive unless
 * inclusive) of the subtree at top, or with whole_doc_but of the whole
 * document except the subtree at top, to fn - so a large document is
 * hashed, not copied. QES_ERR_XML_MALFORMED (with libxml2's reason in
 * errmsg) when C14N refuses the document; the sink's error when it fails.
 */
int qes_xml_c14n(xmlDocPtr doc, xmlNodePtr top, int whole_doc_but, int inclusive,
    qes_xml_sink_fn fn, void *arg, char *errmsg, size_t errlen);

#endif
