import CZeroMQ

/// The socket options the protocol relies on, set on purpose.
package enum SocketTuning {
    /// Messages queued per peer before sends block (or fail with `wait: false`). Gradient and weight messages are
    /// megabytes each; a step has one or two in flight per worker, so 64 bounds memory while never stalling a step.
    package static let highWaterMark: Int32 = 64
    /// ZMTP heartbeats before a job sets them: a ping every second, a peer silent for 10 s is dropped by libzmq.
    package static let defaultHeartbeat = Duration.seconds(1), defaultSilence = Duration.seconds(10)
    /// Milliseconds a connection may take over its handshake (CurveZMQ's included) before it is dropped.
    package static let handshakeLimit: Int32 = 5000

    /// The coordinator's ROUTER. ROUTER_MANDATORY makes a send to a vanished worker an error (`unroutable`)
    /// instead of a silent drop; ROUTER_HANDOVER lets a worker that reconnects under its routing id take its place;
    /// MAXMSGSIZE makes libzmq refuse any frame beyond the job's largest legal message, before allocating it;
    /// LINGER 0 so a closing coordinator never waits on dead workers. `queuedPerWorker`: messages that may wait for one
    /// worker (a step in parts sends it one per part, while it may still be busy sending its own). Its receiving side
    /// never stalls (RCVHWM 0): the poll loop reads continuously, and what a member may send is bounded by its
    /// assignments (PeerGuard cuts off senders of malformed messages).
    /// It sends no ZMTP heartbeats (`withoutHeartbeatTimer`): a worker that joins again hands its routing id over
    /// to its new connection, and libzmq 4.3.4 then aborts this process if the old connection closes with input the
    /// handover left undelivered and its heartbeat timer fires (`Assertion failed: !_io_error`,
    /// stream_engine_base.cpp:331). The application's own heartbeats and `--worker-timeout` find silent workers;
    /// TCP keepalive closes connections to hosts that are gone.
    package static func coordinator(_ socket: Socket, maximumMessageBytes: Int, heartbeat: Duration = defaultHeartbeat,
                                   silence: Duration = defaultSilence, queuedPerWorker: Int = Int(highWaterMark)) throws {
        try socket.set(ZMQ_ROUTER_MANDATORY, 1)
        try socket.set(ZMQ_ROUTER_HANDOVER, 1)
        // A connection that has not finished its handshake within this is dropped: idle or stalled peers cannot
        // hold descriptors for long (libzmq's default is 30 s).
        try socket.set(ZMQ_HANDSHAKE_IVL, handshakeLimit)
        try common(socket, maximumMessageBytes: maximumMessageBytes, heartbeat: heartbeat, silence: silence)
        try socket.set(ZMQ_SNDHWM, Int32(clamping: max(queuedPerWorker, Int(highWaterMark))))
        try socket.set(ZMQ_RCVHWM, 0)
        try withoutHeartbeatTimer(socket, silence: silence)
    }

    /// A worker's DEALER, with a routing id that stays the same across reconnects so the coordinator knows it.
    /// IMMEDIATE queues nothing until the connection is up, so a worker that starts before its coordinator does
    /// not pile up stale messages; reconnects back off from 100 ms to 2 s.
    package static func worker(_ socket: Socket, maximumMessageBytes: Int, routingID: [UInt8]? = nil,
                              heartbeat: Duration = defaultHeartbeat, silence: Duration = defaultSilence) throws {
        if let routingID { try socket.set(ZMQ_ROUTING_ID, bytes: routingID) }
        try socket.set(ZMQ_IMMEDIATE, 1)
        try socket.set(ZMQ_RECONNECT_IVL, 100)
        try socket.set(ZMQ_RECONNECT_IVL_MAX, 2000)
        try common(socket, maximumMessageBytes: maximumMessageBytes, heartbeat: heartbeat, silence: silence)
    }

    /// A socket between workers (sharded layout). Nothing it sends ever waits: a peer's queue holds a step's parts and
    /// means many times over, so a full one is a peer that is gone, and the coordinator has the step computed again
    /// without it. Its receiving side never stalls either (RCVHWM 0), and it sends no ZMTP heartbeats, as the
    /// coordinator's (a peer killed mid-step made libzmq 4.3.4 abort through the same assertion); what peers may send
    /// is bounded by the step (the layout admits only its members, with keys their keys).
    package static func peer(_ socket: Socket, maximumMessageBytes: Int) throws {
        try common(socket, maximumMessageBytes: maximumMessageBytes, heartbeat: defaultHeartbeat, silence: defaultSilence)
        try socket.set(ZMQ_SNDHWM, Int32(1 << 16))
        try socket.set(ZMQ_RCVHWM, 0)
        try withoutHeartbeatTimer(socket, silence: defaultSilence)
        try socket.set(ZMQ_RECONNECT_IVL, 100)
        try socket.set(ZMQ_RECONNECT_IVL_MAX, 2000)
    }

    /// Makes `socket` a CurveZMQ server with this key pair: every connection is authenticated (by the context's
    /// ZAP handler, which must be running) and encrypted.
    package static func curveServer(_ socket: Socket, keyPair: CurveKeyPair) throws {
        try socket.set(ZMQ_CURVE_SERVER, 1)
        try socket.set(ZMQ_CURVE_SECRETKEY, text: keyPair.secretZ85)
        try socket.set(ZMQ_ZAP_DOMAIN, text: "shardtrain")
        // Where libzmq offers it (a draft option in 4.3), a missing ZAP handler refuses instead of admitting.
        try? socket.set(93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, 1)
    }

    /// Makes `socket` a CurveZMQ client of the server with public key `server`.
    package static func curveClient(_ socket: Socket, keyPair: CurveKeyPair, server: CurvePublicKey) throws {
        try socket.set(ZMQ_CURVE_SERVERKEY, text: server.z85)
        try socket.set(ZMQ_CURVE_PUBLICKEY, text: keyPair.publicKey.z85)
        try socket.set(ZMQ_CURVE_SECRETKEY, text: keyPair.secretZ85)
    }

    /// Lets the last messages (a shutdown) leave when the socket closes, waiting at most `within`.
    package static func flushOnClose(_ socket: Socket, within: Duration) throws {
        try socket.set(ZMQ_LINGER, Int32((within / .milliseconds(1)).rounded()))
    }

    /// No ZMTP heartbeat timer on `socket` (libzmq 4.3.4's timer writes to a connection whose input failed, and
    /// asserts: see `coordinator`; reproduced by a ROUTER with ROUTER_HANDOVER whose old connection closes after its
    /// routing id moved, with heartbeats on, and not without); TCP keepalive after `silence` instead, so a connection
    /// to a host that is gone still closes (probes a second apart, three unanswered).
    private static func withoutHeartbeatTimer(_ socket: Socket, silence: Duration) throws {
        try socket.set(ZMQ_HEARTBEAT_IVL, 0)
        try socket.set(ZMQ_TCP_KEEPALIVE, 1)
        try socket.set(ZMQ_TCP_KEEPALIVE_IDLE, Int32(max(1, (silence / .seconds(1)).rounded(.up))))
        try socket.set(ZMQ_TCP_KEEPALIVE_INTVL, 1)
        try socket.set(ZMQ_TCP_KEEPALIVE_CNT, 3)
    }

    private static func common(_ socket: Socket, maximumMessageBytes: Int, heartbeat: Duration,
                               silence: Duration) throws {
        func milliseconds(_ d: Duration) -> Int32 { Int32(min(max(1, (d / .milliseconds(1)).rounded()), 3_600_000)) }
        try socket.set(ZMQ_LINGER, 0)
        try socket.set(ZMQ_SNDHWM, highWaterMark)
        try socket.set(ZMQ_RCVHWM, highWaterMark)
        try socket.set(ZMQ_MAXMSGSIZE, int64: Int64(maximumMessageBytes))
        try socket.set(ZMQ_HEARTBEAT_IVL, milliseconds(heartbeat))
        try socket.set(ZMQ_HEARTBEAT_TIMEOUT, milliseconds(silence))
        try socket.set(ZMQ_HEARTBEAT_TTL, milliseconds(silence))
    }
}
