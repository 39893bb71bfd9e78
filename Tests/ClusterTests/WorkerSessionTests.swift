@testable import Cluster
import Engine
import Foundation
import Jobs
import Testing
import Wire

/// A worker's session without a socket or a process: weights in each form, assignments checked and computed, and the
/// result messages it sends decoded as the coordinator decodes them.
@Suite struct WorkerSessionTests {
    static let jobID: UInt64 = 0xAB
    /// y = w·x + b on two features, MSE: the gradient of a sample is 2(ŷ − y)·(x₁, x₂, 1), computed here in Double.
    static let weights: [Float] = [0.5, -0.25, 0.125]
    static let features: [Float] = (0..<32).map { Float(($0 * 7) % 11) / 4 - 1 }
    static let targets: [Float] = (0..<16).map { Float(($0 * 5) % 7) / 2 }

    /// A session on a linear model, and the messages it sends.
    final class Harness {
        var sent: [[Message]] = []
        var session: WorkerSession!
        let limits = Limits(parameterCount: 3, job: WorkerSessionTests.jobID)

        init(reduction: String = "exact") throws {
            var job = try Job.parse("""
                model: {layers: [{units: 1}]}
                loss: mse
                optimizer: {name: sgd, lr: 0.1}
                batch_size: 8
                micro_shard: 4
                shuffle: false
                reduction: \(reduction)
                data: {builtin: regression, samples: 16}
                """, file: "j.yaml", folder: "")
            job.model.inputs = 2
            let data = try Dataset(name: "linear", features: WorkerSessionTests.features, featureWidth: 2,
                                   targets: WorkerSessionTests.targets, targetWidth: 1)
            session = WorkerSession(job: job, data: data, ids: .init(job: WorkerSessionTests.jobID, worker: 3),
                                    parts: PartSplit(parameterCount: job.model.layout.parameterCount), threads: 1,
                                    weightsRegion: nil, resultRegion: nil, packs: false,
                                    send: { [unowned self] in self.sent.append($0) }, waitUntilIdle: { _, _ in },
                                    beat: {})
        }

        func decode(_ frames: [Message]) throws -> Envelope { try Codec.decode(frames, limits: limits) }

        /// Step `step`'s weights, whole.
        func give(_ weights: [Float], step: UInt64) throws -> String? {
            let frames = [try Codec.weightsHeader(job: WorkerSessionTests.jobID, step: step, parameterCount: 3),
                          try weights.withUnsafeBytes { try Message(copying: $0) }]
            return try session.weights.take(decode(frames).payload, step: step)
        }
    }

    static func request(step: UInt64 = 1, batch: UInt64 = 0, ranges: [Range<Int>] = [0..<2], inParts: Bool = false)
        -> AssignmentRequest {
        AssignmentRequest(step: step, epoch: 0, batch: batch, attempt: 9, ranges: ranges, resultSlot: nil,
                          inParts: inParts)
    }

    /// The gradient sum over samples `rows`, in Double.
    static func reference(_ rows: Range<Int>) -> [Double] {
        var sum = [0.0, 0.0, 0.0]
        for row in rows {
            let x = [Double(features[2 * row]), Double(features[2 * row + 1])]
            let error = Double(weights[0]) * x[0] + Double(weights[1]) * x[1] + Double(weights[2]) - Double(targets[row])
            for (i, input) in (x + [1]).enumerated() { sum[i] += 2 * error * input }
        }
        return sum
    }

    @Test("an assignment is refused without its step's weights, outside the job's batches or the batch's micro-shards")
    func refusals() throws {
        let h = try Harness()
        #expect(h.session.refusal(of: Self.request()) == "assignment for step 1 arrived without its weights")
        #expect(try h.give(Self.weights, step: 1) == nil)
        #expect(h.session.refusal(of: Self.request()) == nil)
        #expect(h.session.refusal(of: Self.request(batch: 2)) == "assignment for batch 2 of epoch 0 is outside the job's 2 batches")
        #expect(h.session.refusal(of: Self.request(ranges: [1..<3])) == "assignment 1-2 is outside batch 0's 2 micro-shards")
    }

    @Test("exact: each micro-shard's Floats in the result are its gradient sum, as float64 computes it")
    func result() throws {
        let h = try Harness()
        _ = try h.give(Self.weights, step: 1)
        try h.session.run(Self.request(batch: 1))
        #expect(h.sent.count == 1)
        guard case .gradient(let frame) = try h.decode(h.sent[0]).payload else { Issue.record("no result"); return }
        #expect(frame.attempt == 9 && frame.samples == 8 && frame.floatShards == 2 && frame.exact)
        frame.withValues { bytes in
            let floats = bytes.bindMemory(to: Float.self)
            for shard in 0..<2 {
                let reference = Self.reference(8 + 4 * shard ..< 12 + 4 * shard)
                for i in 0..<3 {
                    #expect(abs(Double(floats[3 * shard + i]) - reference[i]) <= 1e-5 * max(1, abs(reference[i])),
                            "micro-shard \(shard), parameter \(i)")
                }
            }
        }
    }

    @Test("in parts, the result's Floats go as parts with the same bits, then a header that says so")
    func inParts() throws {
        let whole = try Harness(), parts = try Harness()
        for h in [whole, parts] { _ = try h.give(Self.weights, step: 1) }
        try whole.session.run(Self.request())
        try parts.session.run(Self.request(inParts: true))
        #expect(parts.sent.count == 3, "two micro-shards' arrays of one part, then the result's counts")
        guard case .gradient(let frame) = try whole.decode(whole.sent[0]).payload,
              case .gradient(let last) = try parts.decode(parts.sent[2]).payload else { Issue.record("no result"); return }
        #expect(last.inParts && last.samples == frame.samples)
        let wholeBytes = frame.withValues { Array($0) }
        var partBytes: [UInt8] = []
        for frames in parts.sent.prefix(2) {
            guard case .gradientPart(9, let array, 2, 0, .floats(let floats)) = try parts.decode(frames).payload else {
                Issue.record("not a part"); return
            }
            #expect(array == partBytes.count / 12)
            partBytes += floats.message.withUnsafeBytes { Array($0) }
        }
        #expect(partBytes == wholeBytes)
    }

    @Test("weights from parts need every part; without them the worker says how many it holds")
    func fromParts() throws {
        let h = try Harness()
        let frames = [try Codec.weightsHeader(job: Self.jobID, step: 2, parameterCount: 3, fromParts: true),
                      try Message(copying: [UInt8]())]
        #expect(try h.session.weights.take(h.decode(frames).payload, step: 2)
            == "step 2's weights were to come in 1 parts, and this worker holds 0 of them; join again")
        let part = [try Codec.weightsPartHeader(job: Self.jobID, step: 2, part: 0..<3),
                    try Self.weights.withUnsafeBytes { try Message(copying: $0) }]
        #expect(try h.session.weights.take(h.decode(part).payload, step: 2) == nil)
        #expect(try h.session.weights.take(h.decode(frames).payload, step: 2) == nil)
        #expect(h.session.weights.step == 2 && Array(h.session.weights.parameters.elements) == Self.weights)
    }

    @Test("weights said to be in a region this worker has not mapped end it")
    func noRegion() throws {
        let h = try Harness()
        let frames = [try Codec.weightsHeader(job: Self.jobID, step: 2, parameterCount: 3, inRegion: true),
                      try Message(copying: [UInt8]())]
        #expect(throws: ClusterError.self) { try h.session.weights.take(h.decode(frames).payload, step: 2) }
    }
}
