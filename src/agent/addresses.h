/*
 * addresses.h - the addresses qes-agent dials for its gateway, when they
 * are not simply server_url's host.
 *
 * With a load balancer in front of the qesd replicas the agent dials
 * server_url and the balancer picks a replica. Without one (DNS round
 * robin, a test, two replicas on one host) the setting
 *   gateway_addresses = 10.0.0.5:8443,10.0.0.6:8443,[2001:db8::7]:8443
 * (agent.conf, or QES_AGENT_GATEWAY_ADDRESSES, which wins) lists where to
 * connect, in order. Only the TCP destination changes: TLS still verifies
 * the certificate for server_url's host name, the Host header and the
 * server name the device signs stay server_url's, so an address that leads
 * elsewhere cannot pass for the gateway.
 *
 * The agent moves to the next address after a connection that could not
 * be made or was lost (no close code, 1001 going away, 1006 abnormal,
 * 1011 server error) and after 4004 server_draining; other close codes
 * keep the address (the replica answered: dialing another changes
 * nothing).
 */
#ifndef QES_AGENT_ADDRESSES_H
#define QES_AGENT_ADDRESSES_H

#include <stddef.h>

#include "qes/proto.h"

#define AGENT_ADDRS_MAX		16
#define AGENT_ADDRS_TEXT_MAX	1024	/* the setting's bytes */

typedef struct agent_addr {
	char host[QES_PROTO_HOST_MAX + 1];	/* IPv6 without brackets */
	unsigned port;
} agent_addr;

typedef struct agent_addrs {
	agent_addr a[AGENT_ADDRS_MAX];
	size_t n;			/* 0: dial server_url's host */
	size_t cur;			/* the one dialed next */
} agent_addrs;

/*
 * Parse "HOST:PORT[,HOST:PORT...]" (blanks around entries allowed; HOST a
 * DNS name, an IPv4 address or a bracketed IPv6 address; PORT 1..65535;
 * at most AGENT_ADDRS_MAX entries). QES_ERR_FORMAT or QES_ERR_LIMIT with
 * err saying which entry and why; *out is zeroed then.
 */
int agent_addrs_parse(const char *text, agent_addrs *out, char *err,
    size_t err_len);

/* 1 when a connection that ended with close code (0: none) moves the
 * agent to the next address. */
int agent_addrs_rotate_on(int code);

/* The address to dial now (NULL when the list is empty). */
const agent_addr *agent_addrs_current(const agent_addrs *l);
/* Move to the next address, wrapping around. */
void agent_addrs_next(agent_addrs *l);

#endif
