/*
 * libgearman peer for bench/bench_client_worker.py (compiled at bench time, never shipped).
 *
 *   gear_bench worker HOST PORT FUNCTION
 *       completes every job at once (WORK_COMPLETE); runs until killed.
 *   gear_bench client HOST PORT FUNCTION WINDOW SECONDS
 *       submits foreground jobs for SECONDS with WINDOW jobs in flight (WINDOW 1: gearman_client_do
 *       in a loop; otherwise batches of WINDOW tasks run together), then prints "<jobs> <seconds>".
 */
#include <libgearman/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static gearman_return_t echo_fn(gearman_job_st *job, void *context) {
    /* Returning success makes libgearman send WORK_COMPLETE for the job. */
    (void)job;
    (void)context;
    return GEARMAN_SUCCESS;
}

static int run_worker(const char *host, int port, const char *fn) {
    gearman_worker_st *w = gearman_worker_create(NULL);
    if (w == NULL || gearman_failed(gearman_worker_add_server(w, host, (in_port_t)port))) {
        fprintf(stderr, "worker: cannot add server\n");
        return 1;
    }
    gearman_function_t f = gearman_function_create(echo_fn);
    if (gearman_failed(gearman_worker_define_function(w, fn, strlen(fn), f, 0, NULL))) {
        fprintf(stderr, "worker: cannot define function\n");
        return 1;
    }
    for (;;) {
        gearman_return_t rc = gearman_worker_work(w);
        if (gearman_failed(rc) && rc != GEARMAN_TIMEOUT) {
            fprintf(stderr, "worker: %s\n", gearman_worker_error(w));
            return 1;
        }
    }
}

static int run_client(const char *host, int port, const char *fn, int window, double seconds) {
    gearman_client_st *c = gearman_client_create(NULL);
    if (c == NULL || gearman_failed(gearman_client_add_server(c, host, (in_port_t)port))) {
        fprintf(stderr, "client: cannot add server\n");
        return 1;
    }
    const char *payload = "x";
    long done = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        if (window == 1) {
            size_t size;
            gearman_return_t rc;
            void *result = gearman_client_do(c, fn, NULL, payload, 1, &size, &rc);
            if (gearman_failed(rc)) {
                fprintf(stderr, "client: %s\n", gearman_client_error(c));
                return 1;
            }
            free(result);
            done++;
        } else {
            for (int i = 0; i < window; i++) {
                gearman_return_t rc;
                gearman_client_add_task(c, NULL, NULL, fn, NULL, payload, 1, &rc);
                if (gearman_failed(rc)) {
                    fprintf(stderr, "client: add_task failed\n");
                    return 1;
                }
            }
            if (gearman_failed(gearman_client_run_tasks(c))) {
                fprintf(stderr, "client: %s\n", gearman_client_error(c));
                return 1;
            }
            gearman_client_task_free_all(c);
            done += window;
        }
    }
    printf("%ld %f\n", done, now() - start);
    gearman_client_free(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "worker") == 0) {
        return run_worker(argv[2], atoi(argv[3]), argv[4]);
    }
    if (argc >= 7 && strcmp(argv[1], "client") == 0) {
        return run_client(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]), atof(argv[6]));
    }
    fprintf(stderr, "usage: gear_bench worker HOST PORT FN | client HOST PORT FN WINDOW SECONDS\n");
    return 2;
}
