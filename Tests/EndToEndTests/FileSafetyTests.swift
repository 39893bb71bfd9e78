import Foundation
import Testing

/// Files a run reads and writes, against another user and against damage: links planted by others, checkpoints
/// changed on disk, key files that are not what they seem, and writes that fail.
@Suite(.serialized)
struct FileSafetyTests {
    /// A short job whose checkpoints are small: 4 epochs of 5 steps.
    static let job = Command.job("files-job.yaml", """
        model: {layers: [{units: 8, activation: relu}, {units: 3, activation: softmax}]}
        loss: cross_entropy
        batch_size: 40
        micro_shard: 8
        epochs: 4
        seed: 5
        data: {builtin: spirals, samples: 200, classes: 3}
        """)

    /// Rewrites a checkpoint's safetensors header with one metadata field changed (the tensors stay as they are).
    static func changeMetadata(_ path: String, _ key: String, to value: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length)))
            as? [String: Any])
        var metadata = header["__metadata__"] as? [String: String] ?? [:]
        metadata[key] = value
        header["__metadata__"] = metadata
        var text = try JSONSerialization.data(withJSONObject: header)
        while text.count % 8 != 0 { text.append(0x20) }
        var out = Data(withUnsafeBytes(of: UInt64(text.count).littleEndian) { Array($0) })
        out.append(text)
        out.append(data.subdata(in: (8 + length)..<data.count))
        try out.write(to: URL(fileURLWithPath: path))
    }

    /// A run stopped by --steps 12, with its checkpoints in a fresh folder; returns the folder and the newest file.
    static func checkpointed(_ name: String) throws -> (folder: String, newest: String) {
        let folder = Command.temporaryPath(name)
        try? FileManager.default.removeItem(atPath: folder)
        let run = try Command.run(["train", "--config", job, "--steps", "12", "--checkpoint", folder,
                                   "--checkpoint-every", "4"])
        #expect(run.status == 0, "\(run.stderr)")
        let newest = try #require(try FileManager.default.contentsOfDirectory(atPath: folder)
            .filter { $0.hasPrefix("checkpoint-") }.sorted().last)
        return (folder, "\(folder)/\(newest)")
    }

    @Test("a checkpoint given as weights (--init, evaluate) is checked against its SHA-256: untouched it is taken, one flipped bit is refused in one line")
    func checkpointAsWeights() throws {
        let (_, newest) = try Self.checkpointed("files-ckpt-init")
        let job = Self.job
        let untouched = try Command.run(["evaluate", "--config", job, "--weights", newest])
        #expect(untouched.status == 0, "\(untouched.stderr)")
        var data = try Data(contentsOf: URL(fileURLWithPath: newest))
        data[data.count - 5] ^= 0x01  // one bit of the last optimizer state tensor: the weights themselves still read
        try data.write(to: URL(fileURLWithPath: newest))
        for command in [["evaluate", "--config", job, "--weights", newest],
                        ["train", "--config", job, "--steps", "1", "--init", newest]] {
            let run = try Command.run(command)
            #expect(run.status == 2, "\(command[0]): \(run.stderr)")
            #expect(run.stderr.contains("do not match the SHA-256 it was written with")
                        && run.stderr.split(separator: "\n").count == 1, "\(command[0]): \(run.stderr)")
        }
    }

    @Test("checkpoints are written 0600; one changed on disk is refused on --resume in one line, never resumed or crashed on",
          arguments: ["flip", "step", "optimizer_steps", "epoch_samples", "epoch_correct", "negative"])
    func damagedCheckpoint(change: String) throws {
        let (folder, newest) = try Self.checkpointed("files-ckpt-\(change)")
        var info = stat()
        #expect(stat(newest, &info) == 0 && info.st_mode & 0o777 == 0o600, "mode \(String(info.st_mode & 0o777, radix: 8))")
        // Only the newest is kept as a candidate: the others are removed, so a refusal cannot fall back to them.
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) where "\(folder)/\(name)" != newest {
            try FileManager.default.removeItem(atPath: "\(folder)/\(name)")
        }
        let expected: String
        switch change {
        case "flip":
            var data = try Data(contentsOf: URL(fileURLWithPath: newest))
            data[data.count - 5] ^= 0x01  // one bit of the last optimizer state tensor
            try data.write(to: URL(fileURLWithPath: newest))
            expected = "do not match the SHA-256 it was written with"
        case "step":
            try Self.changeMetadata(newest, "shardtrain.step", to: "999")
            expected = "is at step 999, past this run's last step 20"
        case "optimizer_steps":
            try Self.changeMetadata(newest, "shardtrain.optimizer_steps", to: String(Int64.max))
            expected = "optimizer_steps \(Int64.max) differs from step 12"
        case "epoch_samples":
            try Self.changeMetadata(newest, "shardtrain.epoch_samples", to: String(Int64.max))
            expected = "epoch_samples \(Int64.max) is not possible"
        case "epoch_correct":
            try Self.changeMetadata(newest, "shardtrain.epoch_correct", to: String(Int64.max))
            expected = "epoch_correct \(Int64.max) is not within"
        default:
            try Self.changeMetadata(newest, "shardtrain.optimizer_steps", to: "-5")
            expected = "optimizer_steps -5 differs from step 12"
        }
        let resumed = try Command.run(["train", "--config", Self.job, "--checkpoint", folder, "--resume"])
        #expect(resumed.status == 2 && resumed.stderr.contains(expected)
                && resumed.stderr.split(separator: "\n").count == 1, "\(change): \(resumed.stderr)")
    }

    @Test("an untouched checkpoint still resumes to the uninterrupted run's bits")
    func untouchedResumes() throws {
        let whole = Command.temporaryPath("files-whole.st"), resumedOut = Command.temporaryPath("files-resumed.st")
        #expect(try Command.run(["train", "--config", Self.job, "--save", whole]).status == 0)
        let (folder, _) = try Self.checkpointed("files-ckpt-good")
        let resumed = try Command.run(["train", "--config", Self.job, "--checkpoint", folder, "--resume", "--save",
                                       resumedOut])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try FailureTests.digest(resumedOut) == FailureTests.digest(whole))
    }

    @Test("a checkpoint past the run's end (fewer epochs given on --resume) is refused saying so, not called damaged")
    func shorterRun() throws {
        let (folder, _) = try Self.checkpointed("files-ckpt-shorter")
        let resumed = try Command.run(["train", "--config", Self.job, "--epochs", "1", "--checkpoint", folder, "--resume"])
        #expect(resumed.status == 2 && resumed.stderr.contains("is at step 12, past this run's last step 5")
                && !resumed.stderr.contains("damaged"), "\(resumed.stderr)")
    }

    @Test("--save and --metrics refuse a symbolic link another user owns; --metrics to a full device is an error")
    func links() throws {
        let victim = Command.temporaryPath("files-victim"), link = Command.temporaryPath("files-link.st")
        try "precious".write(toFile: victim, atomically: true, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: victim)
        // The link belongs to another user (nobody); the tests run as root, which may give it away.
        guard lchown(link, 65534, 65534) == 0 else { return }
        for flag in ["--save", "--metrics"] {
            let run = try Command.run(["train", "--config", "examples/xor.yaml", "--epochs", "1", flag, link])
            #expect(run.status == 2 && run.stderr.contains("\(flag) \(link): is a symbolic link owned by another user"),
                    "\(run.stderr)")
        }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
        for flag in ["--metrics", "--trace"] {
            let full = try Command.run(["train", "--config", "examples/xor.yaml", "--epochs", "1", flag, "/dev/full"])
            #expect(full.status == 2 && full.stderr.contains("\(flag) /dev/full: cannot write to it"), "\(full.stderr)")
        }
    }

    @Test("key files: a FIFO and another user's key are refused at once; a line that is not a public key is not echoed")
    func keyFiles() throws {
        let folder = Command.temporaryPath("files-keys")
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        #expect(try Command.run(["keygen", "--output", "\(folder)/own"]).status == 0)
        #expect(mkfifo("\(folder)/fifo.key", 0o600) == 0)
        let fifo = try Command.run(["worker", "--connect", "tcp://127.0.0.1:9", "--key", "\(folder)/fifo.key"])
        #expect(fifo.status == 2 && fifo.stderr.contains("is not a regular file"), "\(fifo.stderr)")
        let fifoPublic = try Command.run(["worker", "--connect", "tcp://127.0.0.1:9", "--key", "\(folder)/own.key",
                                          "--coordinator-key", "\(folder)/fifo.key"])
        #expect(fifoPublic.status == 2 && fifoPublic.stderr.contains("is not a regular file"), "\(fifoPublic.stderr)")
        try FileManager.default.copyItem(atPath: "\(folder)/own.key", toPath: "\(folder)/theirs.key")
        if chown("\(folder)/theirs.key", 65534, 65534) == 0 {
            let theirs = try Command.run(["worker", "--connect", "tcp://127.0.0.1:9", "--key", "\(folder)/theirs.key"])
            #expect(theirs.status == 2 && theirs.stderr.contains("owned by another user (uid 65534)"), "\(theirs.stderr)")
        }
        // A "public key" that is the secret key with a stray character: the secret must not appear in the error.
        let secret = try String(contentsOfFile: "\(folder)/own.key", encoding: .utf8).split(separator: "\n")
            .last { !$0.hasPrefix("#") && !$0.isEmpty }.map(String.init) ?? ""
        try "x\(secret)\n".write(toFile: "\(folder)/stray.pub", atomically: true, encoding: .utf8)
        let stray = try Command.run(["worker", "--connect", "tcp://127.0.0.1:9", "--key", "\(folder)/own.key",
                                     "--coordinator-key", "\(folder)/stray.pub"])
        #expect(stray.status == 2 && !secret.isEmpty && !stray.stderr.contains(secret), "\(stray.stderr)")
    }
}
