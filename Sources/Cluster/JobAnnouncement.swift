import Engine

/// What a coordinator tells a joining worker: the job (canonical text) and the fingerprint of the training samples
/// the worker must hold, so it can check its own copy instead of receiving it.
public struct JobAnnouncement: Sendable, Equatable {
    public var job: Job
    public var samples: Int
    public var fingerprint: String

    static let prefix = "shardtrain-job"

    public init(job: Job, samples: Int, fingerprint: String) {
        self.job = job
        self.samples = samples
        self.fingerprint = fingerprint
    }

    /// A first line `shardtrain-job samples=N fingerprint=HEX`, then the job text.
    public var bytes: [UInt8] {
        Array("\(Self.prefix) samples=\(samples) fingerprint=\(fingerprint)\n\(job.canonicalText)".utf8)
    }

    public init(bytes: [UInt8]) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let newline = text.firstIndex(of: "\n") else { throw ClusterError("job announcement has no header line") }
        let fields = text[..<newline].split(separator: " ")
        guard fields.first == Substring(Self.prefix), fields.count == 3,
              let samples = Int(fields[1].dropFirst("samples=".count)), fields[1].hasPrefix("samples="),
              fields[2].hasPrefix("fingerprint="), fields[2].count == "fingerprint=".count + 64 else {
            throw ClusterError("job announcement header is malformed: \(text[..<newline].prefix(120))")
        }
        self.samples = samples
        fingerprint = String(fields[2].dropFirst("fingerprint=".count))
        job = try Job.parse(String(text[text.index(after: newline)...]), file: "job from coordinator", folder: "")
    }
}
