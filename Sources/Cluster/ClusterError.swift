/// A distributed run that cannot go on: which worker, which step, which micro-shards, and what to do.
public struct ClusterError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
