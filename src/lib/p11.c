/*
 * p11.c - the PKCS#11 module registry of libqes, and the names and error
 * mapping of PKCS#11 return values and mechanisms.
 *
 * A qes_p11 holds vendor modules we dlopen ourselves (RTLD_NOW, so a module
 * with a missing dependency fails here and not in the middle of a signature;
 * RTLD_LOCAL, so two vendors' symbols never mix). A module that exports the
 * PKCS#11 3.0 C_GetInterface gives us its "PKCS 11" 3.x list; otherwise the
 * classic C_GetFunctionList. Both start with the 2.x functions in the same
 * order, which are all qes calls.
 *
 * C_Initialize is process-wide, not per caller: a second call answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED and one C_Finalize ends the module for
 * everybody. So the initialisation of each function list is reference
 * counted across every qes_p11 of the process (init_refs below): the first
 * user initialises, the last finalises, and a module that someone outside
 * qes initialised first is never finalised by us.
 *
 * A module that fails to load or initialise keeps its entry, with its error
 * and a message ("dlopen: ...", "C_Initialize: CKR_..."), so diagnostics can
 * show it; it never stops the other modules from working.
 *
 * The small readers every PKCS#11 file needs (slot list, object search,
 * attributes) live here too, declared in p11_priv.h.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <p11-kit/p11-kit.h>

#include "qes/err.h"
#include "qes/p11.h"

#include "p11_priv.h"

/* p11-kit registrations we take at most (a sanity bound, not a real limit) */
#define MAX_REGISTERED	64
/* how often a slot list may change under us before we give up */
#define SLOT_LIST_TRIES	3

/* ---- process-wide C_Initialize reference counts ---- */

struct init_ref {
	struct init_ref *next;
	CK_FUNCTION_LIST *fl;
	unsigned long users;
	int ours;		/* our C_Initialize succeeded: we finalise */
};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static struct init_ref *init_refs;

static int
init_acquire(CK_FUNCTION_LIST *fl, char *msg, size_t msg_len)
{
	CK_C_INITIALIZE_ARGS args;
	struct init_ref *ref;
	CK_RV rv;
	int r = 0;

	pthread_mutex_lock(&init_lock);
	for (ref = init_refs; ref != NULL; ref = ref->next) {
		if (ref->fl == fl) {
			ref->users++;
			goto out;
		}
	}
	if ((ref = calloc(1, sizeof(*ref))) == NULL) {
		r = QES_ERR_ALLOC;
		snprintf(msg, msg_len, "out of memory");
		goto out;
	}
	/* no mutex callbacks: the module uses the OS's own locking */
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = fl->C_Initialize(&args);
	if (rv == CKR_OK)
		ref->ours = 1;
	else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		free(ref);
		qes_p11_priv_ckr_msg(msg, msg_len, "C_Initialize", rv);
		r = QES_ERR_MODULE_INIT;
		goto out;
	}
	ref->fl = fl;
	ref->users = 1;
	ref->next = init_refs;
	init_refs = ref;
 out:
	pthread_mutex_unlock(&init_lock);
	return r;
}

static void
init_release(CK_FUNCTION_LIST *fl)
{
	struct init_ref **pp, *ref;

	pthread_mutex_lock(&init_lock);
	for (pp = &init_refs; (ref = *pp) != NULL; pp = &ref->next) {
		if (ref->fl != fl)
			continue;
		if (--ref->users == 0) {
			*pp = ref->next;
			/* nothing useful to do when C_Finalize fails at teardown */
			if (ref->ours)
				(void)fl->C_Finalize(NULL);
			free(ref);
		}
		break;
	}
	pthread_mutex_unlock(&init_lock);
}

/* ---- one module ---- */

static void
module_free(struct qes_p11_module *m)
{
	if (m == NULL)
		return;
	if (m->fl != NULL)
		init_release(m->fl);
	if (m->dl != NULL)
		dlclose(m->dl);
	free(m->path);
	free(m->canon_path);
	free(m->name);
	free(m->errmsg);
	free(m->manufacturer);
	free(m->description);
	free(m);
}

/*
 * Every function qes calls must be there. The specification says a module
 * fills unsupported entries with stubs, but a NULL would crash us, so a list
 * with a hole is refused at load time. The mechanism queries are optional
 * (p11_scan.c checks them).
 */
static const char *
missing_function(const CK_FUNCTION_LIST *fl)
{
	if (fl->C_Initialize == NULL)
		return "C_Initialize";
	if (fl->C_Finalize == NULL)
		return "C_Finalize";
	if (fl->C_GetInfo == NULL)
		return "C_GetInfo";
	if (fl->C_GetSlotList == NULL)
		return "C_GetSlotList";
	if (fl->C_GetSlotInfo == NULL)
		return "C_GetSlotInfo";
	if (fl->C_GetTokenInfo == NULL)
		return "C_GetTokenInfo";
	if (fl->C_OpenSession == NULL)
		return "C_OpenSession";
	if (fl->C_CloseSession == NULL)
		return "C_CloseSession";
	if (fl->C_Login == NULL)
		return "C_Login";
	if (fl->C_Logout == NULL)
		return "C_Logout";
	if (fl->C_GetAttributeValue == NULL)
		return "C_GetAttributeValue";
	if (fl->C_FindObjectsInit == NULL)
		return "C_FindObjectsInit";
	if (fl->C_FindObjects == NULL)
		return "C_FindObjects";
	if (fl->C_FindObjectsFinal == NULL)
		return "C_FindObjectsFinal";
	if (fl->C_SignInit == NULL)
		return "C_SignInit";
	if (fl->C_Sign == NULL)
		return "C_Sign";
	return NULL;
}

/* The module's function list: a PKCS#11 3.x interface when offered. */
static int
module_functions(struct qes_p11_module *m, CK_FUNCTION_LIST **out,
    char *msg, size_t msg_len)
{
	static CK_UTF8CHAR iface_name[] = "PKCS 11";
	qes_ck_get_interface_fn get_interface;
	CK_C_GetFunctionList get_list;
	qes_ck_interface *iface = NULL;
	CK_FUNCTION_LIST *fl = NULL;
	const CK_VERSION *v;
	const char *missing;
	CK_RV rv;

	*out = NULL;
	get_interface = (qes_ck_get_interface_fn)dlsym(m->dl, "C_GetInterface");
	if (get_interface != NULL) {
		/* NULL version: the module's default "PKCS 11" interface */
		rv = get_interface(iface_name, NULL, &iface, 0);
		if (rv == CKR_OK && iface != NULL && iface->pFunctionList != NULL) {
			/* every function list starts with its CK_VERSION */
			v = iface->pFunctionList;
			if (v->major == 3) {
				fl = iface->pFunctionList;
				m->info.interface_major = v->major;
				m->info.interface_minor = v->minor;
			}
		}
	}
	if (fl == NULL) {
		get_list = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
		if (get_list == NULL) {
			snprintf(msg, msg_len,
			    "dlsym: neither C_GetInterface nor C_GetFunctionList");
			return QES_ERR_MODULE_LOAD;
		}
		if ((rv = get_list(&fl)) != CKR_OK) {
			qes_p11_priv_ckr_msg(msg, msg_len, "C_GetFunctionList", rv);
			return QES_ERR_MODULE_LOAD;
		}
		if (fl == NULL) {
			snprintf(msg, msg_len, "C_GetFunctionList: no list");
			return QES_ERR_MODULE_LOAD;
		}
	}
	if ((missing = missing_function(fl)) != NULL) {
		snprintf(msg, msg_len, "function list has no %s", missing);
		return QES_ERR_MODULE_LOAD;
	}
	*out = fl;
	return 0;
}

/*
 * dlopen, find the functions, C_Initialize, C_GetInfo. Fills m->info.err
 * and m->errmsg on failure (and leaves nothing loaded); returns QES_ERR_ALLOC
 * only when the entry itself cannot be completed.
 */
static int
module_load(struct qes_p11_module *m)
{
	char msg[QES_P11_ERRMSG_MAX] = "";
	CK_FUNCTION_LIST *fl = NULL;
	const char *dlmsg;
	CK_INFO info;
	CK_RV rv;
	int r, initialised = 0;

	/* a bare name would be looked up in LD_LIBRARY_PATH and friends */
	if (m->path[0] != '/') {
		snprintf(msg, sizeof(msg), "module path must be absolute");
		r = QES_ERR_MODULE_LOAD;
		goto out;
	}
	(void)dlerror();
	if ((m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		dlmsg = dlerror();
		snprintf(msg, sizeof(msg), "dlopen: %s",
		    dlmsg != NULL ? dlmsg : "failed");
		r = QES_ERR_MODULE_LOAD;
		goto out;
	}
	if ((r = module_functions(m, &fl, msg, sizeof(msg))) != 0)
		goto out;
	if ((r = init_acquire(fl, msg, sizeof(msg))) != 0)
		goto out;
	initialised = 1;
	memset(&info, 0, sizeof(info));
	if ((rv = fl->C_GetInfo(&info)) != CKR_OK) {
		qes_p11_priv_ckr_msg(msg, sizeof(msg), "C_GetInfo", rv);
		r = QES_ERR_MODULE_INIT;
		goto out;
	}
	m->manufacturer = qes_p11_priv_trim(info.manufacturerID,
	    sizeof(info.manufacturerID));
	m->description = qes_p11_priv_trim(info.libraryDescription,
	    sizeof(info.libraryDescription));
	if (m->manufacturer == NULL || m->description == NULL) {
		snprintf(msg, sizeof(msg), "out of memory");
		r = QES_ERR_ALLOC;
		goto out;
	}
	m->info.cryptoki_major = info.cryptokiVersion.major;
	m->info.cryptoki_minor = info.cryptokiVersion.minor;
	m->info.lib_major = info.libraryVersion.major;
	m->info.lib_minor = info.libraryVersion.minor;
	m->fl = fl;
	r = 0;
 out:
	if (r != 0) {
		if (initialised)
			init_release(fl);
		if (m->dl != NULL)
			dlclose(m->dl);
		m->dl = NULL;
		m->info.interface_major = m->info.interface_minor = 0;
		m->info.err = r;
		if ((m->errmsg = strdup(msg)) == NULL)
			return QES_ERR_ALLOC;
	}
	return r == QES_ERR_ALLOC ? r : 0;
}

/* Point the public info at the owned strings ("" for those not known). */
static void
module_publish(struct qes_p11_module *m)
{
	m->info.path = m->path;
	m->info.name = m->name != NULL ? m->name : "";
	m->info.errmsg = m->errmsg != NULL ? m->errmsg : "";
	m->info.manufacturer = m->manufacturer != NULL ? m->manufacturer : "";
	m->info.description = m->description != NULL ? m->description : "";
}

/* ---- the registry ---- */

int
qes_p11_new(qes_p11 **out)
{
	qes_p11 *p;

	if (out == NULL)
		return QES_ERR_INVALID_ARG;
	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return QES_ERR_ALLOC;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		return QES_ERR_INTERNAL;
	}
	*out = p;
	return 0;
}

void
qes_p11_free(qes_p11 *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n_mods; i++)
		module_free(p->mods[i]);
	free(p->mods);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static int
same_module(const struct qes_p11_module *m, const char *path,
    const char *canon)
{
	if (strcmp(m->path, path) == 0)
		return 1;
	return canon != NULL && m->canon_path != NULL &&
	    strcmp(m->canon_path, canon) == 0;
}

int
qes_p11_add_module(qes_p11 *p, const char *path, qes_p11_source source,
    const char *name, size_t *index_out)
{
	struct qes_p11_module *m = NULL, **n;
	char *canon = NULL;
	size_t i, index = 0, ncap;
	int r, have_index = 0;

	if (p == NULL || path == NULL || path[0] == '\0' ||
	    strlen(path) >= PATH_MAX)
		return QES_ERR_INVALID_ARG;
	/* two paths to one file (symlinks) would be one module loaded twice */
	canon = realpath(path, NULL);

	pthread_mutex_lock(&p->lock);
	for (i = 0; i < p->n_mods; i++) {
		if (same_module(p->mods[i], path, canon)) {
			index = i;
			have_index = 1;
			r = p->mods[i]->info.err;
			goto out;
		}
	}
	if (p->n_mods == p->cap) {
		ncap = p->cap == 0 ? 8 : p->cap * 2;
		if ((n = reallocarray(p->mods, ncap, sizeof(*n))) == NULL) {
			r = QES_ERR_ALLOC;
			goto out;
		}
		p->mods = n;
		p->cap = ncap;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->path = strdup(path)) == NULL ||
	    (name != NULL && (m->name = strdup(name)) == NULL)) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	m->canon_path = canon;
	canon = NULL;
	m->info.source = source;
	if ((r = module_load(m)) != 0)
		goto out;
	module_publish(m);
	index = p->n_mods;
	have_index = 1;
	p->mods[p->n_mods++] = m;
	r = m->info.err;
	m = NULL;
 out:
	pthread_mutex_unlock(&p->lock);
	module_free(m);
	free(canon);
	if (index_out != NULL && have_index)
		*index_out = index;
	return r;
}

/* p11-kit's proxy re-exports the other modules: loading it doubles them. */
static int
is_proxy(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base != NULL ? base + 1 : path;
	return strncmp(base, "p11-kit-proxy", 13) == 0;
}

/*
 * p11-kit knows which modules are registered (and enabled for this
 * program), but we want their paths, not p11-kit's managed copies: so ask
 * p11-kit for the list (unmanaged: it dlopens but never initialises them),
 * note each filename and name, release p11-kit's copies and load the paths
 * through qes_p11_add_module like any other. Returns 0 when the list was
 * read (a module that then fails is listed with its error), QES_ERR_LIMIT
 * when more than MAX_REGISTERED are registered (the first ones are added).
 * Trust-policy modules (p11-kit-trust) are skipped: they hold the system's
 * CA anchors, hundreds of certificates and no keys, not a signing device.
 */
int
qes_p11_add_registered(qes_p11 *p)
{
	CK_FUNCTION_LIST **list;
	char *paths[MAX_REGISTERED], *names[MAX_REGISTERED], *trust, *real;
	size_t i, n = 0;
	int r = 0, skip;

	if (p == NULL)
		return QES_ERR_INVALID_ARG;
	if ((list = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED)) == NULL)
		return QES_ERR_MODULE_LOAD;
	for (i = 0; list[i] != NULL && n < MAX_REGISTERED; i++) {
		paths[n] = p11_kit_module_get_filename(list[i]);
		if (paths[n] == NULL) {
			/* the raw "module:" line; used only when it is a path */
			paths[n] = p11_kit_config_option(list[i], "module");
			if (paths[n] != NULL && paths[n][0] != '/') {
				free(paths[n]);
				paths[n] = NULL;
			}
		}
		names[n] = p11_kit_module_get_name(list[i]);
		trust = p11_kit_config_option(list[i], "trust-policy");
		real = paths[n] != NULL ? realpath(paths[n], NULL) : NULL;
		skip = paths[n] == NULL || is_proxy(paths[n]) ||
		    (real != NULL && is_proxy(real)) ||
		    (trust != NULL && strcmp(trust, "yes") == 0);
		free(trust);
		free(real);
		if (skip) {
			free(paths[n]);
			free(names[n]);
			continue;
		}
		n++;
	}
	if (list[i] != NULL)
		r = QES_ERR_LIMIT;	/* the first MAX_REGISTERED are added */
	p11_kit_modules_release(list);
	for (i = 0; i < n; i++) {
		if (r != QES_ERR_ALLOC && qes_p11_add_module(p, paths[i],
		    QES_P11_SRC_P11KIT, names[i], NULL) == QES_ERR_ALLOC)
			r = QES_ERR_ALLOC;
		free(paths[i]);
		free(names[i]);
	}
	return r;
}

/*
 * Where vendors' installers put their modules on Linux. Only paths we know
 * ship; a module missing from here can still be added by path or through
 * p11-kit.
 */
static const struct {
	const char *path;
	const char *vendor;
} well_known[] = {
	{ "/usr/lib/libeToken.so", "SafeNet eToken" },
	{ "/usr/lib/libeTPkcs11.so", "SafeNet eToken" },
	{ "/usr/lib64/libeToken.so", "SafeNet eToken" },
	{ "/usr/lib64/libeTPkcs11.so", "SafeNet eToken" },
	{ "/usr/lib/libIDPrimePKCS11.so", "Thales IDPrime" },
	{ "/usr/lib/x86_64-linux-gnu/libIDPrimePKCS11.so", "Thales IDPrime" },
	{ "/usr/lib/ClassicClient/libgclib.so", "Gemalto Classic Client" },
	{ "/usr/lib/pkcs11/libgclib.so", "Gemalto Classic Client" },
	{ "/usr/lib/libbit4xpki.so", "Bit4id" },
	{ "/usr/lib/bit4id/libbit4xpki.so", "Bit4id" },
	{ "/usr/lib/libsiecap11.so", "Atos CardOS API" },
	{ "/usr/lib/x86_64-linux-gnu/libbeidpkcs11.so.0", "Belgian eID" },
	{ "/usr/safenet/lunaclient/lib/libCryptoki2_64.so", "Thales Luna" },
	{ "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "OpenSC" },
	{ "/usr/lib/opensc-pkcs11.so", "OpenSC" },
	{ "/usr/lib64/opensc-pkcs11.so", "OpenSC" },
	{ "/usr/lib64/pkcs11/opensc-pkcs11.so", "OpenSC" },
};

int
qes_p11_add_well_known(qes_p11 *p)
{
	struct stat st;
	size_t i;

	if (p == NULL)
		return QES_ERR_INVALID_ARG;
	for (i = 0; i < sizeof(well_known) / sizeof(well_known[0]); i++) {
		if (stat(well_known[i].path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		/* a module that fails is listed with its error; go on */
		if (qes_p11_add_module(p, well_known[i].path,
		    QES_P11_SRC_WELL_KNOWN, well_known[i].vendor, NULL) ==
		    QES_ERR_ALLOC)
			return QES_ERR_ALLOC;
	}
	return 0;
}

/*
 * The two readers below take a const qes_p11 (the public API promises not
 * to change it) but must still hold its lock while another thread may be
 * adding a module; the lock is the one part that is not logically const.
 */
size_t
qes_p11_module_count(const qes_p11 *p)
{
	size_t n;

	if (p == NULL)
		return 0;
	pthread_mutex_lock((pthread_mutex_t *)&p->lock);
	n = p->n_mods;
	pthread_mutex_unlock((pthread_mutex_t *)&p->lock);
	return n;
}

const qes_p11_module_info *
qes_p11_module_get(const qes_p11 *p, size_t index)
{
	const qes_p11_module_info *info = NULL;

	if (p == NULL)
		return NULL;
	pthread_mutex_lock((pthread_mutex_t *)&p->lock);
	if (index < p->n_mods)
		info = &p->mods[index]->info;
	pthread_mutex_unlock((pthread_mutex_t *)&p->lock);
	return info;
}

int
qes_p11_priv_functions(qes_p11 *p, size_t index, CK_FUNCTION_LIST **out)
{
	int r = QES_ERR_INVALID_ARG;

	*out = NULL;
	pthread_mutex_lock(&p->lock);
	if (index < p->n_mods) {
		r = p->mods[index]->info.err;
		*out = p->mods[index]->fl;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* ---- readers shared by p11_scan.c and p11_session.c ---- */

char *
qes_p11_priv_trim(const unsigned char *field, size_t field_len)
{
	size_t len = field_len, i;
	char *s;

	/* the specification pads with blanks; some modules NUL-terminate */
	for (i = 0; i < field_len; i++) {
		if (field[i] == '\0') {
			len = i;
			break;
		}
	}
	while (len > 0 && field[len - 1] == ' ')
		len--;
	if ((s = malloc(len + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i++)
		s[i] = field[i] < 0x20 || field[i] == 0x7f ? '?' : (char)field[i];
	s[len] = '\0';
	return s;
}

unsigned
qes_p11_priv_token_flags(CK_FLAGS raw)
{
	unsigned f = 0;

	if (raw & CKF_LOGIN_REQUIRED)
		f |= QES_TOK_LOGIN_REQUIRED;
	if (raw & CKF_PROTECTED_AUTHENTICATION_PATH)
		f |= QES_TOK_PROTECTED_AUTH;
	if (raw & CKF_USER_PIN_COUNT_LOW)
		f |= QES_TOK_PIN_COUNT_LOW;
	if (raw & CKF_USER_PIN_FINAL_TRY)
		f |= QES_TOK_PIN_FINAL_TRY;
	if (raw & CKF_USER_PIN_LOCKED)
		f |= QES_TOK_PIN_LOCKED;
	if (raw & CKF_USER_PIN_TO_BE_CHANGED)
		f |= QES_TOK_PIN_TO_BE_CHANGED;
	if (raw & CKF_TOKEN_INITIALIZED)
		f |= QES_TOK_INITIALIZED;
	if (raw & CKF_USER_PIN_INITIALIZED)
		f |= QES_TOK_USER_PIN_INITIALIZED;
	if (raw & CKF_WRITE_PROTECTED)
		f |= QES_TOK_WRITE_PROTECTED;
	if (raw & CKF_SO_PIN_LOCKED)
		f |= QES_TOK_SO_PIN_LOCKED;
	return f;
}

int
qes_p11_priv_slot_list(CK_FUNCTION_LIST *fl, int token_present,
    CK_SLOT_ID **slots_out, size_t *n_out, char *errmsg, size_t errmsg_len)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n, cap;
	CK_BBOOL present = token_present ? CK_TRUE : CK_FALSE;
	CK_RV rv;
	int attempt;

	*slots_out = NULL;
	*n_out = 0;
	for (attempt = 0; attempt < SLOT_LIST_TRIES; attempt++) {
		n = 0;
		if ((rv = fl->C_GetSlotList(present, NULL, &n)) != CKR_OK) {
			qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_GetSlotList", rv);
			return qes_p11_map_ckr(rv);
		}
		if (n > QES_P11_MAX_SLOTS) {
			snprintf(errmsg, errmsg_len,
			    "C_GetSlotList: %lu slots, more than %d", n,
			    QES_P11_MAX_SLOTS);
			return QES_ERR_LIMIT;
		}
		free(slots);
		if ((slots = calloc(n > 0 ? n : 1, sizeof(*slots))) == NULL) {
			snprintf(errmsg, errmsg_len, "out of memory");
			return QES_ERR_ALLOC;
		}
		cap = n;
		rv = fl->C_GetSlotList(present, slots, &n);
		if (rv == CKR_BUFFER_TOO_SMALL)
			continue;	/* a reader appeared between the calls */
		if (rv != CKR_OK) {
			free(slots);
			qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_GetSlotList", rv);
			return qes_p11_map_ckr(rv);
		}
		if (n > cap) {
			free(slots);
			snprintf(errmsg, errmsg_len,
			    "C_GetSlotList: module returned more slots than room");
			return QES_ERR_DEVICE;
		}
		*slots_out = slots;
		*n_out = n;
		return 0;
	}
	free(slots);
	snprintf(errmsg, errmsg_len, "C_GetSlotList: slot list kept changing");
	return QES_ERR_DEVICE;
}

int
qes_p11_priv_find(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE *handles, size_t max,
    size_t *found_out, int *more_out, char *errmsg, size_t errmsg_len)
{
	CK_OBJECT_HANDLE extra;
	CK_ULONG want, got;
	size_t found = 0;
	CK_RV rv;
	int r = 0;

	*found_out = 0;
	if (more_out != NULL)
		*more_out = 0;
	if ((rv = fl->C_FindObjectsInit(s, tmpl, n_tmpl)) != CKR_OK) {
		qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_FindObjectsInit", rv);
		return qes_p11_map_ckr(rv);
	}
	/* each round adds at least one handle or ends: at most max rounds */
	while (found < max) {
		want = max - found;
		got = 0;
		if ((rv = fl->C_FindObjects(s, handles + found, want, &got)) !=
		    CKR_OK) {
			qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_FindObjects", rv);
			r = qes_p11_map_ckr(rv);
			goto out;
		}
		if (got > want) {
			snprintf(errmsg, errmsg_len,
			    "C_FindObjects: module returned more than asked");
			r = QES_ERR_DEVICE;
			goto out;
		}
		if (got == 0)
			break;
		found += got;
	}
	if (found == max && more_out != NULL) {
		got = 0;
		rv = fl->C_FindObjects(s, &extra, 1, &got);
		if (rv == CKR_OK && got > 0)
			*more_out = 1;
	}
 out:
	rv = fl->C_FindObjectsFinal(s);
	if (r == 0 && rv != CKR_OK) {
		qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_FindObjectsFinal", rv);
		r = qes_p11_map_ckr(rv);
	}
	*found_out = r == 0 ? found : 0;
	return r;
}

/* An attribute the object lacks or keeps to itself: not an error. */
static int
attr_absent(CK_RV rv)
{
	return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE;
}

int
qes_p11_priv_get_attr(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, size_t max_len,
    uint8_t **out, size_t *len_out, char *errmsg, size_t errmsg_len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_ULONG cap;
	uint8_t *buf = NULL;
	CK_RV rv;

	*out = NULL;
	*len_out = 0;
	rv = fl->C_GetAttributeValue(s, obj, &a, 1);
	if (attr_absent(rv))
		return QES_ERR_NOT_FOUND;
	if (rv != CKR_OK) {
		qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_GetAttributeValue", rv);
		return qes_p11_map_ckr(rv);
	}
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return QES_ERR_NOT_FOUND;
	if (a.ulValueLen > max_len) {
		snprintf(errmsg, errmsg_len,
		    "C_GetAttributeValue: attribute 0x%lx is %lu bytes, more than %zu",
		    type, a.ulValueLen, max_len);
		return QES_ERR_LIMIT;
	}
	cap = a.ulValueLen;
	if ((buf = malloc(cap > 0 ? cap : 1)) == NULL) {
		snprintf(errmsg, errmsg_len, "out of memory");
		return QES_ERR_ALLOC;
	}
	a.pValue = buf;
	rv = fl->C_GetAttributeValue(s, obj, &a, 1);
	if (rv != CKR_OK || a.ulValueLen > cap) {
		free(buf);
		if (attr_absent(rv) || (rv == CKR_OK &&
		    a.ulValueLen == CK_UNAVAILABLE_INFORMATION))
			return QES_ERR_NOT_FOUND;
		if (rv == CKR_OK) {
			snprintf(errmsg, errmsg_len,
			    "C_GetAttributeValue: attribute 0x%lx grew", type);
			return QES_ERR_DEVICE;
		}
		qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_GetAttributeValue", rv);
		return qes_p11_map_ckr(rv);
	}
	*out = buf;
	*len_out = a.ulValueLen;
	return 0;
}

int
qes_p11_priv_get_bool(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, int *out)
{
	CK_BBOOL v = CK_FALSE;
	CK_ATTRIBUTE a = { type, &v, sizeof(v) };
	CK_RV rv;

	rv = fl->C_GetAttributeValue(s, obj, &a, 1);
	if (attr_absent(rv) || (rv == CKR_OK && a.ulValueLen != sizeof(v)))
		return QES_ERR_NOT_FOUND;
	if (rv != CKR_OK)
		return qes_p11_map_ckr(rv);
	*out = v != CK_FALSE;
	return 0;
}

int
qes_p11_priv_get_ulong(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, CK_ULONG *out,
    char *errmsg, size_t errmsg_len)
{
	CK_ULONG v = 0;
	CK_ATTRIBUTE a = { type, &v, sizeof(v) };
	CK_RV rv;

	rv = fl->C_GetAttributeValue(s, obj, &a, 1);
	if (attr_absent(rv) || (rv == CKR_OK && a.ulValueLen != sizeof(v)))
		return QES_ERR_NOT_FOUND;
	if (rv != CKR_OK) {
		qes_p11_priv_ckr_msg(errmsg, errmsg_len, "C_GetAttributeValue", rv);
		return qes_p11_map_ckr(rv);
	}
	*out = v;
	return 0;
}

/* ---- return values: names and the qes_err each one means ---- */

/*
 * Decisions worth a word:
 * - CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED mean token_removed: qes
 *   only closes its own sessions in qes_p11_session_free(), so a session
 *   that dies under a live job was closed by the module, and modules do that
 *   when the token goes (the specification closes every session of a
 *   removed token). There is no generic "session" error to map it to.
 * - CKR_TOKEN_NOT_PRESENT / CKR_DEVICE_REMOVED are token_removed too (the
 *   token was there when we chose the slot); CKR_SLOT_ID_INVALID, a slot
 *   that is gone altogether, is token_not_present.
 * - CKR_FUNCTION_REJECTED (the user said no on a PIN pad or consent
 *   dialog of the middleware) and CKR_CANCEL are cancelled, like
 *   CKR_FUNCTION_CANCELED.
 * - CKR_USER_PIN_NOT_INITIALIZED is pin_expired: the remedy is the same,
 *   set the PIN with the vendor's tool before signing.
 * - Values only a bug of ours can cause (bad arguments, templates,
 *   operation not initialised, buffer too small after the size query) are
 *   internal. Unknown and vendor-defined values are device: the module
 *   failed in a way we cannot classify; the message keeps the hex value.
 */
struct ckr_entry {
	CK_RV rv;
	const char *name;
	int err;
};

#define R(x, e) { x, #x, e }
static const struct ckr_entry ckr_table[] = {
	R(CKR_OK, QES_OK),
	R(CKR_CANCEL, QES_ERR_CANCELLED),
	R(CKR_HOST_MEMORY, QES_ERR_ALLOC),
	R(CKR_SLOT_ID_INVALID, QES_ERR_TOKEN_NOT_PRESENT),
	R(CKR_GENERAL_ERROR, QES_ERR_DEVICE),
	R(CKR_FUNCTION_FAILED, QES_ERR_DEVICE),
	R(CKR_ARGUMENTS_BAD, QES_ERR_INTERNAL),
	R(CKR_NO_EVENT, QES_ERR_NOT_FOUND),
	R(CKR_NEED_TO_CREATE_THREADS, QES_ERR_MODULE_INIT),
	R(CKR_CANT_LOCK, QES_ERR_MODULE_INIT),
	R(CKR_ATTRIBUTE_READ_ONLY, QES_ERR_INTERNAL),
	R(CKR_ATTRIBUTE_SENSITIVE, QES_ERR_UNSUPPORTED),
	R(CKR_ATTRIBUTE_TYPE_INVALID, QES_ERR_UNSUPPORTED),
	R(CKR_ATTRIBUTE_VALUE_INVALID, QES_ERR_INTERNAL),
	R(CKR_ACTION_PROHIBITED, QES_ERR_KEY_UNSUITABLE),
	R(CKR_DATA_INVALID, QES_ERR_DATA_INVALID),
	R(CKR_DATA_LEN_RANGE, QES_ERR_DATA_INVALID),
	R(CKR_DEVICE_ERROR, QES_ERR_DEVICE),
	R(CKR_DEVICE_MEMORY, QES_ERR_DEVICE),
	R(CKR_DEVICE_REMOVED, QES_ERR_TOKEN_REMOVED),
	R(CKR_ENCRYPTED_DATA_INVALID, QES_ERR_DATA_INVALID),
	R(CKR_ENCRYPTED_DATA_LEN_RANGE, QES_ERR_DATA_INVALID),
	R(CKR_AEAD_DECRYPT_FAILED, QES_ERR_DATA_INVALID),
	R(CKR_FUNCTION_CANCELED, QES_ERR_CANCELLED),
	R(CKR_FUNCTION_NOT_PARALLEL, QES_ERR_FUNCTION_NOT_SUPPORTED),
	R(CKR_FUNCTION_NOT_SUPPORTED, QES_ERR_FUNCTION_NOT_SUPPORTED),
	R(CKR_KEY_HANDLE_INVALID, QES_ERR_KEY_NOT_FOUND),
	R(CKR_KEY_SIZE_RANGE, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_TYPE_INCONSISTENT, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_NOT_NEEDED, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_CHANGED, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_NEEDED, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_INDIGESTIBLE, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_FUNCTION_NOT_PERMITTED, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_NOT_WRAPPABLE, QES_ERR_KEY_UNSUITABLE),
	R(CKR_KEY_UNEXTRACTABLE, QES_ERR_KEY_UNSUITABLE),
	R(CKR_MECHANISM_INVALID, QES_ERR_MECHANISM_UNSUPPORTED),
	R(CKR_MECHANISM_PARAM_INVALID, QES_ERR_MECHANISM_UNSUPPORTED),
	R(CKR_OBJECT_HANDLE_INVALID, QES_ERR_NOT_FOUND),
	R(CKR_OPERATION_ACTIVE, QES_ERR_TOKEN_BUSY),
	R(CKR_OPERATION_NOT_INITIALIZED, QES_ERR_INTERNAL),
	R(CKR_PIN_INCORRECT, QES_ERR_PIN_INCORRECT),
	R(CKR_PIN_INVALID, QES_ERR_PIN_INVALID),
	R(CKR_PIN_LEN_RANGE, QES_ERR_PIN_INVALID),
	R(CKR_PIN_EXPIRED, QES_ERR_PIN_EXPIRED),
	R(CKR_PIN_LOCKED, QES_ERR_PIN_LOCKED),
	R(CKR_SESSION_CLOSED, QES_ERR_TOKEN_REMOVED),
	R(CKR_SESSION_COUNT, QES_ERR_TOKEN_BUSY),
	R(CKR_SESSION_HANDLE_INVALID, QES_ERR_TOKEN_REMOVED),
	R(CKR_SESSION_PARALLEL_NOT_SUPPORTED, QES_ERR_FUNCTION_NOT_SUPPORTED),
	R(CKR_SESSION_READ_ONLY, QES_ERR_INTERNAL),
	R(CKR_SESSION_EXISTS, QES_ERR_TOKEN_BUSY),
	R(CKR_SESSION_READ_ONLY_EXISTS, QES_ERR_TOKEN_BUSY),
	R(CKR_SESSION_READ_WRITE_SO_EXISTS, QES_ERR_TOKEN_BUSY),
	R(CKR_SIGNATURE_INVALID, QES_ERR_SIGNATURE_INVALID),
	R(CKR_SIGNATURE_LEN_RANGE, QES_ERR_SIGNATURE_INVALID),
	R(CKR_TEMPLATE_INCOMPLETE, QES_ERR_INTERNAL),
	R(CKR_TEMPLATE_INCONSISTENT, QES_ERR_INTERNAL),
	R(CKR_TOKEN_NOT_PRESENT, QES_ERR_TOKEN_REMOVED),
	R(CKR_TOKEN_NOT_RECOGNIZED, QES_ERR_DEVICE),
	R(CKR_TOKEN_WRITE_PROTECTED, QES_ERR_UNSUPPORTED),
	R(CKR_UNWRAPPING_KEY_HANDLE_INVALID, QES_ERR_KEY_NOT_FOUND),
	R(CKR_UNWRAPPING_KEY_SIZE_RANGE, QES_ERR_KEY_UNSUITABLE),
	R(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, QES_ERR_KEY_UNSUITABLE),
	R(CKR_USER_ALREADY_LOGGED_IN, QES_ERR_INTERNAL),
	R(CKR_USER_NOT_LOGGED_IN, QES_ERR_NOT_LOGGED_IN),
	R(CKR_USER_PIN_NOT_INITIALIZED, QES_ERR_PIN_EXPIRED),
	R(CKR_USER_TYPE_INVALID, QES_ERR_INTERNAL),
	R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, QES_ERR_TOKEN_BUSY),
	R(CKR_USER_TOO_MANY_TYPES, QES_ERR_TOKEN_BUSY),
	R(CKR_WRAPPED_KEY_INVALID, QES_ERR_KEY_UNSUITABLE),
	R(CKR_WRAPPED_KEY_LEN_RANGE, QES_ERR_KEY_UNSUITABLE),
	R(CKR_WRAPPING_KEY_HANDLE_INVALID, QES_ERR_KEY_NOT_FOUND),
	R(CKR_WRAPPING_KEY_SIZE_RANGE, QES_ERR_KEY_UNSUITABLE),
	R(CKR_WRAPPING_KEY_TYPE_INCONSISTENT, QES_ERR_KEY_UNSUITABLE),
	R(CKR_RANDOM_SEED_NOT_SUPPORTED, QES_ERR_FUNCTION_NOT_SUPPORTED),
	R(CKR_RANDOM_NO_RNG, QES_ERR_FUNCTION_NOT_SUPPORTED),
	R(CKR_DOMAIN_PARAMS_INVALID, QES_ERR_KEY_UNSUITABLE),
	R(CKR_CURVE_NOT_SUPPORTED, QES_ERR_MECHANISM_UNSUPPORTED),
	R(CKR_BUFFER_TOO_SMALL, QES_ERR_INTERNAL),
	R(CKR_SAVED_STATE_INVALID, QES_ERR_INTERNAL),
	R(CKR_INFORMATION_SENSITIVE, QES_ERR_UNSUPPORTED),
	R(CKR_STATE_UNSAVEABLE, QES_ERR_UNSUPPORTED),
	R(CKR_CRYPTOKI_NOT_INITIALIZED, QES_ERR_MODULE_INIT),
	R(CKR_CRYPTOKI_ALREADY_INITIALIZED, QES_ERR_MODULE_INIT),
	R(CKR_MUTEX_BAD, QES_ERR_INTERNAL),
	R(CKR_MUTEX_NOT_LOCKED, QES_ERR_INTERNAL),
	R(CKR_NEW_PIN_MODE, QES_ERR_UNSUPPORTED),
	R(CKR_NEXT_OTP, QES_ERR_UNSUPPORTED),
	R(CKR_EXCEEDED_MAX_ITERATIONS, QES_ERR_DEVICE),
	R(CKR_FIPS_SELF_TEST_FAILED, QES_ERR_DEVICE),
	R(CKR_LIBRARY_LOAD_FAILED, QES_ERR_MODULE_LOAD),
	R(CKR_PIN_TOO_WEAK, QES_ERR_PIN_INVALID),
	R(CKR_PUBLIC_KEY_INVALID, QES_ERR_KEY_UNSUITABLE),
	R(CKR_FUNCTION_REJECTED, QES_ERR_CANCELLED),
	R(CKR_TOKEN_RESOURCE_EXCEEDED, QES_ERR_TOKEN_BUSY),
	R(CKR_OPERATION_CANCEL_FAILED, QES_ERR_INTERNAL),
	R(CKR_KEY_EXHAUSTED, QES_ERR_KEY_UNSUITABLE),
};
#undef R

static const struct ckr_entry *
ckr_lookup(CK_RV rv)
{
	size_t i;

	for (i = 0; i < sizeof(ckr_table) / sizeof(ckr_table[0]); i++)
		if (ckr_table[i].rv == rv)
			return &ckr_table[i];
	return NULL;
}

int
qes_p11_map_ckr(unsigned long rv)
{
	const struct ckr_entry *e = ckr_lookup(rv);

	return e != NULL ? e->err : QES_ERR_DEVICE;
}

const char *
qes_p11_ckr_name(unsigned long rv)
{
	const struct ckr_entry *e = ckr_lookup(rv);

	if (e != NULL)
		return e->name;
	return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED" : "CKR_UNKNOWN";
}

void
qes_p11_priv_ckr_msg(char *dst, size_t dst_len, const char *call, CK_RV rv)
{
	if (ckr_lookup(rv) != NULL)
		snprintf(dst, dst_len, "%s: %s", call, qes_p11_ckr_name(rv));
	else
		snprintf(dst, dst_len, "%s: %s (0x%lx)", call,
		    qes_p11_ckr_name(rv), rv);
}

/* ---- mechanisms: the ones signing, key generation and hashing use ---- */

struct mech_entry {
	CK_MECHANISM_TYPE type;
	const char *name;
};

#define M(x) { x, #x }
static const struct mech_entry mech_table[] = {
	M(CKM_RSA_PKCS_KEY_PAIR_GEN),
	M(CKM_RSA_PKCS),
	M(CKM_RSA_9796),
	M(CKM_RSA_X_509),
	M(CKM_MD5_RSA_PKCS),
	M(CKM_SHA1_RSA_PKCS),
	M(CKM_RSA_PKCS_OAEP),
	M(CKM_RSA_X9_31_KEY_PAIR_GEN),
	M(CKM_RSA_X9_31),
	M(CKM_RSA_PKCS_PSS),
	M(CKM_SHA1_RSA_PKCS_PSS),
	M(CKM_SHA224_RSA_PKCS),
	M(CKM_SHA256_RSA_PKCS),
	M(CKM_SHA384_RSA_PKCS),
	M(CKM_SHA512_RSA_PKCS),
	M(CKM_SHA224_RSA_PKCS_PSS),
	M(CKM_SHA256_RSA_PKCS_PSS),
	M(CKM_SHA384_RSA_PKCS_PSS),
	M(CKM_SHA512_RSA_PKCS_PSS),
	M(CKM_DSA_KEY_PAIR_GEN),
	M(CKM_DSA_SHA1),
	M(CKM_DSA_SHA224),
	M(CKM_DSA_SHA256),
	M(CKM_DSA_SHA384),
	M(CKM_DSA_SHA512),
	M(CKM_DH_PKCS_KEY_PAIR_GEN),
	M(CKM_DH_PKCS_DERIVE),
	M(CKM_EC_KEY_PAIR_GEN),
	M(CKM_ECDSA),
	M(CKM_ECDSA_SHA1),
	M(CKM_ECDSA_SHA224),
	M(CKM_ECDSA_SHA256),
	M(CKM_ECDSA_SHA384),
	M(CKM_ECDSA_SHA512),
	M(CKM_ECDH1_DERIVE),
	M(CKM_ECDH1_COFACTOR_DERIVE),
	M(CKM_ECMQV_DERIVE),
	M(CKM_EC_EDWARDS_KEY_PAIR_GEN),
	M(CKM_EDDSA),
	M(CKM_MD5),
	M(CKM_SHA_1),
	M(CKM_SHA224),
	M(CKM_SHA256),
	M(CKM_SHA384),
	M(CKM_SHA512),
	M(CKM_MD5_HMAC),
	M(CKM_SHA_1_HMAC),
	M(CKM_SHA224_HMAC),
	M(CKM_SHA256_HMAC),
	M(CKM_SHA384_HMAC),
	M(CKM_SHA512_HMAC),
	M(CKM_GENERIC_SECRET_KEY_GEN),
	M(CKM_DES3_KEY_GEN),
	M(CKM_DES3_ECB),
	M(CKM_DES3_CBC),
	M(CKM_DES3_CBC_PAD),
	M(CKM_DES3_CMAC),
	M(CKM_AES_KEY_GEN),
	M(CKM_AES_ECB),
	M(CKM_AES_CBC),
	M(CKM_AES_CBC_PAD),
	M(CKM_AES_CTR),
	M(CKM_AES_GCM),
	M(CKM_AES_CCM),
	M(CKM_AES_CMAC),
	M(CKM_AES_KEY_WRAP),
	M(CKM_AES_KEY_WRAP_PAD),
	M(CKM_AES_ECB_ENCRYPT_DATA),
	M(CKM_AES_CBC_ENCRYPT_DATA),
};
#undef M

const char *
qes_p11_mech_name(unsigned long mech)
{
	size_t i;

	for (i = 0; i < sizeof(mech_table) / sizeof(mech_table[0]); i++)
		if (mech_table[i].type == mech)
			return mech_table[i].name;
	return mech >= CKM_VENDOR_DEFINED ? "CKM_VENDOR_DEFINED" : "CKM_UNKNOWN";
}
