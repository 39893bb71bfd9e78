import Engine
import Foundation
import Platform

/// Worker processes of this same binary on this machine, for `shardtrain train --workers N`: started with
/// single-threaded products, restarted when one exits (up to `restartLimit` times in all), and stopped on exit — with
/// SIGTERM, then SIGKILL for one that does not go (a stopped process ignores everything else).
package final class LocalWorkers {
    private var processes: [(name: String, process: Process)] = []
    private var reported: Set<Int32> = []
    private let endpoint: String
    private let executable: String
    private var restarts = 0
    package let restartLimit: Int

    private let threads: Int

    /// Starts `count` workers connecting to `endpoint`, each computing on `threads` threads.
    package init(count: Int, endpoint: String, threads: Int = 1,
                executable: String = LocalWorkers.currentExecutable) throws {
        self.endpoint = endpoint
        self.executable = executable
        self.threads = threads
        restartLimit = 3 * count
        for index in 1...count { try start(name: "local-\(index)") }
    }

    deinit { terminate() }

    private func start(name: String) throws {
        var environment = ProcessInfo.processInfo.environment
        // One BLAS thread per worker: several workers share the cores, and an idle OpenBLAS pool still spins.
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["SHARDTRAIN_PARENT_PID"] = String(getpid())
        // A crash ends the worker at once, reported by its exit status: the Swift runtime's backtracer would
        // otherwise leave helper processes behind, holding this process's output open.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["worker", "--connect", endpoint, "--name", name, "--threads", String(threads)]
        process.environment = environment
        process.standardOutput = FileHandle.standardError
        try process.run()
        processes.append((name, process))
        Interruption.register(child: process.processIdentifier)
    }

    /// How each worker that has ended ended (a child is reaped once).
    private var endings: [ObjectIdentifier: ChildExit] = [:]

    /// How the worker ended; nil while it runs.
    private func ending(of process: Process) -> ChildExit? {
        if let known = endings[ObjectIdentifier(process)] { return known }
        let ending = ChildExit.reap(process, wait: false)
        endings[ObjectIdentifier(process)] = ending
        return ending
    }

    /// A worker that has exited since the last call: its pid and how it ended (a replacement is started while the
    /// restart budget lasts); nil when all run.
    package func check(log: (String) -> Void = { _ in }) -> (pid: Int32, ending: String)? {
        for (name, process) in processes where !reported.contains(process.processIdentifier) {
            guard let how = ending(of: process) else { continue }
            let pid = process.processIdentifier
            reported.insert(pid)
            if restarts < restartLimit, (try? start(name: name)) != nil {
                restarts += 1
                log("local worker \(name) (pid \(pid)) \(how); started a replacement (\(restarts) of \(restartLimit))")
            }
            return (pid, "local worker \(name) (pid \(pid)) \(how)")
        }
        return nil
    }

    /// Stops every worker still running and waits for it.
    package func terminate() {
        for (_, process) in processes where ending(of: process) == nil { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(2)
        while processes.contains(where: { ending(of: $0.process) == nil }) && Date() < deadline { usleep(10_000) }
        for (_, process) in processes where ending(of: process) == nil {
            kill(process.processIdentifier, SIGKILL)
            // SIGKILL ends it at once; only its reaping is left (by this call, or Foundation's monitor meanwhile).
            while ending(of: process) == nil { usleep(1_000) }
        }
        processes.removeAll()
    }

    /// This process's own executable.
    package static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
