import CZeroMQ

/// A failed libzmq call: which call, errno, and libzmq's own text for it.
package struct ZMQError: Error, CustomStringConvertible, Equatable {
    package let call: String
    package let code: Int32

    /// The error of the libzmq call that just failed on this thread.
    package static func last(_ call: String) -> ZMQError { ZMQError(call: call, code: zmq_errno()) }

    package var description: String { "\(call): \(String(cString: zmq_strerror(code))) (errno \(code))" }

    /// The call would have blocked (non-blocking send or receive).
    package var wouldBlock: Bool { code == EAGAIN }
    /// The socket's peer is not connected (ROUTER_MANDATORY) or cannot be routed to.
    package var unroutable: Bool { code == EHOSTUNREACH }
}

/// Turns a libzmq return code into a thrown `ZMQError`.
@inline(__always)
func check(_ result: Int32, _ call: String) throws {
    if result == -1 { throw ZMQError.last(call) }
}
