import ArgumentParser
import Cluster
import Engine
import Foundation
import Platform

/// `shardtrain worker --connect tcp://HOST:5555`: joins a coordinator and computes until it says stop.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Join a coordinator and compute the micro-shards it assigns.",
        version: Version.text)

    @Option(help: "The coordinator's endpoint, e.g. tcp://10.0.0.1:5555.") var connect: String
    @Option(help: "Threads computing micro-shards (each with single-threaded products).") var threads = 1
    @Option(help: "A name for this worker in the coordinator's logs (default: host-pid).") var name: String?
    @Option(help: "Seconds to keep trying to reach a coordinator (at start, and after it falls silent) before giving up.")
    var idleTimeout = 120.0
    @OptionGroup(title: "Keys") var keys: WorkerKeyFlags

    func run() throws {
        try reportingFailures {
            guard threads >= 1 else { throw InputError("--threads \(threads): must be at least 1") }
            guard idleTimeout.isFinite, idleTimeout >= 0.01, idleTimeout <= 1e6 else {
                throw InputError("--idle-timeout \(idleTimeout): give seconds between 0.01 and 1000000")
            }
            if let problem = EndpointReach.problem(connect) { throw InputError("--connect \(problem)") }
            try work(connect: connect, name: name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())", threads: threads,
                     idleTimeout: idleTimeout, keys: try keys.workerKeys(connectingTo: connect))
        }
    }
}

/// Joins the coordinator at `connect` and computes until it says stop.
func work(connect: String, name: String, threads: Int, idleTimeout: Double, keys: WorkerKeys? = nil) throws {
    var settings = WorkerNode.Settings(endpoint: connect, name: name)
    settings.threads = threads
    settings.idleTimeout = .seconds(idleTimeout)
    settings.keys = keys
    settings.parentPID = ProcessInfo.processInfo.environment["SHARDTRAIN_PARENT_PID"].flatMap(Int32.init)
    // A local worker leaves Ctrl-C to its coordinator, which checkpoints and then stops it. Any other worker stops
    // on SIGINT and SIGTERM, even when started in the background of a script (the shell starts those with SIGINT
    // ignored, and an ignored signal stays ignored across exec).
    if settings.parentPID != nil {
        signal(SIGINT, SIG_IGN)
    } else {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        // Nor blocked: a parent may have started this process with them blocked (they would wait, unseen, forever).
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
    do {
        try WorkerNode(settings: settings, log: logToStandardError).run()
    } catch let stopped as CoordinatorStoppedRun {
        // One event, one line: a local worker's coordinator has printed why; another worker's user has not seen it.
        if settings.parentPID != nil { Foundation.exit(4) }
        throw ClusterError(stopped.description)
    }
}
