import Foundation

/// SIGTERM and SIGINT as a request to stop at the next safe point (a step boundary, or a wait for workers), so a
/// checkpoint can be written first, as Slurm's and Kubernetes' preemption expects. A second signal ends the process
/// at once, after sending SIGTERM to the child processes registered here.
package enum Interruption {
    nonisolated(unsafe) private static var received: sig_atomic_t = 0
    // Children to signal from the handler: a fixed array, since a handler may not allocate or lock.
    nonisolated(unsafe) private static let children = UnsafeMutablePointer<pid_t>.allocate(capacity: 256)
    nonisolated(unsafe) private static var childCount: sig_atomic_t = 0

    /// The signal received, if any.
    package static var signal: Int32? { received == 0 ? nil : Int32(received) }

    /// The exit status for a run stopped by `signal`: 128 + its number, as shells report it.
    package static func exitStatus(_ signal: Int32) -> Int32 { 128 + signal }

    package static func install() {
        let handler: @convention(c) (Int32) -> Void = { number in
            if Interruption.received != 0 {
                for i in 0..<Int(Interruption.childCount) { kill(Interruption.children[i], SIGTERM) }
                _exit(128 + number)
            }
            Interruption.received = sig_atomic_t(number)
        }
        Foundation.signal(SIGINT, handler)
        Foundation.signal(SIGTERM, handler)
        // A parent may have started this process with the signals blocked (they would then wait, unseen, forever).
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// A child process to stop if this one is ended by a second signal.
    package static func register(child pid: pid_t) {
        guard childCount < 256 else { return }
        children[Int(childCount)] = pid
        childCount += 1
    }
}

/// The run was stopped by a signal (after writing a checkpoint when one was asked for).
package struct Interrupted: Error, CustomStringConvertible {
    package let signal: Int32
    package let checkpoint: String?
    /// Optimizer steps the run had taken (nil: not known where it was thrown).
    package let steps: Int?

    package init(signal: Int32, checkpoint: String?, steps: Int? = nil) {
        self.signal = signal
        self.checkpoint = checkpoint
        self.steps = steps
    }

    package var signalName: String { signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "signal \(signal)" }

    package var description: String {
        if let checkpoint { return "stopped by \(signalName); checkpoint written to \(checkpoint); continue with --resume" }
        guard let steps, steps > 0 else {
            return "stopped by \(signalName)" + (steps == 0 ? " before the first step" : "")
        }
        return "stopped by \(signalName) after \(steps) step\(steps == 1 ? "" : "s"); no --checkpoint folder was given, "
            + (steps == 1 ? "so it is lost" : "so they are lost")
    }

    /// What the coordinator's workers are told: why the run stopped, without the advice meant for whoever runs it.
    package var reasonForWorkers: String {
        "the run was stopped by \(signalName)" + (checkpoint == nil ? "" : " (a checkpoint was written)")
    }
}
