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
    /// LINGER 0 so a closing coordinator never waits on dead workers. libzmq's own heartbeat drops a connection
    /// silent for as long as the application declares a worker lost (`silence`), never sooner.
    /// `queuedPerWorker`: messages that may wait for one worker (a step in parts sends it one per part, while it may
    /// still be busy sending its own). Its receiving side never stalls (RCVHWM 0), as peers' sockets: libzmq 4.3.4
    /// asserts when a connection fails while its input is stalled (stream_engine_base.cpp:331), which a worker
    /// declared lost and reconnecting under load did; the poll loop reads continuously, and what a member may send
    /// is bounded by its assignments (PeerGuard cuts off senders of malformed messages).
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
    /// without it. Its receiving side never stalls either (RCVHWM 0): libzmq 4.3.4 asserts when a connection fails
    /// while its input is stalled (stream_engine_base.cpp:331), which a peer killed mid-step did; what peers may
    /// send is bounded by the step (the layout admits only its members, with keys their keys).
    package static func peer(_ socket: Socket, maximumMessageBytes: Int) throws {
        try common(socket, maximumMessageBytes: maximumMessageBytes, heartbeat: defaultHeartbeat, silence: defaultSilence)
        try socket.set(ZMQ_SNDHWM, Int32(1 << 16))
        try socket.set(ZMQ_RCVHWM, 0)
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
