import Foundation
import Wire

/// A coordinator's CurveZMQ identity and the worker keys it admits.
package struct CoordinatorKeys: Sendable {
    package var keyPair: CurveKeyPair
    package var authorized: Set<CurvePublicKey>

    package init(keyPair: CurveKeyPair, authorized: Set<CurvePublicKey>) {
        self.keyPair = keyPair
        self.authorized = authorized
    }
}

/// A worker's CurveZMQ identity and the coordinator key it expects.
package struct WorkerKeys: Sendable {
    package var keyPair: CurveKeyPair
    package var coordinatorKey: CurvePublicKey

    package init(keyPair: CurveKeyPair, coordinatorKey: CurvePublicKey) {
        self.keyPair = keyPair
        self.coordinatorKey = coordinatorKey
    }
}

/// Whether an endpoint can be reached from (or reaches) other machines, which decides whether keys are needed.
package enum EndpointReach {
    /// True for ipc:// and inproc://, and for tcp:// whose host is a loopback address, the loopback interface, or
    /// a name that resolves to loopback addresses only. `*`, 0.0.0.0 and real addresses are not local.
    package static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        // A source;destination pair is judged as not local.
        guard let host = tcpHost(endpoint), !endpoint.contains(";") else { return false }
        if host.isEmpty || host == "*" { return false }
        // libzmq takes a host that names a network interface as that interface, before any address or host name:
        // an interface called `localhost` or `127.0.0.1` would be listened on. Such a host is local only when the
        // interface is the loopback one.
        if let loopback = interfaceIsLoopback(host) { return loopback }
        if host == "localhost" { return true }
        return resolvesToLoopbackOnly(host)
    }

    /// Whether the network interface named `name` is a loopback interface; nil when no interface has that name.
    private static func interfaceIsLoopback(_ name: String) -> Bool? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let list else { return nil }
        defer { freeifaddrs(list) }
        var found: Bool?
        for entry in sequence(first: list, next: { $0.pointee.ifa_next }) where String(cString: entry.pointee.ifa_name) == name {
            let loopback = entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) != 0
            found = (found ?? true) && loopback
        }
        return found
    }

    /// Whether the two ends of `endpoint` may share memory (`SharedRegion`s): an ipc socket's peers run on one
    /// machine. A tcp loopback peer may sit in another network or pid namespace, so it is not assumed to.
    package static func sharesMemory(_ endpoint: String) -> Bool { endpoint.hasPrefix("ipc://") }

    /// What is wrong with `endpoint` as a ZeroMQ address this project uses, or nil: `tcp://HOST:PORT`,
    /// `ipc://PATH` or `inproc://NAME`.
    package static func problem(_ endpoint: String) -> String? {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") {
            return endpoint.split(separator: "/", omittingEmptySubsequences: false).count > 2
                && endpoint.count > "ipc://".count ? nil : "\(endpoint) names no path"
        }
        guard endpoint.hasPrefix("tcp://") else {
            return "\(endpoint) is not an endpoint; give tcp://HOST:PORT (or ipc://PATH on one machine)"
        }
        let rest = endpoint.dropFirst("tcp://".count)
        guard let colon = rest.lastIndex(of: ":"), !rest[..<colon].isEmpty else {
            return "\(endpoint) has no host and port; give tcp://HOST:PORT"
        }
        let port = rest[rest.index(after: colon)...]
        guard port == "*" || (Int(port).map { (1...65535).contains($0) } ?? false) else {
            return "\(endpoint): port '\(port)' is not 1 to 65535 (or * for any free port when listening)"
        }
        return nil
    }

    /// Why the host of a tcp endpoint cannot be resolved now (nil when it can, or is not tcp).
    package static func resolutionProblem(_ endpoint: String) -> String? {
        guard let host = tcpHost(endpoint) else { return nil }
        do {
            _ = try LaunchPlace.resolveAddress(host)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The host of a `tcp://HOST:PORT` endpoint, brackets removed; nil for other transports.
    private static func tcpHost(_ endpoint: String) -> String? {
        guard endpoint.hasPrefix("tcp://") else { return nil }
        var host = Substring(endpoint.dropFirst("tcp://".count))
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return String(host)
    }

    private static func resolvesToLoopbackOnly(_ host: String) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let list else { return false }
        defer { freeaddrinfo(list) }
        for entry in sequence(first: list, next: { $0.pointee.ai_next }) {
            let address = entry.pointee.ai_addr!
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                let ip = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                guard UInt32(bigEndian: ip) >> 24 == 127 else { return false }
            case AF_INET6:
                let bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) }
                }
                guard bytes == [UInt8](repeating: 0, count: 15) + [1] else { return false }
            default:
                return false
            }
        }
        return true
    }

    /// The refusal for a plaintext endpoint that reaches other machines; nil when it is allowed.
    /// `keysToGive`: the flags that would give this command its keys.
    package static func plaintextRefusal(_ endpoint: String, keyed: Bool, insecure: Bool, listening: Bool,
                                        keysToGive: String) -> String? {
        guard !keyed, !insecure, !isLocal(endpoint) else { return nil }
        return listening
            ? "\(endpoint) can be reached from other machines, and without keys anyone who reaches it can join, "
                + "send gradients and receive the data; give \(keysToGive) (make keys with `shardtrain "
                + "keygen`), bind a loopback address, or give --insecure on a network you trust"
            : "\(endpoint) is on another machine and this worker has no keys: give \(keysToGive), "
                + "or --insecure if the coordinator runs without keys on a network you trust"
    }
}

/// The coordinator's log of failed handshakes: one line per reason and host, at most `limit` lines. Used by the
/// handshake watcher's thread alone.
///
/// libzmq's outcome events carry no connection, so each is given to the oldest connection still in its handshake;
/// a connection that closes with no outcome was closed by the peer, which is what a plaintext worker does.
final class HandshakeLog: @unchecked Sendable {
    private struct Connection {
        var descriptor: Int32
        var address: String?
        var outcome: String?
        var settled = false
    }
    private var connections: [Connection] = []
    private var logged: Set<String> = []
    private let limit = 100
    private let log: (String) -> Void

    init(log: @escaping (String) -> Void) { self.log = log }

    func note(_ events: [HandshakeMonitor.Event]) {
        for event in events {
            switch event {
            case .accepted(let address, let descriptor):
                connections.removeAll { $0.descriptor == descriptor }
                connections.append(Connection(descriptor: descriptor, address: address))
                if connections.count > 4096 { connections.removeFirst(connections.count - 4096) }  // bounded
            case .succeeded:
                settle(nil)
            case .refused:
                settle("")  // the key check has named it already
            case .mechanismMismatch:
                settle("it does not use CurveZMQ keys (a worker needs --key and --coordinator-key)")
            case .cryptographic:
                settle("its handshake failed the cryptography (the worker's --coordinator-key is not this "
                    + "coordinator's public key)")
            case .otherFailure(let code):
                settle("its handshake failed (ZeroMQ protocol error 0x\(String(code, radix: 16)))")
            case .disconnected(let descriptor):
                guard let index = connections.firstIndex(where: { $0.descriptor == descriptor }) else { continue }
                let connection = connections.remove(at: index)
                let reason = connection.settled ? connection.outcome
                    : "it closed the connection during the handshake (a worker without keys, or one that does not "
                        + "trust this coordinator's key)"
                if let reason, !reason.isEmpty { report(reason, connection.address) }
            }
        }
    }

    private func settle(_ outcome: String?) {
        guard let index = connections.firstIndex(where: { !$0.settled }) else { return }
        connections[index].settled = true
        connections[index].outcome = outcome
    }

    private func report(_ reason: String, _ address: String?) {
        let host = address.map { $0.split(separator: ":").dropLast().joined(separator: ":") } ?? "?"
        guard logged.count < limit, logged.insert(reason + " " + host).inserted else { return }
        log("refused a connection\(address.map { " from \($0)" } ?? ""): \(reason)"
            + (logged.count == limit ? " (further refusals are not logged)" : ""))
    }
}

/// A worker's reading of its handshake events: a refusal or misconfiguration ends it with a message within a few
/// reconnects, instead of the silent retries libzmq would make until --idle-timeout.
struct HandshakeVerdict {
    let endpoint: String
    let keys: WorkerKeys?
    private var failedInARow = 0
    private var handshaken = false

    init(endpoint: String, keys: WorkerKeys?) {
        self.endpoint = endpoint
        self.keys = keys
    }

    /// The message to stop with, if these events show the worker cannot join.
    mutating func judge(_ events: [HandshakeMonitor.Event]) -> String? {
        for event in events {
            switch event {
            case .refused(let status):
                let key = keys.map { "key \($0.keyPair.publicKey.fingerprint)…" } ?? "key"
                return "the coordinator at \(endpoint) refused this worker's \(key) (status \(status)): add this "
                    + "worker's .pub file to the coordinator's --authorized"
            case .mechanismMismatch:
                return keys == nil
                    ? "the coordinator at \(endpoint) requires CurveZMQ keys: give --key and --coordinator-key"
                    : "the coordinator at \(endpoint) does not use CurveZMQ keys: start it with --key and "
                        + "--authorized, or drop --key here (with --insecure on a network you trust)"
            case .cryptographic:
                return "the handshake with \(endpoint) failed its cryptography: check --coordinator-key"
            case .succeeded:
                handshaken = true
                failedInARow = 0
            case .disconnected:
                if !handshaken { failedInARow += 1 }
                handshaken = false
                guard failedInARow >= 3 else { continue }
                let closed = "the coordinator at \(endpoint) closed the connection during the handshake \(failedInARow) times"
                guard let keys else {
                    // A CurveZMQ server closes a plaintext client's connection as soon as it reads its greeting; the
                    // client sees the mismatch only when it read the server's greeting first, which is a race.
                    return closed + ": it probably requires CurveZMQ keys (give --key and --coordinator-key), or is "
                        + "not a shardtrain coordinator"
                }
                return closed + ": --coordinator-key (\(keys.coordinatorKey.fingerprint)…) is probably not its public key"
            case .accepted, .otherFailure:
                continue
            }
        }
        return nil
    }
}
