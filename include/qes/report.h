/*
 * report.h - what the agent tells about its tokens: inventory and diagnosis.
 *
 * The same JSON documents are printed by `qes-agent tokens --json` and
 * `qes-agent diagnose --json`, and (in the device channel) sent to the
 * gateway as the inventory and diagnose_result messages, so their field names
 * are a contract: add fields, never rename them. Nothing secret is in them:
 * no PIN, no key material, only public certificates' facts and token flags.
 */
#ifndef QES_REPORT_H
#define QES_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "qes/p11.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A token's readiness to sign, from most to least severe. */
typedef enum qes_verdict {
	QES_VERDICT_READY = 0,			/* "ready to sign" */
	QES_VERDICT_READY_PIN_COUNT_LOW,	/* ready, but retries are low */
	QES_VERDICT_READY_PIN_FINAL_TRY,	/* ready, one PIN attempt left */
	QES_VERDICT_NO_TOKEN,			/* slot without token */
	QES_VERDICT_ERROR,			/* the slot could not be read */
	QES_VERDICT_NOT_INITIALIZED,
	QES_VERDICT_PIN_LOCKED,
	QES_VERDICT_PIN_TO_BE_CHANGED,
	QES_VERDICT_NO_SIGNING_CERT,		/* no certificate with a private key */
	QES_VERDICT_NO_QUALIFIED_CERT,		/* signing certificates, none qualified and valid */
} qes_verdict;

qes_verdict qes_token_verdict(const qes_p11_token *t);
const char *qes_verdict_name(qes_verdict v);	/* "ready", "pin_locked", ... */
/* One line for a person, e.g. "PIN locked: unblock it with the token vendor's tool". */
const char *qes_verdict_text(qes_verdict v);

/*
 * The inventory as JSON: {"modules":[...], "tokens":[...]} with every
 * certificate's facts and classification. New reference; NULL on allocation
 * failure.
 */
json_t *qes_report_inventory(const qes_p11 *p, const qes_p11_inventory *inv);

/* The diagnosis: the inventory plus agent, OS and library versions and a verdict per token. */
json_t *qes_report_diagnose(const qes_p11 *p, const qes_p11_inventory *inv);

/* Human-readable forms of the two, for terminals. */
void qes_report_inventory_text(FILE *f, const qes_p11 *p, const qes_p11_inventory *inv);
void qes_report_diagnose_text(FILE *f, const qes_p11 *p, const qes_p11_inventory *inv);

/* A stable credential handle for one certificate on one token: "SERIAL:IDHEX". */
int qes_report_cred_ref(const qes_p11_token *t, const qes_p11_cred *c, char *out, size_t out_len);

#ifdef __cplusplus
}
#endif
#endif
