import CZeroMQ
import Foundation
import Synchronization

/// Reads a socket's connection events, to say why peers fail their CurveZMQ handshake: libzmq itself only drops
/// such a connection and tries again, which would leave a misconfigured worker waiting in silence.
///
/// Owned by the thread that owns the monitored socket.
package final class HandshakeMonitor {
    package enum Event: Equatable, Sendable {
        /// A connection was accepted (listening side) from this peer address (nil: closed before it could be read).
        case accepted(address: String?, descriptor: Int32)
        case disconnected(descriptor: Int32)
        case succeeded
        /// The peers' security mechanisms differ: one uses CurveZMQ keys and the other does not.
        case mechanismMismatch
        /// The handshake's cryptography failed: the client has the wrong server key.
        case cryptographic
        /// The ZAP handler refused the client's key (seen by the client as a ZAP status such as 400).
        case refused(status: Int32)
        case otherFailure(code: Int32)
    }

    private let reader: Socket
    /// The socket whose events these are (same thread), kept so `close` can stop its events first.
    private let monitored: Socket
    private static let counter = Mutex(0)

    /// Starts monitoring `socket` (connection, handshake and disconnection events), read on the same thread.
    package init(_ socket: Socket, context: Context) throws {
        monitored = socket
        reader = try Self.reader(of: try Self.publish(socket), context: context)
    }

    /// A socket that reads the events published at `endpoint`.
    static func reader(of endpoint: String, context: Context) throws -> Socket {
        let reader = try Socket(context, .pair)
        try reader.connect(endpoint)
        return reader
    }

    /// Makes `socket` publish its events; returns where.
    static func publish(_ socket: Socket) throws -> String {
        let number = Self.counter.withLock { $0 += 1; return $0 }
        let endpoint = "inproc://shardtrain-monitor-\(getpid())-\(number)"
        try socket.monitor(endpoint, events: ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED
            | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        return endpoint
    }

    /// The socket to poll for events.
    package var socket: Socket { reader }

    /// The events waiting, oldest first (never blocks).
    package func drain() -> [Event] { Self.drain(reader) }

    /// The events waiting on an event reader, oldest first (never blocks).
    static func drain(_ reader: Socket) -> [Event] {
        var events: [Event] = []
        while case .frames(let frames)? = try? reader.receive(maximumFrames: 2), frames.count == 2, frames[0].count == 6 {
            let head = frames[0].bytes
            let kind = Int32(UInt16(head[0]) | UInt16(head[1]) << 8)
            let value = Int32(bitPattern: UInt32(head[2]) | UInt32(head[3]) << 8 | UInt32(head[4]) << 16
                | UInt32(head[5]) << 24)
            switch kind {
            case ZMQ_EVENT_ACCEPTED:
                events.append(.accepted(address: Self.peerAddress(value), descriptor: value))
            case ZMQ_EVENT_DISCONNECTED: events.append(.disconnected(descriptor: value))
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: events.append(.succeeded)
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: events.append(.refused(status: value))
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                switch value {
                case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: events.append(.mechanismMismatch)
                case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: events.append(.cryptographic)
                default: events.append(.otherFailure(code: value))
                }
            default: continue
            }
        }
        return events
    }

    /// Stops the socket's events, then closes the reader (in that order: see `Socket.stopMonitor`).
    package func close() {
        monitored.stopMonitor()
        reader.close()
    }

    /// "10.0.0.4:41234" for a connected TCP descriptor, "local" for a Unix socket, nil when already closed.
    static func peerAddress(_ descriptor: Int32) -> String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor, $0, &length) }
        }
        guard got == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST)), service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let named = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                            NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard named == 0, storage.ss_family != sa_family_t(AF_UNIX) else { return "local" }
        return "\(cText(host)):\(cText(service))"
    }
}
