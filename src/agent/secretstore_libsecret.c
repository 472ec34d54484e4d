/*
 * secretstore_libsecret.c - the Secret Service backend (GNOME Keyring,
 * KWallet, KeePassXC, ...) through libsecret.
 *
 * Items carry a qes-specific schema, "org.qes.Agent", with two attributes,
 * "kind" ("device-key" | "pin") and "key" (token serial, server host), so
 * `secret-tool search kind pin` shows the user what qes keeps, and nothing
 * else's items can be read or deleted through it.
 *
 * Secrets cross this file only as SecretValue (libsecret keeps those in its
 * own locked, wiped memory) and qes_secret: the binary API is used both
 * ways (secret_password_storev_binary to store, SecretItem's SecretValue to
 * read), never the gchar *password variants, which would leave a copy in
 * ordinary heap memory. On the bus libsecret encrypts the value with a per-session
 * key whenever the service supports it.
 *
 * Every call is bounded in time: the D-Bus service may be absent (no session
 * bus, nobody owns org.freedesktop.secrets), stuck, or waiting for the user
 * to unlock a keyring. libsecret's *_sync functions would wait for D-Bus's
 * default 25 s or, while a prompt is up, for ever; so each call here is the
 * asynchronous variant driven on the backend's own GMainContext (what the
 * _sync functions do internally) with a timeout that cancels it; a cancelled
 * call still completes (GIO guarantees the callback) before we return. A
 * timed-out call is QES_ERR_TIMEOUT; an unreachable service
 * QES_ERR_UNAVAILABLE. One context serves the backend's whole life, so the
 * D-Bus proxies libsecret makes, and the clean-ups they queue when they go,
 * always have a live context to run in. Callers
 * treat both as "no stored secret" when signing, so a broken keyring never
 * blocks a signature: the signer is asked for the PIN instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libsecret/secret.h>

#include "qes/err.h"
#include "qes/secret.h"

#include "secretstore.h"

#define SCHEMA_NAME	"org.qes.Agent"

static const SecretSchema qes_schema = {
	SCHEMA_NAME, SECRET_SCHEMA_NONE,
	{
		{ "kind", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ "key", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ NULL, 0 },
	},
	0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
};

struct ls_ctx {
	int timeout_ms;
	GMainContext *ctx;	/* every call of this backend runs here */
	SecretService *service;	/* a reference keeps libsecret's connection */
};

/* ---- one bounded asynchronous call ---- */

struct call {
	GMainContext *ctx;	/* borrowed from the ls_ctx */
	GCancellable *cancel;
	GSource *timer;
	GAsyncResult *result;
	int timed_out;
};

static void
call_done(GObject *src, GAsyncResult *res, gpointer data)
{
	struct call *c = data;

	(void)src;
	c->result = g_object_ref(res);
}

static gboolean
call_timeout(gpointer data)
{
	struct call *c = data;

	c->timed_out = 1;
	g_cancellable_cancel(c->cancel);
	return G_SOURCE_REMOVE;
}

/* Make the backend's context this thread's default until call_end. */
static void
call_begin(struct call *c, GMainContext *ctx, int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->ctx = ctx;
	g_main_context_push_thread_default(c->ctx);
	c->cancel = g_cancellable_new();
	c->timer = g_timeout_source_new((guint)timeout_ms);
	g_source_set_callback(c->timer, call_timeout, c, NULL);
	g_source_attach(c->timer, c->ctx);
}

/* Run the context until the call completes (after a cancel it still does). */
static void
call_wait(struct call *c)
{
	while (c->result == NULL)
		g_main_context_iteration(c->ctx, TRUE);
}

static void
call_end(struct call *c)
{
	g_source_destroy(c->timer);
	g_source_unref(c->timer);
	/* what the call left queued (idle completions, proxy signals) runs and
	 * frees its data now, as libsecret's own _sync functions do */
	while (g_main_context_iteration(c->ctx, FALSE))
		;
	if (c->result != NULL)
		g_object_unref(c->result);
	g_object_unref(c->cancel);
	g_main_context_pop_thread_default(c->ctx);
}

/* A GError as a qes_err plus a sentence (D-Bus error texts carry no secret). */
static int
map_error(const struct call *c, GError *err, int timeout_ms, const char *what,
    char *msg, size_t msg_len)
{
	int r = QES_ERR_IO;

	if (err == NULL) {
		snprintf(msg, msg_len, "Secret Service: %s failed", what);
		return QES_ERR_IO;
	}
	if (c->timed_out && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		snprintf(msg, msg_len, "Secret Service: %s: no answer within %d ms "
		    "(is the keyring locked or stuck?)", what, timeout_ms);
		return QES_ERR_TIMEOUT;
	}
	if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED))
		r = QES_ERR_CANCELLED;	/* the user dismissed an unlock prompt */
	else if (err->domain == G_DBUS_ERROR ||
	    g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
	    g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CLOSED) ||
	    g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED) ||
	    g_error_matches(err, G_IO_ERROR, G_IO_ERROR_FAILED) ||
	    g_error_matches(err, SECRET_ERROR, SECRET_ERROR_IS_LOCKED) ||
	    g_error_matches(err, SECRET_ERROR, SECRET_ERROR_NO_SUCH_OBJECT))
		r = QES_ERR_UNAVAILABLE;
	snprintf(msg, msg_len, "Secret Service: %s: %s", what, err->message);
	return r;
}

static GHashTable *
attributes(agent_secret_kind kind, const char *key)
{
	GHashTable *a = g_hash_table_new(g_str_hash, g_str_equal);

	/* borrowed strings: the table lives only for one call */
	g_hash_table_insert(a, (gpointer)"kind",
	    (gpointer)agent_secret_kind_name(kind));
	if (key != NULL)
		g_hash_table_insert(a, (gpointer)"key", (gpointer)key);
	return a;
}

/* ---- the backend functions ---- */

static int
ls_store(void *arg, agent_secret_kind kind, const char *key, const char *label,
    const qes_secret *value, char *msg, size_t msg_len)
{
	struct ls_ctx *x = arg;
	struct call c;
	GHashTable *attrs = attributes(kind, key);
	SecretValue *sv;
	GError *err = NULL;
	int r = 0;

	/* copied into libsecret's locked memory; wiped when unreferenced */
	sv = secret_value_new((const gchar *)qes_secret_data(value),
	    (gssize)qes_secret_len(value), kind == AGENT_SECRET_PIN ?
	    "text/plain" : "application/octet-stream");
	call_begin(&c, x->ctx, x->timeout_ms);
	secret_password_storev_binary(&qes_schema, attrs, SECRET_COLLECTION_DEFAULT,
	    label, sv, c.cancel, call_done, &c);
	call_wait(&c);
	if (!secret_password_store_finish(c.result, &err))
		r = map_error(&c, err, x->timeout_ms, "store", msg, msg_len);
	call_end(&c);
	g_clear_error(&err);
	secret_value_unref(sv);
	g_hash_table_unref(attrs);
	return r;
}

/* The newest of the items a search found (several only when planted by hand). */
static SecretRetrievable *
newest_item(GList *items)
{
	SecretRetrievable *best = NULL;
	guint64 t, best_t = 0;
	GList *l;

	for (l = items; l != NULL; l = l->next) {
		t = secret_retrievable_get_modified(l->data);
		if (best == NULL || t > best_t) {
			best = l->data;
			best_t = t;
		}
	}
	return best;
}

/*
 * A search with SECRET_SEARCH_LOAD_SECRETS, not secret_password_lookup:
 * libsecret 0.20's lookup path leaks the D-Bus reply that carries the
 * (session-encrypted) secret, the search path frees it.
 */
static int
ls_lookup(void *arg, agent_secret_kind kind, const char *key, qes_secret *value,
    char *msg, size_t msg_len)
{
	struct ls_ctx *x = arg;
	struct call c;
	GHashTable *attrs = attributes(kind, key);
	SecretRetrievable *item;
	SecretValue *sv = NULL;
	GList *items = NULL;
	GError *err = NULL;
	const gchar *data;
	gsize len = 0;
	int r = 0;

	call_begin(&c, x->ctx, x->timeout_ms);
	secret_password_searchv(&qes_schema, attrs, SECRET_SEARCH_ALL |
	    SECRET_SEARCH_UNLOCK | SECRET_SEARCH_LOAD_SECRETS, c.cancel, call_done, &c);
	call_wait(&c);
	items = secret_password_search_finish(c.result, &err);
	if (err != NULL) {
		r = map_error(&c, err, x->timeout_ms, "lookup", msg, msg_len);
		goto out;
	}
	if ((item = newest_item(items)) == NULL) {
		snprintf(msg, msg_len, "no %s stored for \"%s\" in the Secret "
		    "Service", agent_secret_kind_name(kind), key);
		r = QES_ERR_NOT_FOUND;
		goto out;
	}
	if (SECRET_IS_ITEM(item))
		sv = secret_item_get_secret(SECRET_ITEM(item));
	if (sv == NULL) {
		/* locked, or not a Secret Service item: nothing loaded */
		snprintf(msg, msg_len, "the stored %s for \"%s\" could not be "
		    "read (is the keyring locked?)", agent_secret_kind_name(kind), key);
		r = QES_ERR_UNAVAILABLE;
		goto out;
	}
	data = secret_value_get(sv, &len);
	if (len == 0 || len > AGENT_SECRET_MAX ||
	    qes_secret_set(value, data, len) != 0) {
		qes_secret_clear(value);
		snprintf(msg, msg_len, "the stored %s for \"%s\" is empty or too "
		    "long", agent_secret_kind_name(kind), key);
		r = QES_ERR_FORMAT;
		goto out;
	}
 out:
	if (sv != NULL)
		secret_value_unref(sv);
	g_list_free_full(items, g_object_unref);
	call_end(&c);
	g_clear_error(&err);
	g_hash_table_unref(attrs);
	return r;
}

static int
ls_delete(void *arg, agent_secret_kind kind, const char *key, char *msg,
    size_t msg_len)
{
	struct ls_ctx *x = arg;
	struct call c;
	GHashTable *attrs = attributes(kind, key);
	GError *err = NULL;
	gboolean deleted;
	int r = 0;

	call_begin(&c, x->ctx, x->timeout_ms);
	secret_password_clearv(&qes_schema, attrs, c.cancel, call_done, &c);
	call_wait(&c);
	deleted = secret_password_clear_finish(c.result, &err);
	if (err != NULL)
		r = map_error(&c, err, x->timeout_ms, "delete", msg, msg_len);
	else if (!deleted) {
		snprintf(msg, msg_len, "no %s stored for \"%s\" in the Secret "
		    "Service", agent_secret_kind_name(kind), key);
		r = QES_ERR_NOT_FOUND;
	}
	call_end(&c);
	g_clear_error(&err);
	g_hash_table_unref(attrs);
	return r;
}

static int
ls_list(void *arg, agent_secret_kind kind, int (*add_key)(void *, const char *),
    void *acc, char *msg, size_t msg_len)
{
	struct ls_ctx *x = arg;
	struct call c;
	GHashTable *attrs = attributes(kind, NULL), *item_attrs;
	GList *items, *l;
	GError *err = NULL;
	const char *key;
	int r = 0;

	call_begin(&c, x->ctx, x->timeout_ms);
	/* attributes only: SECRET_SEARCH_LOAD_SECRETS is never set */
	secret_password_searchv(&qes_schema, attrs, SECRET_SEARCH_ALL, c.cancel,
	    call_done, &c);
	call_wait(&c);
	items = secret_password_search_finish(c.result, &err);
	if (err != NULL) {
		r = map_error(&c, err, x->timeout_ms, "search", msg, msg_len);
		goto out;
	}
	for (l = items; l != NULL && r == 0; l = l->next) {
		item_attrs = secret_retrievable_get_attributes(l->data);
		if (item_attrs == NULL)
			continue;
		key = g_hash_table_lookup(item_attrs, "key");
		if (key != NULL)
			r = add_key(acc, key);
		g_hash_table_unref(item_attrs);
	}
	g_list_free_full(items, g_object_unref);
 out:
	call_end(&c);
	g_clear_error(&err);
	g_hash_table_unref(attrs);
	return r;
}

static void
ls_free(void *arg)
{
	struct ls_ctx *x = arg;

	if (x == NULL)
		return;
	if (x->ctx != NULL)
		g_main_context_push_thread_default(x->ctx);
	if (x->service != NULL)
		g_object_unref(x->service);
	/* drop libsecret's shared proxy, so nothing outlives us */
	secret_service_disconnect();
	if (x->ctx != NULL) {
		/* the proxies' clean-ups were queued here: run them */
		while (g_main_context_iteration(x->ctx, FALSE))
			;
		g_main_context_pop_thread_default(x->ctx);
		g_main_context_unref(x->ctx);
	}
	free(x);
}

/*
 * Probe: connect to the session bus and open a Secret Service session. This
 * is what proves a service is there and answering (and starts one by D-Bus
 * activation where the desktop provides that).
 */
int
agent_secret_backend_libsecret(int timeout_ms, agent_secret_backend **out,
    char *msg, size_t msg_len)
{
	agent_secret_backend *b = NULL;
	struct ls_ctx *x = NULL;
	struct call c;
	GError *err = NULL;
	int r;

	*out = NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (x = calloc(1, sizeof(*x))) == NULL) {
		r = QES_ERR_ALLOC;
		goto out;
	}
	x->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
	x->ctx = g_main_context_new();
	call_begin(&c, x->ctx, x->timeout_ms);
	secret_service_get(SECRET_SERVICE_OPEN_SESSION, c.cancel, call_done, &c);
	call_wait(&c);
	x->service = secret_service_get_finish(c.result, &err);
	if (x->service == NULL) {
		r = map_error(&c, err, x->timeout_ms, "connect", msg, msg_len);
		if (r != QES_ERR_TIMEOUT)
			r = QES_ERR_UNAVAILABLE;
		call_end(&c);
		g_clear_error(&err);
		goto out;	/* ls_free drops a half-made connection */
	}
	call_end(&c);
	b->name = "secret-service";
	b->ctx = x;
	b->store = ls_store;
	b->lookup = ls_lookup;
	b->delete = ls_delete;
	b->list = ls_list;
	b->free = ls_free;
	*out = b;
	b = NULL;
	x = NULL;
	r = 0;
 out:
	ls_free(x);
	free(b);
	return r;
}
