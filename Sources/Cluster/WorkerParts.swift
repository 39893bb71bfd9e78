import Engine
import Wire

/// The next step's weights as the coordinator sends them part by part, each as soon as its optimizer update is done.
final class IncomingWeights {
    var weights: Buffer<Float>
    private(set) var step: UInt64?
    private var received: [Bool]
    private var receivedCount = 0

    init(count: Int) {
        weights = Buffer<Float>(count: count)
        received = Array(repeating: false, count: Codec.parts(of: count).count)
    }

    /// Keeps a part of step `step`'s weights (a part of an earlier step's is forgotten).
    func take(_ frame: FloatFrame, from first: Int, step: UInt64) {
        if self.step != step { clear() }
        self.step = step
        frame.copy(into: weights.pointer + first)
        let part = first / Codec.partParameters
        if !received[part] {
            received[part] = true
            receivedCount += 1
        }
    }

    /// Nil when every part of step `step`'s weights is here; otherwise what is missing, as the error to send.
    func missing(step: UInt64) -> String? {
        guard self.step != step || receivedCount != received.count else { return nil }
        let held = self.step == step ? receivedCount : 0
        return "step \(step)'s weights were to come in \(received.count) parts, and this worker holds \(held) of them; "
            + "join again"
    }

    func clear() {
        step = nil
        if receivedCount > 0 { received.withUnsafeMutableBufferPointer { $0.update(repeating: false) } }
        receivedCount = 0
    }
}

/// Memory for an exact result of more micro-shards' Floats than a sum's memory holds, sent in parts without copying;
/// it grows when an assignment needs more and is reused while it need not.
final class PartArrays {
    private var shared: SharedPayload?

    /// A payload of at least `floats` Floats that libzmq no longer reads (`waitUntilIdle` waits for that).
    func payload(holding floats: Int, waitUntilIdle: (SharedPayload) throws -> Void) throws -> SharedPayload {
        if let shared, shared.byteCount >= 4 * floats {
            try waitUntilIdle(shared)
            return shared
        }
        let fresh = SharedPayload(byteCount: 4 * floats)
        shared = fresh
        return fresh
    }
}

extension WorkerNode {
    /// Sends a result's `arrays` arrays of `count` Floats (one after another in `payload`) in parts, part by part, so
    /// the coordinator can update each part as soon as every worker's is in, then its counts.
    func sendInParts(_ dealer: Socket, _ payload: SharedPayload, arrays: Int, count: Int, statistics: ExactSummary,
                     exact: Bool, job: UInt64, step: UInt64, worker: UInt32, attempt: UInt64) throws {
        for part in Codec.parts(of: count) {
            for array in 0..<arrays {
                try send(dealer, [Codec.gradientPartHeader(job: job, step: step, worker: worker, attempt: attempt,
                                                           array: array, arrays: arrays, part: part),
                                  Message(sharing: payload, byteCount: 4 * part.count,
                                          from: 4 * (array * count + part.lowerBound))])
            }
        }
        try send(dealer, [Codec.gradientHeader(job: job, step: step, worker: worker, samples: statistics.samples,
                                               correct: statistics.correct, lossHigh: statistics.loss.high,
                                               lossLow: statistics.loss.low, lossWindow: statistics.loss.window,
                                               exact: exact, overflowed: statistics.overflowed, attempt: attempt,
                                               inParts: true),
                          Message(copying: [UInt8]())])
    }
}
