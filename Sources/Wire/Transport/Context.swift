import CZeroMQ

/// A libzmq context: owns the I/O threads; terminated exactly once when the last reference goes.
///
/// libzmq contexts are thread-safe, so this one may be shared; the sockets made from it may not.
package final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    package init(ioThreads: Int = 1) throws {
        guard let handle = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        self.handle = handle
        try check(zmq_ctx_set(handle, ZMQ_IO_THREADS, Int32(ioThreads)), "zmq_ctx_set(IO_THREADS)")
    }

    private var isTerminated = false

    deinit { terminate() }

    /// Terminates the context (once): blocks until its sockets are closed and their queued messages have left or
    /// their linger has passed. From deinit every Socket is gone (each holds a reference); called directly, close
    /// the sockets first.
    package func terminate() {
        guard !isTerminated else { return }
        isTerminated = true
        while zmq_ctx_term(handle) == -1 && zmq_errno() == EINTR {}
    }

    /// Whether this libzmq has CurveZMQ security.
    package static var hasCurve: Bool { zmq_has("curve") == 1 }

    /// libzmq's version, e.g. "4.3.4".
    package static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}
