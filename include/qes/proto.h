/*
 * proto.h - qes.v1, the device-channel protocol between qes-agent and qesd.
 *
 * The agent dials wss://HOST/v1/agent with the WebSocket sub-protocol
 * "qes.v1" and the two sides exchange text frames, each one JSON object
 *
 *	{"type":"sign","id":"m7Gx...","v":1, ...fields of the type...}
 *
 * docs/protocol.md is the specification for implementers (transport, session
 * establishment, every message with an example, limits, close codes,
 * heartbeats, reconnecting, the signing exchange). This header is its C form,
 * shared by both sides so they cannot disagree:
 *
 *   - qes_proto_parse() turns untrusted bytes into a typed qes_proto_msg:
 *     size and nesting are checked before the JSON parser runs, then every
 *     field against a strict schema (required fields, types, lengths, enum
 *     values, base64url and decoded sizes, cross-field rules; unknown fields
 *     and unknown types are refused; v must be 1). Errors name the field:
 *     "sign.digests[3]: wrong length 31 for sha256".
 *   - qes_proto_build() (and one qes_proto_build_TYPE() per message) turns a
 *     typed message into JSON text. A builder runs the parser's own checks on
 *     what it produced, so neither side can emit a message the other refuses.
 *   - The exact bytes a device signs to authenticate (qes_proto_auth_tbs) and
 *     the 4-digit verification code shown to the signer (qes_verification_code)
 *     are defined here, once.
 *
 * Binary values travel as base64url without padding (RFC 4648 section 5),
 * canonical (unused bits zero), everywhere in the protocol.
 *
 * Ownership: a parsed message owns everything its fields point to (strings,
 * decoded bytes, arrays, the report documents); all of it stays valid until
 * qes_proto_msg_free(). For building, the caller fills a qes_proto_msg (or a
 * body struct) with borrowed pointers; builders copy what they need.
 */
#ifndef QES_PROTO_H
#define QES_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/types.h>

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/p11.h"
#include "qes/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QES_PROTO_SUBPROTOCOL	"qes.v1"	/* Sec-WebSocket-Protocol */
#define QES_PROTO_PATH		"/v1/agent"
#define QES_PROTO_VERSION	1		/* the "v" of every message */

/* Limits. A message above one is refused with QES_ERR_LIMIT, never cut. */
#define QES_PROTO_MAX_BYTES		(1024 * 1024)	/* inventory, diagnose_result, sign, sign_result */
#define QES_PROTO_MAX_SMALL_BYTES	(64 * 1024)	/* every other type */
#define QES_PROTO_MAX_DEPTH		10		/* nesting of arrays and objects */
#define QES_PROTO_MAX_VALUES		200000		/* JSON values in one message */
#define QES_PROTO_ID_MAX		64	/* ids: [A-Za-z0-9_-]{1,64} */
#define QES_PROTO_NONCE_LEN		32
#define QES_PROTO_HOST_MAX		253	/* server_name */
#define QES_PROTO_AUTH_SIG_MAX		72	/* DER ECDSA P-256 */
#define QES_PROTO_DIGESTS_MAX		1000	/* digests in one sign request */
#define QES_PROTO_SIG_MAX		1024	/* one signature value (RSA-8192) */
#define QES_PROTO_SERIAL_MAX		64	/* token serial in a credential */
#define QES_PROTO_KEY_ID_MAX		128	/* CKA_ID bytes in a credential */
#define QES_PROTO_CREDENTIAL_MAX	(QES_PROTO_SERIAL_MAX + 1 + 2 * QES_PROTO_KEY_ID_MAX)
#define QES_PROTO_NAME_MAX		128	/* requester tenant / application */
#define QES_PROTO_TITLE_MAX		256
#define QES_PROTO_DESCRIPTION_MAX	2048
#define QES_PROTO_MESSAGE_MAX		1024	/* error.message, sign_result.detail */
#define QES_PROTO_TIMEOUT_MIN_S		5	/* sign.timeout_s */
#define QES_PROTO_TIMEOUT_MAX_S		3600
#define QES_PROTO_MODULES_MAX		32	/* report: PKCS#11 modules */
#define QES_PROTO_TOKENS_MAX		64	/* report: slots/tokens */
#define QES_PROTO_CERTS_MAX		64	/* report: certificates per token */
#define QES_PROTO_MECHS_MAX		1024	/* report: mechanisms per token */
#define QES_PROTO_CERT_DER_MAX		(16 * 1024)	/* report: one certificate's DER */
#define QES_PROTO_REPORT_STR_MAX	4096	/* report: any other string, bytes */
#define QES_PROTO_VCODE_LEN		4	/* verification code digits */

/* Timing (docs/protocol.md, "Heartbeats" and "Reconnecting"). */
#define QES_PROTO_HEARTBEAT_S		20	/* default auth_ok.heartbeat_s */
#define QES_PROTO_HEARTBEAT_MIN_S	5
#define QES_PROTO_HEARTBEAT_MAX_S	300
#define QES_PROTO_DEAD_AFTER_BEATS	3	/* silent this many intervals: peer dead */
#define QES_PROTO_AUTH_TIMEOUT_S	10	/* connect -> auth_ok, at most */
#define QES_PROTO_BACKOFF_BASE_MS	1000
#define QES_PROTO_BACKOFF_CAP_MS	60000
#define QES_PROTO_STABLE_S		60	/* a session this old resets the back-off */

/*
 * WebSocket close codes of qes.v1 (RFC 6455 leaves 4000-4999 to
 * applications). The close reason text is the name (qes_proto_close_name),
 * optionally followed by ": " and detail, at most 123 bytes.
 */
#define QES_PROTO_CLOSE_PROTOCOL_ERROR	4000	/* malformed or unexpected message */
#define QES_PROTO_CLOSE_AUTH_FAILED	4001	/* bad signature, unknown device, timeout */
#define QES_PROTO_CLOSE_DEVICE_REVOKED	4002	/* never reconnect: enroll again */
#define QES_PROTO_CLOSE_REPLACED	4003	/* a newer session of this device took over */
#define QES_PROTO_CLOSE_SERVER_DRAINING	4004	/* reconnect now, to another replica */

/* "protocol_error", "auth_failed", ...; also "normal" (1000), "going_away"
 * (1001), "message_too_big" (1009), "internal_error" (1011); "unknown"
 * otherwise. Never NULL. */
const char *qes_proto_close_name(int code);
/*
 * The close reason for code: "NAME" or "NAME: detail" (detail may be NULL),
 * cut to fit a close frame (123 bytes), every byte outside printable ASCII
 * replaced by '?' (so a cut can never split a UTF-8 sequence). out must
 * hold 124 bytes.
 */
void qes_proto_close_text(int code, const char *detail, char out[124]);

typedef enum qes_proto_type {
	QES_PROTO_HELLO = 1,		/* agent -> gateway */
	QES_PROTO_CHALLENGE,		/* gateway -> agent */
	QES_PROTO_AUTH,			/* agent -> gateway */
	QES_PROTO_AUTH_OK,		/* gateway -> agent */
	QES_PROTO_INVENTORY,		/* agent -> gateway */
	QES_PROTO_SIGN,			/* gateway -> agent */
	QES_PROTO_SIGN_RESULT,		/* agent -> gateway */
	QES_PROTO_DIAGNOSE,		/* gateway -> agent */
	QES_PROTO_DIAGNOSE_RESULT,	/* agent -> gateway */
	QES_PROTO_CANCEL,		/* gateway -> agent */
	QES_PROTO_ERROR,		/* either way */
	QES_PROTO_PING,			/* either way */
	QES_PROTO_PONG,			/* either way */
	QES_PROTO_SIGN_STATUS,		/* agent -> gateway */
} qes_proto_type;

#define QES_PROTO_TYPE_COUNT 14

const char *qes_proto_type_name(qes_proto_type t);	/* "sign"; NULL when unknown */
int qes_proto_type_from_name(const char *name, qes_proto_type *out);

/* A decoded binary value. Borrowed from the message that holds it. */
typedef struct qes_proto_bytes {
	const uint8_t *data;
	size_t len;
} qes_proto_bytes;

/* ---- the report documents (inventory and diagnose_result) ----------------
 *
 * The JSON of qes_report_inventory() / qes_report_diagnose() (report.h), plus,
 * in an inventory, each certificate's DER (qes_proto_inventory_attach_certs).
 * Checked strictly like every message, so a field added to report.c must be
 * added to the schema in proto_report.c too, and gateways upgraded first.
 * Strings are NULL where the document leaves the field out.
 */
typedef struct qes_proto_module {
	const char *path;
	const char *name;
	qes_p11_source source;		/* 0 when "unknown" */
	int loaded;
	const char *error, *error_detail;		/* not loaded */
	const char *cryptoki_version, *interface_version, *library_version;
	const char *manufacturer, *description;		/* loaded */
} qes_proto_module;

typedef struct qes_proto_mech {
	const char *name;
	int64_t min_key, max_key;
} qes_proto_mech;

typedef struct qes_proto_cert {
	const char *credential;		/* "SERIAL:IDHEX", checked against the token */
	const char *id;			/* CKA_ID, lower-case hex */
	const char *label;
	qes_cert_class classification;
	const char *subject, *subject_cn, *issuer;
	const char *serial;		/* certificate serial number, hex */
	const char *not_before, *not_after;	/* "YYYY-MM-DDTHH:MM:SSZ" */
	qes_key_type key_type;
	int64_t key_bits;
	const char *curve;		/* "" for RSA */
	unsigned key_usage;		/* QES_KU_* */
	unsigned qc;			/* QES_QC_* */
	int qcp_n_qscd;
	const char *sha256;		/* of the DER; checked when certificate is there */
	int has_private_key;		/* 1, 0, or -1 when unknown before login */
	int always_authenticate;
	qes_proto_bytes certificate;	/* DER; always in an inventory, len 0 when absent */
} qes_proto_cert;

typedef struct qes_proto_token {
	const char *module;
	int64_t slot_id;		/* as the report wrote it (unsigned long cast) */
	const char *slot_description, *slot_manufacturer;
	int hardware_slot, removable, present;
	const char *error, *error_detail;	/* a scan problem, or NULL */
	/* present tokens only: */
	const char *label, *manufacturer, *model, *serial;
	const char *firmware_version, *hardware_version;
	unsigned flags;			/* QES_TOK_* */
	int64_t min_pin_len, max_pin_len;
	const qes_proto_mech *mechanisms;
	size_t n_mechanisms;
	const qes_proto_cert *certificates;
	size_t n_certificates;
	/* diagnose only: */
	const char *verdict, *verdict_text;
} qes_proto_token;

typedef struct qes_proto_system {
	const char *agent_version, *openssl_version;
	const char *os, *os_release, *machine;	/* NULL when uname failed */
	const char *time;
} qes_proto_system;

typedef struct qes_proto_report {
	/* The document. Parsed: borrowed from the message. Building: set only
	 * this (a JSON object the schema accepts); the rest is ignored. */
	const json_t *json;
	const qes_proto_module *modules;
	size_t n_modules;
	const qes_proto_token *tokens;
	size_t n_tokens;
	const qes_proto_system *system;	/* diagnose_result only, else NULL */
} qes_proto_report;

/* ---- message bodies ------------------------------------------------------ */

typedef struct qes_proto_hello {
	const char *agent_version;	/* [0-9A-Za-z.+~_-]{1,64} */
	const char *os;			/* printable ASCII, 1..128 ("Linux 6.1.0 x86_64") */
	const char *device_id;		/* id syntax */
} qes_proto_hello;

typedef struct qes_proto_challenge {
	uint8_t nonce[QES_PROTO_NONCE_LEN];	/* fresh, random, single use */
	const char *server_name;	/* lower-case host name or IP literal */
	const char *session_id;		/* id syntax, chosen by the gateway */
} qes_proto_challenge;

typedef struct qes_proto_auth {
	const char *device_id;
	qes_proto_bytes signature;	/* DER ECDSA P-256 over qes_proto_auth_tbs() */
} qes_proto_auth;

typedef struct qes_proto_auth_ok {
	const char *session_id;
	int64_t heartbeat_s;		/* QES_PROTO_HEARTBEAT_MIN_S..MAX_S */
} qes_proto_auth_ok;

typedef struct qes_proto_inventory {
	qes_proto_report report;	/* certificates carry their DER */
} qes_proto_inventory;

typedef struct qes_proto_requester {
	const char *tenant;		/* display text, 1..QES_PROTO_NAME_MAX bytes */
	const char *application;
} qes_proto_requester;

typedef struct qes_proto_sign {
	const char *job_id;		/* id syntax */
	const char *credential;		/* "SERIAL:IDHEX" (qes_proto_credential_split) */
	qes_sig_scheme scheme;
	qes_md md;
	const uint8_t *digests;		/* n_digests * qes_md_len(md) bytes, one after another */
	size_t n_digests;		/* 1..QES_PROTO_DIGESTS_MAX */
	qes_proto_requester requester;
	const char *title;		/* display text, one line, 1..256 bytes */
	const char *description;	/* display text, may have line feeds, 0..2048 */
	/* qes_verification_code(md, digests, n_digests): parse checks it; a
	 * builder computes it when verification_code[0] is '\0'. */
	char verification_code[QES_PROTO_VCODE_LEN + 1];
	int64_t timeout_s;		/* QES_PROTO_TIMEOUT_MIN_S..MAX_S, from receipt */
} qes_proto_sign;

typedef enum qes_proto_status {
	QES_PROTO_STATUS_OK = 1,
	QES_PROTO_STATUS_ERROR = 2,
} qes_proto_status;

/* sign_result.pin_flags bits: the QES_TOK_* values of p11.h */
#define QES_PROTO_PIN_FLAGS (QES_TOK_PIN_COUNT_LOW | QES_TOK_PIN_FINAL_TRY | QES_TOK_PIN_LOCKED)

typedef struct qes_proto_sign_result {
	const char *job_id;
	qes_proto_status status;
	/* ok: one signature value per digest, in order (ECDSA as DER) */
	const qes_proto_bytes *signatures;
	size_t n_signatures;
	/* error: a qes_errname() ("pin_incorrect", "cancelled", ...); names this
	 * build does not know are accepted (error_code is then 0), so a newer
	 * agent's new code still fails the job cleanly. */
	const char *error;
	int error_code;			/* parse: the matching QES_ERR_*, or 0 */
	const char *detail;		/* optional, "C_Login: CKR_PIN_INCORRECT" */
	/* required with pin_incorrect and pin_locked, optional with other errors */
	int has_pin_flags;
	unsigned pin_flags;		/* QES_PROTO_PIN_FLAGS bits, fresh from the token */
} qes_proto_sign_result;

/*
 * sign_status.state: where a job stands at the signer's desk, between sign
 * and sign_result. Each is sent at most once per job, in this order; both
 * are optional for the gateway (an agent that never sends them still works).
 */
typedef enum qes_proto_sign_state {
	QES_PROTO_SIGN_AWAITING_USER = 1,	/* this job's dialog is shown now */
	QES_PROTO_SIGN_CONSENTED = 2,		/* the signer approved and the token
						 * accepted the PIN: signing runs */
} qes_proto_sign_state;

typedef struct qes_proto_sign_status {
	const char *job_id;
	qes_proto_sign_state state;
} qes_proto_sign_status;

typedef struct qes_proto_timings {
	int64_t scan_ms;		/* qes_p11_scan() */
	int64_t total_ms;		/* receipt of diagnose -> result sent */
} qes_proto_timings;

typedef struct qes_proto_diagnose_result {
	const char *ref_id;		/* id of the diagnose message */
	qes_proto_report report;	/* qes_report_diagnose() */
	qes_proto_timings timings;
} qes_proto_diagnose_result;

typedef enum qes_proto_cancel_reason {
	QES_PROTO_CANCEL_REQUESTED = 1,	/* the relying party cancelled the job */
	QES_PROTO_CANCEL_EXPIRED = 2,	/* the gateway gave up waiting */
} qes_proto_cancel_reason;

typedef struct qes_proto_cancel {
	const char *job_id;
	qes_proto_cancel_reason reason;
} qes_proto_cancel;

typedef struct qes_proto_error {
	const char *code;		/* [a-z0-9_]{1,64}: docs/protocol.md lists them */
	const char *message;		/* for people and logs: UTF-8, 0..1024 bytes;
					 * escape it before showing it */
	const char *ref_id;		/* the message it is about, or NULL */
} qes_proto_error;

typedef struct qes_proto_ping {
	int64_t ts;			/* sender's clock, ms since 1970, >= 0 */
} qes_proto_ping;

typedef struct qes_proto_pong {
	const char *ref_id;		/* id of the ping */
	int64_t ts;			/* the ping's ts, echoed */
} qes_proto_pong;

struct qes_proto_mem;

typedef struct qes_proto_msg {
	qes_proto_type type;
	const char *id;			/* [A-Za-z0-9_-]{1,64}, unique per sender */
	union {
		qes_proto_hello hello;
		qes_proto_challenge challenge;
		qes_proto_auth auth;
		qes_proto_auth_ok auth_ok;
		qes_proto_inventory inventory;
		qes_proto_sign sign;
		qes_proto_sign_result sign_result;
		/* diagnose has no fields */
		qes_proto_diagnose_result diagnose_result;
		qes_proto_cancel cancel;
		qes_proto_error error;
		qes_proto_ping ping;
		qes_proto_pong pong;
		qes_proto_sign_status sign_status;
	} u;
	struct qes_proto_mem *mem;	/* private: what a parse allocated; NULL when built */
} qes_proto_msg;

/* ---- parsing ------------------------------------------------------------- */

typedef enum qes_proto_role {
	QES_PROTO_ROLE_ANY = 0,		/* accept every type (tools, tests, fuzzing) */
	QES_PROTO_ROLE_GATEWAY = 1,	/* qesd: accept what an agent may send */
	QES_PROTO_ROLE_AGENT = 2,	/* qes-agent: accept what a gateway may send */
} qes_proto_role;

typedef struct qes_proto_limits {
	size_t max_bytes;		/* any message; 0: QES_PROTO_MAX_BYTES */
	size_t max_small_bytes;		/* types other than inventory, diagnose_result,
					 * sign, sign_result; 0: QES_PROTO_MAX_SMALL_BYTES */
	unsigned max_depth;		/* 0: QES_PROTO_MAX_DEPTH */
	size_t max_values;		/* 0: QES_PROTO_MAX_VALUES */
	qes_proto_role role;		/* messages from the wrong direction are refused */
} qes_proto_limits;

/* Defaults for role (lim is zeroed first). */
void qes_proto_limits_init(qes_proto_limits *lim, qes_proto_role role);

/*
 * Parse one message (the payload of one text frame). lim may be NULL:
 * defaults, any role. Returns 0 and *out (free with qes_proto_msg_free), or
 * QES_ERR_LIMIT (too big, too deep, too many values or items),
 * QES_ERR_UNSUPPORTED (v is not 1, unknown type), QES_ERR_FORMAT (anything
 * else), QES_ERR_ALLOC; then *out is NULL and err (errlen > 0) holds one
 * line naming the field, made of printable ASCII only (input is escaped), so
 * it can go to logs and close frames as it is.
 */
int qes_proto_parse(const uint8_t *data, size_t len, const qes_proto_limits *lim,
    qes_proto_msg **out, char *err, size_t errlen);

/* NULL is a no-op. */
void qes_proto_msg_free(qes_proto_msg *m);

/* 1 when a and b carry the same type, id and field values, else 0. */
int qes_proto_msg_equal(const qes_proto_msg *a, const qes_proto_msg *b);

/* ---- building ------------------------------------------------------------ */

/*
 * Append the JSON text of m (compact, fields in schema order) to out.
 * The result is checked with the parser's rules and default limits first:
 * QES_ERR_INVALID_ARG (err says why; err may be NULL) when m would be
 * refused by the peer, QES_ERR_LIMIT when it is too big. out is unchanged
 * on failure.
 */
int qes_proto_build(const qes_proto_msg *m, qes_buf *out, char *err, size_t errlen);

/* One per type; id is the new message's id (qes_proto_new_id). */
int qes_proto_build_hello(const char *id, const qes_proto_hello *b, qes_buf *out);
int qes_proto_build_challenge(const char *id, const qes_proto_challenge *b, qes_buf *out);
int qes_proto_build_auth(const char *id, const qes_proto_auth *b, qes_buf *out);
int qes_proto_build_auth_ok(const char *id, const qes_proto_auth_ok *b, qes_buf *out);
int qes_proto_build_inventory(const char *id, const json_t *report, qes_buf *out);
int qes_proto_build_sign(const char *id, const qes_proto_sign *b, qes_buf *out);
int qes_proto_build_sign_result(const char *id, const qes_proto_sign_result *b, qes_buf *out);
int qes_proto_build_diagnose(const char *id, qes_buf *out);
int qes_proto_build_diagnose_result(const char *id, const char *ref_id,
    const json_t *report, const qes_proto_timings *t, qes_buf *out);
int qes_proto_build_cancel(const char *id, const qes_proto_cancel *b, qes_buf *out);
int qes_proto_build_error(const char *id, const qes_proto_error *b, qes_buf *out);
int qes_proto_build_ping(const char *id, int64_t ts, qes_buf *out);
int qes_proto_build_pong(const char *id, const char *ref_id, int64_t ts, qes_buf *out);
int qes_proto_build_sign_status(const char *id, const char *job_id,
    qes_proto_sign_state state, qes_buf *out);

/*
 * Add "certificate" (the DER, base64url) to every certificate of report, a
 * document made by qes_report_inventory(p, inv) from this same inv. Checks
 * that each certificate entry's "credential" matches inv (so a report made
 * from another snapshot is refused with QES_ERR_INVALID_ARG) and that no
 * DER is larger than QES_PROTO_CERT_DER_MAX (QES_ERR_LIMIT).
 */
int qes_proto_inventory_attach_certs(json_t *report, const qes_p11_inventory *inv);

/* ---- helpers shared by both sides ---------------------------------------- */

/* A fresh random message id: 22 base64url characters (128 bits). out: 23 bytes. */
int qes_proto_new_id(char out[23]);
/* A fresh challenge nonce from the OpenSSL CSPRNG. */
int qes_proto_new_nonce(uint8_t out[QES_PROTO_NONCE_LEN]);

/* 1 when s is [A-Za-z0-9_-]{1,64}. */
int qes_proto_id_ok(const char *s);
/*
 * 1 when s may be shown to a signer: valid UTF-8 of 1..max_bytes bytes
 * (0..max_bytes when allow_empty), no control characters (line feed only when
 * multiline), no bidirectional overrides or isolates, no line or paragraph
 * separators. qesd checks request fields with it before a job exists.
 */
int qes_proto_display_text_ok(const char *s, size_t max_bytes, int multiline,
    int allow_empty);

/*
 * Split a credential "SERIAL:IDHEX" (split at the last ':'; SERIAL is 1..64
 * printable ASCII bytes, IDHEX even-length lower-case hex of 0..128 bytes).
 * serial_out: QES_PROTO_SERIAL_MAX + 1 bytes; id_out: QES_PROTO_KEY_ID_MAX.
 */
int qes_proto_credential_split(const char *credential, char *serial_out,
    uint8_t *id_out, size_t *id_len);

/* base64url without padding, canonical. Both append to out. */
int qes_proto_b64url_encode(const uint8_t *data, size_t len, qes_buf *out);
/* QES_ERR_FORMAT on padding, a character outside the alphabet, a length of
 * 4k+1 or non-zero unused bits. */
int qes_proto_b64url_decode(const char *s, size_t len, qes_buf *out);

/*
 * The bytes a device signs to prove its identity to a session:
 *
 *	tbs = lp("qes.v1-auth") || lp(nonce) || lp(device_id)
 *	      || lp(server_name) || lp(session_id)
 *	lp(x) = u32be(byte length of x) || x
 *
 * nonce is the 32 raw bytes of the challenge; the strings are their ASCII
 * bytes without terminator. server_name is the host the agent dialed (it
 * refuses a challenge naming another), lower case, no port, no trailing dot.
 * Appended to out; QES_ERR_INVALID_ARG when an argument breaks its syntax.
 */
int qes_proto_auth_tbs(const uint8_t nonce[QES_PROTO_NONCE_LEN],
    const char *device_id, const char *server_name, const char *session_id,
    qes_buf *out);
/*
 * ECDSA P-256 with SHA-256 over the tbs, DER (X9.62) appended to sig_out.
 * key must be a P-256 key (QES_ERR_KEY_UNSUITABLE otherwise); sign needs
 * its private half.
 */
int qes_proto_auth_sign(EVP_PKEY *key, const uint8_t nonce[QES_PROTO_NONCE_LEN],
    const char *device_id, const char *server_name, const char *session_id,
    qes_buf *sig_out);
/* 0 when sig is a valid signature, QES_ERR_SIGNATURE_INVALID when not. */
int qes_proto_auth_verify(EVP_PKEY *key, const uint8_t nonce[QES_PROTO_NONCE_LEN],
    const char *device_id, const char *server_name, const char *session_id,
    const uint8_t *sig, size_t sig_len);

/*
 * The verification code of a batch: 4 decimal digits the signer compares
 * between the relying party's page and the consent dialog.
 *
 *	h = SHA-256( lp("qes.v1-verification-code") || lp(md name)
 *	             || u32be(n) || lp(digest 1) || ... || lp(digest n) )
 *	code = (first 8 bytes of h as a big-endian unsigned 64-bit) mod 10000,
 *	       written as 4 digits with leading zeros
 *
 * with lp() as above and md name "sha256", "sha384" or "sha512". Taking a
 * 64-bit value mod 10000 favours the codes 0000..1615 by a relative 5e-16:
 * negligible. digests holds n digests of qes_md_len(md) bytes back to back,
 * 1 <= n <= QES_PROTO_DIGESTS_MAX. out receives the digits and a NUL.
 */
int qes_verification_code(qes_md md, const uint8_t *digests, size_t n,
    char out[QES_PROTO_VCODE_LEN + 1]);

/*
 * The job failure reason for a sign_result error name: "cancelled" (the
 * signer refused in the dialog) is "declined"; every other name is itself.
 */
const char *qes_proto_failure_reason(const char *error);

/*
 * Reconnect delay with full jitter: a uniform value in
 * [0, min(QES_PROTO_BACKOFF_CAP_MS, QES_PROTO_BACKOFF_BASE_MS * 2^attempt)],
 * drawn from rnd (any 64 random bits). attempt counts failures since the
 * last stable session, from 0.
 */
uint32_t qes_proto_backoff_ms(unsigned attempt, uint64_t rnd);

#ifdef __cplusplus
}
#endif
#endif
