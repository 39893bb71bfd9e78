import CZeroMQ

/// A failed libzmq call: which call, errno, and libzmq's own text for it.
public struct ZMQError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let code: Int32

    /// The error of the libzmq call that just failed on this thread.
    public static func last(_ call: String) -> ZMQError { ZMQError(call: call, code: zmq_errno()) }

    public var description: String { "\(call): \(String(cString: zmq_strerror(code))) (errno \(code))" }

    /// The call would have blocked (non-blocking send or receive).
    public var wouldBlock: Bool { code == EAGAIN }
    /// The socket's peer is not connected (ROUTER_MANDATORY) or cannot be routed to.
    public var unroutable: Bool { code == EHOSTUNREACH }
}

/// Turns a libzmq return code into a thrown `ZMQError`.
@inline(__always)
func check(_ result: Int32, _ call: String) throws {
    if result == -1 { throw ZMQError.last(call) }
}
