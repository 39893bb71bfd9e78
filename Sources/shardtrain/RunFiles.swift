import Cluster
import Engine
import Foundation
import Jobs
import Platform

/// A file a run appends to as it goes. A write that fails (a full disk, `/dev/full`) is an error, raised at the next
/// step rather than lost.
final class AppendedFile {
    let path: String
    private let what: String
    private let descriptor: Int32
    private var failure: String?

    /// Opens `path` for `what` (the flag, for messages) with `flags` beyond write-only and close-on-exec.
    init(_ path: String, what: String, flags: Int32) throws {
        self.path = path
        self.what = what
        try ReservedFile.refuseForeignLink(path, what: what)
        descriptor = open(path, O_WRONLY | O_CLOEXEC | flags, 0o644)
        guard descriptor >= 0 else {
            throw InputError("\(what) \(path): cannot create the file (\(String(cString: strerror(errno)))); check "
                + "that the folder exists and is writable")
        }
    }

    func append(_ bytes: [UInt8]) {
        guard failure == nil else { return }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                failure = String(cString: strerror(errno))
                return
            }
            written += n
        }
    }

    /// Throws if something could not be written.
    func check() throws {
        if let failure { throw InputError("\(what) \(path): cannot write to it (\(failure)); the figures are lost") }
    }

    deinit { close(descriptor) }
}

/// One line per epoch: created anew for a run, appended to when resuming one.
final class MetricsFile {
    private let file: AppendedFile

    init(_ path: String, append: Bool) throws {
        file = try AppendedFile(path, what: "--metrics", flags: O_CREAT | (append ? O_APPEND : O_TRUNC))
    }

    func append(_ line: String) { file.append(Array((line + "\n").utf8)) }
    func check() throws { try file.check() }
}

/// TensorBoard's event file for this run (`--tensorboard FOLDER`): a new file in the folder, named as TensorFlow
/// names them, so a resumed run adds a file and TensorBoard reads them all as one run. Per epoch, at the epoch's last
/// step: the figures of the metrics line under the same names, and each worker's samples and busy seconds.
final class TensorBoardFile {
    private let file: AppendedFile

    init(folder: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw InputError("--tensorboard \(folder): cannot create the folder (\(error.localizedDescription)); give "
                + "a folder you can write to")
        }
        let now = Date().timeIntervalSince1970, host = ProcessInfo.processInfo.hostName
        let name = "events.out.tfevents.\(Int(now)).\(host).\(getpid()).shardtrain"
        // A new name each time: O_EXCL and O_NOFOLLOW, so nothing planted under it is written through.
        file = try AppendedFile((folder as NSString).appendingPathComponent(name), what: "--tensorboard",
                                flags: O_CREAT | O_EXCL | O_NOFOLLOW)
        file.append(TensorBoard.versionRecord(wallTime: now))
    }

    func append(_ report: EpochReport, time: Date, shares: [WorkerShare]) {
        var scalars: [(tag: String, value: Float)] = [("loss", Float(report.loss))]
        if let a = report.accuracy { scalars.append(("accuracy", Float(a))) }
        if let v = report.validationLoss { scalars.append(("val_loss", Float(v))) }
        if let v = report.validationAccuracy { scalars.append(("val_accuracy", Float(v))) }
        scalars += [("learning_rate", report.learningRate), ("samples_per_second", Float(report.samplesPerSecond))]
        for share in shares {
            scalars += [("workers/\(share.worker)/samples", Float(share.samples)),
                        ("workers/\(share.worker)/seconds", Float(share.seconds)),
                        ("workers/\(share.worker)/compute_seconds", Float(share.computeSeconds))]
        }
        file.append(TensorBoard.scalarsRecord(wallTime: time.timeIntervalSince1970, step: report.step, scalars))
    }

    func check() throws { try file.check() }
}

/// `--trace FILE`: the run's timeline in the Trace Event Format's JSON array (what Perfetto and chrome://tracing
/// open; the closing bracket is optional there, so a run stopped by a signal still leaves a readable file). One
/// process row for the coordinator — each step's hand-out, wait for results, reduce, and update — and one per worker:
/// for each of its results the assignment travelling, its computing and the result travelling. A worker's computing
/// time is its own measurement; where it lies is the coordinator's estimate, with the two transfers taken as equal
/// (so no worker's clock is needed). In-process, one row of steps.
final class TraceFile {
    private let file: AppendedFile
    private let origin = ContinuousClock.now
    private var named: Set<UInt32> = []
    private var separator = ""

    init(_ path: String) throws {
        file = try AppendedFile(path, what: "--trace", flags: O_CREAT | O_TRUNC)
        file.append(Array("[\n".utf8))
        name(process: 0, "coordinator")
    }

    /// Microseconds since the trace began.
    private func time(_ instant: ContinuousClock.Instant) -> Int64 { Int64((instant - origin) / .microseconds(1)) }

    /// Events are written as text directly (a step's dozen cost microseconds, where JSONSerialization's cost a
    /// measurable share of a short step); only a worker's label, from the network, goes through the encoder.
    private var pending = ""

    private func event(_ text: String) {
        pending += separator + text
        separator = ",\n"
    }

    private func flush() {
        file.append(Array(pending.utf8))
        pending = ""
    }

    private func name(process: UInt32, _ name: String) {
        let quoted = (try? JSONSerialization.data(withJSONObject: name, options: [.fragmentsAllowed]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "\"?\""
        event("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":\(process),\"tid\":0,\"args\":{\"name\":\(quoted)}}")
        flush()
    }

    /// `args` is JSON text (numbers only).
    private func span(_ name: String, process: UInt32, from: ContinuousClock.Instant, to: ContinuousClock.Instant,
                      _ args: String) {
        let start = time(from)
        event("{\"name\":\"\(name)\",\"cat\":\"step\",\"ph\":\"X\",\"pid\":\(process),\"tid\":0,\"ts\":\(start),"
            + "\"dur\":\(max(0, time(to) - start)),\"args\":{\(args)}}")
    }

    /// A distributed step, which ended (its update done) at `ended`.
    func step(_ trace: Coordinator.StepTrace, ended: ContinuousClock.Instant) {
        let args = "\"step\":\(trace.step)"
        span("hand-out", process: 0, from: trace.begun, to: trace.sent, args)
        span("wait for results", process: 0, from: trace.sent, to: trace.gathered, args)
        if trace.reduced > trace.gathered { span("reduce", process: 0, from: trace.gathered, to: trace.reduced, args) }
        span("update", process: 0, from: trace.reduced, to: ended, args)
        for result in trace.results {
            if named.insert(result.worker).inserted { name(process: result.worker, result.label) }
            let total = result.arrived - result.sent, computing = min(result.computing, total)
            let travel = (total - computing) / 2
            let started = result.sent + travel, finished = started + computing
            let worker = "\"step\":\(trace.step),\"samples\":\(result.samples)"
            span("assignment in", process: result.worker, from: result.sent, to: started, worker)
            span("compute", process: result.worker, from: started, to: finished, worker)
            span("result out", process: result.worker, from: finished, to: result.arrived, worker)
        }
        flush()
    }

    /// An in-process step.
    func step(_ step: Int, from: ContinuousClock.Instant, to: ContinuousClock.Instant) {
        span("step", process: 0, from: from, to: to, "\"step\":\(step)")
        flush()
    }

    /// Closes the array: the file is then strict JSON too.
    func finish() { file.append(Array("\n]\n".utf8)) }

    func check() throws { try file.check() }
}
