import CZeroMQ
import Foundation

/// The socket kinds the protocol uses: the coordinator binds a ROUTER, workers connect DEALERs.
package enum SocketKind: Sendable {
    case router, dealer
    /// A socket monitor's reader (see `HandshakeMonitor`).
    case pair

    var zmqType: Int32 {
        switch self {
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .pair: ZMQ_PAIR
        }
    }
}

/// A libzmq socket, closed exactly once.
///
/// A ZeroMQ socket must only be used by one thread. This type is deliberately not `Sendable`, so Swift 6's
/// strict concurrency refuses to hand it to another task or thread; debug builds also check every call is made on
/// the thread that created it.
package final class Socket {
    let handle: UnsafeMutableRawPointer
    // Keeps the context alive until this socket is closed (zmq_ctx_term would block otherwise).
    private let context: Context
    #if DEBUG
    private let owner = pthread_self()
    #endif

    package init(_ context: Context, _ kind: SocketKind) throws {
        guard let handle = zmq_socket(context.handle, kind.zmqType) else { throw ZMQError.last("zmq_socket") }
        self.handle = handle
        self.context = context
        try set(ZMQ_LINGER, 0)
    }

    private var isClosed = false

    deinit { close() }

    /// Closes the socket (once; later calls do nothing). Messages still queued leave within its ZMQ_LINGER, as long as
    /// the context is then terminated rather than abandoned at exit.
    package func close() {
        guard !isClosed else { return }
        isClosed = true
        zmq_close(handle)
    }

    @inline(__always)
    private func checkThread() {
        precondition(!isClosed, "a closed ZeroMQ socket was used")
        #if DEBUG
        precondition(pthread_equal(owner, pthread_self()) != 0, "a ZeroMQ socket was used off the thread that made it")
        #endif
    }

    package func bind(_ endpoint: String) throws {
        checkThread()
        try check(zmq_bind(handle, endpoint), "zmq_bind(\(endpoint))")
    }

    package func connect(_ endpoint: String) throws {
        checkThread()
        try check(zmq_connect(handle, endpoint), "zmq_connect(\(endpoint))")
    }

    /// The endpoint actually bound (resolves `tcp://127.0.0.1:*` to its port).
    package var lastEndpoint: String {
        var buffer = [CChar](repeating: 0, count: 512)
        var size = buffer.count
        guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Publishes this socket's connection events on `endpoint` (an inproc:// address) for a PAIR socket to read.
    package func monitor(_ endpoint: String, events: Int32) throws {
        checkThread()
        try check(zmq_socket_monitor(handle, endpoint, events), "zmq_socket_monitor(\(endpoint))")
    }

    /// Stops publishing this socket's events. Call it before the events' reader closes: libzmq sends each event
    /// with a blocking send from its I/O thread, so an event for a reader that is gone (a closing connection's
    /// "disconnected") would stall that thread, and with it every socket of the context, for good.
    /// Like `close`, callable from a deinit on any thread once nothing else uses the socket.
    package func stopMonitor() {
        guard !isClosed else { return }
        _ = zmq_socket_monitor(handle, nil, 0)
    }

    /// A string option (ZMQ_CURVE_SERVERKEY and the like, in Z85).
    package func set(_ option: Int32, text value: String) throws {
        try set(option, bytes: Array(value.utf8))
    }

    /// A byte-string option (ZMQ_ROUTING_ID).
    package func set(_ option: Int32, bytes value: [UInt8]) throws {
        checkThread()
        try check(value.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }, "zmq_setsockopt(\(option))")
    }

    package func set(_ option: Int32, _ value: Int32) throws {
        checkThread()
        var v = value
        try check(zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size), "zmq_setsockopt(\(option))")
    }

    /// An integer option's value (tests read back what the tuning set).
    package func option(_ option: Int32) throws -> Int32 {
        checkThread()
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try check(zmq_getsockopt(handle, option, &value, &size), "zmq_getsockopt(\(option))")
        return value
    }

    package func set(_ option: Int32, int64 value: Int64) throws {
        checkThread()
        var v = value
        try check(zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size), "zmq_setsockopt(\(option))")
    }

    /// Sends the frames as one multipart message. With `wait: false` a full queue throws `wouldBlock`.
    package func send(_ frames: [Message], wait: Bool = true) throws {
        checkThread()
        for (index, frame) in frames.enumerated() {
            var flags: Int32 = wait ? 0 : ZMQ_DONTWAIT
            if index < frames.count - 1 { flags |= ZMQ_SNDMORE }
            while zmq_msg_send(frame.raw, handle, flags) == -1 {
                let error = ZMQError.last("zmq_msg_send")
                if error.code != EINTR { throw error }
            }
        }
    }

    /// Receives one multipart message, or nil if none is waiting (`wait: false`). A message with more than
    /// `maximumFrames` frames is read to its end and dropped: the result is then `.tooManyFrames`.
    package func receive(maximumFrames: Int, wait: Bool = false) throws -> Received? {
        checkThread()
        var frames: [Message] = []
        var dropped = 0
        while true {
            let frame = Message()
            while zmq_msg_recv(frame.raw, handle, wait || !frames.isEmpty || dropped > 0 ? 0 : ZMQ_DONTWAIT) == -1 {
                let error = ZMQError.last("zmq_msg_recv")
                if error.wouldBlock && frames.isEmpty && dropped == 0 { return nil }
                if error.code != EINTR { throw error }
            }
            if frames.count < maximumFrames { frames.append(frame) } else { dropped += 1 }
            if zmq_msg_more(frame.raw) == 0 { break }
        }
        return dropped == 0 ? .frames(frames) : .tooManyFrames(first: frames, total: frames.count + dropped)
    }

    package enum Received {
        case frames([Message])
        /// The message had more frames than allowed; the first ones are kept so the sender can be named.
        case tooManyFrames(first: [Message], total: Int)
    }

    /// Waits up to `timeout` for any of `sockets` to have a message; returns which do. Never blocks longer.
    package static func poll(_ sockets: [Socket], timeout: Duration) throws -> [Bool] {
        var items = sockets.map { zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
        // A deadline already passed gives a negative timeout, which zmq_poll would take as "wait forever".
        let milliseconds = max(0, Int((timeout / .milliseconds(1)).rounded(.up)))
        while zmq_poll(&items, Int32(items.count), milliseconds) == -1 {
            let error = ZMQError.last("zmq_poll")
            if error.code != EINTR { throw error }
        }
        return items.map { $0.revents & Int16(ZMQ_POLLIN) != 0 }
    }
}
