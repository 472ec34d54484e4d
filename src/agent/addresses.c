/*
 * addresses.c - parse gateway_addresses and choose the next one to dial
 * (addresses.h). The setting is a short comma-separated list the user
 * wrote; it is read with bounds on every length and count, and a host
 * must be made of the characters a DNS name or an IP address can hold:
 * the string goes to the resolver and into log lines, nothing else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qes/err.h"

#include "addresses.h"

static int
host_char_ok(char ch, int v6)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9'))
		return 1;
	if (v6)
		return ch == ':' || ch == '.';
	return ch == '-' || ch == '.';
}

/* One "HOST:PORT" of len bytes at s into *a. */
static int
parse_one(const char *s, size_t len, agent_addr *a, char *err, size_t err_len,
    size_t idx)
{
	const char *host, *colon, *end = s + len;
	size_t hlen, i;
	unsigned long port = 0;
	int v6 = 0;

	if (len == 0) {
		snprintf(err, err_len, "gateway_addresses: entry %zu is empty",
		    idx + 1);
		return QES_ERR_FORMAT;
	}
	if (s[0] == '[') {
		v6 = 1;
		host = s + 1;
		if ((colon = memchr(s, ']', len)) == NULL || colon + 1 >= end ||
		    colon[1] != ':') {
			snprintf(err, err_len, "gateway_addresses: entry %zu: an "
			    "IPv6 address is written [ADDRESS]:PORT", idx + 1);
			return QES_ERR_FORMAT;
		}
		hlen = (size_t)(colon - host);
		colon++;
	} else {
		host = s;
		if ((colon = memchr(s, ':', len)) == NULL ||
		    memchr(colon + 1, ':', (size_t)(end - colon - 1)) != NULL) {
			snprintf(err, err_len, "gateway_addresses: entry %zu is not "
			    "HOST:PORT", idx + 1);
			return QES_ERR_FORMAT;
		}
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen > QES_PROTO_HOST_MAX) {
		snprintf(err, err_len, "gateway_addresses: entry %zu: the host is "
		    "empty or longer than %d bytes", idx + 1, QES_PROTO_HOST_MAX);
		return QES_ERR_FORMAT;
	}
	for (i = 0; i < hlen; i++)
		if (!host_char_ok(host[i], v6)) {
			snprintf(err, err_len, "gateway_addresses: entry %zu: the "
			    "host holds a character no host name or address has",
			    idx + 1);
			return QES_ERR_FORMAT;
		}
	/* digits only, 1..65535, no sign, no leading zero */
	if (colon + 1 >= end || end - colon - 1 > 5 || colon[1] == '0') {
		snprintf(err, err_len, "gateway_addresses: entry %zu: the port "
		    "must be 1..65535", idx + 1);
		return QES_ERR_FORMAT;
	}
	for (s = colon + 1; s < end; s++) {
		if (*s < '0' || *s > '9') {
			snprintf(err, err_len, "gateway_addresses: entry %zu: the "
			    "port must be 1..65535", idx + 1);
			return QES_ERR_FORMAT;
		}
		port = port * 10 + (unsigned long)(*s - '0');
	}
	if (port == 0 || port > 65535) {
		snprintf(err, err_len, "gateway_addresses: entry %zu: the port "
		    "must be 1..65535", idx + 1);
		return QES_ERR_FORMAT;
	}
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	for (i = 0; i < hlen; i++)	/* the resolver does not care; logs do */
		if (a->host[i] >= 'A' && a->host[i] <= 'Z')
			a->host[i] = (char)(a->host[i] - 'A' + 'a');
	a->port = (unsigned)port;
	return 0;
}

int
agent_addrs_parse(const char *text, agent_addrs *out, char *err,
    size_t err_len)
{
	const char *p, *comma, *b, *e;
	char dummy[8];
	int r;

	if (err == NULL) {
		err = dummy;
		err_len = sizeof(dummy);
	}
	if (out == NULL || text == NULL)
		return QES_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (strlen(text) > AGENT_ADDRS_TEXT_MAX) {
		snprintf(err, err_len, "gateway_addresses is longer than %d bytes",
		    AGENT_ADDRS_TEXT_MAX);
		return QES_ERR_LIMIT;
	}
	for (p = text;; p = comma + 1) {
		comma = strchr(p, ',');
		b = p;
		e = comma != NULL ? comma : p + strlen(p);
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (out->n == AGENT_ADDRS_MAX) {
			memset(out, 0, sizeof(*out));
			snprintf(err, err_len, "gateway_addresses: more than %d "
			    "entries", AGENT_ADDRS_MAX);
			return QES_ERR_LIMIT;
		}
		if ((r = parse_one(b, (size_t)(e - b), &out->a[out->n], err,
		    err_len, out->n)) != 0) {
			memset(out, 0, sizeof(*out));
			return r;
		}
		out->n++;
		if (comma == NULL)
			break;
	}
	return 0;
}

int
agent_addrs_rotate_on(int code)
{
	switch (code) {
	case 0:				/* no connection, or it was lost */
	case 1001:			/* going away */
	case 1006:			/* abnormal closure */
	case 1011:			/* server error */
	case QES_PROTO_CLOSE_SERVER_DRAINING:
		return 1;
	default:
		return 0;
	}
}

const agent_addr *
agent_addrs_current(const agent_addrs *l)
{
	if (l == NULL || l->n == 0)
		return NULL;
	return &l->a[l->cur % l->n];
}

void
agent_addrs_next(agent_addrs *l)
{
	if (l != NULL && l->n > 0)
		l->cur = (l->cur + 1) % l->n;
}
