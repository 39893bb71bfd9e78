// Raw libzmq peer for scripts/bench-wire.sh: the same pattern as `shardtrain-bench wire` with plain frames and no
// protocol. The coordinator binds a ROUTER, forks W DEALER workers, sends each an N-byte frame (one zero-copy
// buffer shared by zmq_msg_copy) and waits for N bytes back from each. Prints JSON: median and p90 in ms.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <zmq.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void worker(const char *endpoint, size_t bytes) {
    void *context = zmq_ctx_new(), *dealer = zmq_socket(context, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(dealer, endpoint);
    zmq_send(dealer, "hello", 5, 0);
    char *reply = calloc(1, bytes);
    for (;;) {
        zmq_msg_t in;
        zmq_msg_init(&in);
        if (zmq_msg_recv(&in, dealer, 0) < 0) break;
        size_t size = zmq_msg_size(&in);
        if (size != bytes) { zmq_msg_close(&in); break; }
        float *weights = malloc(bytes);
        memcpy(weights, zmq_msg_data(&in), bytes);  // as a worker must: into its own buffer
        free(weights);
        zmq_msg_close(&in);
        zmq_send(dealer, reply, bytes, 0);
    }
    zmq_close(dealer);
    zmq_ctx_term(context);
    exit(0);
}

static void release(void *data, void *hint) { (void)data; (void)hint; }

int main(int argc, char **argv) {
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5598";
    int workers = argc > 2 ? atoi(argv[2]) : 1;
    size_t bytes = argc > 3 ? strtoul(argv[3], 0, 10) : 2143272;
    int iterations = argc > 4 ? atoi(argv[4]) : 200;
    void *context = zmq_ctx_new(), *router = zmq_socket(context, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(router, endpoint) != 0) { fprintf(stderr, "bind %s: %s\n", endpoint, zmq_strerror(zmq_errno())); return 1; }
    for (int w = 0; w < workers; w++) if (fork() == 0) worker(endpoint, bytes);
    char identities[16][256];
    size_t identity_sizes[16];
    for (int w = 0; w < workers; w++) {
        identity_sizes[w] = zmq_recv(router, identities[w], 256, 0);
        char hello[16];
        zmq_recv(router, hello, sizeof hello, 0);
    }
    char *payload = calloc(1, bytes);
    double *times = malloc(sizeof(double) * iterations);
    for (int i = 0; i < iterations; i++) {
        double start = now_ms();
        zmq_msg_t shared;
        zmq_msg_init_data(&shared, payload, bytes, release, 0);
        for (int w = 0; w < workers; w++) {
            zmq_msg_t copy;
            zmq_msg_init(&copy);
            zmq_msg_copy(&copy, &shared);
            zmq_send(router, identities[w], identity_sizes[w], ZMQ_SNDMORE);
            zmq_msg_send(&copy, router, 0);
        }
        zmq_msg_close(&shared);
        for (int w = 0; w < workers; w++) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            zmq_msg_recv(&part, router, 0);  // identity
            zmq_msg_close(&part);
            zmq_msg_init(&part);
            zmq_msg_recv(&part, router, 0);  // payload, read in place
            zmq_msg_close(&part);
        }
        times[i] = now_ms() - start;
    }
    for (int w = 0; w < workers; w++) {
        zmq_send(router, identities[w], identity_sizes[w], ZMQ_SNDMORE);
        zmq_send(router, "x", 1, 0);
    }
    for (int w = 0; w < workers; w++) wait(0);
    qsort(times + 10, iterations - 10, sizeof(double), compare);
    int n = iterations - 10;
    printf("{\"median_ms\": %f, \"p90_ms\": %f, \"workers\": %d, \"bytes\": %zu, \"endpoint\": \"%s\", "
           "\"implementation\": \"raw libzmq (C)\"}\n", times[10 + n / 2], times[10 + n * 9 / 10], workers, bytes, endpoint);
    zmq_close(router);
    zmq_ctx_term(context);
    return 0;
}
