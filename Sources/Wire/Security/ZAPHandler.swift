import CZeroMQ
import Foundation
import Synchronization

/// The ZeroMQ authentication handler (ZAP, RFC 27) of one context: admits a CurveZMQ client only when its public
/// key is authorised, and names the user by that key. It answers on its own thread, bound before any CURVE server
/// socket of the context binds, because libzmq admits every client when no handler is there.
public final class ZAPHandler: @unchecked Sendable {
    public static let endpoint = "inproc://zeromq.zap.01"
    /// Refusals logged (one per key and address); later ones are only counted, so strangers cannot flood the log.
    static let loggedRefusalLimit = 100

    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let refusals = Mutex<(logged: Set<String>, total: Int)>(([], 0))

    /// Starts the handler for `context`; returns once it is listening.
    public init(context: Context, authorized: Set<CurvePublicKey>, log: @escaping @Sendable (String) -> Void) throws {
        let ready = DispatchSemaphore(value: 0)
        let startError = Mutex<Error?>(nil)
        let thread = Thread { [self] in
            let socket: Socket
            do {
                socket = try Socket(context, .router)
                try socket.bind(Self.endpoint)
            } catch {
                startError.withLock { $0 = error }
                ready.signal()
                finished.signal()
                return
            }
            ready.signal()
            serve(socket, authorized: authorized, log: log)
            socket.close()
            finished.signal()
        }
        thread.name = "shardtrain ZAP"
        thread.start()
        ready.wait()
        if let error = startError.withLock({ $0 }) {
            throw KeyError("cannot start the key check (\(Self.endpoint)): \(error)")
        }
    }

    /// Peers refused so far.
    public var refusedCount: Int { refusals.withLock { $0.total } }

    /// Stops the thread and closes its socket (once; waits for it).
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }

    deinit { stop() }

    private func serve(_ socket: Socket, authorized: Set<CurvePublicKey>, log: @Sendable (String) -> Void) {
        while !stopping.load(ordering: .acquiring) {
            guard (try? Socket.poll([socket], timeout: .milliseconds(100)))?[0] == true,
                  case .frames(let frames)? = try? socket.receive(maximumFrames: 16) else { continue }
            // ROUTER envelope: the requester's id, an empty delimiter, then the request (RFC 27).
            guard frames.count >= 8, frames[1].count == 0 else { continue }
            let request = Array(frames[2...])
            let version = String(decoding: request[0].bytes, as: UTF8.self)
            let address = String(decoding: request[3].bytes, as: UTF8.self)
            let mechanism = String(decoding: request[5].bytes, as: UTF8.self)
            var status = "400", text = "key not authorised", user = ""
            if version != "1.0" {
                status = "500"
                text = "unsupported ZAP version"
            } else if mechanism == "CURVE", request.count >= 7, request[6].count == 32 {
                let key = Self.z85(request[6].bytes)
                if let key, authorized.contains(key) {
                    status = "200"
                    text = "OK"
                    user = key.z85
                } else {
                    noteRefusal(key: key?.z85 ?? "(unreadable)", address: address, log: log)
                }
            } else {
                noteRefusal(key: "(\(mechanism) mechanism)", address: address, log: log)
            }
            let reply = [frames[0].bytes, [], Array("1.0".utf8), request[1].bytes, Array(status.utf8), Array(text.utf8),
                         Array(user.utf8), []]
            guard let messages = try? reply.map({ try Message(copying: $0) }) else { continue }
            try? socket.send(messages, wait: false)
        }
    }

    private func noteRefusal(key: String, address: String, log: (String) -> Void) {
        let line: String? = refusals.withLock { state in
            state.total += 1
            let entry = key + " " + address
            guard !state.logged.contains(entry), state.logged.count < Self.loggedRefusalLimit else { return nil }
            state.logged.insert(entry)
            let last = state.logged.count == Self.loggedRefusalLimit ? " (further refusals are not logged)" : ""
            return "refused a worker at \(address): key \(key) is not in --authorized\(last)"
        }
        if let line { log(line) }
    }

    static func z85(_ key: [UInt8]) -> CurvePublicKey? {
        var text = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&text, key, 32) != nil else { return nil }
        return try? CurvePublicKey(z85: cText(text))
    }
}
