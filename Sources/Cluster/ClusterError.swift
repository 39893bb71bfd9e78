/// A distributed run that cannot go on: which worker, which step, which micro-shards, and what to do.
package struct ClusterError: Error, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// The coordinator ended the run (it failed, or was stopped) and told this worker why. A local worker says nothing
/// of it: its coordinator, in the parent process, has said it already.
package struct CoordinatorStoppedRun: Error, CustomStringConvertible {
    package let reason: String
    package var description: String { "the coordinator stopped the run: \(reason)" }
}
