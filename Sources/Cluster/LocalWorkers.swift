import Foundation

/// Worker processes of this same binary on this machine, for `shardtrain train --workers N`: started with
/// single-threaded BLAS, watched while the run goes on, and stopped on exit, on Ctrl-C and on failure.
public final class LocalWorkers {
    private var processes: [(name: String, process: Process)] = []

    /// Starts `count` workers connecting to `endpoint`.
    public init(count: Int, endpoint: String, executable: String = LocalWorkers.currentExecutable) throws {
        var environment = ProcessInfo.processInfo.environment
        // One BLAS thread per worker: several workers share the cores, and an idle OpenBLAS pool still spins.
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["SHARDTRAIN_PARENT_PID"] = String(getpid())
        for index in 1...count {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["worker", "--connect", endpoint, "--name", "local-\(index)", "--threads", "1"]
            process.environment = environment
            process.standardOutput = FileHandle.standardError
            try process.run()
            processes.append(("local-\(index)", process))
            LocalWorkers.register(process.processIdentifier)
        }
        LocalWorkers.installSignalHandlers()
    }

    deinit { terminate() }

    /// The first worker that has exited: its pid and how it ended, else nil.
    public func check() -> (pid: Int32, ending: String)? {
        for (name, process) in processes where !process.isRunning {
            return (process.processIdentifier, "local worker \(name) (pid \(process.processIdentifier)) exited with status "
                + "\(process.terminationStatus)")
        }
        return nil
    }

    /// Stops every worker still running and waits for it.
    public func terminate() {
        for (_, process) in processes where process.isRunning { process.terminate() }
        for (_, process) in processes { process.waitUntilExit() }
        processes.removeAll()
    }

    /// This process's own executable.
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    // Children to kill from a signal handler: a fixed array, since a handler may not allocate or lock.
    nonisolated(unsafe) private static let children = UnsafeMutablePointer<Int32>.allocate(capacity: 256)
    nonisolated(unsafe) private static var childCount = 0

    private static func register(_ pid: Int32) {
        guard childCount < 256 else { return }
        children[childCount] = pid
        childCount += 1
    }

    private static func installSignalHandlers() {
        let handler: @convention(c) (Int32) -> Void = { signal in
            for i in 0..<LocalWorkers.childCount { kill(LocalWorkers.children[i], SIGTERM) }
            _exit(128 + signal)
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
    }
}
