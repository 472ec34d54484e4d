/*
 * xml.c - untrusted XML in, canonical XML out, for XAdES (src/lib/xades.c).
 *
 * Parsing: libxml2 with XML_PARSE_NONET and neither XML_PARSE_NOENT nor
 * XML_PARSE_DTDLOAD; a DOCTYPE stops the parser at its start (SAX hook), so
 * no DTD, entity or default attribute can make the signed infoset differ
 * from what a verifier sees. Depth and node count are checked after the
 * parse, on top of libxml2's own depth guard; the size before it.
 *
 * Canonicalisation: libxml2's xmlC14NExecute (C14N 1.0, inclusive or
 * exclusive, without comments) over the node set XML DSig needs - a
 * subtree (SignedInfo, SignedProperties, SignatureValue, ...) or the whole
 * document without the signature (URI="" with the enveloped-signature
 * transform) - chosen by a visibility callback.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <libxml/c14n.h>
#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>

#include "qes/err.h"
#include "qes/xades.h"
#include "xml_priv.h"

/*
 * libxml2 reports some errors (an encoding it cannot convert while parsing,
 * a relative namespace URI that C14N forbids) through the global error
 * handler, by default to stderr, whatever the parser options. The handler
 * is per thread, so it is swapped for the call only, and the first message
 * kept for the caller.
 */
#if LIBXML_VERSION >= 21200
static void
keep_first_error(void *arg, const xmlError *e)
#else
static void
keep_first_error(void *arg, xmlErrorPtr e)
#endif
{
	char *msg = arg;

	if (msg[0] == '\0' && e != NULL && e->message != NULL) {
		snprintf(msg, 160, "%s", e->message);
		msg[strcspn(msg, "\n")] = '\0';
	}
}

struct parse_state {
	int saw_doctype;
};

/* SAX hook: a DOCTYPE ends the parse before its internal subset is read. */
static void
refuse_doctype(void *pctx, const xmlChar *name, const xmlChar *external_id,
    const xmlChar *system_id)
{
	xmlParserCtxtPtr p = pctx;
	struct parse_state *st = p->_private;

	(void)name;
	(void)external_id;
	(void)system_id;
	st->saw_doctype = 1;
	xmlStopParser(p);
}

/* Depth and node count of the tree, without recursion. */
static int
check_tree(xmlNodePtr root, char *errmsg, size_t errlen)
{
	xmlNodePtr n = root;
	size_t depth = 1, nodes = 0;

	while (n != NULL) {
		if (++nodes > QES_XADES_MAX_NODES) {
			snprintf(errmsg, errlen, "more than %d XML nodes",
			    QES_XADES_MAX_NODES);
			return QES_ERR_LIMIT;
		}
		if (n->type == XML_ENTITY_REF_NODE) {
			snprintf(errmsg, errlen, "entity reference '%s' (entities are refused)",
			    n->name != NULL ? (const char *)n->name : "?");
			return QES_ERR_XML_MALFORMED;
		}
		if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
			if (++depth > QES_XADES_MAX_DEPTH) {
				snprintf(errmsg, errlen, "XML nested deeper than %d elements",
				    QES_XADES_MAX_DEPTH);
				return QES_ERR_LIMIT;
			}
			n = n->children;
			continue;
		}
		while (n != NULL && n->next == NULL) {
			n = n->parent;
			if (n == NULL || n == root->parent)
				return 0;
			depth--;
		}
		if (n != NULL)
			n = n->next;
	}
	return 0;
}

int
qes_xml_parse(const uint8_t *data, size_t len, xmlDocPtr *out, char *errmsg,
    size_t errlen)
{
	struct parse_state st = { 0 };
	xmlStructuredErrorFunc saved_fn = xmlStructuredError;
	void *saved_arg = xmlStructuredErrorContext;
	char lib_msg[160];
	xmlParserCtxtPtr p = NULL;
	xmlDocPtr doc = NULL;
	const xmlError *xe;
	int r;

	*out = NULL;
	if (data == NULL || len == 0) {
		snprintf(errmsg, errlen, "empty XML document");
		return QES_ERR_XML_MALFORMED;
	}
	if (len > QES_XADES_MAX_DOC_BYTES || len > INT_MAX) {
		snprintf(errmsg, errlen, "XML document of %zu bytes, at most %zu", len,
		    QES_XADES_MAX_DOC_BYTES);
		return QES_ERR_LIMIT;
	}
	xmlInitParser();
	if ((p = xmlNewParserCtxt()) == NULL)
		return QES_ERR_ALLOC;
	p->_private = &st;
	p->sax->internalSubset = refuse_doctype;
	lib_msg[0] = '\0';
	xmlSetStructuredErrorFunc(lib_msg, keep_first_error);
	doc = xmlCtxtReadMemory(p, (const char *)data, (int)len, NULL, NULL,
	    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	xmlSetStructuredErrorFunc(saved_arg, saved_fn);
	if (st.saw_doctype) {
		snprintf(errmsg, errlen, "the document has a DOCTYPE (DTDs are refused)");
		r = QES_ERR_XML_MALFORMED;
		goto out;
	}
	if (doc == NULL || !p->wellFormed) {
		xe = xmlCtxtGetLastError(p);
		if (xe != NULL && xe->message != NULL) {
			snprintf(errmsg, errlen, "line %d: %s", xe->line, xe->message);
			errmsg[strcspn(errmsg, "\n")] = '\0';
		} else if (lib_msg[0] != '\0')
			snprintf(errmsg, errlen, "%s", lib_msg);
		else
			snprintf(errmsg, errlen, "XML document is not well formed");
		r = QES_ERR_XML_MALFORMED;
		goto out;
	}
	if (xmlDocGetRootElement(doc) == NULL) {
		snprintf(errmsg, errlen, "XML document without a root element");
		r = QES_ERR_XML_MALFORMED;
		goto out;
	}
	if ((r = check_tree(xmlDocGetRootElement(doc), errmsg, errlen)) != 0)
		goto out;
	*out = doc;
	doc = NULL;
	r = 0;
out:
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(p);
	return r;
}

int
qes_xades_check_xml(const uint8_t *doc, size_t len, char *errmsg, size_t errlen)
{
	char dummy[8];
	xmlDocPtr d;
	int r;

	if (errmsg == NULL) {
		errmsg = dummy;
		errlen = sizeof(dummy);
	}
	r = qes_xml_parse(doc, len, &d, errmsg, errlen);
	xmlFreeDoc(d);
	return r;
}

/* ---- canonicalisation ---- */

struct c14n_sink {
	qes_xml_sink_fn fn;
	void *arg;
	int err;
};

static int
sink_write(void *arg, const char *data, int len)
{
	struct c14n_sink *s = arg;

	if (len < 0)
		return -1;
	if (len > 0 && (s->err = s->fn(s->arg, (const uint8_t *)data, (size_t)len)) != 0) {
		return -1;
	}
	return len;
}

static int
sink_close(void *arg)
{
	(void)arg;
	return 0;
}

static int
in_subtree(xmlNodePtr n, xmlNodePtr top)
{
	for (; n != NULL; n = n->parent)
		if (n == top)
			return 1;
	return 0;
}

/* Namespace nodes are xmlNs, not xmlNode; both start with a pointer and the type. */
static xmlNodePtr
owner(xmlNodePtr node, xmlNodePtr parent)
{
	if (node == NULL)
		return parent;
	if (node->type == XML_NAMESPACE_DECL || node->type == XML_ATTRIBUTE_NODE)
		return parent;
	return node;
}

static int
visible_in(void *user, xmlNodePtr node, xmlNodePtr parent)
{
	return in_subtree(owner(node, parent), user);
}

/* URI="" with the enveloped-signature transform: all but our ds:Signature. */
static int
visible_outside(void *user, xmlNodePtr node, xmlNodePtr parent)
{
	xmlNodePtr o = owner(node, parent);

	if (node != NULL && node->type == XML_COMMENT_NODE)
		return 0;
	return !in_subtree(o, user);
}

/* Canonical octets of a node set (subtree of top, or the document but top) to fn. */
int
qes_xml_c14n(xmlDocPtr doc, xmlNodePtr top, int whole_doc_but, int inclusive,
    qes_xml_sink_fn fn, void *arg, char *errmsg, size_t errlen)
{
	struct c14n_sink s = { fn, arg, 0 };
	xmlStructuredErrorFunc saved_fn = xmlStructuredError;
	void *saved_arg = xmlStructuredErrorContext;
	xmlOutputBufferPtr ob;
	char msg[160];
	int r;

	if ((ob = xmlOutputBufferCreateIO(sink_write, sink_close, &s, NULL)) == NULL)
		return QES_ERR_ALLOC;
	msg[0] = '\0';
	xmlSetStructuredErrorFunc(msg, keep_first_error);
	r = xmlC14NExecute(doc, whole_doc_but ? visible_outside : visible_in, top,
	    inclusive ? XML_C14N_1_0 : XML_C14N_EXCLUSIVE_1_0, NULL, 0, ob);
	xmlSetStructuredErrorFunc(saved_arg, saved_fn);
	if (xmlOutputBufferClose(ob) < 0 && r >= 0)
		r = -1;
	if (s.err != 0) {
		snprintf(errmsg, errlen, "canonical XML: %s", qes_strerror(s.err));
		return s.err;
	}
	if (r < 0) {
		snprintf(errmsg, errlen, "cannot canonicalise the document: %s",
		    msg[0] != '\0' ? msg : "C14N failed");
		return QES_ERR_XML_MALFORMED;
	}
	return 0;
}
