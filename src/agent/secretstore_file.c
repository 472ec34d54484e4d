/*
 * secretstore_file.c - the last-resort store for the device key: one 0600
 * file per key under $XDG_CONFIG_HOME/qes/ (directory 0700).
 *
 * Only where no platform secret store is reachable (a headless machine, a
 * minimal desktop) may the device key live here, and secretstore.c logs a
 * warning when it does. PINs never do: this backend refuses the kind itself,
 * so no routing mistake elsewhere can put a PIN on disk.
 *
 * The file is as safe as the account: anyone who can read it, or swap it,
 * owns the device identity. So a file or directory that is not ours, that
 * others can read or write, or that is a symbolic link, is refused with a
 * message saying what is wrong, rather than used. Writes go to a temporary
 * file created 0600 with O_EXCL in the same directory, fsync'ed and renamed
 * over the old one, then the directory is fsync'ed, so a crash leaves the old
 * key or the new one, never half of either. Reads go straight from the file
 * into the qes_secret (locked memory); no other buffer holds the key.
 *
 * File names: "device-key-" + the key with every byte outside [A-Za-z0-9.-_]
 * written as %XX, so a host name or device id can never name another path.
 */
#define _GNU_SOURCE	/* mkostemp */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/secret.h"

#include "secretstore.h"

#define PREFIX		"device-key-"
#define NAME_MAX_BYTES	240	/* below NAME_MAX, with room for the temporary-name suffix of qes_file_tmp_beside() */

struct file_ctx {
	char dir[PATH_MAX];
};

static int
safe_char(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
}

static int
encode_name(const char *key, char *out, size_t out_len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	size_t o;

	if (sizeof(PREFIX) > out_len)
		return QES_ERR_LIMIT;
	memcpy(out, PREFIX, sizeof(PREFIX) - 1);
	o = sizeof(PREFIX) - 1;
	for (p = (const unsigned char *)key; *p != '\0'; p++) {
		if (o + 4 > out_len || o + 3 > NAME_MAX_BYTES)
			return QES_ERR_LIMIT;
		if (safe_char(*p))
			out[o++] = (char)*p;
		else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 0xf];
		}
	}
	out[o] = '\0';
	return 0;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The key of a file name, or -1 when the name is not one of ours. */
static int
decode_name(const char *name, char *key, size_t key_len)
{
	size_t o = 0;
	int hi, lo;

	if (strncmp(name, PREFIX, sizeof(PREFIX) - 1) != 0)
		return -1;
	for (name += sizeof(PREFIX) - 1; *name != '\0'; name++) {
		if (o + 1 >= key_len)
			return -1;
		if (*name == '%') {
			if ((hi = hexval(name[1])) < 0 || (lo = hexval(name[2])) < 0)
				return -1;
			key[o++] = (char)(hi << 4 | lo);
			name += 2;
		} else if (safe_char((unsigned char)*name))
			key[o++] = *name;
		else
			return -1;	/* e.g. a temporary file */
	}
	key[o] = '\0';
	return o > 0 ? 0 : -1;
}

/*
 * The directory exists (made 0700 when missing, parents 0700 too), is a real
 * directory, is ours, and nobody else can enter or change it.
 */
static int
check_dir(const struct file_ctx *x, int create, char *msg, size_t msg_len)
{
	char path[PATH_MAX], *p;
	struct stat st;

	if (lstat(x->dir, &st) != 0) {
		if (errno != ENOENT || !create) {
			snprintf(msg, msg_len, "%s: %s", x->dir, strerror(errno));
			return errno == ENOENT ? QES_ERR_NOT_FOUND : QES_ERR_IO;
		}
		/* mkdir -p; each new level is private */
		snprintf(path, sizeof(path), "%s", x->dir);
		for (p = path + 1; *p != '\0'; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(path, 0700) != 0 && errno != EEXIST) {
				snprintf(msg, msg_len, "cannot create %s: %s", path,
				    strerror(errno));
				return QES_ERR_IO;
			}
			*p = '/';
		}
		if (mkdir(x->dir, 0700) != 0 && errno != EEXIST) {
			snprintf(msg, msg_len, "cannot create %s: %s", x->dir,
			    strerror(errno));
			return QES_ERR_IO;
		}
		if (lstat(x->dir, &st) != 0) {
			snprintf(msg, msg_len, "%s: %s", x->dir, strerror(errno));
			return QES_ERR_IO;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(msg, msg_len, "refusing %s: not a directory (or a "
		    "symbolic link)", x->dir);
		return QES_ERR_IO;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		snprintf(msg, msg_len, "refusing %s: owner uid %u, mode %04o; it "
		    "must be ours and 0700 (chmod 700 it)", x->dir,
		    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		return QES_ERR_IO;
	}
	return 0;
}

static int
file_path(const struct file_ctx *x, const char *key, char *path, size_t len,
    char *msg, size_t msg_len)
{
	char name[NAME_MAX_BYTES + 8];

	if (encode_name(key, name, sizeof(name)) != 0 ||
	    (size_t)snprintf(path, len, "%s/%s", x->dir, name) >= len) {
		snprintf(msg, msg_len, "key \"%s\" is too long for a file name", key);
		return QES_ERR_LIMIT;
	}
	return 0;
}

static int
refuse_pin(agent_secret_kind kind, char *msg, size_t msg_len)
{
	if (kind == AGENT_SECRET_DEVICE_KEY)
		return 0;
	snprintf(msg, msg_len, "the file store keeps device keys only, never PINs");
	return QES_ERR_UNSUPPORTED;
}

static int
write_all(int fd, const uint8_t *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
file_store(void *arg, agent_secret_kind kind, const char *key, const char *label,
    const qes_secret *value, char *msg, size_t msg_len)
{
	struct file_ctx *x = arg;
	char path[PATH_MAX], *tmp = NULL;
	int fd = -1, r;

	(void)label;	/* a file has no label; its name says what it is */
	if ((r = refuse_pin(kind, msg, msg_len)) != 0 ||
	    (r = check_dir(x, 1, msg, msg_len)) != 0 ||
	    (r = file_path(x, key, path, sizeof(path), msg, msg_len)) != 0)
		return r;
	/* O_EXCL and mode 0600 from the start, never wider */
	if ((r = qes_file_tmp_beside(path, &tmp, &fd)) != 0) {
		snprintf(msg, msg_len, "cannot create a file in %s: %s", x->dir,
		    r == QES_ERR_IO ? strerror(errno) : qes_strerror(r));
		return r;
	}
	if (write_all(fd, qes_secret_data(value), qes_secret_len(value)) != 0) {
		snprintf(msg, msg_len, "cannot write %s: %s", tmp, strerror(errno));
		qes_file_discard(fd, tmp);
		r = QES_ERR_IO;
	} else if ((r = qes_file_commit(fd, tmp, path, 0600)) != 0) {
		/* fsync, rename and the directory's fsync: the rename is durable */
		snprintf(msg, msg_len, "cannot write %s: %s", path, strerror(errno));
	}
	free(tmp);
	return r;
}

static int
file_lookup(void *arg, agent_secret_kind kind, const char *key, qes_secret *value,
    char *msg, size_t msg_len)
{
	struct file_ctx *x = arg;
	char path[PATH_MAX];
	uint8_t chunk[256];
	struct stat st;
	ssize_t n;
	size_t total = 0;
	int fd = -1, r;

	if ((r = refuse_pin(kind, msg, msg_len)) != 0 ||
	    (r = file_path(x, key, path, sizeof(path), msg, msg_len)) != 0)
		return r;
	if ((r = check_dir(x, 0, msg, msg_len)) != 0) {
		if (r == QES_ERR_NOT_FOUND)
			snprintf(msg, msg_len, "no device key file for \"%s\"", key);
		return r;
	}
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)) < 0) {
		if (errno == ENOENT) {
			snprintf(msg, msg_len, "no device key file for \"%s\"", key);
			return QES_ERR_NOT_FOUND;
		}
		snprintf(msg, msg_len, "cannot open %s: %s%s", path, strerror(errno),
		    errno == ELOOP ? " (a symbolic link: refused)" : "");
		return QES_ERR_IO;
	}
	r = QES_ERR_IO;
	if (fstat(fd, &st) != 0) {
		snprintf(msg, msg_len, "cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0) {
		snprintf(msg, msg_len, "refusing %s: %s owner uid %u, mode %04o; a "
		    "device key file must be ours and 0600. If others could read "
		    "it, treat the key as exposed: delete the file and enroll again",
		    path, S_ISREG(st.st_mode) ? "" : "not a regular file,",
		    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_size <= 0 || st.st_size > AGENT_SECRET_MAX) {
		snprintf(msg, msg_len, "refusing %s: %lld bytes is not a device key",
		    path, (long long)st.st_size);
		r = QES_ERR_FORMAT;
		goto out;
	}
	qes_secret_clear(value);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(msg, msg_len, "cannot read %s: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		total += (size_t)n;
		if (total > AGENT_SECRET_MAX ||
		    qes_secret_append(value, chunk, (size_t)n) != 0) {
			snprintf(msg, msg_len, "refusing %s: too large", path);
			r = QES_ERR_LIMIT;
			goto out;
		}
	}
	r = 0;
 out:
	qes_wipe(chunk, sizeof(chunk));
	if (r != 0)
		qes_secret_clear(value);
	close(fd);
	return r;
}

static int
file_delete(void *arg, agent_secret_kind kind, const char *key, char *msg,
    size_t msg_len)
{
	struct file_ctx *x = arg;
	char path[PATH_MAX];
	int r;

	if ((r = refuse_pin(kind, msg, msg_len)) != 0)
		return r == QES_ERR_UNSUPPORTED ? QES_ERR_NOT_FOUND : r;
	if ((r = file_path(x, key, path, sizeof(path), msg, msg_len)) != 0)
		return r;
	if (unlink(path) != 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			snprintf(msg, msg_len, "no device key file for \"%s\"", key);
			return QES_ERR_NOT_FOUND;
		}
		snprintf(msg, msg_len, "cannot delete %s: %s", path, strerror(errno));
		return QES_ERR_IO;
	}
	return 0;
}

static int
file_list(void *arg, agent_secret_kind kind, int (*add_key)(void *, const char *),
    void *acc, char *msg, size_t msg_len)
{
	struct file_ctx *x = arg;
	char key[AGENT_SECRET_KEY_MAX + 1];
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (kind != AGENT_SECRET_DEVICE_KEY)
		return 0;	/* by construction there is never a PIN here */
	if ((d = opendir(x->dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(msg, msg_len, "cannot read %s: %s", x->dir, strerror(errno));
		return QES_ERR_IO;
	}
	while (r == 0 && (de = readdir(d)) != NULL)
		if (decode_name(de->d_name, key, sizeof(key)) == 0)
			r = add_key(acc, key);
	closedir(d);
	return r;
}

static void
file_free(void *arg)
{
	free(arg);
}

int
agent_secret_backend_file(const char *dir, agent_secret_backend **out, char *msg,
    size_t msg_len)
{
	agent_secret_backend *b = NULL;
	struct file_ctx *x = NULL;

	*out = NULL;
	if (dir == NULL || dir[0] != '/') {
		snprintf(msg, msg_len, "the file store needs an absolute directory");
		return QES_ERR_INVALID_ARG;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (x = calloc(1, sizeof(*x))) == NULL) {
		free(b);
		return QES_ERR_ALLOC;
	}
	if ((size_t)snprintf(x->dir, sizeof(x->dir), "%s", dir) >= sizeof(x->dir)) {
		free(x);
		free(b);
		snprintf(msg, msg_len, "directory path too long");
		return QES_ERR_LIMIT;
	}
	b->name = "file";
	b->ctx = x;
	b->store = file_store;
	b->lookup = file_lookup;
	b->delete = file_delete;
	b->list = file_list;
	b->free = file_free;
	*out = b;
	return 0;
}
