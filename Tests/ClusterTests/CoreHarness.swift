@testable import Cluster
import Engine
import Foundation
import Jobs
import Testing
import Wire

/// A coordinator core with a clock the test moves and peers that speak through real encoded and decoded messages:
/// what the shell would feed it, with no socket and no process.
struct CoreHarness {
    static let jobID: UInt64 = 0x5EED
    static let parameterCount = 8
    static let fingerprint: UInt64 = 0xF1F1

    var core: CoordinatorCore
    var now = ContinuousClock.now
    let settings: Coordinator.Settings
    let limits: Limits
    let reduction: Reduction

    init(workers: Int = 2, reduction: Reduction = .fast, library: GEMMLibrary = .oneDNN,
         configure: (inout Coordinator.Settings) -> Void = { _ in }) {
        var settings = Coordinator.Settings(endpoint: "tcp://127.0.0.1:1", workers: workers)
        settings.heartbeat = .seconds(1)
        settings.workerTimeout = .seconds(30)
        configure(&settings)
        self.settings = settings
        self.reduction = reduction
        limits = Limits(parameterCount: Self.parameterCount, job: Self.jobID)
        core = CoordinatorCore(
            settings: settings,
            admission: .init(reduction: reduction, library: library, blasKernel: "Haswell",
                             productsFingerprint: reduction == .exact ? Self.fingerprint : 0, samples: 100,
                             microShardSize: 4),
            partCount: PartSplit(parameterCount: Self.parameterCount).count, hasWeightsRegion: true, now: now)
    }

    static func identity(_ peer: Int) -> [UInt8] { [0, UInt8(peer)] }

    func decode(_ frames: [Message]) throws -> Envelope { try Codec.decode(frames, limits: limits) }

    mutating func receive(_ peer: Int, _ frames: [Message], _ received: CoordinatorCore.Received = .init()) throws
        -> [CoordinatorAction] {
        core.receive(try decode(frames), from: Self.identity(peer), at: now, received)
    }

    @discardableResult
    mutating func hello(_ peer: Int, blas: String = "Haswell") throws -> [CoordinatorAction] {
        try receive(peer, Codec.hello(fields: ["name": "p\(peer)", "host": "h", "pid": "\(1000 + peer)",
                                               "cores": "2", "build": "b", "blas": blas, "onednn": "avx2"],
                                      cores: 2, pid: Int32(1000 + peer)))
    }

    /// The member index of `peer`.
    func member(_ peer: Int) -> Int { core.table.index(of: Self.identity(peer))! }
    func id(_ peer: Int) -> UInt32 { core.table[member(peer)].id }

    @discardableResult
    mutating func ready(_ peer: Int, hasData: Bool = true, readsWeights: Bool = false, products: UInt64? = nil,
                        mappedRegion: Bool = false) throws -> [CoordinatorAction] {
        try receive(peer, Codec.ready(job: Self.jobID, worker: id(peer), hasData: hasData, readsWeightsRegion: readsWeights,
                                      products: products ?? (reduction == .exact ? Self.fingerprint : 0)),
                    .init(mappedResultRegion: mappedRegion))
    }

    /// Peers that said hello and are ready.
    mutating func join(_ peers: Int...) throws {
        for peer in peers {
            try hello(peer)
            try ready(peer)
        }
    }

    mutating func beginStep(_ step: Int, microShards: Int = 4, samples: Int? = nil) {
        core.beginStep(step: step, epoch: 0, batchIndex: step, microShards: microShards,
                       batchSamples: samples ?? 4 * microShards)
    }

    mutating func handOut() -> [CoordinatorAction] { core.handOut(at: now) }

    /// `peer`'s answer to `order`, as a worker encodes it (fast: one sum's Floats; exact: each micro-shard's Floats).
    func resultFrames(_ peer: Int, _ order: AssignmentOrder, samples: Int? = nil, correct: Int = 0, worker: UInt32? = nil,
                      step: Int? = nil, exact: Bool? = nil, floatShards: Int? = nil, regionSlot: Int? = nil,
                      inParts: Bool = false, value: Float = 0) throws -> [Message] {
        let microShards = order.ranges.reduce(0) { $0 + $1.count }
        let exact = exact ?? (reduction == .exact)
        let shards = floatShards ?? (exact ? microShards : 0)
        let samples = samples ?? order.ranges.reduce(0) { $0 + 4 * $1.count }
        let header = try Codec.gradientHeader(job: Self.jobID, step: UInt64(step ?? order.step), worker: worker ?? id(peer),
                                              samples: samples, correct: correct, lossHigh: 0, lossLow: 0, exact: exact,
                                              overflowed: false, attempt: order.attempt, regionSlot: regionSlot,
                                              floatShards: shards, inParts: inParts)
        let floats = regionSlot != nil || inParts ? 0 : Self.parameterCount * max(1, shards)
        if exact && shards == 0 {
            return [header, try Message(copying: [UInt8](repeating: 0, count: GradientFrame.exactBytesPerParameter
                * Self.parameterCount))]
        }
        return [header, try [Float](repeating: value, count: floats).withUnsafeBytes { try Message(copying: $0) }]
    }

    @discardableResult
    mutating func answer(_ peer: Int, _ order: AssignmentOrder, after seconds: Double = 0.1, value: Float = 0) throws
        -> [CoordinatorAction] {
        now += .milliseconds(Int(seconds * 1000))
        return try receive(peer, resultFrames(peer, order, value: value))
    }

    /// Moves the clock and lets the core see it.
    @discardableResult
    mutating func advance(_ duration: Duration) -> [CoordinatorAction] {
        now += duration
        return core.tick(at: now)
    }
}

extension [CoordinatorAction] {
    var logs: [String] { compactMap { if case .log(let line) = $0 { line } else { nil } } }
    var sends: [(member: Int, outgoing: Outgoing)] {
        compactMap { if case .send(let member, let outgoing, _) = $0 { (member, outgoing) } else { nil } }
    }
    var replies: [Outgoing] { compactMap { if case .reply(_, let outgoing) = $0 { outgoing } else { nil } } }
    var assignments: [(member: Int, order: AssignmentOrder)] {
        sends.compactMap { if case .assignment(let order) = $0.outgoing { ($0.member, order) } else { nil } }
    }
    var weights: [(member: Int, form: WeightsForm)] {
        sends.compactMap { if case .weights(_, let form) = $0.outgoing { ($0.member, form) } else { nil } }
    }
    var losses: [(member: Int, attempts: [UInt64], valuesRefused: Bool)] {
        compactMap { if case .lost(let m, let a, let refused, _) = $0 { (m, a, refused) } else { nil } }
    }
    func logged(_ text: String) -> Bool { logs.contains { $0.contains(text) } }
}
