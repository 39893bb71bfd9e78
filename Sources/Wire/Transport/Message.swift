import CZeroMQ
import Synchronization

/// One message frame: an owned, heap-allocated `zmq_msg_t`, closed exactly once.
///
/// After a successful send libzmq owns the content and the frame is empty. Received content is read in place.
package final class Message {
    let raw: UnsafeMutablePointer<zmq_msg_t>

    /// An empty frame, ready to receive into.
    package init() {
        raw = .allocate(capacity: 1)
        zmq_msg_init(raw)
    }

    /// A frame holding a copy of `bytes`.
    package init(copying bytes: UnsafeRawBufferPointer) throws {
        raw = try Self.filled(with: bytes)
    }

    /// A frame holding a copy of `bytes`.
    package init(copying bytes: [UInt8]) throws {
        raw = try bytes.withUnsafeBytes { try Self.filled(with: $0) }
    }

    /// A frame of `byteCount` bytes that `fill` writes (and says whether it could): a packed part's unpacked values.
    /// Nil when `fill` could not, or libzmq had no memory for it (the frame is then closed as any other).
    package static func filled(byteCount: Int, by fill: (UnsafeMutableRawBufferPointer) -> Bool) -> Message? {
        let message = Message()
        zmq_msg_close(message.raw)
        guard zmq_msg_init_size(message.raw, byteCount) == 0 else {
            zmq_msg_init(message.raw)
            return nil
        }
        return fill(UnsafeMutableRawBufferPointer(start: zmq_msg_data(message.raw), count: byteCount)) ? message : nil
    }

    private static func filled(with bytes: UnsafeRawBufferPointer) throws -> UnsafeMutablePointer<zmq_msg_t> {
        let raw = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        guard zmq_msg_init_size(raw, bytes.count) == 0 else {
            let error = ZMQError.last("zmq_msg_init_size")
            raw.deallocate()
            throw error
        }
        if bytes.count > 0 { zmq_msg_data(raw).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        return raw
    }

    /// A zero-copy frame over `payload`'s bytes: libzmq reads them in place and releases the payload (from any of
    /// its threads) when the last frame referring to it is gone.
    /// A frame over `byteCount` bytes of `payload` from `offset` (to its end when nil).
    package init(sharing payload: SharedPayload, byteCount: Int? = nil, from offset: Int = 0) throws {
        precondition(offset >= 0 && offset + (byteCount ?? 0) <= payload.byteCount, "a frame beyond its payload")
        raw = .allocate(capacity: 1)
        let hint = Unmanaged.passRetained(payload).toOpaque()
        payload.inFlight.add(1, ordering: .relaxed)
        let free: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
            let payload = Unmanaged<SharedPayload>.fromOpaque(hint!).takeRetainedValue()
            payload.inFlight.subtract(1, ordering: .releasing)
        }
        guard zmq_msg_init_data(raw, payload.bytes + offset, byteCount ?? payload.byteCount - offset, free, hint) == 0 else {
            let error = ZMQError.last("zmq_msg_init_data")
            payload.inFlight.subtract(1, ordering: .relaxed)
            Unmanaged<SharedPayload>.fromOpaque(hint).release()
            raw.deallocate()
            throw error
        }
    }

    /// Another frame over the same content (reference-counted by libzmq, no copy).
    package func share() throws -> Message {
        let other = Message()
        try check(zmq_msg_copy(other.raw, raw), "zmq_msg_copy")
        return other
    }

    deinit {
        zmq_msg_close(raw)
        raw.deallocate()
    }

    /// Bytes in the frame.
    package var count: Int { zmq_msg_size(raw) }

    /// Reads the frame's bytes in place.
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(raw), count: zmq_msg_size(raw)))
    }

    /// A copy of the bytes (tests and small frames).
    package var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// A property of the connection a received frame came in on: "User-Id" (what the ZAP handler named the peer:
    /// its public key) or "Peer-Address".
    package func property(_ name: String) -> String? {
        guard let value = zmq_msg_gets(raw, name) else { return nil }
        return String(cString: value)
    }
}

/// Bytes that several outgoing frames share without copies, e.g. one step's weights sent to every worker.
///
/// The owner must not change the bytes while `inFlight` is above zero: libzmq may still be reading them.
package final class SharedPayload: @unchecked Sendable {
    package let bytes: UnsafeMutableRawPointer
    package let byteCount: Int
    /// Frames libzmq still holds over these bytes.
    let inFlight = Atomic<Int>(0)

    // The object that owns borrowed bytes, kept alive while frames refer to them (nil: the bytes are our own).
    private let owner: AnyObject?

    package init(byteCount: Int) {
        self.byteCount = byteCount
        bytes = .allocate(byteCount: max(byteCount, 1), alignment: 64)
        owner = nil
    }

    /// Shares bytes that `owner` keeps (for example a gradient sum's buffer), without copying them.
    package init(borrowing bytes: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject) {
        self.bytes = bytes
        self.byteCount = byteCount
        self.owner = owner
    }

    deinit { if owner == nil { bytes.deallocate() } }

    /// Whether libzmq has released every frame over these bytes, so they may be rewritten.
    package var isIdle: Bool { inFlight.load(ordering: .acquiring) == 0 }
}
