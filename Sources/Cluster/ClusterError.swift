/// A distributed run that cannot go on: which worker, which step, which micro-shards, and what to do.
public struct ClusterError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The coordinator ended the run (it failed, or was stopped) and told this worker why. A local worker says nothing
/// of it: its coordinator, in the parent process, has said it already.
public struct CoordinatorStoppedRun: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "the coordinator stopped the run: \(reason)" }
}
