import CZeroMQ
import Foundation
import Synchronization

/// The ZeroMQ authentication handler (ZAP, RFC 27) of one context: admits a CurveZMQ client only when its public
/// key is authorised, and names the user by that key. It answers on its own thread, bound before any CURVE server
/// socket of the context binds, because libzmq admits every client when no handler is there.
package final class ZAPHandler: Sendable {
    package static let endpoint = "inproc://zeromq.zap.01"
    /// Refusals logged (one per key and address); later ones are only counted, so strangers cannot flood the log.
    static let loggedRefusalLimit = 100

    private let refusals: Refusals
    private let thread: SocketThread

    /// Starts the handler for `context`; returns once it is listening.
    package convenience init(context: Context, authorized: Set<CurvePublicKey>,
                             log: @escaping @Sendable (String) -> Void) throws {
        try self.init(context: context, keys: AuthorizedKeys(authorized), refusal: "is not in --authorized", log: log)
    }

    /// Starts the handler for `context`, admitting the keys `keys` holds when each client comes (they may change).
    /// `refusal` ends the line a refused key is logged with ("is not in --authorized").
    package init(context: Context, keys authorized: AuthorizedKeys, refusal: String,
                 log: @escaping @Sendable (String) -> Void) throws {
        // The thread holds the refusal count, not this handler: dropping the handler stops the thread.
        let refusals = Refusals(refusal: refusal)
        self.refusals = refusals
        do {
            thread = try SocketThread(name: "shardtrain ZAP", make: {
                let socket = try Socket(context, .router)
                try socket.bind(Self.endpoint)
                return socket
            }, readable: { socket in Self.answer(socket, authorized: authorized, refusals: refusals, log: log) })
        } catch {
            throw KeyError("cannot start the key check (\(Self.endpoint)): \(error)")
        }
    }

    /// Peers refused so far.
    package var refusedCount: Int { refusals.state.withLock { $0.total } }

    /// Stops the thread and closes its socket (once; waits for it).
    package func stop() { thread.stop() }

    /// Reads one request and replies: 200 for an authorised CURVE key, 400 otherwise, 500 for another ZAP version.
    private static func answer(_ socket: Socket, authorized: AuthorizedKeys, refusals: Refusals,
                               log: @Sendable (String) -> Void) {
        guard case .frames(let frames)? = try? socket.receive(maximumFrames: 16) else { return }
        // ROUTER envelope: the requester's id, an empty delimiter, then the request (RFC 27).
        guard frames.count >= 8, frames[1].count == 0 else { return }
        let request = Array(frames[2...])
        let version = String(decoding: request[0].bytes, as: UTF8.self)
        let address = String(decoding: request[3].bytes, as: UTF8.self)
        let mechanism = String(decoding: request[5].bytes, as: UTF8.self)
        var status = "400", text = "key not authorised", user = ""
        if version != "1.0" {
            status = "500"
            text = "unsupported ZAP version"
        } else if mechanism == "CURVE", request.count >= 7, request[6].count == 32 {
            let key = z85(request[6].bytes)
            if let key, authorized.admits(key) {
                status = "200"
                text = "OK"
                user = key.z85
            } else {
                refusals.note(key: key?.z85 ?? "(unreadable)", address: address, log: log)
            }
        } else {
            refusals.note(key: "(\(mechanism) mechanism)", address: address, log: log)
        }
        let reply = [frames[0].bytes, [], Array("1.0".utf8), request[1].bytes, Array(status.utf8), Array(text.utf8),
                     Array(user.utf8), []]
        guard let messages = try? reply.map({ try Message(copying: $0) }) else { return }
        try? socket.send(messages, wait: false)
    }

    /// The keys a handler admits; a worker's peer socket admits the layout's peers, which change as members come and go.
    package final class AuthorizedKeys: Sendable {
        private let keys: Mutex<Set<CurvePublicKey>>

        package init(_ keys: Set<CurvePublicKey>) { self.keys = Mutex(keys) }

        package func admits(_ key: CurvePublicKey) -> Bool { keys.withLock { $0.contains(key) } }

        package func replace(with new: Set<CurvePublicKey>) { keys.withLock { $0 = new } }
    }

    /// Refused peers: counted, and logged once per key and address up to `loggedRefusalLimit` lines.
    private final class Refusals: Sendable {
        let state = Mutex<(logged: Set<String>, total: Int)>(([], 0))
        let refusal: String

        init(refusal: String) { self.refusal = refusal }

        func note(key: String, address: String, log: (String) -> Void) {
            let line: String? = state.withLock { state in
                state.total += 1
                let entry = key + " " + address
                guard !state.logged.contains(entry), state.logged.count < ZAPHandler.loggedRefusalLimit else { return nil }
                state.logged.insert(entry)
                let last = state.logged.count == ZAPHandler.loggedRefusalLimit ? " (further refusals are not logged)" : ""
                return "refused a worker at \(address): key \(key) \(refusal)\(last)"
            }
            if let line { log(line) }
        }
    }

    static func z85(_ key: [UInt8]) -> CurvePublicKey? {
        var text = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&text, key, 32) != nil else { return nil }
        return try? CurvePublicKey(z85: cText(text))
    }
}
