import Foundation
import Testing

/// What a run shows to the tools people watch runs with: TensorBoard's event files, read back by TensorBoard's own
/// reader (pip's `tensorboard`), against the run's metrics file.
@Suite struct ObservabilityTests {
    /// The JSON objects, one per line, that `command` prints.
    static func jsonLines(_ command: [String]) throws -> [[String: Any]] {
        let process = Process(), pipe = Pipe(), errors = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.standardOutput = pipe
        process.standardError = errors
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        let problem = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "\(command.joined(separator: " ")): \(problem)")
        return try String(decoding: output, as: UTF8.self).split(separator: "\n").map {
            try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test("--tensorboard: every epoch's figures and each worker's share, as the metrics file has them, through TensorBoard's reader; a resume adds a file")
    func tensorBoard() throws {
        let folder = Command.temporaryPath("tensorboard"), metrics = Command.temporaryPath("tb-metrics.jsonl")
        let checkpoints = Command.temporaryPath("tb-checkpoints")
        let first = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "4", "--workers", "2",
                                     "--metrics", metrics, "--tensorboard", folder, "--checkpoint", checkpoints])
        #expect(first.status == 0, "\(first.stderr)")
        let resumed = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "7", "--workers", "2",
                                       "--metrics", metrics, "--tensorboard", folder, "--checkpoint", checkpoints, "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("events.out.tfevents.") }
        #expect(files.count == 2, "\(files)")

        let script = Command.repository.appendingPathComponent("scripts/tensorboard_scalars.py").path
        let events = try Self.jsonLines(["python3", script, folder])
        #expect(events.filter { $0["file_version"] as? String == "brain.Event:2" }.count == 2)
        let scalars = events.filter { $0["tags"] != nil }
        let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").map {
            try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        // Every record read back (a wrong CRC stops the reader there), in the metrics file's order.
        try #require(lines.count == 7 && scalars.count == 7, "\(lines.count) metrics lines, \(scalars.count) events")
        for (line, event) in zip(lines, scalars) {
            #expect(event["step"] as? Int == line["step"] as? Int)
            #expect(abs((event["wall_time"] as! Double) - (line["time"] as! Double)) < 0.001)
            let tags = try #require(event["tags"] as? [String: Double])
            for key in ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "samples_per_second"] {
                let expected = try #require(line[key] as? Double, "\(key) in \(line)")
                #expect(tags[key].map(Float.init) == Float(expected), "\(key): \(tags[key] ?? .nan) against \(expected)")
            }
            let workers = try #require(line["workers"] as? [String: [String: Double]])
            #expect(workers.count == 2)
            for (worker, share) in workers {
                #expect(tags["workers/\(worker)/samples"] == share["samples"])
                #expect(abs((tags["workers/\(worker)/seconds"] ?? -1) - share["seconds"]!) < 1e-4, "\(worker)")
            }
        }
    }

    @Test("--tensorboard into a place that cannot hold a folder is refused before training, in one line")
    func refusedFolder() throws {
        let blocker = Command.temporaryPath("tb-blocker")
        try "a file".write(toFile: blocker, atomically: true, encoding: .utf8)
        let result = try Command.run(["train", "--config", "examples/xor.yaml", "--tensorboard", blocker + "/runs"])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("--tensorboard \(blocker)/runs: cannot create the folder"), "\(result.stderr)")
        #expect(!result.stdout.contains("Epoch"))
    }
}
