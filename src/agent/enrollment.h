/*
 * enrollment.h - what `qes-agent enroll` leaves behind for `qes-agent run`.
 *
 * One enrollment per configuration directory ($XDG_CONFIG_HOME/qes, or
 * --config DIR):
 *
 *   enrollment.json   0600: server URL and host, the server_name the gateway
 *                     signs challenges for, device and tenant id, the trust
 *                     anchor ("ca": "server-ca.pem" or "system"), the name of
 *                     the device key in the secret store, when
 *   server-ca.pem     0600: a COPY of the --ca file given at enrollment
 *
 * The copy is the point: `run` trusts exactly the CA the user enrolled with
 * (or the system store if they enrolled without one), never whatever the
 * original path holds later, and never silently falls back to another store.
 *
 * Files are written atomically (temporary file, fsync, rename) and read only
 * when we own them and nobody else can write them: whoever can edit
 * enrollment.json can point the agent at another server and CA.
 */
#ifndef QES_AGENT_ENROLLMENT_H
#define QES_AGENT_ENROLLMENT_H

#include <limits.h>
#include <stddef.h>

#include "qes/proto.h"

#include "secretstore.h"

#define AGENT_ENROLLMENT_FILE	"enrollment.json"
#define AGENT_SERVER_CA_FILE	"server-ca.pem"
#define AGENT_URL_MAX		512
#define AGENT_CA_MAX_BYTES	(1024 * 1024)

typedef struct agent_enrollment {
	char server_url[AGENT_URL_MAX];	/* "https://host[:port]", normalised */
	char host[QES_PROTO_HOST_MAX + 1];	/* lower case, IPv6 without brackets */
	unsigned port;
	char server_name[QES_PROTO_HOST_MAX + 1];	/* equals host (checked) */
	char device_id[QES_PROTO_ID_MAX + 1];
	char tenant_id[QES_PROTO_ID_MAX + 1];
	int system_trust;		/* 1: the system store; 0: ca_path */
	char ca_path[PATH_MAX];		/* the copy in the directory (set by load) */
	char key_name[AGENT_SECRET_KEY_MAX + 1];	/* device key in the secret store */
	char enrolled_at[32];		/* RFC 3339, UTC */
} agent_enrollment;

/*
 * The configuration directory: dir_opt when given (--config DIR), else
 * agent_config_dir(). With create, make it (mode 0700) when missing. The
 * directory must belong to us and not be writable by others.
 */
int agent_state_dir(const char *dir_opt, int create, char *out, size_t out_len,
    char *err, size_t err_len);

/*
 * Split "https://HOST[:PORT][/]" (nothing else: no user info, path, query)
 * into a lower-case host (IPv6 literal without brackets) and a port (443 when
 * absent), and write the normalised URL. QES_ERR_FORMAT with a sentence.
 */
int agent_server_url_parse(const char *url, char *norm, size_t norm_len,
    char *host, size_t host_len, unsigned *port, char *err, size_t err_len);

/* QES_ERR_NOT_FOUND when the directory holds no enrollment. */
int agent_enrollment_load(const char *dir, agent_enrollment *e, char *err,
    size_t err_len);
/* Write enrollment.json (ca_path is not stored, only whether it is used). */
int agent_enrollment_save(const char *dir, const agent_enrollment *e,
    char *err, size_t err_len);

/*
 * Read a CA file the user named (at most AGENT_CA_MAX_BYTES) and check that
 * it holds one or more PEM certificates and nothing OpenSSL cannot read.
 * *pem_out: new buffer, caller frees.
 */
int agent_ca_read(const char *path, qes_buf **pem_out, char *err, size_t err_len);
/* Write pem as DIR/server-ca.pem (0600, atomically). */
int agent_ca_install(const char *dir, const qes_buf *pem, char *err,
    size_t err_len);

/* "Linux 6.1.0-18-amd64 x86_64": printable ASCII, 1..128 bytes. */
void agent_os_describe(char *out, size_t out_len);

#endif
