/*
 * qes-bench-sign.c - the load generator and the PKCS#11 baseline that
 * bench/sign_path.sh runs (docs/benchmarks.md). A benchmark, not a test:
 * it prints figures, and it fails (exit 1) rather than print a figure it
 * cannot stand behind.
 *
 *   qes-bench-sign path ...    N clients, each in a closed loop: POST
 *                              /v1/signatures with a batch of random
 *                              digests, long-poll GET /v1/signatures/{id}
 *                              ?wait= until the job is final. A job counts
 *                              only when it completed with one signature
 *                              per digest; after the run every returned
 *                              value is verified with OpenSSL against the
 *                              signer's certificate (outside the timed
 *                              window, so verifying does not take CPU from
 *                              the system being measured).
 *   qes-bench-sign direct ...  the same key through the PKCS#11 module
 *                              itself: dlopen, C_Login once, then
 *                              C_SignInit + C_Sign in a loop in N threads,
 *                              one session each. The first and the last
 *                              value of every thread is verified.
 *
 * Both print one line "result mode=... key=value ..." for the script and
 * nothing else on standard output; errors go to standard error. Latency is
 * per job (path: from the POST to the final answer) or per signature
 * (direct), with p50 and p99 by nearest rank.
 *
 * Measuring window: a warm-up (TLS handshakes, first logins, SQLite pages)
 * is not counted; then work started within [start, start + duration) is
 * counted, and the run goes on past the duration until at least --min
 * counted jobs (or signatures) were started, but never beyond --max-seconds.
 * Throughput is counted work divided by the time from the window's start to
 * the last counted completion.
 *
 * Secrets: the API key comes from $QES_API_KEY and the token PIN from
 * $QES_BENCH_PIN; both are copied into a qes_secret, wiped in the
 * environment and unset, and never printed. The digests are random bytes,
 * so no document content exists at all.
 *
 * bench_path.c and bench_direct.c are the two modes, bench_util.c what
 * they share (bench.h).
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "path") == 0)
		return bench_run_path(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "direct") == 0)
		return bench_run_direct(argc - 1, argv + 1);
	fprintf(stderr, "usage: qes-bench-sign path|direct [options]; see docs/benchmarks.md\n");
	return 2;
}
