/*
 * hotplug.c - the token watcher thread (see hotplug.h for the strategy).
 *
 * libqes keeps each module's function list to itself and wraps neither
 * C_WaitForSlotEvent nor re-initialisation, so the watcher takes its own
 * reference to every module the qes_p11 has loaded: dlopen with
 * RTLD_NOLOAD on the same path returns the library already in the process
 * (never loads a new one) and its C_GetFunctionList gives the same module
 * instance libqes initialised. The watcher only ever calls the read-only
 * slot functions on it, plus C_Finalize/C_Initialize under the gate's
 * write lock. After a re-initialisation the module is in the state libqes
 * left it in (initialised, with OS locking), so libqes' reference counting
 * stays right, and qes_p11_free() finalises it as usual.
 *
 * Each tick reads, per module, only what is cheap: pending slot events, or
 * the slot list and each token's serial. The full inventory (certificates,
 * mechanisms) is read only when that set changed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11-kit/pkcs11.h"

#include "qes/err.h"
#include "qes/p11.h"

#include "hotplug.h"
#include "log.h"

#define DEFAULT_POLL_MS		1000
#define DEFAULT_VERIFY_MS	10000
#define DEFAULT_REINIT_MS	5000
#define MAX_SLOTS		256
#define MAX_EVENTS_PER_TICK	64

/*
 * Modules known to answer CKR_NO_EVENT without ever reporting an event: they
 * are polled from the start, so an insertion is noticed even before the
 * first removal would have shown that events never come. Matched against
 * the start of C_GetInfo's manufacturerID.
 */
static const char *silent_event_modules[] = {
	"SoftHSM",
};

/* PKCS#11 3.0's C_GetInterface, for a module without C_GetFunctionList. */
typedef struct hp_ck_interface {
	CK_UTF8CHAR *pInterfaceName;
	void *pFunctionList;
	CK_FLAGS flags;
} hp_ck_interface;
typedef CK_RV (*hp_get_interface_fn)(CK_UTF8CHAR *, CK_VERSION *,
    hp_ck_interface **, CK_FLAGS);

struct watched {
	size_t index;
	const char *path;		/* borrowed from the qes_p11 */
	void *dl;			/* our RTLD_NOLOAD reference */
	CK_FUNCTION_LIST *fl;
	agent_hotplug_mode mode;
	char **serials;			/* sorted, present and initialised tokens */
	size_t n_serials;
	uint64_t next_verify_ms;
	uint64_t next_reinit_ms;
};

struct agent_hotplug {
	qes_p11 *p;
	agent_hotplug_opts opts;
	agent_hotplug_cb cb;
	void *arg;
	struct watched *mods;
	size_t n_mods;
	pthread_rwlock_t gate;
	pthread_mutex_t lock;		/* guards stop, stats, modes */
	pthread_cond_t wake;
	int stop;
	int thread_started;
	pthread_t thread;
	agent_hotplug_stats stats;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
free_serials(char **s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(s[i]);
	free(s);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A blank-padded CK_TOKEN_INFO field as a C string; control bytes become '?'. */
static char *
trim_field(const unsigned char *f, size_t len)
{
	char *s;
	size_t i;

	while (len > 0 && (f[len - 1] == ' ' || f[len - 1] == '\0'))
		len--;
	if ((s = malloc(len + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i++)
		s[i] = (f[i] < 0x20 || f[i] == 0x7f) ? '?' : (char)f[i];
	s[len] = '\0';
	return s;
}

/*
 * The serials of the initialised tokens present in w's slots, sorted and
 * without duplicates. A slot whose token cannot be read is counted as
 * empty: that is how SoftHSM2 shows a deleted token directory, and how real
 * modules show a card pulled between the two calls.
 */
static int
read_serials(struct watched *w, char ***out, size_t *n_out)
{
	CK_SLOT_ID slots[MAX_SLOTS];
	CK_TOKEN_INFO ti;
	CK_ULONG n = MAX_SLOTS, i;
	char **serials = NULL, *s;
	size_t k = 0, o;
	CK_RV rv;

	*out = NULL;
	*n_out = 0;
	rv = w->fl->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv == CKR_BUFFER_TOO_SMALL)
		return QES_ERR_LIMIT;
	if (rv != CKR_OK)
		return qes_p11_map_ckr(rv);
	if (n > MAX_SLOTS)
		return QES_ERR_DEVICE;
	if ((serials = calloc(n > 0 ? n : 1, sizeof(*serials))) == NULL)
		return QES_ERR_ALLOC;
	for (i = 0; i < n; i++) {
		memset(&ti, 0, sizeof(ti));
		if (w->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    !(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;
		if ((s = trim_field(ti.serialNumber, sizeof(ti.serialNumber))) == NULL) {
			free_serials(serials, k);
			return QES_ERR_ALLOC;
		}
		if (s[0] == '\0') {
			free(s);
			continue;	/* a token without a serial cannot be addressed */
		}
		serials[k++] = s;
	}
	qsort(serials, k, sizeof(*serials), cmp_str);
	for (i = o = 0; i < k; i++) {
		if (o > 0 && strcmp(serials[o - 1], serials[i]) == 0)
			free(serials[i]);
		else
			serials[o++] = serials[i];
	}
	*out = serials;
	*n_out = o;
	return 0;
}

static int
same_serials(char **a, size_t na, char **b, size_t nb)
{
	size_t i;

	if (na != nb)
		return 0;
	for (i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return 0;
	return 1;
}

static const char *
mode_name(agent_hotplug_mode m)
{
	return m == AGENT_HOTPLUG_EVENTS ? "events" :
	    m == AGENT_HOTPLUG_POLL ? "poll" : "off";
}

static void
set_mode(agent_hotplug *h, struct watched *w, agent_hotplug_mode m)
{
	pthread_mutex_lock(&h->lock);
	w->mode = m;
	pthread_mutex_unlock(&h->lock);
}

/* Our own reference to the module libqes loaded, and its function list. */
static int
attach(struct watched *w, const qes_p11_module_info *info)
{
	static CK_UTF8CHAR iface_name[] = "PKCS 11";
	CK_C_GetFunctionList get_list;
	hp_get_interface_fn get_iface;
	hp_ck_interface *iface = NULL;
	CK_FUNCTION_LIST *fl = NULL;

	w->path = info->path;
	if (info->err != 0)
		return QES_ERR_MODULE_LOAD;
	/* RTLD_NOLOAD: the library libqes loaded, or nothing */
	if ((w->dl = dlopen(info->path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD)) == NULL)
		return QES_ERR_MODULE_LOAD;
	get_list = (CK_C_GetFunctionList)dlsym(w->dl, "C_GetFunctionList");
	if (get_list != NULL && get_list(&fl) == CKR_OK && fl != NULL) {
		w->fl = fl;
		return 0;
	}
	get_iface = (hp_get_interface_fn)dlsym(w->dl, "C_GetInterface");
	/* a 3.x list starts with the 2.x functions, the only ones used here */
	if (get_iface != NULL && get_iface(iface_name, NULL, &iface, 0) == CKR_OK &&
	    iface != NULL && iface->pFunctionList != NULL) {
		w->fl = iface->pFunctionList;
		return 0;
	}
	dlclose(w->dl);
	w->dl = NULL;
	return QES_ERR_MODULE_LOAD;
}

/* EVENTS when the module answers a non-blocking wait sensibly, else POLL. */
static agent_hotplug_mode
probe_mode(struct watched *w, const qes_p11_module_info *info)
{
	CK_SLOT_ID slot;
	size_t i, n;
	CK_RV rv;

	for (i = 0; i < sizeof(silent_event_modules) / sizeof(silent_event_modules[0]);
	    i++) {
		n = strlen(silent_event_modules[i]);
		if (info->manufacturer != NULL &&
		    strncmp(info->manufacturer, silent_event_modules[i], n) == 0)
			return AGENT_HOTPLUG_POLL;
	}
	if (w->fl->C_WaitForSlotEvent == NULL)
		return AGENT_HOTPLUG_POLL;
	/* an event pending now only means a fresh slot read, done at start anyway */
	rv = w->fl->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
	return rv == CKR_OK || rv == CKR_NO_EVENT ? AGENT_HOTPLUG_EVENTS :
	    AGENT_HOTPLUG_POLL;
}

/*
 * Drain pending slot events: the number seen, or -1 when the module turned
 * out not to support them.
 */
static int
drain_events(struct watched *w)
{
	CK_SLOT_ID slot;
	int i, seen = 0;
	CK_RV rv;

	for (i = 0; i < MAX_EVENTS_PER_TICK; i++) {
		rv = w->fl->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
		if (rv == CKR_OK)
			seen++;
		else if (rv == CKR_NO_EVENT)
			break;
		else if (rv == CKR_FUNCTION_NOT_SUPPORTED)
			return -1;
		else {
			seen++;	/* something is wrong: read the slots to see what */
			break;
		}
	}
	return seen;
}

/*
 * C_Finalize + C_Initialize, only with the gate's write lock: nobody else in
 * the process has a session or an operation on any module. 0 when done,
 * QES_ERR_BUSY when the gate was in use (try again next tick).
 */
static int
reinit(agent_hotplug *h, struct watched *w)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv_fin, rv_init;

	if (pthread_rwlock_trywrlock(&h->gate) != 0) {
		pthread_mutex_lock(&h->lock);
		h->stats.reinits_deferred++;
		pthread_mutex_unlock(&h->lock);
		return QES_ERR_BUSY;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;	/* as libqes initialised it */
	rv_fin = w->fl->C_Finalize(NULL);
	rv_init = w->fl->C_Initialize(&args);
	pthread_rwlock_unlock(&h->gate);
	pthread_mutex_lock(&h->lock);
	h->stats.reinits++;
	pthread_mutex_unlock(&h->lock);
	if (rv_init != CKR_OK && rv_init != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* its tokens read as gone until a later re-initialisation works */
		agent_log(AGENT_LOG_ERROR, "hotplug_reinit_failed", "module", w->path,
		    "c_finalize", qes_p11_ckr_name(rv_fin), "c_initialize",
		    qes_p11_ckr_name(rv_init), NULL);
		return QES_ERR_MODULE_INIT;
	}
	return 0;
}

/* One module, one tick: 1 when its set of tokens changed. */
static int
tick_module(agent_hotplug *h, struct watched *w, uint64_t now)
{
	char **serials = NULL;
	size_t n = 0;
	int events = 0, verify = 0, r;

	if (w->mode == AGENT_HOTPLUG_OFF)
		return 0;
	if (w->mode == AGENT_HOTPLUG_EVENTS) {
		if ((events = drain_events(w)) < 0) {
			agent_log(AGENT_LOG_INFO, "hotplug_mode", "module", w->path,
			    "mode", "poll", "reason", "C_WaitForSlotEvent not "
			    "supported", NULL);
			set_mode(h, w, AGENT_HOTPLUG_POLL);
			events = 0;
		} else if (now >= w->next_verify_ms) {
			verify = 1;
			w->next_verify_ms = now + h->opts.verify_interval_ms;
		}
		if (w->mode == AGENT_HOTPLUG_EVENTS && events == 0 && !verify)
			return 0;
	}
	if (w->mode == AGENT_HOTPLUG_POLL && !h->opts.no_reinit &&
	    now >= w->next_reinit_ms && reinit(h, w) != QES_ERR_BUSY)
		w->next_reinit_ms = now + h->opts.reinit_interval_ms;
	if ((r = read_serials(w, &serials, &n)) != 0) {
		/* a module that fails to answer shows no tokens */
		agent_log(AGENT_LOG_DEBUG, "hotplug_slots_unreadable", "module",
		    w->path, "error", qes_errname(r), NULL);
		serials = NULL;
		n = 0;
	}
	if (same_serials(serials, n, w->serials, w->n_serials)) {
		free_serials(serials, n);
		return 0;
	}
	if (w->mode == AGENT_HOTPLUG_EVENTS && events == 0) {
		agent_log(AGENT_LOG_INFO, "hotplug_mode", "module", w->path, "mode",
		    "poll", "reason", "the slots changed without a slot event",
		    NULL);
		set_mode(h, w, AGENT_HOTPLUG_POLL);
		pthread_mutex_lock(&h->lock);
		h->stats.downgrades++;
		pthread_mutex_unlock(&h->lock);
	}
	free_serials(w->serials, w->n_serials);
	w->serials = serials;
	w->n_serials = n;
	return 1;
}

/* A fresh inventory to the callback; 0 when delivered. */
static int
deliver(agent_hotplug *h)
{
	qes_p11_inventory *inv = NULL;
	int r;

	if ((r = qes_p11_scan(h->p, &inv)) != 0) {
		agent_log(AGENT_LOG_WARN, "hotplug_scan_failed", "error",
		    qes_errname(r), NULL);
		return r;
	}
	pthread_mutex_lock(&h->lock);
	h->stats.scans++;
	pthread_mutex_unlock(&h->lock);
	h->cb(h->arg, inv);	/* the callback owns inv */
	return 0;
}

static void *
watcher(void *arg)
{
	agent_hotplug *h = arg;
	struct timespec until;
	uint64_t now, wake_at;
	size_t i;
	int changed, pending = 1;	/* the first inventory is always sent */

	for (;;) {
		now = now_ms();
		changed = 0;
		for (i = 0; i < h->n_mods; i++)
			changed |= tick_module(h, &h->mods[i], now);
		if (changed || pending)
			pending = deliver(h) != 0;
		pthread_mutex_lock(&h->lock);
		h->stats.ticks++;
		wake_at = now + h->opts.poll_interval_ms;
		until.tv_sec = (time_t)(wake_at / 1000);
		until.tv_nsec = (long)(wake_at % 1000) * 1000000;
		while (!h->stop && pthread_cond_timedwait(&h->wake, &h->lock,
		    &until) != ETIMEDOUT)
			;
		if (h->stop) {
			pthread_mutex_unlock(&h->lock);
			break;
		}
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

int
agent_hotplug_start(qes_p11 *p, const agent_hotplug_opts *opts,
    agent_hotplug_cb cb, void *arg, agent_hotplug **out)
{
	const qes_p11_module_info *info;
	pthread_condattr_t ca;
	agent_hotplug *h;
	struct watched *w;
	uint64_t now = now_ms();
	size_t i;
	int r;

	*out = NULL;
	if (p == NULL || cb == NULL)
		return QES_ERR_INVALID_ARG;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return QES_ERR_ALLOC;
	h->p = p;
	h->cb = cb;
	h->arg = arg;
	if (opts != NULL)
		h->opts = *opts;
	if (h->opts.poll_interval_ms == 0)
		h->opts.poll_interval_ms = DEFAULT_POLL_MS;
	if (h->opts.verify_interval_ms == 0)
		h->opts.verify_interval_ms = DEFAULT_VERIFY_MS;
	if (h->opts.reinit_interval_ms == 0)
		h->opts.reinit_interval_ms = DEFAULT_REINIT_MS;
	pthread_rwlock_init(&h->gate, NULL);
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->wake, &ca);
	pthread_condattr_destroy(&ca);

	h->n_mods = qes_p11_module_count(p);
	if (h->n_mods > 0 && (h->mods = calloc(h->n_mods, sizeof(*h->mods))) == NULL) {
		r = QES_ERR_ALLOC;
		goto fail;
	}
	for (i = 0; i < h->n_mods; i++) {
		w = &h->mods[i];
		w->index = i;
		info = qes_p11_module_get(p, i);
		if (info == NULL || attach(w, info) != 0) {
			w->mode = AGENT_HOTPLUG_OFF;
			continue;
		}
		w->mode = probe_mode(w, info);
		w->next_verify_ms = now + h->opts.verify_interval_ms;
		w->next_reinit_ms = now + h->opts.reinit_interval_ms;
		/* the set at start: what later ticks compare against */
		if (read_serials(w, &w->serials, &w->n_serials) == QES_ERR_ALLOC) {
			r = QES_ERR_ALLOC;
			goto fail;
		}
		agent_log(AGENT_LOG_INFO, "hotplug_mode", "module", w->path,
		    "mode", mode_name(w->mode), NULL);
	}
	if ((r = pthread_create(&h->thread, NULL, watcher, h)) != 0) {
		r = QES_ERR_INTERNAL;
		goto fail;
	}
	h->thread_started = 1;
	*out = h;
	return 0;
 fail:
	agent_hotplug_stop(h);
	return r;
}

void
agent_hotplug_stop(agent_hotplug *h)
{
	size_t i;

	if (h == NULL)
		return;
	if (h->thread_started) {
		pthread_mutex_lock(&h->lock);
		h->stop = 1;
		pthread_cond_broadcast(&h->wake);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->thread, NULL);
	}
	for (i = 0; i < h->n_mods; i++) {
		free_serials(h->mods[i].serials, h->mods[i].n_serials);
		if (h->mods[i].dl != NULL)
			dlclose(h->mods[i].dl);
	}
	free(h->mods);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	pthread_rwlock_destroy(&h->gate);
	free(h);
}

void
agent_hotplug_enter(agent_hotplug *h)
{
	if (h != NULL)
		pthread_rwlock_rdlock(&h->gate);
}

void
agent_hotplug_leave(agent_hotplug *h)
{
	if (h != NULL)
		pthread_rwlock_unlock(&h->gate);
}

agent_hotplug_mode
agent_hotplug_module_mode(agent_hotplug *h, size_t module_index)
{
	agent_hotplug_mode m = AGENT_HOTPLUG_OFF;

	if (h == NULL || module_index >= h->n_mods)
		return AGENT_HOTPLUG_OFF;
	pthread_mutex_lock(&h->lock);
	m = h->mods[module_index].mode;
	pthread_mutex_unlock(&h->lock);
	return m;
}

void
agent_hotplug_get_stats(agent_hotplug *h, agent_hotplug_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->lock);
	*out = h->stats;
	pthread_mutex_unlock(&h->lock);
}
