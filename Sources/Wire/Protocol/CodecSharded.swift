/// The sharded layout's messages (docs/scale-out.md): who a step's parts go between (`peers`), what an owner sums
/// (`sumOrder`) and the part of the gradient it sends every member (`meanPart`); each checked before use.

/// The members of a sharded layout and the owner of each part, as the coordinator hands them out.
package struct PeerList: Equatable, Sendable {
    package struct Peer: Equatable, Sendable {
        package let worker: UInt32
        /// `tcp://ADDRESS:PORT`, where the worker's peer socket listens.
        package let endpoint: String
        /// Its CurveZMQ public key, with keys.
        package let key: CurvePublicKey?

        package init(worker: UInt32, endpoint: String, key: CurvePublicKey?) {
            (self.worker, self.endpoint, self.key) = (worker, endpoint, key)
        }
    }

    package let peers: [Peer]
    /// The owner of each part, by worker id; `coordinator` for the coordinator's share.
    package let owners: [UInt32]
    /// The coordinator as an owner: it sums a share of the parts too, so its link carries its share of the traffic
    /// (worker ids start at 1).
    package static let coordinator: UInt32 = 0
    /// With keys: every key the coordinator admits, so that a worker's peer socket admits its peers before the layout
    /// naming them reaches it (a list of no peers, sent as a worker becomes ready).
    package let allowed: [CurvePublicKey]

    package init(peers: [Peer], owners: [UInt32], allowed: [CurvePublicKey] = []) {
        (self.peers, self.owners, self.allowed) = (peers, owners, allowed)
    }

    /// The peer with worker id `worker`.
    package func peer(_ worker: UInt32) -> Peer? { peers.first { $0.worker == worker } }

    var text: String {
        (peers.map { "peer \($0.worker) \($0.endpoint)" + ($0.key.map { " \($0.z85)" } ?? "") }
            + allowed.map { "allow \($0.z85)" } + (owners.isEmpty ? [] : ["owners " + owners.map(String.init).joined(separator: " ")]))
            .joined(separator: "\n")
    }

    /// Whether `endpoint` is one a peer may give: `tcp://` and a numeric IPv4 address and a port.
    package static func isPeerEndpoint(_ endpoint: String) -> Bool {
        guard endpoint.hasPrefix("tcp://"), endpoint.count <= 64 else { return false }
        let rest = endpoint.dropFirst("tcp://".count).split(separator: ":", omittingEmptySubsequences: false)
        guard rest.count == 2, let port = Int(rest[1]), (1...65535).contains(port) else { return false }
        let octets = rest[0].split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.allSatisfy { $0.count <= 3 && UInt8($0) != nil }
    }
}

/// A `sumOrder`'s contribution: the worker that computed it, its micro-shards and the attempt.
package struct OrderedContribution: Equatable, Sendable {
    package let worker: UInt32
    package let firstMicroShard: Int
    package let microShards: Int
    package let attempt: UInt64

    package init(worker: UInt32, firstMicroShard: Int, microShards: Int, attempt: UInt64) {
        (self.worker, self.firstMicroShard, self.microShards, self.attempt) = (worker, firstMicroShard, microShards, attempt)
    }
}

/// A `sumOrder` as received.
package struct OrderedSum: Equatable, Sendable {
    package let revision: Int
    package let samples: Int
    package let learningRate: Float
    package let optimizerStep: Int
    /// In micro-shard order.
    package let contributions: [OrderedContribution]
    /// The means go as packed Floats (`cexact_pack_floats`).
    package let packsMeans: Bool

    package init(revision: Int, samples: Int, learningRate: Float, optimizerStep: Int,
                 contributions: [OrderedContribution], packsMeans: Bool = false) {
        (self.revision, self.samples, self.learningRate) = (revision, samples, learningRate)
        (self.optimizerStep, self.contributions, self.packsMeans) = (optimizerStep, contributions, packsMeans)
    }
}

/// A `meanPart` as received: part `range`'s gradient for optimizer step `optimizerStep + 1` at `learningRate`.
package struct MeanPart {
    package let range: Range<Int>
    package let learningRate: Float
    package let optimizerStep: Int
    package let samples: Int
    /// The revision of the coordinator's order it sums.
    package let revision: Int
    package let values: FloatFrame
}

struct PeersFields: HeaderFields {
    static let type = MessageType.peers
    static let names = ["peer count", "part count"]
    var peerCount: UInt64, partCount: UInt64

    var words: [UInt64] { [peerCount, partCount] }

    init(peerCount: Int, partCount: Int) { (self.peerCount, self.partCount) = (UInt64(peerCount), UInt64(partCount)) }

    init(checking f: [UInt64]) throws(WireError) {
        // No peers and no parts: a list of allowed keys only.
        guard f[0] <= 4096, f[1] <= 1 << 16, (f[0] == 0) == (f[1] == 0) else {
            throw .badField(.peers, "\(f[0]) peers (0…4096) or \(f[1]) parts (0…65536; 0 only with no peers)")
        }
        (peerCount, partCount) = (f[0], f[1])
    }
}

struct SumOrderFields: HeaderFields {
    static let type = MessageType.sumOrder
    static let names = ["revision", "samples", "contributions", "learning rate", "optimizer step", "packed means"]
    var revision: UInt64, samples: UInt64, contributions: UInt64, learningRate: Float, optimizerStep: UInt64
    var packsMeans: Bool

    var words: [UInt64] {
        [revision, samples, contributions, UInt64(learningRate.bitPattern), optimizerStep, packsMeans ? 1 : 0]
    }

    init(revision: Int, samples: Int, contributions: Int, learningRate: Float, optimizerStep: Int, packsMeans: Bool) {
        (self.revision, self.samples, self.contributions) = (UInt64(revision), UInt64(samples), UInt64(contributions))
        (self.learningRate, self.optimizerStep, self.packsMeans) = (learningRate, UInt64(optimizerStep), packsMeans)
    }

    init(checking f: [UInt64]) throws(WireError) {
        let rate = Float(bitPattern: UInt32(truncatingIfNeeded: f[3]))
        guard f[0] < 1 << 20, f[1] >= 1, f[1] <= 1 << 40, f[2] >= 1, f[2] <= 4096, f[3] <= UInt64(UInt32.max),
              rate.isFinite, rate >= 0, f[4] < 1 << 40, f[5] <= 1 else {
            throw .badField(.sumOrder, "revision \(f[0]), samples \(f[1]), \(f[2]) contributions (1…4096), learning "
                + "rate \(rate), optimizer step \(f[4]) or packed means \(f[5]) out of range")
        }
        (revision, samples, contributions, learningRate, optimizerStep) = (f[0], f[1], f[2], rate, f[4])
        packsMeans = f[5] == 1
    }
}

struct MeanPartFields: HeaderFields {
    static let type = MessageType.meanPart
    static let names = ["first parameter", "parameter count (bits 0-31) and packed (bit 32)", "learning rate",
                        "optimizer step", "samples", "revision"]
    var first: UInt64, count: UInt64, learningRate: Float, optimizerStep: UInt64, samples: UInt64, revision: UInt64
    /// The values frame holds the Floats packed (`cexact_pack_floats`).
    var packed: Bool

    var words: [UInt64] {
        [first, count | (packed ? 1 << 32 : 0), UInt64(learningRate.bitPattern), optimizerStep, samples, revision]
    }

    init(part: Range<Int>, learningRate: Float, optimizerStep: Int, samples: Int, revision: Int, packed: Bool) {
        (first, count, self.packed) = (UInt64(part.lowerBound), UInt64(part.count), packed)
        (self.learningRate, self.optimizerStep, self.samples) = (learningRate, UInt64(optimizerStep), UInt64(samples))
        self.revision = UInt64(revision)
    }

    init(checking f: [UInt64]) throws(WireError) {
        let rate = Float(bitPattern: UInt32(truncatingIfNeeded: f[2]))
        guard f[1] >> 32 <= 1, f[2] <= UInt64(UInt32.max), rate.isFinite, rate >= 0, f[3] < 1 << 40, f[4] >= 1,
              f[4] <= 1 << 40, f[5] < 1 << 20 else {
            throw .badField(.meanPart, "form \(f[1] >> 32) (0 Floats, 1 packed), learning rate \(rate), optimizer step "
                + "\(f[3]), samples \(f[4]) or revision \(f[5]) out of range")
        }
        (first, count, packed) = (f[0], f[1] & 0xFFFF_FFFF, f[1] >> 32 == 1)
        (learningRate, optimizerStep, samples, revision) = (rate, f[3], f[4], f[5])
    }
}

struct RefutedFields: HeaderFields {
    static let type = MessageType.refuted
    static let names = ["worker", "attempt", "part"]
    var worker: UInt32, attempt: UInt64, part: UInt64

    var words: [UInt64] { [UInt64(worker), attempt, part] }

    init(worker: UInt32, attempt: UInt64, part: Int) { (self.worker, self.attempt, self.part) = (worker, attempt, UInt64(part)) }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[0] >= 1, f[0] <= UInt64(UInt32.max), f[2] < 1 << 16 else {
            throw .badField(.refuted, "worker \(f[0]) or part \(f[2]) out of range")
        }
        (worker, attempt, part) = (UInt32(f[0]), f[1], f[2])
    }
}

extension Codec {
    /// An owner's word that `worker`'s attempt `attempt` sent a part `part` that is no possible sum.
    package static func refuted(worker: UInt32, attempt: UInt64, part: Int, reason: String, job: UInt64, step: UInt64,
                                owner: UInt32) throws -> [Message] {
        [try Message(copying: header(RefutedFields(worker: worker, attempt: attempt, part: part), job: job, step: step,
                                     worker: owner).encoded()),
         try Message(copying: Array(reason.utf8.prefix(1000)))]
    }

    package static func peers(_ list: PeerList, job: UInt64, step: UInt64) throws -> [Message] {
        let fields = PeersFields(peerCount: list.peers.count, partCount: list.owners.count)
        return [try Message(copying: header(fields, job: job, step: step).encoded()),
                try Message(copying: Array(list.text.utf8))]
    }

    package static func sumOrder(_ order: OrderedSum, job: UInt64, step: UInt64) throws -> [Message] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(20 * order.contributions.count)
        for c in order.contributions {
            for word in [c.worker, UInt32(c.firstMicroShard), UInt32(c.microShards)] {
                withUnsafeBytes(of: word.littleEndian) { bytes += $0 }
            }
            withUnsafeBytes(of: c.attempt.littleEndian) { bytes += $0 }
        }
        let fields = SumOrderFields(revision: order.revision, samples: order.samples,
                                    contributions: order.contributions.count, learningRate: order.learningRate,
                                    optimizerStep: order.optimizerStep, packsMeans: order.packsMeans)
        return [try Message(copying: header(fields, job: job, step: step).encoded()), try Message(copying: bytes)]
    }

    /// A part of the step's gradient: send it followed by a frame of its Floats, packed (`cexact_pack_floats`) or not.
    package static func meanPartHeader(job: UInt64, step: UInt64, worker: UInt32, part: Range<Int>, learningRate: Float,
                                      optimizerStep: Int, samples: Int, revision: Int,
                                      packed: Bool = false) throws -> Message {
        let fields = MeanPartFields(part: part, learningRate: learningRate, optimizerStep: optimizerStep, samples: samples,
                                    revision: revision, packed: packed)
        return try Message(copying: header(fields, job: job, step: step, worker: worker).encoded())
    }

    static func peers(_ f: PeersFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        // A list of allowed keys only comes before the job (no parameter count yet).
        if f.partCount > 0 {
            let parts = try self.parts(limits, .peers)
            guard Int(f.partCount) == parts.count else {
                throw .badField(.peers, "\(f.partCount) parts; the job's \(parts.parameterCount) parameters make "
                    + "\(parts.count)")
            }
        }
        let text = try self.text(frame, .peers, limit: 128 * Int(f.peerCount) + 12 * Int(f.partCount) + 48 * 4096 + 64)
        var peers: [PeerList.Peer] = [], owners: [UInt32] = [], allowed: [CurvePublicKey] = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.first == "allow", words.count == 2, allowed.count < 4096 {
                guard let key = try? CurvePublicKey(z85: String(words[1])) else {
                    throw .badText(.peers, "an allowed key that is not a CurveZMQ public key")
                }
                allowed.append(key)
                continue
            }
            if words.first == "owners", owners.isEmpty {
                owners = words.dropFirst().compactMap { UInt32($0) }
                guard owners.count == words.count - 1 else { throw .badText(.peers, "an owner that is not a worker id") }
                continue
            }
            guard words.first == "peer", words.count == 3 || words.count == 4, let id = UInt32(words[1]), id > 0,
                  PeerList.isPeerEndpoint(String(words[2])) else {
                throw .badText(.peers, "line \(printable(String(line.prefix(80)))) is not `peer ID tcp://IPv4:PORT [KEY]`")
            }
            var key: CurvePublicKey?
            if words.count == 4 {
                guard let parsed = try? CurvePublicKey(z85: String(words[3])) else {
                    throw .badText(.peers, "peer \(id)'s key is not a CurveZMQ public key")
                }
                key = parsed
            }
            peers.append(.init(worker: id, endpoint: String(words[2]), key: key))
        }
        let ids = Set(peers.map(\.worker))
        guard peers.count == Int(f.peerCount), ids.count == peers.count, owners.count == Int(f.partCount),
              owners.allSatisfy({ $0 == PeerList.coordinator || ids.contains($0) }) else {
            throw .badText(.peers, "\(peers.count) distinct peers of \(f.peerCount), \(owners.count) owners of "
                + "\(f.partCount) parts, or an owner that is neither a peer nor the coordinator (0)")
        }
        return .peers(PeerList(peers: peers, owners: owners, allowed: allowed))
    }

    static func sumOrder(_ f: SumOrderFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        guard frame.count == 20 * Int(f.contributions) else {
            throw .payloadSize(type: .sumOrder, bytes: frame.count, expected: "\(20 * f.contributions) (20 a contribution)")
        }
        let contributions = frame.withUnsafeBytes { raw in
            (0..<Int(f.contributions)).map { i in
                let word = { (k: Int) in Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 20 * i + 4 * k, as: UInt32.self))) }
                return OrderedContribution(worker: UInt32(word(0)), firstMicroShard: word(1), microShards: word(2),
                                           attempt: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 20 * i + 12,
                                                                                           as: UInt64.self)))
            }
        }
        // In micro-shard order by first micro-shard (a contribution's may be several runs, after a loss).
        var previous = -1, total = 0
        for c in contributions {
            guard c.worker > 0, c.microShards >= 1, c.microShards <= 1 << 20, c.firstMicroShard > previous else {
                throw .badField(.sumOrder, "contribution of w\(c.worker) at micro-shard \(c.firstMicroShard) "
                    + "(\(c.microShards) micro-shards) out of order or range")
            }
            previous = c.firstMicroShard
            total += c.microShards
        }
        guard total <= 1 << 20 else { throw .badField(.sumOrder, "\(total) micro-shards") }
        return .sumOrder(OrderedSum(revision: Int(f.revision), samples: Int(f.samples), learningRate: f.learningRate,
                                    optimizerStep: Int(f.optimizerStep), contributions: contributions,
                                    packsMeans: f.packsMeans))
    }

    static func meanPart(_ f: MeanPartFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let part = try self.part(first: f.first, count: f.count, limits, .meanPart)
        let values = try partFloats(frame, part, packed: f.packed, .meanPart)
        return .meanPart(MeanPart(range: part, learningRate: f.learningRate, optimizerStep: Int(f.optimizerStep),
                                  samples: Int(f.samples), revision: Int(f.revision), values: values))
    }
}
