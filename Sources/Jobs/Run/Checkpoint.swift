import Engine
import Foundation
import Platform

/// A run's whole state in one safetensors file: the weights under their usual names (so `--init` and PyTorch read
/// them), the optimizer's state as `shardtrain.optimizer.N` tensors, and in the metadata the step, the current
/// epoch's running sums, the optimizer's step count, the job's hash and the data's fingerprint. The epoch, the
/// position in its shuffled order and the schedule follow from the step, so a resumed run takes the same steps
/// with the same bits.
///
/// Files are written to a temporary name, fsync'ed and renamed (then the folder fsync'ed), so a kill at any instant
/// leaves the previous checkpoint whole; the newest `kept` are kept.
package final class Checkpointer {
    package let folder: String
    package let kept: Int
    private let jobHash: String
    private let fingerprint: String
    /// The checkpoint of the trainer's current state, once written or resumed from (it is not written twice).
    private var latest: (step: Int, path: String)?
    /// The next checkpoint's file, opened ahead so it can be written even when descriptors have run out.
    private var next: ReservedFile?

    static let filePrefix = "checkpoint-", fileSuffix = ".safetensors"
    /// 2: with `shardtrain.sha256`, the digest of everything else in the file.
    static let formatVersion = "2"
    static let digestKey = "shardtrain.sha256"

    /// SHA-256 of the metadata (every key but the digest's, sorted, `key=value` lines), then the weights' and each
    /// optimizer state's float32 bytes in order: a flipped byte anywhere in what a resume reads changes it.
    static func digest(metadata: [String: String], parameters: [Float], state: [[Float]]) -> String {
        var digest = SHA256()
        let text = metadata.filter { $0.key != digestKey }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }
        digest.update(Array(text.joined().utf8))
        for values in [parameters] + state { values.withUnsafeBytes { digest.update($0) } }
        return digest.hexDigest()
    }

    package init(folder: String, job: Job, fingerprint: String, kept: Int = 3) throws {
        self.folder = folder
        self.kept = kept
        jobHash = Self.hash(job)
        self.fingerprint = fingerprint
        var isFolder: ObjCBool = false
        if !FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw InputError("--checkpoint \(folder): cannot create the folder (\(error.localizedDescription))")
            }
        } else if !isFolder.boolValue {
            throw InputError("--checkpoint \(folder): is a file; give a folder")
        }
        guard access(folder, W_OK) == 0 else {
            throw InputError("--checkpoint \(folder): the folder is not writable")
        }
        removeAbandonedReservations()
        next = try reserve()
    }

    /// Reserved files of runs that were killed before they could remove theirs (`.next.safetensors.PID.RANDOM.tmp`).
    private func removeAbandonedReservations() {
        let prefix = ".next" + Self.fileSuffix + "."
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count).prefix { $0.isNumber }), pid != getpid(),
                  kill(pid, 0) != 0, errno == ESRCH else { continue }
            unlink((folder as NSString).appendingPathComponent(name))
        }
    }

    private func reserve(patience: Duration = .seconds(10)) throws -> ReservedFile {
        try ReservedFile((folder as NSString).appendingPathComponent("next" + Self.fileSuffix), what: "--checkpoint",
                         mode: 0o600, patience: patience)
    }

    /// The job as far as it decides the bits of every step: its canonical text with the run's length and the
    /// printing interval left out, so a resumed run may be given more epochs.
    package static func hash(_ job: Job) -> String {
        var normalised = job
        normalised.options.length = .steps(1)
        normalised.logEvery = nil
        var digest = SHA256()
        digest.update(Array(normalised.canonicalText.utf8))
        return digest.hexDigest()
    }

    /// Writes the trainer's state unless its step's checkpoint is already the latest; returns the file's path.
    @discardableResult
    package func write(_ trainer: Trainer) throws -> String {
        try write(trainer, required: true)!
    }

    /// Like `write`, but a routine checkpoint (`required` false) is skipped, returning nil, when no file could be
    /// opened for it (the process is out of descriptors): training goes on, and the next one tries again.
    package func write(_ trainer: Trainer, required: Bool) throws -> String? {
        try trainer.withStateBeforeStep { try writeState(of: trainer, required: required) }
    }

    private func writeState(of trainer: Trainer, required: Bool) throws -> String? {
        if let latest, latest.step == trainer.step { return latest.path }
        if next == nil { next = try? reserve(patience: .zero) }
        if next == nil && !required { return nil }
        var metadata = ["format": "pt", "producer": "shardtrain", "shardtrain.checkpoint": Self.formatVersion,
                        "shardtrain.step": String(trainer.step), "shardtrain.epoch": String(trainer.epoch),
                        "shardtrain.optimizer_steps": String(trainer.optimizer.steps),
                        "shardtrain.job_sha256": jobHash, "shardtrain.data_fingerprint": fingerprint]
        let progress = trainer.epochProgress
        metadata["shardtrain.epoch_loss_sum"] = String(progress.lossSum.bitPattern, radix: 16)
        metadata["shardtrain.epoch_correct"] = String(progress.correct)
        metadata["shardtrain.epoch_samples"] = String(progress.samples)
        let extra = trainer.optimizer.state.enumerated().map { ("\(Safetensors.extraPrefix)optimizer.\($0.offset)", $0.element.array) }
        metadata[Self.digestKey] = Self.digest(metadata: metadata, parameters: trainer.parameters.array,
                                               state: extra.map(\.1))
        let data = Safetensors.encode(trainer.parameters.array, layout: trainer.spec.layout, metadata: metadata,
                                      extra: extra)
        let name = Self.filePrefix + String(format: "%010d", trainer.step) + Self.fileSuffix
        let path = (folder as NSString).appendingPathComponent(name)
        let file = try next ?? reserve()
        next = nil
        try file.commit(data, as: path)
        next = try? reserve(patience: .zero)  // when descriptors are short, the next write tries again
        prune()
        latest = (trainer.step, path)
        return path
    }

    /// The checkpoints in the folder, newest (highest step) first.
    package func files() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasPrefix(Self.filePrefix) && $0.hasSuffix(Self.fileSuffix) }.sorted(by: >)
            .map { (folder as NSString).appendingPathComponent($0) }
    }

    private func prune() {
        for old in files().dropFirst(kept) { try? FileManager.default.removeItem(atPath: old) }
    }

    /// Restores the newest checkpoint that reads whole into `trainer`; returns its path, or nil when the folder
    /// holds none. One of another job or data is refused, saying what differs.
    package func resume(_ trainer: Trainer, log: (String) -> Void) throws -> String? {
        var unreadable: [String] = []
        for path in files() {
            do {
                try restore(path, into: trainer)
                latest = (trainer.step, path)
                if !unreadable.isEmpty { log("skipped unreadable checkpoints: \(unreadable.joined(separator: "; "))") }
                return path
            } catch let error as CheckpointUnreadable {
                unreadable.append(error.message)
            }
        }
        if !unreadable.isEmpty {
            throw InputError("--checkpoint \(folder): no checkpoint could be read: \(unreadable.joined(separator: "; "))")
        }
        return nil
    }

    private struct CheckpointUnreadable: Error { let message: String }

    private func restore(_ path: String, into trainer: Trainer) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointUnreadable(message: "\(path): cannot be read")
        }
        // The metadata first: a checkpoint of another model is another job's, not a damaged file.
        let metadata: [String: String], tensors: [String: [Float]]
        do {
            (metadata, tensors) = try Safetensors.readExtras(data, name: path)
        } catch let error as InputError {
            throw CheckpointUnreadable(message: error.message)
        }
        func field(_ key: String) throws -> String {
            guard let value = metadata["shardtrain.\(key)"] else {
                throw CheckpointUnreadable(message: "\(path): not a shardtrain checkpoint (no \(key) in its metadata)")
            }
            return value
        }
        guard try field("checkpoint") == Self.formatVersion else {
            throw CheckpointUnreadable(message: "\(path): checkpoint format \(try field("checkpoint")), this build "
                + "reads \(Self.formatVersion)")
        }
        let theirJob = try field("job_sha256"), theirData = try field("data_fingerprint")
        guard theirJob == jobHash else {
            throw InputError("\(path) is a checkpoint of another job (job hash \(theirJob.prefix(12))…, this job "
                + "\(jobHash.prefix(12))…): the model, loss, optimizer, schedule, batch size, seed, micro-shard or "
                + "reduction differ; resume with the job that wrote it, or use another --checkpoint folder")
        }
        guard theirData == fingerprint else {
            throw InputError("\(path) was written for other training data (fingerprint \(theirData.prefix(12))…, "
                + "this data \(fingerprint.prefix(12))…); resume with the same data, or use another --checkpoint folder")
        }
        let parameters: [Float]
        do {
            parameters = try Safetensors.decode(data, layout: trainer.spec.layout, name: path)
        } catch let error as InputError {
            throw CheckpointUnreadable(message: error.message)
        }
        guard let step = Int(try field("step")), let optimizerSteps = Int(try field("optimizer_steps")),
              let lossBits = UInt64(try field("epoch_loss_sum"), radix: 16), let correct = Int(try field("epoch_correct")),
              let samples = Int(try field("epoch_samples")) else {
            throw CheckpointUnreadable(message: "\(path): malformed step or epoch fields in its metadata")
        }
        // Each field within what this job allows (a step past the run's end, a count past an epoch's samples and
        // numbers near Int.max are not a state this job can be in).
        let lossSum = Double(bitPattern: lossBits)
        let perEpoch = trainer.plan.batchesPerEpoch, epochSamples = trainer.training.count
        let problems = [
            (0...trainer.totalSteps).contains(step) ? nil
                : "step \(step) is not within this job's 0…\(trainer.totalSteps)",
            optimizerSteps == step ? nil : "optimizer_steps \(optimizerSteps) differs from step \(step)",
            (0...epochSamples).contains(samples) && samples <= (step % max(perEpoch, 1)) * trainer.options.batchSize
                ? nil : "epoch_samples \(samples) is not possible \(step % max(perEpoch, 1)) steps into an epoch",
            (0...samples).contains(correct) ? nil : "epoch_correct \(correct) is not within 0…\(samples)",
            lossSum.isFinite && lossSum >= 0 ? nil : "epoch_loss_sum \(lossSum) is not a finite sum of losses",
        ].compactMap { $0 }
        if step > trainer.totalSteps, step <= Int(Int32.max) {
            throw InputError("\(path) is at step \(step), past this run's last step \(trainer.totalSteps): give at least "
                + "as many epochs (or steps) as the run that wrote it, or use another --checkpoint folder")
        }
        if let problem = problems.first {
            throw InputError("\(path): \(problem); the checkpoint was damaged or changed — resume from another")
        }
        let count = trainer.optimizer.state.count
        var state: [[Float]] = []
        for index in 0..<count {
            guard let values = tensors["\(Safetensors.extraPrefix)optimizer.\(index)"],
                  values.count == trainer.parameters.count else {
                throw CheckpointUnreadable(message: "\(path): optimizer state \(index) of \(count) is missing or the "
                    + "wrong size")
            }
            state.append(values)
        }
        guard metadata[Self.digestKey] == Self.digest(metadata: metadata, parameters: parameters, state: state) else {
            throw InputError("\(path): its contents do not match the SHA-256 it was written with (damaged or changed "
                + "since); resume from another checkpoint, or remove this one")
        }
        trainer.restore(step: step, progress: EpochProgress(lossSum: Double(bitPattern: lossBits), correct: correct,
                                                             samples: samples),
                        parameters: parameters, optimizerSteps: optimizerSteps, optimizerState: state)
    }
}
