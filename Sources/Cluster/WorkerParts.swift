import CExactSum
import Engine
import Wire

/// The next step's weights as the coordinator sends them part by part, each as soon as its optimizer update is done.
final class IncomingWeights {
    var weights: Buffer<Float>
    private(set) var step: UInt64?
    private var received: [Bool]
    private var receivedCount = 0

    private let parts: PartSplit

    init(parts: PartSplit) {
        weights = Buffer<Float>(count: parts.parameterCount)
        self.parts = parts
        received = Array(repeating: false, count: parts.count)
    }

    /// Keeps a part of step `step`'s weights (a part of an earlier step's is forgotten).
    func take(_ frame: FloatFrame, from first: Int, step: UInt64) {
        if self.step != step { clear() }
        self.step = step
        frame.copy(into: weights.pointer + first)
        let part = parts.part(startingAt: first)
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

/// Memory for an exact sum's limbs packed part by part, sent without copying; it grows when a job needs more and is
/// reused once libzmq has let go of it.
final class PackedParts {
    private var shared: SharedPayload?

    /// A payload of at least `byteCount` bytes that libzmq no longer reads (`waitUntilIdle` waits for that).
    func payload(byteCount: Int, waitUntilIdle: (SharedPayload) throws -> Void) throws -> SharedPayload {
        if let shared, shared.byteCount >= byteCount {
            try waitUntilIdle(shared)
            return shared
        }
        let fresh = SharedPayload(byteCount: byteCount)
        shared = fresh
        return fresh
    }
}

/// Sends a result's arrays (one after another in `payload`) in parts to the coordinator, which updates each part as
/// soon as every worker's is in: the parts backward has finished while it still runs (the last layers' come first),
/// then the rest, then the counts.
final class PartSender {
    let payload: SharedPayload
    let arrays: Int
    let parts: PartSplit
    var count: Int { parts.parameterCount }
    /// Parts from this index on have gone.
    private var firstSent: Int
    /// Calls of the network's layer hook to pass over: those of micro-shards before the last.
    var skippedCalls = 0
    /// Sharded layout: sends a part's frames to the part's owner (by part index) instead of `send`; whether this
    /// worker owns a part (which stays here, as Floats).
    var route: ((Int, [Message]) throws -> Void)?
    var ownsPart: ((Int) -> Bool)?
    /// A traced result's recorder: each part's sending (and packing) is a span.
    var spans: SpanRecorder?
    /// Where bytes are dear: Floats go packed (`cexact_pack_floats`) into this, each array's parts in
    /// `PartSplit.packedRoom` bytes.
    var packedFloats: SharedPayload?
    /// What sending failed with inside the hook (it cannot throw), for the caller to throw after.
    private(set) var failure: Error?
    let send: ([Message]) throws -> Void
    /// The header of a part: (array, part, what its frame holds).
    let header: (_ array: Int, _ part: Range<Int>, _ form: PartForm) throws -> Message

    init(payload: SharedPayload, arrays: Int, parts: PartSplit, send: @escaping ([Message]) throws -> Void,
         header: @escaping (Int, Range<Int>, PartForm) throws -> Message) {
        self.payload = payload
        self.arrays = arrays
        self.parts = parts
        firstSent = parts.count
        self.send = send
        self.header = header
    }

    /// For `Network.onLayerGradient`: the gradient is final from parameter `first` on, so the parts that lie there
    /// go now.
    func layerDone(finalFrom first: Int) {
        if skippedCalls > 0 {
            skippedCalls -= 1
            return
        }
        // The call from parameter 0 (the first layer's first block) is the end of backward: its parts go with the
        // rest, after any test-build change.
        guard failure == nil, first > 0 else { return }
        do { try sendParts(from: first) } catch { failure = error }
    }

    /// Sends the parts not yet sent that start at or after parameter `first`.
    func sendParts(from first: Int = 0) throws {
        while firstSent > 0, parts[firstSent - 1].lowerBound >= first {
            let index = firstSent - 1, part = parts[index], started = spans == nil ? 0 : SpanRecorder.now()
            defer { spans?.record(.sendPart, index, from: started) }
            for array in 0..<arrays {
                let offset = 4 * (array * count + part.lowerBound)
                guard let out = packedFloats, !(ownsPart?(index) ?? false) else {
                    try deliver(part, [header(array, part, .floats),
                                       Message(sharing: payload, byteCount: 4 * part.count, from: offset)])
                    continue
                }
                let packedAt = array * parts.packedRoom + parts.packedOffset(of: index)
                let length = cexact_pack_floats((payload.bytes + offset).assumingMemoryBound(to: Float.self), part.count,
                                                (out.bytes + packedAt).assumingMemoryBound(to: UInt8.self))
                try deliver(part, [header(array, part, .packedFloats),
                                   Message(sharing: out, byteCount: length, from: packedAt)])
            }
            firstSent -= 1
        }
    }

    private func deliver(_ part: Range<Int>, _ frames: [Message]) throws {
        if let route { try route(parts.part(startingAt: part.lowerBound), frames) } else { try send(frames) }
    }

    /// An exact sum's limbs (`cexact_merge`'s layout), each part packed on its own into `out`, one after another,
    /// and sent: more than two micro-shards' Floats would be more bytes. Each part's held micro-shards are added
    /// just before it is packed (`GradientSum.settle`); a part says it diverged as `settle` tells (the part holding
    /// a NaN or ∞ always does).
    func sendPackedLimbs(of sum: GradientSum, into out: SharedPayload) throws {
        var offset = 0, index = parts.count
        // Last part first, as Floats go: the coordinator can update a part once every worker has sent it.
        try sum.settle(parts.reversed()) { part, bytes, diverged in
            index -= 1
            let started = spans == nil ? 0 : SpanRecorder.now()
            defer { spans?.record(.sendPart, index, from: started) }
            let length = cexact_pack_range(bytes, count, part.lowerBound, part.upperBound,
                                           (out.bytes + offset).assumingMemoryBound(to: UInt8.self))
            try deliver(part, [header(0, part, .packedLimbs(diverged: diverged)),
                               Message(sharing: out, byteCount: length, from: offset)])
            offset += length
        }
        firstSent = 0
    }
}
