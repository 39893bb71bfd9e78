/* Reproduces the libzmq 4.3.4 abort that made the coordinator's and peers' sockets run without ZMTP heartbeats
 * (Sources/Wire/Transport/SocketTuning.swift): a ROUTER with ROUTER_HANDOVER and a heartbeat interval; a DEALER
 * connects under routing id "X" and sends; a second DEALER connects under "X" (the routing id is handed over to it,
 * as when a worker joins again); the first sends more, then closes. Its connection's input was stalled by the
 * handover, so the closing sets the engine's I/O error without ending it, and the next heartbeat timer writes to it:
 * `Assertion failed: !_io_error (src/stream_engine_base.cpp:331)`.
 *
 *   cc scripts/libzmq-handover-abort.c -o /tmp/handover -lzmq
 *   /tmp/handover 100   # heartbeat every 100 ms: aborts (exit 134) within the first rounds
 *   /tmp/handover 0     # no heartbeat: "survived"
 *
 * Loopback port 15999 only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static void *dealer(void *context) {
    void *socket = zmq_socket(context, ZMQ_DEALER);
    int zero = 0, heartbeat = 50;
    zmq_setsockopt(socket, ZMQ_ROUTING_ID, "X", 1);
    zmq_setsockopt(socket, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(socket, ZMQ_HEARTBEAT_IVL, &heartbeat, sizeof heartbeat);
    zmq_connect(socket, "tcp://127.0.0.1:15999");
    return socket;
}

int main(int argc, char **argv) {
    int heartbeat = argc > 1 ? atoi(argv[1]) : 100, one = 1, zero = 0, silence = 10000;
    void *context = zmq_ctx_new();
    void *router = zmq_socket(context, ZMQ_ROUTER);
    zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(router, ZMQ_HEARTBEAT_IVL, &heartbeat, sizeof heartbeat);
    zmq_setsockopt(router, ZMQ_HEARTBEAT_TIMEOUT, &silence, sizeof silence);
    zmq_setsockopt(router, ZMQ_HEARTBEAT_TTL, &silence, sizeof silence);
    zmq_setsockopt(router, ZMQ_RCVHWM, &zero, sizeof zero);
    if (zmq_bind(router, "tcp://127.0.0.1:15999") != 0) { perror("bind"); return 1; }
    static char payload[65536];
    memset(payload, 7, sizeof payload);
    for (int round = 0; round < 50; round++) {
        void *old = dealer(context);
        for (int i = 0; i < 200; i++) zmq_send(old, payload, sizeof payload, ZMQ_DONTWAIT);
        void *new = dealer(context);
        for (int i = 0; i < 200; i++) {
            zmq_send(old, payload, sizeof payload, ZMQ_DONTWAIT);
            zmq_send(new, payload, 10, ZMQ_DONTWAIT);
        }
        for (int i = 0; i < 50; i++) {
            zmq_msg_t message;
            zmq_msg_init(&message);
            int received = zmq_msg_recv(&message, router, ZMQ_DONTWAIT);
            zmq_msg_close(&message);
            if (received < 0) break;
        }
        usleep(20000);
        zmq_close(old);
        usleep(300000);
        zmq_close(new);
    }
    printf("survived (heartbeat %d ms)\n", heartbeat);
    zmq_close(router);
    zmq_ctx_term(context);
    return 0;
}
