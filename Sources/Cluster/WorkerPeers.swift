import CZeroMQ
import Foundation
import Glibc
import Wire

/// A worker's sockets to the other workers of a sharded layout (docs/scale-out.md): one ROUTER that its peers'
/// parts and means come in on, bound on the address this worker reaches its coordinator from, and one DEALER to each
/// peer. With keys the ROUTER is a CurveZMQ server that admits only the keys of the layout's peers (the coordinator
/// names them), and each DEALER checks its peer's key. All on the worker's one thread.
final class WorkerPeers {
    let router: Socket
    /// Where `router` listens, as the hello offers it.
    let endpoint: String
    private let context: Context
    private let keys: WorkerKeys?
    private let admitted: ZAPHandler.AuthorizedKeys
    private let keyCheck: ZAPHandler?
    private var dealers: [UInt32: (endpoint: String, socket: Socket)] = [:]
    private(set) var list: PeerList?
    /// Every key the coordinator admits (with keys), as it said when this worker became ready.
    private var allowed = Set<CurvePublicKey>()

    /// Binds the peer socket toward `coordinator` (a `tcp://HOST:PORT` endpoint); nil for any other endpoint.
    init?(context: Context, coordinator: String, keys: WorkerKeys?, log: @escaping @Sendable (String) -> Void) throws {
        guard coordinator.hasPrefix("tcp://"), let address = Self.localAddress(toward: coordinator) else { return nil }
        self.context = context
        self.keys = keys
        let admitted = ZAPHandler.AuthorizedKeys([])
        self.admitted = admitted
        // The handler must listen before a CURVE server binds, or libzmq admits every client.
        keyCheck = try keys.map { _ in try ZAPHandler(context: context, keys: admitted,
                                                        refusal: "is not a peer of the coordinator's layout", log: log) }
        router = try Socket(context, .router)
        // The largest message a peer sends: a part's packed limbs (17 bytes a parameter at most) and its header.
        try SocketTuning.peer(router, maximumMessageBytes: 1 << 22)
        if let keys { try SocketTuning.curveServer(router, keyPair: keys.keyPair) }
        try router.bind("tcp://\(address):0")
        endpoint = router.lastEndpoint
    }

    deinit { close() }

    func close() {
        for (_, d) in dealers { d.socket.close() }
        dealers = [:]
        router.close()
        keyCheck?.stop()
    }

    /// Takes the coordinator's list: DEALERs to new peers (and to those whose endpoint changed), none to peers gone,
    /// and only the listed peers' keys admitted.
    func follow(_ new: PeerList, me: UInt32) throws {
        if !new.allowed.isEmpty { allowed = Set(new.allowed) }
        admitted.replace(with: allowed.union(new.peers.compactMap(\.key)))
        // No peers: no layout (its parts go to the coordinator, the star), whatever keys it allows.
        guard !new.peers.isEmpty else {
            for (_, d) in dealers { d.socket.close() }
            dealers = [:]
            list = nil
            return
        }
        for (worker, dealer) in dealers where new.peer(worker)?.endpoint != dealer.endpoint {
            dealer.socket.close()
            dealers[worker] = nil
        }
        for peer in new.peers where peer.worker != me && dealers[peer.worker] == nil {
            let socket = try Socket(context, .dealer)
            try SocketTuning.peer(socket, maximumMessageBytes: 1 << 20)
            if let keys {
                guard let key = peer.key else {
                    throw ClusterError("the coordinator named peer w\(peer.worker) without a key, and this worker has keys")
                }
                try SocketTuning.curveClient(socket, keyPair: keys.keyPair, server: key)
            }
            try socket.connect(peer.endpoint)
            dealers[peer.worker] = (peer.endpoint, socket)
        }
        list = new
    }

    /// Sends to peer `worker` without waiting: when its queue is full the peer is gone (see `SocketTuning.peer`), and
    /// the message is dropped — the coordinator loses the peer and has the step computed again without it.
    func send(_ frames: [Message], to worker: UInt32) throws {
        guard let socket = dealers[worker]?.socket else {
            throw ClusterError("no connection to peer w\(worker): the coordinator's list does not name it")
        }
        do {
            try socket.send(frames, wait: false)
        } catch let error as ZMQError where error.wouldBlock {
            return
        }
    }

    /// The sender's worker id as its connection vouches for it: with keys, the listed peer whose key the connection
    /// was admitted with; without, the id its header names, if listed.
    func sender(of frames: [Message], header worker: UInt32) -> UInt32? {
        guard let list, let peer = list.peer(worker) else { return nil }
        guard keys != nil else { return worker }
        return frames.last?.property("User-Id") == peer.key?.z85 ? worker : nil
    }

    /// The IPv4 address of this machine's interface that reaches `endpoint`'s host (a connected UDP socket sends
    /// nothing; its local address is the route's).
    static func localAddress(toward endpoint: String) -> String? {
        let rest = endpoint.dropFirst("tcp://".count)
        guard let colon = rest.lastIndex(of: ":") else { return nil }
        let host = String(rest[..<colon]), port = String(rest[rest.index(after: colon)...])
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host == "*" ? "127.0.0.1" : host, port, &hints, &found) == 0, let info = found else { return nil }
        defer { freeaddrinfo(found) }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return nil }
        var local = sockaddr_in(), length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &local.sin_addr, &text, socklen_t(INET_ADDRSTRLEN)) != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
