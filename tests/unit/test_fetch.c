/*
 * test_fetch.c - unit tests for fetch.c against a one-connection HTTP
 * server on 127.0.0.1 in a thread: the body of a 200, the status of
 * anything else, the size cap while receiving (also without a
 * Content-Length), the total timeout, redirects (followed to http, refused
 * to other schemes), the request's method, Content-Type and body, and the
 * URLs refused before any connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "qes/buf.h"
#include "qes/err.h"
#include "qes/fetch.h"

struct server {
	int lfd;
	int port;
	const char *answer;	/* raw HTTP response; NULL: never answer */
	size_t answer_len;
	size_t repeat_body;	/* then this many 'x' bytes (chunk-less body) */
	int hold_ms;		/* keep the connection open this long after */
	int answers;		/* connections to serve */
	char request[4096];	/* what the first client sent */
	pthread_t th;
};

static void
read_request(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	/* headers, then whatever body arrives within a short while */
	while (got + 1 < len) {
		struct timeval tv = { 0, 200000 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		n = read(fd, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
}

static void *
serve(void *arg)
{
	struct server *s = arg;
	char scratch[4096], chunk[4096];
	int i, fd;

	memset(chunk, 'x', sizeof(chunk));
	for (i = 0; i < s->answers; i++) {
		if ((fd = accept(s->lfd, NULL, NULL)) < 0)
			return NULL;
		read_request(fd, i == 0 ? s->request : scratch,
		    i == 0 ? sizeof(s->request) : sizeof(scratch));
		if (s->answer != NULL) {
			size_t left = s->repeat_body;

			/* send with MSG_NOSIGNAL: the client may have hung up
			 * (the size cap), and SIGPIPE would end the test */
			if (send(fd, s->answer, s->answer_len, MSG_NOSIGNAL) < 0)
				left = 0;
			while (left > 0) {
				size_t n = left < sizeof(chunk) ? left : sizeof(chunk);

				if (send(fd, chunk, n, MSG_NOSIGNAL) <= 0)
					break;
				left -= n;
			}
		}
		if (s->hold_ms > 0)
			usleep((useconds_t)s->hold_ms * 1000);
		close(fd);
	}
	return NULL;
}

/* listen on an ephemeral port; serve() starts with run() */
static void
listen_on(struct server *s)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->lfd >= 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
}

static void
run(struct server *s)
{
	assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void
start(struct server *s, const char *answer, size_t repeat_body, int hold_ms, int answers)
{
	listen_on(s);
	s->answer = answer;
	s->answer_len = answer != NULL ? strlen(answer) : 0;
	s->repeat_body = repeat_body;
	s->hold_ms = hold_ms;
	s->answers = answers;
	run(s);
}

static void
stop(struct server *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
}

static void
url(const struct server *s, const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "http://127.0.0.1:%d%s", s->port, path);
}

static void
test_ok_and_request(void **state)
{
	struct server s;
	qes_buf *out = qes_buf_new();
	char u[128], err[256];
	static const uint8_t body[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };

	(void)state;
	start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
	    0, 0, 1);
	url(&s, "/tsa", u, sizeof(u));
	assert_int_equal(qes_fetch_post(u, NULL, "application/timestamp-query",
	    "application/timestamp-reply", body, sizeof(body), out, err, sizeof(err)), 0);
	stop(&s);
	assert_int_equal(qes_buf_len(out), 5);
	assert_memory_equal(qes_buf_data(out), "hello", 5);
	assert_non_null(strstr(s.request, "POST /tsa HTTP/1.1"));
	assert_non_null(strstr(s.request, "Content-Type: application/timestamp-query"));
	assert_non_null(strstr(s.request, "Accept: application/timestamp-reply"));
	assert_non_null(strstr(s.request, "Content-Length: 5"));
	qes_buf_free(out);
}

static void
test_status_and_cap(void **state)
{
	struct server s;
	qes_buf *out = qes_buf_new();
	qes_fetch_opts o;
	char u[128], err[256];

	(void)state;
	start(&s, "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
	    0, 0, 1);
	url(&s, "/x.crl", u, sizeof(u));
	assert_int_equal(qes_fetch_get(u, NULL, out, err, sizeof(err)), QES_ERR_FETCH);
	assert_non_null(strstr(err, "503"));
	assert_int_equal(qes_buf_len(out), 0);
	stop(&s);

	/* announced too large */
	memset(&o, 0, sizeof(o));
	o.max_response_bytes = 1000;
	start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
	    5000, 0, 1);
	url(&s, "/x.crl", u, sizeof(u));
	assert_int_equal(qes_fetch_get(u, &o, out, err, sizeof(err)), QES_ERR_LIMIT);
	assert_int_equal(qes_buf_len(out), 0);
	stop(&s);
	/* not announced: stopped while receiving */
	start(&s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 200000, 0, 1);
	url(&s, "/x.crl", u, sizeof(u));
	assert_int_equal(qes_fetch_get(u, &o, out, err, sizeof(err)), QES_ERR_LIMIT);
	assert_int_equal(qes_buf_len(out), 0);
	stop(&s);
	qes_buf_free(out);
}

static void
test_timeout(void **state)
{
	struct server s;
	qes_buf *out = qes_buf_new();
	qes_fetch_opts o;
	struct timespec t0, t1;
	char u[128], err[256];
	long ms;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.total_timeout_ms = 400;
	start(&s, NULL, 0, 1500, 1);	/* accepts, reads, never answers */
	url(&s, "/ocsp", u, sizeof(u));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(qes_fetch_get(u, &o, out, err, sizeof(err)), QES_ERR_TIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 350 && ms < 1400);
	stop(&s);
	qes_buf_free(out);
}

static void
test_redirects(void **state)
{
	struct server s;
	qes_buf *out = qes_buf_new();
	char u[128], err[256], answer[256];

	(void)state;
	start(&s, "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n", 0, 0, 1);
	url(&s, "/x.crl", u, sizeof(u));
	assert_int_equal(qes_fetch_get(u, NULL, out, err, sizeof(err)), QES_ERR_FETCH);
	assert_int_equal(qes_buf_len(out), 0);
	stop(&s);

	/* to http on the same server: followed - every connection gets the
	 * same redirect, so the loop is cut off after QES_FETCH_MAX_REDIRECTS */
	listen_on(&s);
	snprintf(answer, sizeof(answer), "HTTP/1.1 301 Moved\r\nLocation: "
	    "http://127.0.0.1:%d/y.crl\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	    s.port);
	s.answer = answer;
	s.answer_len = strlen(answer);
	s.answers = QES_FETCH_MAX_REDIRECTS + 1;
	run(&s);
	url(&s, "/x.crl", u, sizeof(u));
	assert_int_equal(qes_fetch_get(u, NULL, out, err, sizeof(err)), QES_ERR_FETCH);
	stop(&s);
	qes_buf_free(out);
}

static void
test_urls(void **state)
{
	qes_buf *out = qes_buf_new();
	char err[256], longurl[QES_FETCH_MAX_URL_LEN + 32];

	(void)state;
	assert_true(qes_fetch_url_ok("http://127.0.0.1:18080/root.crl"));
	assert_true(qes_fetch_url_ok("HTTPS://tsa.example/"));
	assert_false(qes_fetch_url_ok("ftp://x/"));
	assert_false(qes_fetch_url_ok("file:///etc/passwd"));
	assert_false(qes_fetch_url_ok("ldap://x/cn=ca"));
	assert_false(qes_fetch_url_ok("http://x/a b"));
	assert_false(qes_fetch_url_ok("http://x/a\r\nHost: y"));
	assert_false(qes_fetch_url_ok(""));
	assert_false(qes_fetch_url_ok(NULL));
	memset(longurl, 'a', sizeof(longurl) - 1);
	memcpy(longurl, "http://", 7);
	longurl[sizeof(longurl) - 1] = '\0';
	assert_false(qes_fetch_url_ok(longurl));
	assert_int_equal(qes_fetch_get("gopher://x/", NULL, out, err, sizeof(err)),
	    QES_ERR_INVALID_ARG);
	assert_int_equal(qes_fetch_post("http://127.0.0.1:1/", NULL, NULL, NULL,
	    (const uint8_t *)"x", 1, out, err, sizeof(err)), QES_ERR_INVALID_ARG);
	assert_int_equal(qes_fetch_get("http://127.0.0.1:1/", NULL, out, err, sizeof(err)),
	    QES_ERR_FETCH);
	assert_true(strlen(err) > 0);
	qes_buf_free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok_and_request),
		cmocka_unit_test(test_status_and_cap),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_redirects),
		cmocka_unit_test(test_urls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
