/*
 * test_p11_softhsm.c - the PKCS#11 token layer (p11.c, p11_scan.c,
 * p11_session.c) against real SoftHSM2 tokens.
 *
 * Self-contained: the group setup makes a throw-away token store (mkdtemp,
 * its own softhsm2.conf, SOFTHSM2_CONF set before any module is loaded),
 * generates RSA-2048, P-256 and P-384 keys and self-signed certificates
 * with OpenSSL, and puts them on three tokens with softhsm2-util and
 * pkcs11-tool. The teardown removes the directory. When SoftHSM2 or its
 * tools are missing, every test is skipped.
 *
 *   qes-a  PIN 123456  01 RSA key + cert + public key   (pairing by public key)
 *                      02 P-256 key + cert               (key hidden until login)
 *                      03 P-384 key + cert
 *                      04 RSA key with CKA_ALWAYS_AUTHENTICATE + cert
 *                      05 cert only                      (no key at all)
 *   qes-b  PIN 654321  0b P-256 key + cert               (wrong-PIN test)
 *   qes-c  PIN 111111  0c RSA key + cert                 (removal test: its
 *                                                         directory is deleted)
 *
 * Every signature is checked twice: with qes_cert_verify_digest() against
 * the certificate the scan read from the token, and with OpenSSL's EVP API
 * against the key generated here.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "p11-kit/pkcs11.h"

#include "qes/buf.h"
#include "qes/cert.h"
#include "qes/err.h"
#include "qes/p11.h"
#include "qes/secret.h"
#include "qes/sig.h"

#include "p11_priv.h"

#define PIN_A "123456"
#define PIN_B "654321"
#define PIN_C "111111"
#define SO_PIN "87654321"

static const char *module_candidates[] = {
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
};

static struct {
	int skip;
	char dir[256];		/* short, so every path built from it fits */
	char tokens[300];
	char dir_c[600];	/* token qes-c's directory in the store */
	const char *module;
	EVP_PKEY *rsa, *ec256, *ec384;
} fx;

/* ---- fixture helpers ---- */

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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

static int
write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (f == NULL)
		return -1;
	ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int
write_key_files(EVP_PKEY *key, const char *name)
{
	char path[PATH_MAX];
	unsigned char *der = NULL;
	PKCS8_PRIV_KEY_INFO *p8;
	int len, r = -1;

	if ((p8 = EVP_PKEY2PKCS8(key)) == NULL)
		return -1;
	len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
	PKCS8_PRIV_KEY_INFO_free(p8);
	snprintf(path, sizeof(path), "%s/%s.p8", fx.dir, name);
	if (len <= 0 || write_file(path, der, (size_t)len) != 0)
		goto out;
	OPENSSL_clear_free(der, (size_t)len);
	der = NULL;
	len = i2d_PUBKEY(key, &der);
	snprintf(path, sizeof(path), "%s/%s.pub", fx.dir, name);
	if (len <= 0 || write_file(path, der, (size_t)len) != 0)
		goto out;
	r = 0;
 out:
	OPENSSL_free(der);
	return r;
}

/* A self-signed certificate with keyUsage nonRepudiation, as DER file. */
static int
write_cert(EVP_PKEY *key, const char *cn, const char *name, long serial)
{
	X509 *x = X509_new();
	X509_NAME *n;
	X509_EXTENSION *ext = NULL;
	X509V3_CTX ctx;
	unsigned char *der = NULL;
	char path[PATH_MAX];
	int len, r = -1;

	if (x == NULL || !X509_set_version(x, 2) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(x), serial) ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400) == NULL)
		goto out;
	n = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, n) || !X509_set_pubkey(x, key))
		goto out;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
	    "critical,nonRepudiation")) == NULL || !X509_add_ext(x, ext, -1))
		goto out;
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto out;
	if ((len = i2d_X509(x, &der)) <= 0)
		goto out;
	snprintf(path, sizeof(path), "%s/%s.crt", fx.dir, name);
	r = write_file(path, der, (size_t)len);
 out:
	OPENSSL_free(der);
	X509_EXTENSION_free(ext);
	X509_free(x);
	return r;
}

static int
init_token(const char *label, const char *pin)
{
	return run("softhsm2-util --init-token --free --label %s --so-pin %s "
	    "--pin %s >/dev/null 2>&1", label, SO_PIN, pin);
}

/* pkcs11-tool --write-object; extra = "--usage-sign" etc. */
static int
put(const char *label, const char *pin, const char *file, const char *type,
    const char *id, const char *extra)
{
	return run("pkcs11-tool --module %s --token-label %s --login --pin %s "
	    "--write-object %s/%s --type %s --id %s --label %s-%s %s "
	    ">/dev/null 2>&1", fx.module, label, pin, fx.dir, file, type, id,
	    type, id, extra);
}

/* The one entry of the store that is not in before[] (a new token's directory). */
static int
new_token_dir(char before[][NAME_MAX + 1], size_t n_before, char *out,
    size_t out_len)
{
	struct dirent *de;
	DIR *d;
	size_t i;
	int found = 0, known;

	if ((d = opendir(fx.tokens)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		for (known = 0, i = 0; i < n_before; i++)
			known |= strcmp(before[i], de->d_name) == 0;
		if (!known) {
			snprintf(out, out_len, "%s/%s", fx.tokens, de->d_name);
			found++;
		}
	}
	closedir(d);
	return found == 1 ? 0 : -1;
}

static size_t
list_token_dirs(char names[][NAME_MAX + 1], size_t max)
{
	struct dirent *de;
	DIR *d;
	size_t n = 0;

	if ((d = opendir(fx.tokens)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(names[n++], NAME_MAX + 1, "%s", de->d_name);
	}
	closedir(d);
	return n;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
rm_rf(const char *path)
{
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int
group_setup(void **state)
{
	char before[8][NAME_MAX + 1];
	char conf[PATH_MAX], text[2 * PATH_MAX];
	const char *tmp;
	size_t i, n;

	(void)state;
	memset(&fx, 0, sizeof(fx));
	for (i = 0; i < sizeof(module_candidates) / sizeof(module_candidates[0]); i++)
		if (access(module_candidates[i], R_OK) == 0) {
			fx.module = module_candidates[i];
			break;
		}
	if (fx.module == NULL ||
	    run("command -v softhsm2-util >/dev/null 2>&1") != 0 ||
	    run("command -v pkcs11-tool >/dev/null 2>&1") != 0) {
		fx.skip = 1;
		return 0;
	}
	tmp = getenv("TMPDIR");
	if (tmp == NULL || tmp[0] != '/' || strlen(tmp) > 200)
		tmp = "/tmp";
	snprintf(fx.dir, sizeof(fx.dir), "%s/qes-p11-test-XXXXXX", tmp);
	if (mkdtemp(fx.dir) == NULL)
		return -1;
	snprintf(fx.tokens, sizeof(fx.tokens), "%s/tokens", fx.dir);
	if (mkdir(fx.tokens, 0700) != 0)
		return -1;
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", fx.dir);
	n = (size_t)snprintf(text, sizeof(text),
	    "directories.tokendir = %s\nobjectstore.backend = file\n"
	    "log.level = ERROR\nslots.removable = false\n", fx.tokens);
	if (write_file(conf, text, n) != 0)
		return -1;
	/* before any module is loaded: SoftHSM2 reads it in C_Initialize */
	setenv("SOFTHSM2_CONF", conf, 1);

	if ((fx.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)) == NULL ||
	    (fx.ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL ||
	    (fx.ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384")) == NULL)
		return -1;
	if (write_key_files(fx.rsa, "rsa") != 0 ||
	    write_key_files(fx.ec256, "ec256") != 0 ||
	    write_key_files(fx.ec384, "ec384") != 0 ||
	    write_cert(fx.rsa, "qes test RSA", "rsa", 1) != 0 ||
	    write_cert(fx.ec256, "qes test P-256", "ec256", 2) != 0 ||
	    write_cert(fx.ec384, "qes test P-384", "ec384", 3) != 0)
		return -1;

	if (init_token("qes-a", PIN_A) != 0 ||
	    put("qes-a", PIN_A, "rsa.p8", "privkey", "01", "--usage-sign") != 0 ||
	    put("qes-a", PIN_A, "rsa.crt", "cert", "01", "") != 0 ||
	    put("qes-a", PIN_A, "rsa.pub", "pubkey", "01", "") != 0 ||
	    put("qes-a", PIN_A, "ec256.p8", "privkey", "02", "--usage-sign") != 0 ||
	    put("qes-a", PIN_A, "ec256.crt", "cert", "02", "") != 0 ||
	    put("qes-a", PIN_A, "ec384.p8", "privkey", "03", "--usage-sign") != 0 ||
	    put("qes-a", PIN_A, "ec384.crt", "cert", "03", "") != 0 ||
	    put("qes-a", PIN_A, "rsa.p8", "privkey", "04",
	    "--usage-sign --always-auth") != 0 ||
	    put("qes-a", PIN_A, "rsa.crt", "cert", "04", "") != 0 ||
	    put("qes-a", PIN_A, "ec256.crt", "cert", "05", "") != 0)
		return -1;
	if (init_token("qes-b", PIN_B) != 0 ||
	    put("qes-b", PIN_B, "ec256.p8", "privkey", "0b", "--usage-sign") != 0 ||
	    put("qes-b", PIN_B, "ec256.crt", "cert", "0b", "") != 0)
		return -1;
	n = list_token_dirs(before, 8);
	if (init_token("qes-c", PIN_C) != 0 ||
	    new_token_dir(before, n, fx.dir_c, sizeof(fx.dir_c)) != 0 ||
	    put("qes-c", PIN_C, "rsa.p8", "privkey", "0c", "--usage-sign") != 0 ||
	    put("qes-c", PIN_C, "rsa.crt", "cert", "0c", "") != 0)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(fx.rsa);
	EVP_PKEY_free(fx.ec256);
	EVP_PKEY_free(fx.ec384);
	if (fx.dir[0] != '\0')
		rm_rf(fx.dir);
	return 0;
}

static void
skip_without_softhsm(void)
{
	if (fx.skip)
		skip();
}

/* A qes_p11 with SoftHSM2 as module 0. */
static qes_p11 *
load_softhsm(void)
{
	qes_p11 *p = NULL;
	size_t index = 99;

	assert_int_equal(qes_p11_new(&p), 0);
	assert_int_equal(qes_p11_add_module(p, fx.module, QES_P11_SRC_EXPLICIT,
	    "softhsm", &index), 0);
	assert_int_equal(index, 0);
	return p;
}

static const qes_p11_token *
find_token(const qes_p11_inventory *inv, const char *label)
{
	size_t i;

	for (i = 0; i < inv->n_tokens; i++)
		if (inv->tokens[i].present &&
		    strcmp(inv->tokens[i].label, label) == 0)
			return &inv->tokens[i];
	fail_msg("no token labelled %s", label);
	return NULL;
}

static const qes_p11_cred *
find_cred(const qes_p11_token *t, const char *id_hex)
{
	size_t i;

	for (i = 0; i < t->n_creds; i++)
		if (strcmp(t->creds[i].id_hex, id_hex) == 0)
			return &t->creds[i];
	fail_msg("token %s has no credential %s", t->label, id_hex);
	return NULL;
}

static int
has_mech(const qes_p11_token *t, unsigned long type, const char *name)
{
	size_t i;

	for (i = 0; i < t->n_mechs; i++)
		if (t->mechs[i].type == type) {
			assert_string_equal(t->mechs[i].name, name);
			assert_true(t->mechs[i].flags & CKF_SIGN);
			return 1;
		}
	return 0;
}

static qes_secret *
pin_secret(const char *pin)
{
	qes_secret *s = qes_secret_new(QES_PIN_MAX);

	assert_non_null(s);
	assert_int_equal(qes_secret_set(s, pin, strlen(pin)), 0);
	return s;
}

static char serial_buf[3][32];

/* The serial of a token by label, from a fresh scan. */
static const char *
serial_of(qes_p11 *p, const char *label, int slot)
{
	qes_p11_inventory *inv = NULL;

	assert_int_equal(qes_p11_scan(p, &inv), 0);
	snprintf(serial_buf[slot], sizeof(serial_buf[slot]), "%s",
	    find_token(inv, label)->serial);
	qes_p11_inventory_free(inv);
	return serial_buf[slot];
}

static const EVP_MD *
evp_md(qes_md md)
{
	return md == QES_MD_SHA256 ? EVP_sha256() :
	    md == QES_MD_SHA384 ? EVP_sha384() : EVP_sha512();
}

/* An independent check with OpenSSL: 1 when sig verifies under key. */
static int
evp_verify(EVP_PKEY *key, qes_sig_scheme scheme, qes_md md,
    const uint8_t *digest, size_t digest_len, const uint8_t *sig,
    size_t sig_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	int ok = 0;

	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, evp_md(md)) != 1)
		goto out;
	if (scheme == QES_SIG_RSA_PKCS1 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
		goto out;
	if (scheme == QES_SIG_RSA_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, evp_md(md)) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto out;
	ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;
 out:
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

/* ---- tests ---- */

static void
test_load_modules(void **state)
{
	const qes_p11_module_info *mi;
	qes_p11 *p = NULL, *p2 = NULL;
	qes_p11_inventory *inv = NULL;
	char real[PATH_MAX];
	Dl_info dli;
	size_t index = 99, n;

	(void)state;
	skip_without_softhsm();
	assert_int_equal(qes_p11_new(&p), 0);

	/* a path that does not exist: listed with its error */
	assert_int_equal(qes_p11_add_module(p, "/nonexistent/libnope.so",
	    QES_P11_SRC_EXPLICIT, NULL, &index), QES_ERR_MODULE_LOAD);
	assert_int_equal(index, 0);
	assert_non_null(mi = qes_p11_module_get(p, 0));
	assert_int_equal(mi->err, QES_ERR_MODULE_LOAD);
	assert_true(strncmp(mi->errmsg, "dlopen: ", 8) == 0);
	assert_string_equal(mi->path, "/nonexistent/libnope.so");
	assert_string_equal(mi->name, "");
	assert_string_equal(mi->manufacturer, "");

	/* a bare name would go through the library search path: refused */
	assert_int_equal(qes_p11_add_module(p, "libsofthsm2.so",
	    QES_P11_SRC_EXPLICIT, NULL, &index), QES_ERR_MODULE_LOAD);
	assert_int_equal(index, 1);
	assert_string_equal(qes_p11_module_get(p, 1)->errmsg,
	    "module path must be absolute");

	/* a library that is not a PKCS#11 module (libcrypto) */
	assert_true(dladdr((void *)EVP_sha256, &dli) != 0);
	assert_non_null(realpath(dli.dli_fname, real));
	assert_int_equal(qes_p11_add_module(p, real, QES_P11_SRC_EXPLICIT,
	    NULL, &index), QES_ERR_MODULE_LOAD);
	assert_string_equal(qes_p11_module_get(p, index)->errmsg,
	    "dlsym: neither C_GetInterface nor C_GetFunctionList");

	/* the failures do not stop a working module */
	assert_int_equal(qes_p11_add_module(p, fx.module, QES_P11_SRC_EXPLICIT,
	    "softhsm", &index), 0);
	assert_int_equal(index, 3);
	mi = qes_p11_module_get(p, 3);
	assert_int_equal(mi->err, 0);
	assert_string_equal(mi->errmsg, "");
	assert_string_equal(mi->name, "softhsm");
	assert_int_equal(mi->source, QES_P11_SRC_EXPLICIT);
	assert_string_equal(mi->manufacturer, "SoftHSM");
	assert_string_equal(mi->description, "Implementation of PKCS11");
	assert_int_equal(mi->cryptoki_major, 2);
	assert_int_equal(mi->cryptoki_minor, 40);
	assert_int_equal(mi->interface_major, 0);	/* SoftHSM 2.6 is 2.40 only */
	assert_true(mi->lib_major >= 2);

	/* the same file by another path (symlink) is the same module */
	assert_non_null(realpath(fx.module, real));
	index = 99;
	assert_int_equal(qes_p11_add_module(p, real, QES_P11_SRC_WELL_KNOWN,
	    NULL, &index), 0);
	assert_int_equal(index, 3);
	/* and a failed path again is the same failed entry */
	assert_int_equal(qes_p11_add_module(p, "/nonexistent/libnope.so",
	    QES_P11_SRC_EXPLICIT, NULL, &index), QES_ERR_MODULE_LOAD);
	assert_int_equal(index, 0);
	n = qes_p11_module_count(p);
	assert_int_equal(n, 4);
	assert_null(qes_p11_module_get(p, n));

	/* OpenSC exports C_GetInterface: we must get its 3.x list */
	if (access("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", R_OK) == 0 &&
	    qes_p11_add_module(p, "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
	    QES_P11_SRC_EXPLICIT, "opensc", &index) == 0) {
		mi = qes_p11_module_get(p, index);
		assert_int_equal(mi->interface_major, 3);
		assert_string_equal(mi->manufacturer, "OpenSC Project");
	}

	/*
	 * A second qes_p11 shares the process-wide initialisation: freeing
	 * the first must not finalise the module under the second.
	 */
	p2 = load_softhsm();
	qes_p11_free(p);
	assert_int_equal(qes_p11_scan(p2, &inv), 0);
	assert_true(inv->n_tokens >= 3);
	assert_int_equal(find_token(inv, "qes-a")->err, 0);
	qes_p11_inventory_free(inv);
	qes_p11_free(p2);

	/* NULL and bad arguments */
	qes_p11_free(NULL);
	qes_p11_inventory_free(NULL);
	qes_p11_session_free(NULL);
	assert_int_equal(qes_p11_new(NULL), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_p11_module_count(NULL), 0);
}

static void
test_registered_and_well_known(void **state)
{
	const qes_p11_module_info *mi;
	char real[PATH_MAX], want[PATH_MAX];
	struct stat st;
	qes_p11 *p = NULL;
	size_t i;
	int saw_softhsm = 0;

	(void)state;
	skip_without_softhsm();
	assert_non_null(realpath(fx.module, want));
	assert_int_equal(qes_p11_new(&p), 0);
	assert_int_equal(qes_p11_add_registered(p), 0);
	for (i = 0; i < qes_p11_module_count(p); i++) {
		mi = qes_p11_module_get(p, i);
		assert_int_equal(mi->source, QES_P11_SRC_P11KIT);
		assert_true(mi->path[0] == '/');
		assert_null(strstr(mi->path, "p11-kit-proxy"));
		assert_null(strstr(mi->path, "p11-kit-trust"));
		if (realpath(mi->path, real) != NULL && strcmp(real, want) == 0) {
			saw_softhsm = 1;
			assert_int_equal(mi->err, 0);
			assert_string_equal(mi->name, "softhsm2");
		}
	}
	if (access("/usr/share/p11-kit/modules/softhsm2.module", R_OK) == 0)
		assert_true(saw_softhsm);

	assert_int_equal(qes_p11_add_well_known(p), 0);
	for (i = 0; i < qes_p11_module_count(p); i++) {
		mi = qes_p11_module_get(p, i);
		if (mi->source != QES_P11_SRC_WELL_KNOWN)
			continue;
		assert_int_equal(stat(mi->path, &st), 0);
		assert_true(mi->name[0] != '\0');
	}
	qes_p11_free(p);
}

static void
test_scan(void **state)
{
	const qes_p11_token *a, *b, *c;
	const qes_p11_cred *cr;
	const qes_cert_info *ci;
	qes_p11_inventory *inv = NULL;
	qes_p11_session *s = NULL;
	qes_secret *pin = pin_secret(PIN_A);
	qes_p11 *p;
	size_t i, free_slots = 0;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	assert_int_equal(qes_p11_scan(p, &inv), 0);
	/* three tokens and SoftHSM2's one free slot */
	assert_int_equal(inv->n_tokens, 4);
	for (i = 0; i < inv->n_tokens; i++) {
		assert_int_equal(inv->tokens[i].module_index, 0);
		if (inv->tokens[i].err != 0)
			fail_msg("slot %lu (%s): %s", inv->tokens[i].slot_id,
			    inv->tokens[i].label, inv->tokens[i].errmsg);
		assert_string_equal(inv->tokens[i].errmsg, "");
		assert_string_equal(inv->tokens[i].slot_manufacturer,
		    "SoftHSM project");
		if (!(inv->tokens[i].flags & QES_TOK_INITIALIZED))
			free_slots++;
	}
	assert_int_equal(free_slots, 1);

	a = find_token(inv, "qes-a");
	b = find_token(inv, "qes-b");
	c = find_token(inv, "qes-c");
	assert_int_equal(strlen(a->serial), 16);
	assert_string_not_equal(a->serial, b->serial);
	assert_string_not_equal(a->serial, c->serial);
	assert_string_equal(a->manufacturer, "SoftHSM project");
	assert_string_equal(a->model, "SoftHSM v2");
	assert_true(a->present);
	assert_int_equal(a->flags & (QES_TOK_LOGIN_REQUIRED | QES_TOK_INITIALIZED |
	    QES_TOK_USER_PIN_INITIALIZED | QES_TOK_PIN_COUNT_LOW |
	    QES_TOK_PIN_LOCKED | QES_TOK_PROTECTED_AUTH),
	    QES_TOK_LOGIN_REQUIRED | QES_TOK_INITIALIZED |
	    QES_TOK_USER_PIN_INITIALIZED);
	assert_true(a->raw_flags & CKF_LOGIN_REQUIRED);
	assert_true(a->min_pin >= 4 && a->max_pin >= a->min_pin);

	assert_true(a->n_mechs > 10);
	assert_true(has_mech(a, CKM_RSA_PKCS, "CKM_RSA_PKCS"));
	assert_true(has_mech(a, CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS"));
	assert_true(has_mech(a, CKM_ECDSA, "CKM_ECDSA"));
	for (i = 0; i < a->n_mechs; i++) {
		assert_non_null(a->mechs[i].name);
		if (a->mechs[i].type == CKM_RSA_PKCS)
			assert_true(a->mechs[i].max_key >= 2048);
	}

	/* before login: pairing by public key (01), unknown for the rest */
	assert_int_equal(a->n_creds, 5);
	cr = find_cred(a, "01");
	assert_int_equal(cr->id_len, 1);
	assert_int_equal(cr->id[0], 0x01);
	assert_string_equal(cr->label, "cert-01");
	assert_int_equal(cr->has_key, 1);
	assert_int_equal(cr->can_sign, 1);
	assert_non_null(cr->cert);
	ci = qes_cert_get_info(cr->cert);
	assert_string_equal(ci->subject_cn, "qes test RSA");
	assert_int_equal(ci->key_type, QES_KEY_RSA);
	assert_int_equal(ci->key_bits, 2048);
	assert_int_equal(cr->cls, QES_CERT_ADVANCED);
	assert_int_equal(find_cred(a, "02")->has_key, -1);
	assert_int_equal(find_cred(a, "03")->has_key, -1);
	assert_int_equal(find_cred(a, "04")->has_key, -1);
	assert_int_equal(find_cred(a, "04")->always_authenticate, 0);
	assert_int_equal(find_cred(a, "05")->has_key, -1);
	assert_string_equal(qes_cert_get_info(find_cred(a, "03")->cert)->curve,
	    "P-384");
	assert_int_equal(b->n_creds, 1);
	assert_int_equal(find_cred(b, "0b")->has_key, -1);
	qes_p11_inventory_free(inv);
	inv = NULL;

	/*
	 * Logged in (the login state belongs to the application, so the
	 * scan's own session sees it): private keys show, CKA_ALWAYS_-
	 * AUTHENTICATE is read, and a certificate without key is has_key 0.
	 */
	assert_int_equal(qes_p11_session_open(p, 0, serial_of(p, "qes-a", 0),
	    &s), 0);
	assert_int_equal(qes_p11_session_login(s, pin), 0);
	assert_int_equal(qes_p11_scan(p, &inv), 0);
	a = find_token(inv, "qes-a");
	assert_int_equal(find_cred(a, "01")->has_key, 1);
	assert_int_equal(find_cred(a, "01")->always_authenticate, 0);
	assert_int_equal(find_cred(a, "02")->has_key, 1);
	assert_int_equal(find_cred(a, "02")->can_sign, 1);
	assert_int_equal(find_cred(a, "03")->has_key, 1);
	assert_int_equal(find_cred(a, "04")->has_key, 1);
	assert_int_equal(find_cred(a, "04")->always_authenticate, 1);
	assert_int_equal(find_cred(a, "05")->has_key, 0);
	qes_p11_inventory_free(inv);
	qes_p11_session_free(s);
	qes_secret_free(pin);
	qes_p11_free(p);
}

struct sign_case {
	const char *id_hex;
	uint8_t id;
	qes_sig_scheme scheme;
	EVP_PKEY **key;
	size_t raw_len;		/* ECDSA r||s length */
};

static void
test_sign_matrix(void **state)
{
	static const struct sign_case cases[] = {
		{ "01", 0x01, QES_SIG_RSA_PKCS1, &fx.rsa, 0 },
		{ "01", 0x01, QES_SIG_RSA_PSS, &fx.rsa, 0 },
		{ "02", 0x02, QES_SIG_ECDSA, &fx.ec256, 64 },
		{ "03", 0x03, QES_SIG_ECDSA, &fx.ec384, 96 },
	};
	static const qes_md mds[] = { QES_MD_SHA256, QES_MD_SHA384, QES_MD_SHA512 };
	uint8_t digest[QES_MD_MAX_LEN];
	const qes_p11_cred *cr;
	qes_p11_inventory *inv = NULL;
	qes_p11_session *s = NULL;
	qes_secret *pin = pin_secret(PIN_A);
	qes_buf *sig;
	size_t i, j, dl;
	int raw;
	qes_p11 *p;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	assert_int_equal(qes_p11_scan(p, &inv), 0);
	assert_int_equal(qes_p11_session_open(p, 0, find_token(inv, "qes-a")->serial,
	    &s), 0);
	assert_string_equal(qes_p11_session_errmsg(s), "");

	/* before login the key is invisible: say so, not "no such key" */
	assert_int_equal(qes_md_digest(QES_MD_SHA256, "x", 1, digest), 0);
	assert_non_null(sig = qes_buf_new());
	assert_int_equal(qes_p11_session_sign(s, &cases[0].id,
	    1, QES_SIG_RSA_PKCS1, QES_MD_SHA256, digest, 32, 0, sig),
	    QES_ERR_NOT_LOGGED_IN);
	assert_int_equal(qes_buf_len(sig), 0);

	assert_int_equal(qes_p11_session_login(s, pin), 0);
	/* a second login in the same job is a no-op */
	assert_int_equal(qes_p11_session_login(s, pin), 0);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr = find_cred(find_token(inv, "qes-a"), cases[i].id_hex);
		for (j = 0; j < sizeof(mds) / sizeof(mds[0]); j++) {
			for (raw = 0; raw <= (cases[i].raw_len > 0); raw++) {
				dl = qes_md_len(mds[j]);
				assert_int_equal(qes_md_digest(mds[j], &i,
				    sizeof(i), digest), 0);
				qes_buf_reset(sig);
				if (qes_p11_session_sign(s, &cases[i].id, 1,
				    cases[i].scheme, mds[j], digest, dl, raw,
				    sig) != 0)
					fail_msg("sign %s id %s %s: %s",
					    qes_sig_scheme_name(cases[i].scheme),
					    cases[i].id_hex, qes_md_name(mds[j]),
					    qes_p11_session_errmsg(s));
				if (raw)
					assert_int_equal(qes_buf_len(sig),
					    cases[i].raw_len);
				else if (cases[i].scheme != QES_SIG_ECDSA)
					assert_int_equal(qes_buf_len(sig), 256);
				assert_int_equal(qes_cert_verify_digest(cr->cert,
				    cases[i].scheme, mds[j], digest, dl,
				    qes_buf_data(sig), qes_buf_len(sig)), 0);
				if (!raw)
					assert_true(evp_verify(*cases[i].key,
					    cases[i].scheme, mds[j], digest, dl,
					    qes_buf_data(sig), qes_buf_len(sig)));
			}
		}
	}

	/* the key type must match the scheme */
	assert_int_equal(qes_md_digest(QES_MD_SHA256, "y", 1, digest), 0);
	qes_buf_reset(sig);
	assert_int_equal(qes_p11_session_sign(s, &cases[0].id, 1, QES_SIG_ECDSA,
	    QES_MD_SHA256, digest, 32, 0, sig), QES_ERR_KEY_UNSUITABLE);
	assert_string_equal(qes_p11_session_errmsg(s),
	    "key is RSA, cannot sign ecdsa");
	assert_int_equal(qes_p11_session_sign(s, &cases[2].id, 1, QES_SIG_RSA_PSS,
	    QES_MD_SHA256, digest, 32, 0, sig), QES_ERR_KEY_UNSUITABLE);
	/* a certificate without key, an id nobody has */
	{
		uint8_t id5 = 0x05, idx[3] = { 0xde, 0xad, 0x01 };

		assert_int_equal(qes_p11_session_sign(s, &id5, 1,
		    QES_SIG_ECDSA, QES_MD_SHA256, digest, 32, 0, sig),
		    QES_ERR_KEY_NOT_FOUND);
		assert_string_equal(qes_p11_session_errmsg(s),
		    "no private key with id 05");
		assert_int_equal(qes_p11_session_sign(s, idx, 3,
		    QES_SIG_ECDSA, QES_MD_SHA256, digest, 32, 0, sig),
		    QES_ERR_KEY_NOT_FOUND);
	}
	/* arguments */
	assert_int_equal(qes_p11_session_sign(s, &cases[0].id, 1,
	    QES_SIG_RSA_PKCS1, QES_MD_SHA256, digest, 31, 0, sig),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_p11_session_sign(s, &cases[0].id, 1,
	    QES_SIG_RSA_PKCS1, (qes_md)9, digest, 32, 0, sig),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_p11_session_sign(s, &cases[0].id, 0,
	    QES_SIG_RSA_PKCS1, QES_MD_SHA256, digest, 32, 0, sig),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_p11_session_sign(s, &cases[0].id, 1,
	    (qes_sig_scheme)7, QES_MD_SHA256, digest, 32, 0, sig),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_buf_len(sig), 0);

	/* still usable after all those refusals */
	assert_int_equal(qes_p11_session_sign(s, &cases[2].id, 1, QES_SIG_ECDSA,
	    QES_MD_SHA256, digest, 32, 0, sig), 0);
	assert_int_equal(qes_cert_verify_digest(find_cred(find_token(inv,
	    "qes-a"), "02")->cert, QES_SIG_ECDSA, QES_MD_SHA256, digest, 32,
	    qes_buf_data(sig), qes_buf_len(sig)), 0);

	/* after logout the key is hidden again */
	assert_int_equal(qes_p11_session_logout(s), 0);
	qes_buf_reset(sig);
	assert_int_equal(qes_p11_session_sign(s, &cases[2].id, 1, QES_SIG_ECDSA,
	    QES_MD_SHA256, digest, 32, 0, sig), QES_ERR_NOT_LOGGED_IN);

	qes_buf_free(sig);
	qes_p11_session_free(s);
	qes_p11_inventory_free(inv);
	qes_secret_free(pin);
	qes_p11_free(p);
}

static void
test_always_authenticate(void **state)
{
	uint8_t digest[32], id = 0x04;
	const qes_p11_cred *cr;
	qes_p11_inventory *inv = NULL;
	qes_p11_session *s = NULL;
	qes_secret *pin = pin_secret(PIN_A);
	qes_buf *sig;
	qes_p11 *p;
	int k;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	assert_int_equal(qes_p11_scan(p, &inv), 0);
	cr = find_cred(find_token(inv, "qes-a"), "04");
	assert_int_equal(qes_p11_session_open(p, 0, find_token(inv, "qes-a")->serial,
	    &s), 0);
	assert_int_equal(qes_p11_session_login(s, pin), 0);
	/* the caller may wipe its PIN right after login: we kept a copy */
	qes_secret_clear(pin);
	assert_non_null(sig = qes_buf_new());
	/* each signature needs its own CKU_CONTEXT_SPECIFIC login */
	for (k = 0; k < 3; k++) {
		assert_int_equal(qes_md_digest(QES_MD_SHA256, &k, sizeof(k),
		    digest), 0);
		qes_buf_reset(sig);
		if (qes_p11_session_sign(s, &id, 1, QES_SIG_RSA_PKCS1,
		    QES_MD_SHA256, digest, 32, 0, sig) != 0)
			fail_msg("always-auth sign: %s", qes_p11_session_errmsg(s));
		assert_int_equal(qes_cert_verify_digest(cr->cert,
		    QES_SIG_RSA_PKCS1, QES_MD_SHA256, digest, 32,
		    qes_buf_data(sig), qes_buf_len(sig)), 0);
		qes_buf_reset(sig);
		assert_int_equal(qes_p11_session_sign(s, &id, 1, QES_SIG_RSA_PSS,
		    QES_MD_SHA256, digest, 32, 0, sig), 0);
		assert_true(evp_verify(fx.rsa, QES_SIG_RSA_PSS, QES_MD_SHA256,
		    digest, 32, qes_buf_data(sig), qes_buf_len(sig)));
	}
	qes_buf_free(sig);
	qes_p11_session_free(s);
	qes_p11_inventory_free(inv);
	qes_secret_free(pin);
	qes_p11_free(p);
}

/*
 * A job looks its key up once, not once per digest: the session keeps the
 * handle for the rest of the login. Counted through a copy of the module's
 * function list with C_FindObjectsInit and C_Login wrapped. The handle is
 * not kept across logins, nor after a failure, and an always-authenticate
 * key still gets its context-specific login before every signature.
 */
static CK_C_FindObjectsInit real_find_init;
static CK_C_Login real_login;
static int n_find_init, n_context_login;

static CK_RV
count_find_init(CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
	n_find_init++;
	return real_find_init(h, tmpl, n);
}

static CK_RV
count_login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR *pin,
    CK_ULONG len)
{
	if (type == CKU_CONTEXT_SPECIFIC)
		n_context_login++;
	return real_login(h, type, pin, len);
}

static void
sign_verified(qes_p11_session *s, uint8_t id, qes_sig_scheme scheme,
    EVP_PKEY *key, int k)
{
	uint8_t digest[32];
	qes_buf *sig = qes_buf_new();

	assert_non_null(sig);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, &k, sizeof(k), digest),
	    0);
	if (qes_p11_session_sign(s, &id, 1, scheme, QES_MD_SHA256, digest, 32,
	    0, sig) != 0)
		fail_msg("sign with id %02x: %s", id, qes_p11_session_errmsg(s));
	assert_true(evp_verify(key, scheme, QES_MD_SHA256, digest, 32,
	    qes_buf_data(sig), qes_buf_len(sig)));
	qes_buf_free(sig);
}

static void
test_key_found_once_per_login(void **state)
{
	CK_FUNCTION_LIST wrapped, *orig;
	qes_secret *pin = pin_secret(PIN_A);
	qes_p11_session *s = NULL;
	uint8_t digest[32], id = 0x02;
	const char *serial;
	qes_buf *sig;
	qes_p11 *p;
	int k;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	serial = serial_of(p, "qes-a", 0);
	orig = p->mods[0]->fl;
	wrapped = *orig;
	real_find_init = orig->C_FindObjectsInit;
	real_login = orig->C_Login;
	wrapped.C_FindObjectsInit = count_find_init;
	wrapped.C_Login = count_login;
	p->mods[0]->fl = &wrapped;	/* sessions opened from now on use it */
	assert_int_equal(qes_p11_session_open(p, 0, serial, &s), 0);
	assert_int_equal(qes_p11_session_login(s, pin), 0);

	/* a batch of 8 digests with one key: one search */
	n_find_init = 0;
	for (k = 0; k < 8; k++)
		sign_verified(s, 0x02, QES_SIG_ECDSA, fx.ec256, k);
	assert_int_equal(n_find_init, 1);
	/* another key id is searched, and the right key signs */
	sign_verified(s, 0x03, QES_SIG_ECDSA, fx.ec384, 8);
	sign_verified(s, 0x01, QES_SIG_RSA_PKCS1, fx.rsa, 9);
	sign_verified(s, 0x02, QES_SIG_ECDSA, fx.ec256, 10);
	assert_int_equal(n_find_init, 4);

	/* a failure (here from the kept key) forgets it: the next searches */
	assert_non_null(sig = qes_buf_new());
	assert_int_equal(qes_md_digest(QES_MD_SHA256, "z", 1, digest), 0);
	assert_int_equal(qes_p11_session_sign(s, &id, 1, QES_SIG_RSA_PKCS1,
	    QES_MD_SHA256, digest, 32, 0, sig), QES_ERR_KEY_UNSUITABLE);
	assert_int_equal(qes_buf_len(sig), 0);
	qes_buf_free(sig);
	assert_int_equal(n_find_init, 4);
	sign_verified(s, 0x02, QES_SIG_ECDSA, fx.ec256, 11);
	assert_int_equal(n_find_init, 5);

	/* always-authenticate: one search, a context login per signature */
	n_find_init = 0;
	n_context_login = 0;
	for (k = 0; k < 3; k++)
		sign_verified(s, 0x04, QES_SIG_RSA_PKCS1, fx.rsa, k);
	assert_int_equal(n_find_init, 1);
	assert_int_equal(n_context_login, 3);

	/* a new login searches again; before it the key is not visible */
	assert_int_equal(qes_p11_session_logout(s), 0);
	assert_non_null(sig = qes_buf_new());
	assert_int_equal(qes_p11_session_sign(s, &id, 1, QES_SIG_ECDSA,
	    QES_MD_SHA256, digest, 32, 0, sig), QES_ERR_NOT_LOGGED_IN);
	qes_buf_free(sig);
	assert_int_equal(qes_p11_session_login(s, pin), 0);
	n_find_init = 0;
	sign_verified(s, 0x02, QES_SIG_ECDSA, fx.ec256, 12);
	sign_verified(s, 0x02, QES_SIG_ECDSA, fx.ec256, 13);
	assert_int_equal(n_find_init, 1);

	qes_p11_session_free(s);
	p->mods[0]->fl = orig;
	qes_secret_free(pin);
	qes_p11_free(p);
}

/* SoftHSM2's own function list, as another component of the process sees it. */
static CK_FUNCTION_LIST *
raw_module(void **dl)
{
	CK_C_GetFunctionList get_list;
	CK_FUNCTION_LIST *fl = NULL;

	assert_non_null(*dl = dlopen(fx.module, RTLD_NOW | RTLD_LOCAL));
	assert_non_null(get_list = (CK_C_GetFunctionList)dlsym(*dl,
	    "C_GetFunctionList"));
	assert_int_equal(get_list(&fl), CKR_OK);
	return fl;
}

static CK_SLOT_ID
slot_of(qes_p11 *p, const char *label)
{
	qes_p11_inventory *inv = NULL;
	CK_SLOT_ID slot;

	assert_int_equal(qes_p11_scan(p, &inv), 0);
	slot = find_token(inv, label)->slot_id;
	qes_p11_inventory_free(inv);
	return slot;
}

/*
 * A failed context-specific login leaves a signing operation active in the
 * session; the session must come out of it usable and still logged in. To
 * make that login fail, another component of the process changes the user
 * PIN (C_SetPIN) while our session is logged in with the old one.
 */
static void
test_context_login_failure(void **state)
{
	static CK_UTF8CHAR old_pin[] = PIN_A, new_pin[] = "222222";
	qes_p11_session *s = NULL;
	qes_secret *good = pin_secret(PIN_A);
	uint8_t digest[32], id_aa = 0x04, id_plain = 0x01;
	CK_SESSION_HANDLE h;
	CK_FUNCTION_LIST *fl;
	unsigned flags = 0;
	void *dl;
	qes_buf *sig;
	qes_p11 *p;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	assert_int_equal(qes_p11_session_open(p, 0, serial_of(p, "qes-a", 0),
	    &s), 0);
	assert_int_equal(qes_p11_session_login(s, good), 0);
	fl = raw_module(&dl);
	assert_int_equal(fl->C_OpenSession(slot_of(p, "qes-a"),
	    CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
	assert_int_equal(fl->C_SetPIN(h, old_pin, 6, new_pin, 6), CKR_OK);

	assert_int_equal(qes_md_digest(QES_MD_SHA256, "c", 1, digest), 0);
	assert_non_null(sig = qes_buf_new());
	assert_int_equal(qes_p11_session_sign(s, &id_aa, 1, QES_SIG_RSA_PKCS1,
	    QES_MD_SHA256, digest, 32, 0, sig), QES_ERR_PIN_INCORRECT);
	assert_string_equal(qes_p11_session_errmsg(s),
	    "C_Login(CKU_CONTEXT_SPECIFIC): CKR_PIN_INCORRECT");
	assert_int_equal(qes_buf_len(sig), 0);

	/* no CKR_OPERATION_ACTIVE, still logged in: the session was replaced */
	assert_int_equal(qes_p11_session_sign(s, &id_plain, 1,
	    QES_SIG_RSA_PKCS1, QES_MD_SHA256, digest, 32, 0, sig), 0);
	assert_true(evp_verify(fx.rsa, QES_SIG_RSA_PKCS1, QES_MD_SHA256, digest,
	    32, qes_buf_data(sig), qes_buf_len(sig)));

	/* the PIN back as it was: the always-authenticate key signs again */
	assert_int_equal(fl->C_SetPIN(h, new_pin, 6, old_pin, 6), CKR_OK);
	assert_int_equal(fl->C_CloseSession(h), CKR_OK);
	dlclose(dl);
	qes_buf_reset(sig);
	assert_int_equal(qes_p11_session_sign(s, &id_aa, 1, QES_SIG_RSA_PKCS1,
	    QES_MD_SHA256, digest, 32, 0, sig), 0);
	assert_true(evp_verify(fx.rsa, QES_SIG_RSA_PKCS1, QES_MD_SHA256, digest,
	    32, qes_buf_data(sig), qes_buf_len(sig)));
	assert_int_equal(qes_p11_session_token_flags(s, &flags), 0);
	assert_false(flags & QES_TOK_PIN_COUNT_LOW);
	qes_buf_free(sig);
	qes_p11_session_free(s);
	qes_secret_free(good);
	qes_p11_free(p);
}

/*
 * Login state is per process and token: a second job may not log in while
 * the first is, and a login someone else left behind does not let a wrong
 * PIN through.
 */
static void
test_login_is_per_job(void **state)
{
	static CK_UTF8CHAR raw_pin[] = PIN_A;
	qes_p11_session *s1 = NULL, *s2 = NULL;
	qes_secret *good = pin_secret(PIN_A), *bad = pin_secret("000000");
	CK_SESSION_HANDLE h;
	CK_FUNCTION_LIST *fl;
	const char *serial;
	void *dl;
	qes_p11 *p;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	serial = serial_of(p, "qes-a", 0);
	assert_int_equal(qes_p11_session_open(p, 0, serial, &s1), 0);
	assert_int_equal(qes_p11_session_open(p, 0, serial, &s2), 0);
	assert_int_equal(qes_p11_session_login(s1, good), 0);
	assert_int_equal(qes_p11_session_login(s2, bad), QES_ERR_TOKEN_BUSY);
	assert_string_equal(qes_p11_session_errmsg(s2),
	    "another signing session of this process is logged in to the token");
	assert_int_equal(qes_p11_session_logout(s1), 0);
	assert_int_equal(qes_p11_session_login(s2, good), 0);
	assert_int_equal(qes_p11_session_login(s1, good), QES_ERR_TOKEN_BUSY);
	qes_p11_session_free(s2);
	assert_int_equal(qes_p11_session_login(s1, good), 0);
	qes_p11_session_free(s1);

	/* another component of the process logs in and leaves it so */
	fl = raw_module(&dl);
	assert_int_equal(fl->C_OpenSession(slot_of(p, "qes-a"),
	    CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	assert_int_equal(fl->C_Login(h, CKU_USER, raw_pin, 6), CKR_OK);
	assert_int_equal(qes_p11_session_open(p, 0, serial, &s1), 0);
	assert_int_equal(qes_p11_session_login(s1, bad), QES_ERR_PIN_INCORRECT);
	assert_int_equal(qes_p11_session_login(s1, good), 0);
	assert_int_equal(fl->C_CloseSession(h), CKR_OK);
	dlclose(dl);
	qes_p11_session_free(s1);
	qes_secret_free(good);
	qes_secret_free(bad);
	qes_p11_free(p);
}

static void
test_wrong_pin(void **state)
{
	qes_p11_inventory *inv = NULL;
	qes_p11_session *s = NULL;
	qes_secret *bad = pin_secret("999999"), *good = pin_secret(PIN_B);
	uint8_t digest[32], id = 0x0b;
	const char *serial;
	unsigned flags = 0;
	qes_buf *sig;
	qes_p11 *p;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	serial = serial_of(p, "qes-b", 1);
	assert_int_equal(qes_p11_session_open(p, 0, serial, &s), 0);
	assert_int_equal(qes_p11_session_token_flags(s, &flags), 0);
	assert_false(flags & QES_TOK_PIN_COUNT_LOW);

	/* no PIN and no PIN pad */
	assert_int_equal(qes_p11_session_login(s, NULL), QES_ERR_INVALID_ARG);

	assert_int_equal(qes_p11_session_login(s, bad), QES_ERR_PIN_INCORRECT);
	assert_string_equal(qes_p11_session_errmsg(s), "C_Login: CKR_PIN_INCORRECT");
	assert_null(strstr(qes_p11_session_errmsg(s), "999999"));
	/* SoftHSM2 sets count-low after a failed login */
	assert_int_equal(qes_p11_session_token_flags(s, &flags), 0);
	assert_true(flags & QES_TOK_PIN_COUNT_LOW);
	assert_false(flags & QES_TOK_PIN_LOCKED);
	assert_int_equal(qes_p11_scan(p, &inv), 0);
	assert_true(find_token(inv, "qes-b")->flags & QES_TOK_PIN_COUNT_LOW);
	assert_false(find_token(inv, "qes-a")->flags & QES_TOK_PIN_COUNT_LOW);
	qes_p11_inventory_free(inv);
	inv = NULL;

	/* the session stays usable: the right PIN works and clears the flag */
	assert_int_equal(qes_p11_session_login(s, good), 0);
	assert_int_equal(qes_p11_session_token_flags(s, &flags), 0);
	assert_false(flags & QES_TOK_PIN_COUNT_LOW);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, "z", 1, digest), 0);
	assert_non_null(sig = qes_buf_new());
	assert_int_equal(qes_p11_session_sign(s, &id, 1, QES_SIG_ECDSA,
	    QES_MD_SHA256, digest, 32, 0, sig), 0);
	assert_true(evp_verify(fx.ec256, QES_SIG_ECDSA, QES_MD_SHA256, digest,
	    32, qes_buf_data(sig), qes_buf_len(sig)));
	qes_buf_free(sig);
	qes_p11_session_free(s);
	qes_secret_free(bad);
	qes_secret_free(good);
	qes_p11_free(p);
}

static void
test_unknown_serial(void **state)
{
	qes_p11_session *s = (qes_p11_session *)1;
	qes_p11 *p;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	assert_int_equal(qes_p11_session_open(p, 0, "0000000000000000", &s),
	    QES_ERR_TOKEN_NOT_PRESENT);
	assert_null(s);
	assert_int_equal(qes_p11_session_open(p, 5, "x", &s), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_p11_session_open(p, 0, "", &s), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_p11_add_module(p, "/nonexistent/libnope.so",
	    QES_P11_SRC_EXPLICIT, NULL, NULL), QES_ERR_MODULE_LOAD);
	assert_int_equal(qes_p11_session_open(p, 1, "x", &s), QES_ERR_MODULE_LOAD);
	qes_p11_free(p);
}

/*
 * Pull token qes-c out of SoftHSM2's store (delete its directory) while a
 * session is logged in on it, and again between a scan and a session open.
 */
static void
test_removal(void **state)
{
	qes_p11_inventory *inv = NULL;
	qes_p11_session *s = NULL, *s2 = NULL;
	qes_secret *pin = pin_secret(PIN_C);
	uint8_t digest[32], id = 0x0c;
	char serial[32];
	size_t i, broken;
	qes_buf *sig;
	qes_p11 *p;
	int r;

	(void)state;
	skip_without_softhsm();
	p = load_softhsm();
	snprintf(serial, sizeof(serial), "%s", serial_of(p, "qes-c", 2));
	assert_int_equal(qes_p11_session_open(p, 0, serial, &s), 0);
	assert_int_equal(qes_p11_session_login(s, pin), 0);
	assert_int_equal(qes_md_digest(QES_MD_SHA256, "r", 1, digest), 0);
	assert_non_null(sig = qes_buf_new());
	assert_int_equal(qes_p11_session_sign(s, &id, 1, QES_SIG_RSA_PKCS1,
	    QES_MD_SHA256, digest, 32, 0, sig), 0);

	assert_int_equal(rm_rf(fx.dir_c), 0);

	/* signing in the open session */
	qes_buf_reset(sig);
	r = qes_p11_session_sign(s, &id, 1, QES_SIG_RSA_PKCS1, QES_MD_SHA256,
	    digest, 32, 0, sig);
	print_message("sign after removal: %s (%s)\n", qes_errname(r),
	    qes_p11_session_errmsg(s));
	assert_int_equal(r, QES_ERR_TOKEN_REMOVED);
	assert_int_equal(qes_buf_len(sig), 0);

	/* a new session on the serial the (old) inventory listed */
	r = qes_p11_session_open(p, 0, serial, &s2);
	print_message("open after removal: %s\n", qes_errname(r));
	assert_int_equal(r, QES_ERR_TOKEN_NOT_PRESENT);
	assert_null(s2);

	/*
	 * The scan goes on: SoftHSM2 keeps the slot "present" but cannot read
	 * the token any more; that slot carries the error, the others are fine.
	 */
	assert_int_equal(qes_p11_scan(p, &inv), 0);
	assert_int_equal(find_token(inv, "qes-a")->err, 0);
	assert_int_equal(find_token(inv, "qes-b")->err, 0);
	for (i = 0, broken = 0; i < inv->n_tokens; i++) {
		assert_string_not_equal(inv->tokens[i].label, "qes-c");
		if (inv->tokens[i].err != 0) {
			assert_int_equal(inv->tokens[i].err, QES_ERR_DEVICE);
			assert_string_equal(inv->tokens[i].errmsg,
			    "C_GetTokenInfo: CKR_GENERAL_ERROR");
			broken++;
		}
	}
	assert_int_equal(broken, 1);
	qes_p11_inventory_free(inv);

	/* logging out of and closing a session on a vanished token is quiet */
	(void)qes_p11_session_logout(s);

	qes_p11_session_free(s);
	qes_buf_free(sig);
	qes_secret_free(pin);
	qes_p11_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_modules),
		cmocka_unit_test(test_registered_and_well_known),
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_sign_matrix),
		cmocka_unit_test(test_always_authenticate),
		cmocka_unit_test(test_key_found_once_per_login),
		cmocka_unit_test(test_context_login_failure),
		cmocka_unit_test(test_login_is_per_job),
		cmocka_unit_test(test_wrong_pin),
		cmocka_unit_test(test_unknown_serial),
		/* last: it deletes a token */
		cmocka_unit_test(test_removal),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
