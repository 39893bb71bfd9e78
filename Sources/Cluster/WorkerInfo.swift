/// A joined worker as the coordinator knows it.
public struct WorkerInfo: Sendable {
    public let id: UInt32
    public let identity: [UInt8]
    public let name: String
    public let host: String
    public let pid: String
    public let cores: String
    public let build: String
    /// Measured micro-shards per second (an exponential moving average; 1 before the first step).
    public var speed = 1.0

    /// How every coordinator line names this worker: `w2 "name" (host, pid 1234)`.
    public var label: String { "w\(id) \"\(name)\" (\(host), pid \(pid))" }
}
