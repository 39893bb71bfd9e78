import Engine
import Foundation
import Testing
import Wire
@testable import Cluster

/// A worker's owner role (`ShardedWorker` on `OwnerRound`) with its real bytes: parts of contributions come as a
/// peer's messages would, orders as the coordinator's; what it sends the coordinator is read back.
@Suite struct ShardedOwnerTests {
    static let count = 1000  // one part
    static let limits = Limits(parameterCount: count, job: 7)

    /// Part 0 of `worker`'s attempt `attempt`: array `array` of `arrays`, every value `value`.
    static func part(_ worker: UInt32, attempt: UInt64, array: Int, of arrays: Int, value: Float) throws -> PartValues {
        let values = [Float](repeating: value, count: count)
        let frames = [try Codec.gradientPartHeader(job: 7, step: 1, worker: worker, attempt: attempt, array: array,
                                                   arrays: arrays, part: 0..<count),
                      try values.withUnsafeBytes { try Message(copying: $0) }]
        guard case .gradientPart(_, _, _, _, let part) = try Codec.decode(frames, limits: limits).payload else {
            throw ClusterError("not a part")
        }
        return part
    }

    @Test("a contribution refuted for its arrays reopens the part; one still missing an array is waited for, not refuted, and the next order's sum has the exact mean")
    func refutedThenPartial() throws {
        let context = try Context()
        let peers = try #require(try WorkerPeers(context: context, coordinator: "tcp://127.0.0.1:9", keys: nil) { _ in })
        defer { peers.close() }
        var options = TrainingOptions()
        options.reduction = .exact
        var sent: [Envelope] = []
        let parts = PartSplit(parameterCount: Self.count)
        let owner = ShardedWorker(peers: peers, me: 1, jobID: 7, options: options, parts: parts,
                                  weights: WorkerWeights(parts: parts, region: nil)) { frames in
            sent.append(try Codec.decode(frames, limits: Self.limits))
        }
        try owner.follow(PeerList(peers: [.init(worker: 1, endpoint: peers.endpoint, key: nil)], owners: [1]))
        // w2 sends one array for its two micro-shards; w3 the first of its two.
        try owner.contribution(2, step: 1, attempt: 1, array: 0, arrays: 1, first: 0,
                               values: try Self.part(2, attempt: 1, array: 0, of: 1, value: 8))
        try owner.contribution(3, step: 1, attempt: 2, array: 0, arrays: 2, first: 0,
                               values: try Self.part(3, attempt: 2, array: 0, of: 2, value: 1))
        try owner.ordered(OrderedSum(revision: 0, samples: 4, learningRate: 0.1, optimizerStep: 0, contributions: [
            .init(worker: 2, firstMicroShard: 0, microShards: 2, attempt: 1),
            .init(worker: 3, firstMicroShard: 2, microShards: 2, attempt: 2)]), step: 1)
        // Not summed: w3's second array is not in yet.
        #expect(sent.isEmpty, "\(sent)")
        // w4, a twin computing w2's micro-shards, has the first of its two arrays in...
        try owner.contribution(4, step: 1, attempt: 3, array: 0, arrays: 2, first: 0,
                               values: try Self.part(4, attempt: 3, array: 0, of: 2, value: 0.25))
        try owner.contribution(3, step: 1, attempt: 2, array: 1, arrays: 2, first: 0,
                               values: try Self.part(3, attempt: 2, array: 1, of: 2, value: 2))
        // ...when w3's is complete: w2's one array where two micro-shards take two is refuted, and the part waits
        // again with w3's contribution (complete) and not w4's (half in).
        guard sent.count == 1, case .refuted(2, 1, 0, let reason) = sent[0].payload else {
            Issue.record("expected w2 refuted: \(sent)")
            return
        }
        #expect(reason.contains("1 arrays where its 2 micro-shards take 2"), "\(reason)")
        // The new order asks its means packed: the mean below is read back through the codec's unpacking.
        try owner.ordered(OrderedSum(revision: 1, samples: 4, learningRate: 0.1, optimizerStep: 0, contributions: [
            .init(worker: 4, firstMicroShard: 0, microShards: 2, attempt: 3),
            .init(worker: 3, firstMicroShard: 2, microShards: 2, attempt: 2)], packsMeans: true), step: 1)
        #expect(sent.count == 1, "w4's part is not complete: nothing summed, no one refuted: \(sent)")
        try owner.contribution(4, step: 1, attempt: 3, array: 1, arrays: 2, first: 0,
                               values: try Self.part(4, attempt: 3, array: 1, of: 2, value: 0.25))
        guard sent.count == 2, case .meanPart(let mean) = sent[1].payload else {
            Issue.record("expected the mean: \(sent)")
            return
        }
        // (1 + 2 + 0.25 + 0.25) / 4, exact.
        var values = [Float](repeating: 0, count: Self.count)
        values.withUnsafeMutableBufferPointer { mean.values.copy(into: $0.baseAddress!) }
        #expect(mean.range == 0..<Self.count && values.allSatisfy { $0 == 0.875 }, "\(values.prefix(4))")
    }
}
