/*
 * test_agent_platform.c - the agent's platform pieces without a desktop:
 * agent.conf parsing, the secret store's routing and its file fallback (mode,
 * owner and symlink checks), the device key (PKCS#8 round trip, signatures
 * verified by OpenSSL, storage), the PIN store's policy, the JSON log, and
 * the hot-plug watcher against real SoftHSM2 tokens (a private copy of the
 * test environment's token store; skipped when there is none).
 *
 * The Secret Service itself runs in tests/integration/agent_pinstore.sh
 * (gnome-keyring under dbus-run-session); here the platform store is
 * switched off, which is also the "no secret service reachable" case.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/p11.h"
#include "qes/secret.h"

#include "agentconf.h"
#include "devkey.h"
#include "hotplug.h"
#include "log.h"
#include "pinstore.h"
#include "secretstore.h"

static char tmp_root[256];	/* short, so every path built from it fits */

static int
run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
run(const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	return system(cmd);
}

static void
write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void
path_in(char *out, size_t len, const char *name)
{
	assert_true((size_t)snprintf(out, len, "%s/%s", tmp_root, name) < len);
}

static int
group_setup(void **state)
{
	char conf[PATH_MAX];

	(void)state;
	snprintf(tmp_root, sizeof(tmp_root), "%s/qes-agent-platform.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmp_root) == NULL)
		return -1;
	/* nothing here may touch the real user's configuration */
	snprintf(conf, sizeof(conf), "%s/config", tmp_root);
	setenv("XDG_CONFIG_HOME", conf, 1);
	/* the log goes to a file the log test reads; the rest is quiet */
	agent_log_set_level(AGENT_LOG_ERROR);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	if (tmp_root[0] != '\0' && getenv("QES_KEEP_TMP") == NULL)
		(void)run("rm -rf '%s'", tmp_root);
	return 0;
}

/* ---- agent.conf ---- */

static int
load_text(const char *text, mode_t mode, agent_config **c, char *err, size_t len)
{
	char path[PATH_MAX];

	path_in(path, sizeof(path), "test.conf");
	write_text(path, text, mode);
	return agent_config_load(path, c, err, len);
}

static void
test_config(void **state)
{
	agent_config *c = NULL;
	char err[512], path[PATH_MAX];

	(void)state;
	assert_int_equal(load_text("# qes-agent\n\npin_storage = disabled\n"
	    "  pin_policy=every_signature  \npin_policy.ABC123 = remembered\n"
	    "secret_service_timeout_ms = 1500\n", 0600, &c, err, sizeof(err)), 0);
	assert_string_equal(agent_config_get(c, "pin_storage"), "disabled");
	assert_string_equal(agent_config_get(c, "pin_policy"), "every_signature");
	assert_string_equal(agent_config_get(c, "pin_policy.ABC123"), "remembered");
	assert_int_equal(agent_config_get_uint(c, "secret_service_timeout_ms", 5), 1500);
	assert_int_equal(agent_config_get_uint(c, "nothing", 5), 5);
	assert_null(agent_config_get(c, "pin_policy.OTHER"));
	agent_config_free(c);

	/* a typo in a security switch is an error, not the default */
	assert_int_equal(load_text("pin_storge = disabled\n", 0600, &c, err,
	    sizeof(err)), QES_ERR_FORMAT);
	assert_non_null(strstr(err, "line 1: unknown key"));
	assert_null(c);
	assert_int_equal(load_text("pin_storage = off\n", 0600, &c, err,
	    sizeof(err)), QES_ERR_FORMAT);
	assert_non_null(strstr(err, "allowed or disabled"));
	assert_int_equal(load_text("pin_storage = allowed\npin_storage = disabled\n",
	    0600, &c, err, sizeof(err)), QES_ERR_FORMAT);
	assert_non_null(strstr(err, "line 2"));
	assert_int_equal(load_text("pin_storage\n", 0600, &c, err, sizeof(err)),
	    QES_ERR_FORMAT);
	assert_int_equal(load_text("secret_service_timeout_ms = 10\n", 0600, &c, err,
	    sizeof(err)), QES_ERR_FORMAT);
	assert_int_equal(load_text("secret_service_timeout_ms = 5x\n", 0600, &c, err,
	    sizeof(err)), QES_ERR_FORMAT);
	assert_int_equal(load_text("pin_policy. = remembered\n", 0600, &c, err,
	    sizeof(err)), QES_ERR_FORMAT);
	/* a file others can write could switch storage on: refused */
	assert_int_equal(load_text("pin_storage = disabled\n", 0622, &c, err,
	    sizeof(err)), QES_ERR_IO);
	assert_non_null(strstr(err, "others can write"));

	/* no file: every default */
	path_in(path, sizeof(path), "absent.conf");
	assert_int_equal(agent_config_load(path, &c, err, sizeof(err)), 0);
	assert_null(agent_config_get(c, "pin_storage"));
	agent_config_free(c);

	/* the directory follows XDG_CONFIG_HOME, and HOME without it */
	assert_int_equal(agent_config_dir(path, sizeof(path)), 0);
	assert_non_null(strstr(path, tmp_root));
	assert_non_null(strstr(path, "/config/qes"));
}

/* ---- the file store and the routing ---- */

static agent_secretstore *
file_only_store(const char *dir)
{
	agent_secretstore_opts o = { 0 };
	agent_secretstore *s = NULL;

	o.no_platform = 1;	/* as on a machine without a Secret Service */
	o.file_dir = dir;
	assert_int_equal(agent_secretstore_open(&o, &s), 0);
	assert_false(agent_secretstore_platform_available(s));
	return s;
}

static void
test_file_store(void **state)
{
	agent_secretstore *s;
	qes_secret *v = qes_secret_new(AGENT_SECRET_MAX), *got = qes_secret_new(AGENT_SECRET_MAX);
	char dir[PATH_MAX], file[PATH_MAX + 64], link_path[PATH_MAX + 64];
	char **keys = NULL;
	const char *where;
	struct stat st;
	size_t n;

	(void)state;
	assert_non_null(v);
	assert_non_null(got);
	path_in(dir, sizeof(dir), "store/a/qes");	/* parents made too */
	s = file_only_store(dir);
	assert_int_equal(qes_secret_set(v, "\x30\x81\x87key-bytes\0with-nul", 22), 0);

	assert_int_equal(agent_secret_store(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443", "label", v, &where), 0);
	assert_string_equal(where, "file");
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(file, sizeof(file), "%s/device-key-qes.example.com%%3A8443", dir);
	assert_int_equal(lstat(file, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443", got), 0);
	assert_int_equal(qes_secret_len(got), 22);
	assert_memory_equal(qes_secret_data(got), qes_secret_data(v), 22);

	/* a key that looks like a path stays a file name in the directory */
	assert_int_equal(agent_secret_store(s, AGENT_SECRET_DEVICE_KEY,
	    "../../etc/x", "label", v, NULL), 0);
	snprintf(file, sizeof(file), "%s/device-key-..%%2F..%%2Fetc%%2Fx", dir);
	assert_int_equal(lstat(file, &st), 0);
	assert_int_equal(agent_secret_list(s, AGENT_SECRET_DEVICE_KEY, &keys, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(keys[0], "../../etc/x");
	assert_string_equal(keys[1], "qes.example.com:8443");
	assert_null(keys[2]);
	agent_secret_keys_free(keys);

	/* PINs never go to a file, whatever the routing */
	assert_int_equal(agent_secret_store(s, AGENT_SECRET_PIN, "ABC", "l", v, NULL),
	    QES_ERR_UNAVAILABLE);
	assert_non_null(strstr(agent_secretstore_errmsg(s), "PINs are kept only"));
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_PIN, "ABC", got),
	    QES_ERR_UNAVAILABLE);
	assert_int_equal(agent_secret_list(s, AGENT_SECRET_PIN, &keys, &n),
	    QES_ERR_UNAVAILABLE);
	{
		agent_secret_backend *b = NULL;
		char msg[256];

		assert_int_equal(agent_secret_backend_file(dir, &b, msg, sizeof(msg)), 0);
		assert_int_equal(b->store(b->ctx, AGENT_SECRET_PIN, "ABC", "l", v, msg,
		    sizeof(msg)), QES_ERR_UNSUPPORTED);
		assert_int_equal(b->lookup(b->ctx, AGENT_SECRET_PIN, "ABC", got, msg,
		    sizeof(msg)), QES_ERR_UNSUPPORTED);
		agent_secret_backend_free(b);
	}

	/* a file others could read is refused, and so is one not ours */
	snprintf(file, sizeof(file), "%s/device-key-qes.example.com%%3A8443", dir);
	assert_int_equal(chmod(file, 0640), 0);
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443", got), QES_ERR_IO);
	assert_non_null(strstr(agent_secretstore_errmsg(s), "mode 0640"));
	assert_int_equal(qes_secret_len(got), 0);
	assert_int_equal(chmod(file, 0600), 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(file, 4242, 4242), 0);
		assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY,
		    "qes.example.com:8443", got), QES_ERR_IO);
		assert_non_null(strstr(agent_secretstore_errmsg(s), "uid 4242"));
		assert_int_equal(chown(file, 0, 0), 0);
	}
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443", got), 0);

	/* a symbolic link in place of the file is refused */
	snprintf(link_path, sizeof(link_path), "%s/device-key-linked", dir);
	assert_int_equal(symlink(file, link_path), 0);
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY, "linked", got),
	    QES_ERR_IO);
	assert_non_null(strstr(agent_secretstore_errmsg(s), "symbolic link"));

	/* a directory others can enter is refused */
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443", got), QES_ERR_IO);
	assert_int_equal(agent_secret_store(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443", "label", v, NULL), QES_ERR_IO);
	assert_non_null(strstr(agent_secretstore_errmsg(s), "chmod 700"));
	assert_int_equal(chmod(dir, 0700), 0);

	/* delete, then nothing */
	assert_int_equal(agent_secret_delete(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443"), 0);
	assert_int_equal(agent_secret_delete(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443"), QES_ERR_NOT_FOUND);
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY,
	    "qes.example.com:8443", got), QES_ERR_NOT_FOUND);
	/* invalid keys */
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY, "", got),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_DEVICE_KEY, "a\nb", got),
	    QES_ERR_INVALID_ARG);

	agent_secretstore_free(s);
	qes_secret_free(v);
	qes_secret_free(got);
}

/* ---- the device key ---- */

static void
verify_with_openssl(const uint8_t *spki, size_t spki_len, const uint8_t *msg,
    size_t msg_len, const uint8_t *sig, size_t sig_len, int expect_ok)
{
	const unsigned char *p = spki;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	assert_non_null(pub);
	assert_non_null(md);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1,
	    expect_ok);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pub);
}

static void
test_devkey(void **state)
{
	static const uint8_t challenge[] = "nonce|device-id|qes.example.com";
	agent_devkey *k = NULL, *k2 = NULL;
	agent_secretstore *s;
	qes_secret *der = qes_secret_new(AGENT_SECRET_MAX);
	qes_buf *spki = qes_buf_new(), *spki2 = qes_buf_new(), *pem = qes_buf_new();
	qes_buf *sig = qes_buf_new();
	char dir[PATH_MAX], name[256];
	const char *where, *pem_str;
	EVP_PKEY *other;
	BIO *bio;
	uint8_t bad[200];

	(void)state;
	assert_int_equal(agent_devkey_generate(&k), 0);
	assert_int_equal(agent_devkey_public_der(k, spki), 0);
	assert_int_equal(agent_devkey_sign(k, challenge, sizeof(challenge), sig), 0);
	verify_with_openssl(qes_buf_data(spki), qes_buf_len(spki), challenge,
	    sizeof(challenge), qes_buf_data(sig), qes_buf_len(sig), 1);
	/* a changed challenge does not verify */
	verify_with_openssl(qes_buf_data(spki), qes_buf_len(spki), challenge,
	    sizeof(challenge) - 2, qes_buf_data(sig), qes_buf_len(sig), 0);

	/* PEM parses and is the same key */
	assert_int_equal(agent_devkey_public_pem(k, pem), 0);
	assert_int_equal(qes_buf_cstr(pem, &pem_str), 0);
	assert_non_null(strstr(pem_str, "-----BEGIN PUBLIC KEY-----"));
	bio = BIO_new_mem_buf(pem_str, -1);
	other = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	assert_non_null(other);
	assert_int_equal(EVP_PKEY_get_bits(other), 256);
	EVP_PKEY_free(other);
	BIO_free(bio);

	/* PKCS#8 round trip gives the same key */
	assert_int_equal(agent_devkey_to_pkcs8(k, der), 0);
	assert_true(qes_secret_len(der) > 100);
	assert_int_equal(agent_devkey_from_pkcs8(der, &k2), 0);
	assert_int_equal(agent_devkey_public_der(k2, spki2), 0);
	assert_int_equal(qes_buf_len(spki), qes_buf_len(spki2));
	assert_memory_equal(qes_buf_data(spki), qes_buf_data(spki2), qes_buf_len(spki));
	agent_devkey_free(k2);
	k2 = NULL;

	/* trailing bytes, garbage, and other curves are refused */
	assert_int_equal(qes_secret_append(der, "x", 1), 0);
	assert_int_equal(agent_devkey_from_pkcs8(der, &k2), QES_ERR_FORMAT);
	memset(bad, 0x30, sizeof(bad));
	assert_int_equal(qes_secret_set(der, bad, sizeof(bad)), 0);
	assert_int_equal(agent_devkey_from_pkcs8(der, &k2), QES_ERR_FORMAT);
	{
		EVP_PKEY *p384 = EVP_EC_gen("P-384");
		PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(p384);
		unsigned char *d = NULL;
		int len = i2d_PKCS8_PRIV_KEY_INFO(p8, &d);

		assert_true(len > 0);
		assert_int_equal(qes_secret_set(der, d, (size_t)len), 0);
		assert_int_equal(agent_devkey_from_pkcs8(der, &k2), QES_ERR_UNSUPPORTED);
		assert_null(k2);
		OPENSSL_clear_free(d, (size_t)len);
		PKCS8_PRIV_KEY_INFO_free(p8);
		EVP_PKEY_free(p384);
	}

	/* save and load through the store (the file fallback here) */
	path_in(dir, sizeof(dir), "devkey/qes");
	s = file_only_store(dir);
	assert_int_equal(agent_devkey_name_for_url("wss://QES.Example.com:8443/v1/agent",
	    name, sizeof(name)), 0);
	assert_string_equal(name, "qes.example.com:8443");
	assert_int_equal(agent_devkey_save(k, s, name, &where), 0);
	assert_string_equal(where, "file");
	assert_int_equal(agent_devkey_load(s, name, &k2), 0);
	qes_buf_reset(spki2);
	assert_int_equal(agent_devkey_public_der(k2, spki2), 0);
	assert_memory_equal(qes_buf_data(spki), qes_buf_data(spki2), qes_buf_len(spki));
	qes_buf_reset(sig);
	assert_int_equal(agent_devkey_sign(k2, challenge, sizeof(challenge), sig), 0);
	verify_with_openssl(qes_buf_data(spki), qes_buf_len(spki), challenge,
	    sizeof(challenge), qes_buf_data(sig), qes_buf_len(sig), 1);
	agent_devkey_free(k2);
	k2 = NULL;
	assert_int_equal(agent_devkey_delete(s, name), 0);
	assert_int_equal(agent_devkey_load(s, name, &k2), QES_ERR_NOT_FOUND);
	agent_secretstore_free(s);

	/* URL forms */
	assert_int_equal(agent_devkey_name_for_url("wss://h.example/x", name,
	    sizeof(name)), 0);
	assert_string_equal(name, "h.example");
	assert_int_equal(agent_devkey_name_for_url("wss://user@h.example/", name,
	    sizeof(name)), QES_ERR_FORMAT);
	assert_int_equal(agent_devkey_name_for_url("h.example", name, sizeof(name)),
	    QES_ERR_FORMAT);
	assert_int_equal(agent_devkey_name_for_url("wss:///x", name, sizeof(name)),
	    QES_ERR_FORMAT);

	agent_devkey_free(k);
	qes_secret_free(der);
	qes_buf_free(spki);
	qes_buf_free(spki2);
	qes_buf_free(pem);
	qes_buf_free(sig);
}

/*
 * The platform store for real: run by tests/integration/agent_pinstore.sh
 * inside its D-Bus session, with QES_TEST_SECRET_SERVICE=1 (gnome-keyring
 * running: keys go there, and an older file copy is removed) or =0 (no bus:
 * the device key falls back to the file with a warning, a PIN is refused).
 * Skipped otherwise.
 */
static void
test_secret_service(void **state)
{
	const char *mode = getenv("QES_TEST_SECRET_SERVICE");
	agent_secretstore_opts o = { 0 };
	agent_secretstore *s = NULL, *f;
	agent_devkey *k = NULL, *k2 = NULL;
	qes_secret *pin;
	qes_buf *a, *b;
	char dir[PATH_MAX], file[PATH_MAX + 64], **keys = NULL;
	const char *where;
	size_t n, i;
	int found = 0;

	(void)state;
	if (mode == NULL)
		skip();
	pin = qes_secret_new(QES_PIN_MAX);
	a = qes_buf_new();
	b = qes_buf_new();
	assert_true(pin != NULL && a != NULL && b != NULL);
	path_in(dir, sizeof(dir), "ss/qes");
	snprintf(file, sizeof(file), "%s/device-key-host.example", dir);
	assert_int_equal(agent_devkey_generate(&k), 0);
	assert_int_equal(agent_devkey_public_der(k, a), 0);
	o.file_dir = dir;
	o.timeout_ms = 5000;
	assert_int_equal(agent_secretstore_open(&o, &s), 0);
	if (strcmp(mode, "0") == 0) {
		assert_false(agent_secretstore_platform_available(s));
		assert_int_equal(agent_devkey_save(k, s, "host.example", &where), 0);
		assert_string_equal(where, "file");
		assert_int_equal(access(file, R_OK), 0);
		assert_int_equal(qes_secret_set(pin, "314159", 6), 0);
		assert_int_equal(agent_secret_store(s, AGENT_SECRET_PIN, "SER1", "l",
		    pin, NULL), QES_ERR_UNAVAILABLE);
		goto load;
	}
	assert_true(agent_secretstore_platform_available(s));
	/* an older copy in the file (enrolled while no service ran) ... */
	f = file_only_store(dir);
	assert_int_equal(agent_devkey_save(k, f, "host.example", &where), 0);
	assert_string_equal(where, "file");
	agent_secretstore_free(f);
	assert_int_equal(access(file, R_OK), 0);
	/* ... goes when the key is kept in the Secret Service */
	assert_int_equal(agent_devkey_save(k, s, "host.example", &where), 0);
	assert_string_equal(where, "secret-service");
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(agent_secret_list(s, AGENT_SECRET_DEVICE_KEY, &keys, &n), 0);
	for (i = 0; i < n; i++)
		found |= strcmp(keys[i], "host.example") == 0;
	assert_true(found);
	agent_secret_keys_free(keys);
	/* a PIN round trip, binary-safe */
	assert_int_equal(qes_secret_set(pin, "31\x00" "4159", 7), 0);
	assert_int_equal(agent_secret_store(s, AGENT_SECRET_PIN, "SER1", "qes test",
	    pin, &where), 0);
	qes_secret_clear(pin);
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_PIN, "SER1", pin), 0);
	assert_int_equal(qes_secret_len(pin), 7);
	assert_memory_equal(qes_secret_data(pin), "31\x00" "4159", 7);
	assert_int_equal(agent_secret_delete(s, AGENT_SECRET_PIN, "SER1"), 0);
	assert_int_equal(agent_secret_lookup(s, AGENT_SECRET_PIN, "SER1", pin),
	    QES_ERR_NOT_FOUND);
 load:
	assert_int_equal(agent_devkey_load(s, "host.example", &k2), 0);
	assert_int_equal(agent_devkey_public_der(k2, b), 0);
	assert_int_equal(qes_buf_len(a), qes_buf_len(b));
	assert_memory_equal(qes_buf_data(a), qes_buf_data(b), qes_buf_len(a));
	assert_int_equal(agent_devkey_delete(s, "host.example"), 0);
	agent_devkey_free(k2);
	k2 = NULL;
	assert_int_equal(agent_devkey_load(s, "host.example", &k2), QES_ERR_NOT_FOUND);
	agent_secretstore_free(s);
	agent_devkey_free(k);
	qes_secret_free(pin);
	qes_buf_free(a);
	qes_buf_free(b);
}

/* ---- the PIN store's policy ---- */

static void
test_pinstore_policy(void **state)
{
	agent_config *c = NULL;
	agent_pinstore *ps = NULL;
	agent_secretstore *s;
	qes_sign_pin_source src;
	qes_secret *pin = qes_secret_new(QES_PIN_MAX);
	char err[512], why[512], dir[PATH_MAX];
	char **serials;
	size_t n;

	(void)state;
	/* default: allowed */
	assert_int_equal(agent_config_new_empty(&c), 0);
	assert_int_equal(agent_pinstore_new(c, NULL, &ps), 0);
	assert_int_equal(agent_pinstore_allowed(ps, "ABC", why, sizeof(why)), 0);
	/* no store: the source has nothing, never an error */
	agent_pinstore_source(ps, &src);
	assert_int_not_equal(src.lookup(src.arg, "ABC", pin), 0);
	src.rejected(src.arg, "ABC");
	assert_int_equal(qes_secret_set(pin, "123456", 6), 0);
	assert_int_equal(agent_pinstore_remember(ps, "ABC", "t", pin),
	    QES_ERR_UNAVAILABLE);
	agent_pinstore_free(ps);
	agent_config_free(c);

	/* without a Secret Service a PIN is never stored (not even in the file) */
	path_in(dir, sizeof(dir), "pins/qes");
	s = file_only_store(dir);
	assert_int_equal(agent_config_new_empty(&c), 0);
	assert_int_equal(agent_pinstore_new(c, s, &ps), 0);
	assert_int_equal(agent_pinstore_remember(ps, "ABC", "t", pin),
	    QES_ERR_UNAVAILABLE);
	assert_int_equal(agent_pinstore_list(ps, &serials, &n), QES_ERR_UNAVAILABLE);
	assert_int_equal(run("test -z \"$(ls -A '%s' 2>/dev/null)\"", dir), 0);
	agent_pinstore_free(ps);
	agent_config_free(c);
	agent_secretstore_free(s);

	/* disabled */
	assert_int_equal(load_text("pin_storage = disabled\n", 0600, &c, err,
	    sizeof(err)), 0);
	assert_int_equal(agent_pinstore_new(c, NULL, &ps), 0);
	assert_int_equal(agent_pinstore_allowed(ps, "ABC", why, sizeof(why)),
	    QES_ERR_UNSUPPORTED);
	assert_non_null(strstr(why, "pin_storage = disabled"));
	assert_int_equal(agent_pinstore_remember(ps, "ABC", "t", pin),
	    QES_ERR_UNSUPPORTED);
	agent_pinstore_free(ps);
	agent_config_free(c);

	/* every signature, globally and for one token */
	assert_int_equal(load_text("pin_policy = every_signature\n"
	    "pin_policy.XYZ = remembered\n", 0600, &c, err, sizeof(err)), 0);
	assert_int_equal(agent_pinstore_new(c, NULL, &ps), 0);
	assert_int_equal(agent_pinstore_allowed(ps, "ABC", why, sizeof(why)),
	    QES_ERR_UNSUPPORTED);
	assert_non_null(strstr(why, "every signature"));
	assert_int_equal(agent_pinstore_allowed(ps, "XYZ", why, sizeof(why)), 0);
	agent_pinstore_free(ps);
	agent_config_free(c);
	assert_int_equal(load_text("pin_policy.ABC = every_signature\n", 0600, &c,
	    err, sizeof(err)), 0);
	assert_int_equal(agent_pinstore_new(c, NULL, &ps), 0);
	assert_int_equal(agent_pinstore_allowed(ps, "ABC", why, sizeof(why)),
	    QES_ERR_UNSUPPORTED);
	assert_non_null(strstr(why, "pin_policy.ABC"));
	assert_int_equal(agent_pinstore_allowed(ps, "XYZ", why, sizeof(why)), 0);
	assert_int_equal(agent_pinstore_allowed(ps, "bad\nserial", why, sizeof(why)),
	    QES_ERR_INVALID_ARG);
	agent_pinstore_free(ps);
	agent_config_free(c);
	qes_secret_free(pin);
}

/* ---- the log ---- */

static void
test_log(void **state)
{
	char path[PATH_MAX], big[6000], line[8192];
	json_t *j;
	json_error_t jerr;
	FILE *f;
	int fd;

	(void)state;
	path_in(path, sizeof(path), "log.jsonl");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	agent_log_set_fd(fd);
	agent_log_set_level(AGENT_LOG_INFO);
	agent_log(AGENT_LOG_DEBUG, "dropped", NULL);
	agent_log(AGENT_LOG_WARN, "pin_rejected_deleted", "token", "AB\"C\n\x1b[31m",
	    "none", NULL, NULL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	agent_log(AGENT_LOG_INFO, "big", "small", "kept", "huge", big, "after",
	    "dropped", NULL);
	agent_log_set_fd(2);
	agent_log_set_level(AGENT_LOG_ERROR);
	close(fd);

	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	j = json_loads(line, 0, &jerr);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "event")),
	    "pin_rejected_deleted");
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(j, "token")),
	    "AB\"C\n\x1b[31m");
	assert_true(json_is_null(json_object_get(j, "none")));
	assert_null(strchr(line, '\x1b'));	/* escaped, not raw */
	json_decref(j);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_true(strlen(line) <= 4096);
	j = json_loads(line, 0, &jerr);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "small")), "kept");
	assert_null(json_object_get(j, "huge"));
	assert_true(json_is_true(json_object_get(j, "truncated")));
	json_decref(j);
	assert_null(fgets(line, sizeof(line), f));	/* debug was dropped */
	fclose(f);
}

/* ---- hot-plug with SoftHSM2 ---- */

static struct {
	int skip;
	char store[PATH_MAX];	/* the private token store */
	char aside[PATH_MAX];	/* where a "removed" token directory waits */
	char token_dir[NAME_MAX + 1];
	const char *module;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t n_present;	/* initialised tokens in the last inventory */
	unsigned long calls;
} hp = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void
hp_callback(void *arg, qes_p11_inventory *inv)
{
	size_t i, n = 0;

	(void)arg;
	for (i = 0; i < inv->n_tokens; i++)
		if (inv->tokens[i].present && inv->tokens[i].serial[0] != '\0' &&
		    (inv->tokens[i].flags & QES_TOK_INITIALIZED))
			n++;
	qes_p11_inventory_free(inv);
	pthread_mutex_lock(&hp.lock);
	hp.n_present = n;
	hp.calls++;
	pthread_cond_broadcast(&hp.cond);
	pthread_mutex_unlock(&hp.lock);
}

/* Wait until the callback reported `want` tokens; 0 when it did in time. */
static int
hp_wait(size_t want, unsigned long after_calls, int timeout_ms)
{
	struct timespec until;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&hp.lock);
	while ((hp.calls <= after_calls || hp.n_present != want) && r == 0)
		r = pthread_cond_timedwait(&hp.cond, &hp.lock, &until);
	pthread_mutex_unlock(&hp.lock);
	return r == 0 ? 0 : -1;
}

static int
hp_setup(void **state)
{
	static const char *candidates[] = {
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib64/softhsm/libsofthsm2.so",
	};
	const char *env = getenv("QES_TESTENV");
	char src[PATH_MAX], conf[PATH_MAX], text[PATH_MAX + 128];
	struct dirent *de;
	size_t i;
	DIR *d;

	(void)state;
	hp.skip = 1;
	for (i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
		if (access(candidates[i], R_OK) == 0)
			hp.module = candidates[i];
	if (env == NULL || hp.module == NULL)
		return 0;
	snprintf(src, sizeof(src), "%s/tokens/store", env);
	if (access(src, R_OK) != 0)
		return 0;
	snprintf(hp.store, sizeof(hp.store), "%s/hp-store", tmp_root);
	snprintf(hp.aside, sizeof(hp.aside), "%s/hp-aside", tmp_root);
	if (run("cp -a '%s' '%s' && mkdir -p '%s'", src, hp.store, hp.aside) != 0)
		return -1;
	snprintf(conf, sizeof(conf), "%s/hp-softhsm2.conf", tmp_root);
	snprintf(text, sizeof(text), "directories.tokendir = %s\n"
	    "objectstore.backend = file\nlog.level = ERROR\n", hp.store);
	write_text(conf, text, 0600);
	setenv("SOFTHSM2_CONF", conf, 1);
	if ((d = opendir(hp.store)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.') {
			snprintf(hp.token_dir, sizeof(hp.token_dir), "%s", de->d_name);
			break;
		}
	closedir(d);
	hp.skip = hp.token_dir[0] == '\0';
	return 0;
}

static void
test_hotplug_softhsm(void **state)
{
	agent_hotplug_opts o = { 0 };
	agent_hotplug_stats st;
	agent_hotplug *h = NULL;
	qes_p11 *p = NULL;
	size_t idx = 0, n0;
	unsigned long calls;
	char from[PATH_MAX + NAME_MAX + 2], to[PATH_MAX + NAME_MAX + 2];

	(void)state;
	if (hp.skip)
		skip();
	snprintf(from, sizeof(from), "%s/%s", hp.store, hp.token_dir);
	snprintf(to, sizeof(to), "%s/%s", hp.aside, hp.token_dir);
	assert_int_equal(qes_p11_new(&p), 0);
	assert_int_equal(qes_p11_add_module(p, hp.module, QES_P11_SRC_EXPLICIT, "",
	    &idx), 0);
	o.poll_interval_ms = 50;
	o.reinit_interval_ms = 200;
	assert_int_equal(agent_hotplug_start(p, &o, hp_callback, NULL, &h), 0);
	/* SoftHSM2 never reports slot events: polled from the start */
	assert_int_equal(agent_hotplug_module_mode(h, idx), AGENT_HOTPLUG_POLL);

	/* the inventory at start */
	assert_int_equal(hp_wait(3, 0, 10000), 0);
	n0 = hp.n_present;

	/* removal: the token directory goes away */
	calls = hp.calls;
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(hp_wait(n0 - 1, calls, 10000), 0);

	/* insertion while a signing job holds the gate: not re-initialised yet */
	agent_hotplug_enter(h);
	calls = hp.calls;
	assert_int_equal(rename(to, from), 0);
	assert_int_equal(hp_wait(n0, calls, 1000), -1);
	agent_hotplug_get_stats(h, &st);
	assert_true(st.reinits_deferred > 0);
	/* the job ends: the next re-initialisation finds the token */
	agent_hotplug_leave(h);
	assert_int_equal(hp_wait(n0, calls, 10000), 0);
	agent_hotplug_get_stats(h, &st);
	assert_true(st.reinits > 0);
	assert_true(st.scans >= 3);

	/* no change, no callback */
	calls = hp.calls;
	usleep(400 * 1000);
	assert_int_equal(hp.calls, calls);

	agent_hotplug_stop(h);
	/* the module still works for libqes after our re-initialisations */
	{
		qes_p11_inventory *inv = NULL;

		assert_int_equal(qes_p11_scan(p, &inv), 0);
		qes_p11_inventory_free(inv);
	}
	qes_p11_free(p);
}

static void
test_hotplug_args(void **state)
{
	agent_hotplug *h = NULL;
	qes_p11 *p = NULL;

	(void)state;
	assert_int_equal(agent_hotplug_start(NULL, NULL, hp_callback, NULL, &h),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_p11_new(&p), 0);
	assert_int_equal(agent_hotplug_start(p, NULL, NULL, NULL, &h),
	    QES_ERR_INVALID_ARG);
	/* no module at all: starts, reports an empty inventory, stops */
	hp.calls = 0;
	assert_int_equal(agent_hotplug_start(p, NULL, hp_callback, NULL, &h), 0);
	assert_int_equal(hp_wait(0, 0, 5000), 0);
	assert_int_equal(agent_hotplug_module_mode(h, 0), AGENT_HOTPLUG_OFF);
	agent_hotplug_stop(h);
	agent_hotplug_stop(NULL);
	agent_hotplug_enter(NULL);
	agent_hotplug_leave(NULL);
	qes_p11_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_file_store),
		cmocka_unit_test(test_devkey),
		cmocka_unit_test(test_pinstore_policy),
		cmocka_unit_test(test_log),
		cmocka_unit_test(test_hotplug_args),
		cmocka_unit_test_setup(test_hotplug_softhsm, hp_setup),
		cmocka_unit_test(test_secret_service),
	};

	/* the integration test runs single tests: QES_TEST_FILTER=test_name */
	if (getenv("QES_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QES_TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
