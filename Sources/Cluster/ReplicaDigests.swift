import CDigest
import Engine
import Foundation
import Wire

/// Whether a worker's replica is bit for bit the coordinator's — the step's weights and optimizer state — without
/// either crossing a link (docs/scale-out.md, "Replicas' digests"). In the sharded layout every worker makes the next
/// step's weights and state from the owners' means; an owner could send a worker a mean other than the one it sent
/// the coordinator, whose spot check it then passes. So the coordinator draws a key for each worker and step, after
/// every mean of the step before is out, and sends it to that worker alone with the step's weights; the worker's
/// result carries the digest (`cdigest`) of each part of its weights and of each state buffer as the step began, and
/// the coordinator compares them with its own. Two different parts digest alike under a key their sender does not
/// know with probability about 2^-32.
package enum ReplicaDigests {
    /// A key's seed for one worker and step: never 0 (0 means none on the wire).
    package static func drawSeed() -> UInt64 {
        var generator = SystemRandomNumberGenerator()
        while true {
            let seed = generator.next() as UInt64
            if seed != 0 { return seed }
        }
    }

    /// For each seed, the digest of each part of each array in turn (the weights, then each state buffer): array a's
    /// part p at `a * parts.count + p`. Part by part, every key at once, so each part is read from memory once.
    package static func digests(of arrays: [UnsafePointer<Float>], parts: PartSplit, seeds: [UInt64]) -> [[UInt64]] {
        var keys = [cdigest_key](repeating: cdigest_key(), count: seeds.count)
        for (i, seed) in seeds.enumerated() { cdigest_make_key(seed, &keys[i]) }
        var digests = [[UInt64]](repeating: [UInt64](repeating: 0, count: arrays.count * parts.count), count: seeds.count)
        for (a, array) in arrays.enumerated() {
            for part in 0..<parts.count {
                let range = parts[part]
                UnsafeRawPointer(array + range.lowerBound).withMemoryRebound(to: UInt32.self, capacity: range.count) { words in
                    for k in keys.indices { digests[k][a * parts.count + part] = cdigest(words, range.count, &keys[k]) }
                }
            }
        }
        return digests
    }

    /// `digests` as a result's frame carries them (little-endian).
    package static func frame(_ digests: [UInt64]) throws -> Message {
        try digests.map(\.littleEndian).withUnsafeBytes { try Message(copying: $0) }
    }
}

/// The coordinator's expected digests for a step, made on a thread of their own while its loop goes on: the step's
/// weights and state stay untouched until every count is in, and the loop waits for these before it reads a count
/// (and before it lets go of the step, however it ends). It holds the buffers it reads.
final class ReplicaExpectation: @unchecked Sendable {
    let step: Int
    private let finished = DispatchSemaphore(value: 0)
    private var checks: [Int: CoordinatorCore.ReplicaCheck] = [:]
    private let buffers: [Buffer<Float>]

    /// Starts making step `step`'s checks of `members` (by index: key seed, whether it makes its replica from the
    /// means) from `buffers` (the weights, then each state buffer).
    init(step: Int, members: [(index: Int, seed: UInt64, fromMeans: Bool)], buffers: [Buffer<Float>], parts: PartSplit) {
        (self.step, self.buffers) = (step, buffers)
        Thread.detachNewThread { [self] in
            let arrays = self.buffers.map { UnsafePointer($0.pointer) }
            let digests = ReplicaDigests.digests(of: arrays, parts: parts, seeds: members.map(\.seed))
            for (i, member) in members.enumerated() {
                checks[member.index] = .init(digests: digests[i], fromMeans: member.fromMeans)
            }
            finished.signal()
        }
    }

    /// The checks, once made (waits until they are).
    func wait() -> [Int: CoordinatorCore.ReplicaCheck] {
        finished.wait()
        finished.signal()
        return checks
    }
}
