import CZeroMQ

/// The socket options the protocol relies on, set on purpose.
public enum SocketTuning {
    /// Messages queued per peer before sends block (or fail with `wait: false`). Gradient and weight messages are
    /// megabytes each; a step has one or two in flight per worker, so 64 bounds memory while never stalling a step.
    public static let highWaterMark: Int32 = 64
    /// ZMTP heartbeats: a ping every second, a peer silent for 10 s is dropped by libzmq itself.
    public static let heartbeatInterval: Int32 = 1000, heartbeatTimeout: Int32 = 10_000, heartbeatTTL: Int32 = 10_000

    /// The coordinator's ROUTER. ROUTER_MANDATORY makes a send to a vanished worker an error (`unroutable`)
    /// instead of a silent drop; MAXMSGSIZE makes libzmq refuse any frame beyond the job's largest legal message,
    /// before allocating it; LINGER 0 so a closing coordinator never waits on dead workers.
    public static func coordinator(_ socket: Socket, maximumMessageBytes: Int) throws {
        try socket.set(ZMQ_ROUTER_MANDATORY, 1)
        try common(socket, maximumMessageBytes: maximumMessageBytes)
    }

    /// A worker's DEALER. IMMEDIATE queues nothing until the connection is up, so a worker that starts before its
    /// coordinator does not pile up stale messages; reconnects back off from 100 ms to 5 s.
    public static func worker(_ socket: Socket, maximumMessageBytes: Int) throws {
        try socket.set(ZMQ_IMMEDIATE, 1)
        try socket.set(ZMQ_RECONNECT_IVL, 100)
        try socket.set(ZMQ_RECONNECT_IVL_MAX, 5000)
        try common(socket, maximumMessageBytes: maximumMessageBytes)
    }

    private static func common(_ socket: Socket, maximumMessageBytes: Int) throws {
        try socket.set(ZMQ_LINGER, 0)
        try socket.set(ZMQ_SNDHWM, highWaterMark)
        try socket.set(ZMQ_RCVHWM, highWaterMark)
        try socket.set(ZMQ_MAXMSGSIZE, int64: Int64(maximumMessageBytes))
        try socket.set(ZMQ_HEARTBEAT_IVL, heartbeatInterval)
        try socket.set(ZMQ_HEARTBEAT_TIMEOUT, heartbeatTimeout)
        try socket.set(ZMQ_HEARTBEAT_TTL, heartbeatTTL)
    }
}
