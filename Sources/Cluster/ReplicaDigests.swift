import CDigest
import Wire

/// Whether a worker's replica of the weights is bit for bit the coordinator's, without the weights crossing a link
/// (docs/scale-out.md, "Replicas' digests"). In the sharded layout every worker makes the next step's weights from the
/// owners' means; an owner could send a worker a mean other than the one it sent the coordinator, whose spot check
/// it then passes. So the coordinator draws a key for each worker and step, after every mean of the step before is
/// out, and sends it to that worker alone with the step's weights; the worker's result carries the digest of each
/// part of the weights it computed from under that key (`cdigest_nh`: two different parts agree with probability at
/// most 2^-32 for a key the sender of a false mean does not know), and the coordinator compares them with its own.
package struct ReplicaDigests {
    private let parts: PartSplit
    /// The key's words: a part's, rounded up to even.
    private var key: [UInt32]

    package init(parts: PartSplit) {
        self.parts = parts
        key = [UInt32](repeating: 0, count: (parts.size + 1) / 2 * 2)
    }

    /// A key's seed for one worker and step: never 0 (0 means none on the wire).
    package static func drawSeed() -> UInt64 {
        var generator = SystemRandomNumberGenerator()
        while true {
            let seed = generator.next() as UInt64
            if seed != 0 { return seed }
        }
    }

    /// The digest of each part of `weights` under the key `seed` makes.
    package mutating func digests(of weights: UnsafePointer<Float>, seed: UInt64) -> [UInt64] {
        let parts = parts
        return key.withUnsafeMutableBufferPointer { key in
            cdigest_key(seed, key.baseAddress!, key.count)
            return (0..<parts.count).map { part in
                let range = parts[part]
                return UnsafeRawPointer(weights + range.lowerBound).withMemoryRebound(to: UInt32.self, capacity: range.count) {
                    cdigest_nh($0, range.count, key.baseAddress!)
                }
            }
        }
    }

    /// `digests` as a result's frame carries them (little-endian).
    package static func frame(_ digests: [UInt64]) throws -> Message {
        try digests.map(\.littleEndian).withUnsafeBytes { try Message(copying: $0) }
    }
}
