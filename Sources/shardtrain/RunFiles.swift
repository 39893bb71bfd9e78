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

