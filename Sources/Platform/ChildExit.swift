import Foundation

/// How a child process ended, read with `waitpid` rather than from Foundation's `Process`: on a busy machine its
/// child monitor was seen to miss exits, leaving zombies that `isRunning` called alive and `waitUntilExit` waited on
/// for ever. A child is reaped once; whoever reaps it keeps what this returned.
package enum ChildExit: Equatable, CustomStringConvertible {
    case exited(Int32)
    case killed(signal: Int32)

    package var description: String {
        switch self {
        case .exited(let status): "exited with status \(status)"
        case .killed(let signal): "was killed by signal \(signal)"
        }
    }

    /// Reaps `process` if it has ended (waiting for it with `wait`); nil while it runs.
    package static func reap(_ process: Process, wait: Bool) -> ChildExit? {
        var status: Int32 = 0, result: Int32
        repeat {
            result = waitpid(process.processIdentifier, &status, wait ? 0 : WNOHANG)
        } while result < 0 && errno == EINTR
        if result == process.processIdentifier {
            return status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .killed(signal: status & 0x7f)
        }
        // ECHILD: Foundation's monitor reaped it first, and records how it ended.
        guard result < 0 else { return nil }
        while wait && process.isRunning { usleep(1_000) }
        guard !process.isRunning else { return nil }
        return process.terminationReason == .uncaughtSignal ? .killed(signal: process.terminationStatus)
            : .exited(process.terminationStatus)
    }
}
