import Engine
import Jobs
import Wire

/// What a coordinator tells a joining worker: the job (canonical text) and the fingerprint of the training samples
/// the worker must hold, so it can check its own copy instead of receiving it, and the coordinator's OpenBLAS kernel
/// and oneDNN instruction set, which an exact-mode worker follows, and the job's part size (`PartSplit`).
package struct JobAnnouncement: Sendable, Equatable {
    package var job: Job
    package var samples: Int
    package var fingerprint: String
    package var blas: String
    package var oneDNN: String
    package var partSize: Int

    static let prefix = "shardtrain-job"
    /// The largest announcement a worker reads; a coordinator refuses to announce a larger job.
    package static let maximumBytes = 64 << 20

    package init(job: Job, samples: Int, fingerprint: String, blas: String, oneDNN: String, partSize: Int) {
        self.job = job
        self.samples = samples
        self.fingerprint = fingerprint
        self.blas = blas
        self.oneDNN = oneDNN
        self.partSize = partSize
    }

    /// A first line `shardtrain-job samples=N fingerprint=HEX blas=KERNEL onednn=ISA parts=SIZE`, then the job text.
    package var bytes: [UInt8] {
        Array(("\(Self.prefix) samples=\(samples) fingerprint=\(fingerprint) blas=\(blas) onednn=\(oneDNN) "
            + "parts=\(partSize)\n" + job.canonicalText).utf8)
    }

    package init(bytes: [UInt8]) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let newline = text.firstIndex(of: "\n") else { throw ClusterError("job announcement has no header line") }
        let fields = text[..<newline].split(separator: " ")
        guard fields.first == Substring(Self.prefix), fields.count == 6,
              let samples = Int(fields[1].dropFirst("samples=".count)), fields[1].hasPrefix("samples="),
              fields[2].hasPrefix("fingerprint="), fields[2].count == "fingerprint=".count + 64,
              fields[3].hasPrefix("blas="), fields[3].count > "blas=".count, fields[3].count <= 64,
              fields[4].hasPrefix("onednn="), OneDNN.instructionSets.contains(String(fields[4].dropFirst(7))),
              fields[5].hasPrefix("parts="), let partSize = Int(fields[5].dropFirst("parts=".count)),
              PartSplit.isSize(partSize) else {
            throw ClusterError("job announcement header is malformed: \(text[..<newline].prefix(120))")
        }
        self.samples = samples
        fingerprint = String(fields[2].dropFirst("fingerprint=".count))
        blas = String(fields[3].dropFirst("blas=".count))
        oneDNN = String(fields[4].dropFirst("onednn=".count))
        self.partSize = partSize
        job = try Job.parse(String(text[text.index(after: newline)...]), file: "job from coordinator", folder: "")
    }
}
