/*
 * fuzz_bus.c - libFuzzer target for the envelopes qesd replicas exchange
 * on the bus (src/qesd/bus_msg.c): whatever another process put on NATS
 * goes through qesd_bus_msg_decode. Invariants, checked with abort(): an
 * accepted envelope re-encodes, and the re-encoding parses to the same
 * fields and body; the body lies inside the input; ids are subject-safe.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "bus_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qesd_bus_msg m, again;
	qes_buf *b;

	if (qesd_bus_msg_decode(data, size, &m) != 0)
		return 0;
	if (m.body_len > 0 && (m.body < data || m.body + m.body_len > data + size))
		abort();
	if (m.tenant_id[0] != '\0' && !qesd_bus_id_ok(m.tenant_id))
		abort();
	if (m.device_id[0] != '\0' && !qesd_bus_id_ok(m.device_id))
		abort();
	if ((b = qes_buf_new()) == NULL)
		return 0;
	if (qesd_bus_msg_encode(&m, b) != 0)
		abort();
	if (qesd_bus_msg_decode(qes_buf_data(b), qes_buf_len(b), &again) != 0)
		abort();
	if (again.op != m.op || again.result != m.result ||
	    again.close_code != m.close_code || again.rtt_ms != m.rtt_ms ||
	    again.scan_ms != m.scan_ms || again.total_ms != m.total_ms ||
	    again.since_ms != m.since_ms ||
	    strcmp(again.tenant_id, m.tenant_id) != 0 ||
	    strcmp(again.device_id, m.device_id) != 0 ||
	    strcmp(again.session_id, m.session_id) != 0 ||
	    strcmp(again.ref, m.ref) != 0 ||
	    strcmp(again.reason, m.reason) != 0 ||
	    strcmp(again.outcome, m.outcome) != 0 ||
	    strcmp(again.agent_error, m.agent_error) != 0 ||
	    strcmp(again.close_reason, m.close_reason) != 0 ||
	    strcmp(again.invalid, m.invalid) != 0 ||
	    again.body_len != m.body_len ||
	    (m.body_len > 0 && memcmp(again.body, m.body, m.body_len) != 0))
		abort();
	qes_buf_free(b);
	return 0;
}
