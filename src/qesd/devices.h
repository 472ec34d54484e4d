/*
 * devices.h - the devices service: enrollment codes, device keys, the
 * inventory a device reports and the signing credentials taken from it.
 *
 * Who calls what:
 *   h_devices.c   enrollment and device routes (create codes, enroll,
 *                 list, get, revoke)
 *   hub.c         the agent endpoint: stores inventories
 *                 (qesd_devices_store_inventory) on a worker
 *   jobs (h_credentials.c, h_signatures.c, jobs*.c)
 *                 GET /v1/credentials and POST /v1/signatures read the
 *                 credentials with qesd_devices_credentials() and
 *                 qesd_devices_credential_lookup() below, then send to the
 *                 device through hub.h
 *
 * Credentials. A credential is one certificate with a private key on one
 * token of one device; its id is qesd_credential_id() (hub.h), stable
 * across reconnects and restarts. Each inventory replaces the device's
 * credentials as a whole (a token pulled out takes its credentials with
 * it). Certificate facts (subject, validity, key) come from the DER as the
 * gateway parses it, not from the agent's description.
 *
 * Enrollment codes: 20 characters of RFC 4648 base32 (100 bits from the
 * CSPRNG), shown in four groups of five ("K7QXM-2PZ4T-..."), single use,
 * short-lived; stored only as HMAC-SHA-256(pepper, "qes-enrollment-code" ||
 * code), so the database alone cannot be used to enroll.
 */
#ifndef QESD_DEVICES_H
#define QESD_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qes/proto.h"
#include "qes/secret.h"
#include "store.h"
#include "store_devices.h"

#define QESD_ENROLL_CODE_CHARS	20
#define QESD_ENROLL_CODE_SIZE	24	/* "XXXXX-XXXXX-XXXXX-XXXXX" + NUL */
#define QESD_ENROLL_TTL_DEFAULT_S 900
#define QESD_ENROLL_TTL_MAX_S	86400

/* ---- credentials: the accessors for the jobs service ---- */

/*
 * The tenant's credentials on LIVE devices (not revoked, with an open
 * session), in credential id order, for GET /v1/credentials. cursor NULL
 * or "" for the first page; limit 0 for QESD_LIST_DEFAULT; *items is a new
 * array of *n entries (free with qesd_credentials_free; NULL when *n is 0);
 * next_cursor is "" on the last page. now_ms judges validity (an expired
 * certificate's classification is "expired"). QES_ERR_INVALID_ARG for a
 * malformed cursor. Read transaction suffices.
 */
int qesd_devices_credentials(qesd_tx *tx, const char *tenant_id,
    int64_t now_ms, const char *cursor, size_t limit,
    qesd_credential **items, size_t *n, char next_cursor[QESD_CURSOR_SIZE]);

/*
 * One credential of the tenant by id, whatever the state of its device:
 * out->device_revoked_at_ms != 0 means revoked, out->device_live == 0
 * means no open session in the store (the hub's qesd_hub_is_live() is the
 * authority for "can I send to it now"). QES_ERR_NOT_FOUND when the id is
 * unknown in this tenant (foreign ids included). Clear out with
 * qesd_credential_clear().
 */
int qesd_devices_credential_lookup(qesd_tx *tx, const char *tenant_id,
    const char *credential_id, int64_t now_ms, qesd_credential *out);

/*
 * The public JSON view of a credential, the same in GET /v1/credentials and
 * GET /v1/devices/{id}: {"id", "device_id", "device_name", "token_serial",
 * "token_label", "key_id", "label", "subject", "subject_cn", "issuer",
 * "not_before", "not_after", "key_type" ("RSA"|"EC"), "key_bits", "curve"
 * (null for RSA), "classification", "device_live", "always_authenticate",
 * "certificate_sha256"}. New reference; NULL on allocation failure.
 */
json_t *qesd_credential_json(const qesd_credential *c);

/* ---- enrollment codes ---- */

/* A fresh code (a SECRET until used: show it once, then qes_wipe it) and
 * the hash to store. */
int qesd_enroll_code_new(const qes_secret *pepper,
    char code[QESD_ENROLL_CODE_SIZE], uint8_t hash[QESD_HMAC_LEN]);
/*
 * The hash of a presented code. Case, dashes and blanks are forgiven
 * ("k7qxm 2pz4t..." works); anything else that is not 20 base32
 * characters is QES_ERR_FORMAT.
 */
int qesd_enroll_code_hash(const qes_secret *pepper, const char *code,
    uint8_t hash[QESD_HMAC_LEN]);

/* ---- device keys ---- */

/* 0 when der is a DER SubjectPublicKeyInfo of an EC P-256 key, canonical
 * (re-encoding gives the same bytes); QES_ERR_FORMAT when it does not
 * parse, QES_ERR_KEY_UNSUITABLE for another key type or curve. */
int qesd_device_key_check(const uint8_t *der, size_t len);

/* ---- inventories ---- */

/*
 * Store an inventory message's report for the device (called by the hub on
 * a worker): the document without certificate DERs as the device's
 * inventory, and one credential per certificate that has (or may have) a
 * private key. When the document differs from the stored one, a
 * "device.inventory_changed" audit record is appended in the same
 * transaction (*changed = 1). Certificates whose DER does not parse are
 * skipped and counted in the record's details.
 */
int qesd_devices_store_inventory(qesd_store *store, const char *tenant_id,
    const char *device_id, const char *session_id, const qes_proto_msg *msg,
    int64_t now_ms, int *changed);

/* ---- wiring ---- */

/*
 * Connect the jobs service (app->jobs) and the hub (app->hub): jobs ask
 * the hub whether a device is live and send through it; the hub's messages
 * and closed sessions go to the jobs. qesd_app_new() calls it (devices_jobs.c).
 */
typedef struct qesd_app qesd_app;
void qesd_devices_attach_jobs(qesd_app *app);

#endif
