import Foundation
import Testing

/// Real worker processes: the saved weights and the printed lines are the same bits for any worker count, and a
/// lost worker stops the run with a message naming it — never a hang.
@Suite(.serialized)
struct DistributedTests {
    static let jobs: [(name: String, yaml: String)] = [
        ("classification", """
            model: {layers: [{units: 16, activation: relu}, {units: 3, activation: softmax}]}
            loss: cross_entropy
            batch_size: 50
            micro_shard: 8
            epochs: 3
            seed: 5
            validation_split: 0.1
            data: {builtin: spirals, samples: 256, classes: 3}
            """),
        ("regression", """
            model: {layers: [{units: 12, activation: tanh}, {units: 1}]}
            loss: mse
            batch_size: 40
            micro_shard: 6
            epochs: 3
            seed: 9
            data: {builtin: regression, samples: 150, features: 4}
            """),
    ]
    static let optimizers = [["--optimizer", "sgd", "--lr", "0.05"], ["--optimizer", "rmsprop"], ["--optimizer", "adam"]]

    @Test("bit-identical weights and lines in-process and with 1, 2, 3, 5 and 8 workers",
          arguments: jobs.indices, optimizers.indices)
    func sameBitsAnyWorkerCount(job: Int, optimizer: Int) throws {
        let file = Command.temporaryPath("\(Self.jobs[job].name).yaml")
        var yaml = Self.jobs[job].yaml
        if optimizer == 0 { yaml += "\noptimizer: {name: sgd, lr: 0.05, momentum: 0.9}" }
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        var reference: (weights: Data, lines: String)?
        for workers in [0, 1, 2, 3, 5, 8] {
            let weights = Command.temporaryPath("w\(workers).safetensors")
            let flags = optimizer == 0 ? [] : Self.optimizers[optimizer]
            let result = try Command.run(["train", "--config", file, "--workers", "\(workers)", "--threads", "1",
                                          "--save", weights, "--log-every", "1"] + flags)
            #expect(result.status == 0, "\(workers) workers: \(result.stderr)")
            let saved = try #require(FileManager.default.contents(atPath: weights))
            if let reference {
                #expect(saved == reference.weights, "\(workers) workers changed the weights")
                #expect(result.stdout == reference.lines, "\(workers) workers changed the printed lines")
            } else {
                reference = (saved, result.stdout)
                #expect(result.stdout.contains("Epoch 2: loss = "))
            }
        }
    }

    @Test("a local worker killed mid-run: its micro-shards move, a replacement joins, the same bits; no process left")
    func killedLocalWorker() throws {
        let log = Command.temporaryPath("killed.log"), out = Command.temporaryPath("killed-local.st")
        let process = try Command.start(["train", "--config", FailureTests.jobFile, "--workers", "3", "--heartbeat", "0.2",
                                         "--verbose", "--save", out], stderr: log)
        let ready = try Command.waitForLine(in: log, containing: "ready (3/3)", timeout: 60)
        let pid = try #require(Int32(ready.split(separator: "pid ")[1].prefix { $0.isNumber }))
        // Mid-run, whatever the machine's load: after a step the coordinator has logged, long before the last (600).
        try FailureTests.waitForStep(50, in: log)
        kill(pid, SIGKILL)
        let status = Command.wait(process, timeout: 120)
        #expect(status == 0, "exit status \(String(describing: status))")
        let text = try String(contentsOfFile: log, encoding: .utf8)
        // Whichever comes first names the loss: the process's exit status or its dropped connection.
        #expect(text.contains("pid \(pid)) lost: ") && text.contains("(pid \(pid)) was killed by signal 9"),
                "\(text.suffix(1500))")
        #expect(text.contains("started a replacement"), "\(text.suffix(1500))")
        #expect(try FailureTests.digest(out) == FailureTests.reference.digest)
        // Every worker process it started, the replacement included, is gone.
        for other in Command.workerPIDs(inLog: text) {
            #expect(kill(other, 0) != 0, "worker pid \(other) still running")
        }
    }

    @Test("a worker started before its coordinator waits, then joins and trains")
    func workerFirst() throws {
        let port = Command.reservedPort()
        let workerLog = Command.temporaryPath("early-worker.log")
        let worker = try Command.start(["worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", "early"],
                                       stderr: workerLog)
        defer { kill(worker.processIdentifier, SIGKILL) }
        _ = try Command.waitForLine(in: workerLog, containing: "nothing answers at", timeout: 20)
        let result = try Command.run(["coordinator", "--config", "examples/xor.yaml", "--bind", "tcp://127.0.0.1:\(port)",
                                      "--workers", "1", "--epochs", "20"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("\"early\"") && result.stdout.contains("Predictions: "))
        #expect(Command.wait(worker, timeout: 10) == 0)
    }
}

extension DistributedTests {
    /// A float32 .npy file, written as NumPy writes one (format 1.0, C order).
    static func writeNPY(_ path: String, _ values: [Float], rows: Int, columns: Int) throws {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let length = header.utf8.count
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8)
        bytes += [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)]
        bytes += Array(header.utf8)
        values.withUnsafeBytes { bytes += $0 }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test("a worker without the data files receives the samples once and trains to the same bits")
    func dataSentWhenMissing() throws {
        let folder = Command.temporaryPath("npy-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let x = (0..<360).map { Float(($0 * 7919) % 97) / 97 - 0.5 }
        let y = (0..<120).map { (i: Int) -> Float in
            let a: Float = x[3 * i] * 2, b: Float = x[3 * i + 1], c: Float = x[3 * i + 2] * 0.5
            return a - b + c
        }
        try Self.writeNPY("\(folder)/x.npy", x, rows: 120, columns: 3)
        try Self.writeNPY("\(folder)/y.npy", y, rows: 120, columns: 1)
        let job = "\(folder)/job.yaml"
        try """
            model: {layers: [{units: 8, activation: tanh}, {units: 1}]}
            loss: mse
            optimizer: {name: adam, lr: 0.01}
            batch_size: 32
            micro_shard: 8
            epochs: 4
            data: {features: x.npy, targets: y.npy}
            """.write(toFile: job, atomically: true, encoding: .utf8)
        let local = try Command.run(["train", "--config", job, "--save", "\(folder)/a.st"])
        #expect(local.status == 0, "\(local.stderr)")

        let port = Command.reservedPort()
        let log = "\(folder)/coordinator.log"
        let coordinator = try Command.start(["coordinator", "--config", job, "--bind", "tcp://127.0.0.1:\(port)",
                                             "--workers", "1", "--save", "\(folder)/b.st"], stderr: log)
        _ = try Command.waitForLine(in: log, containing: "waiting for 1 worker ", timeout: 30)
        // The coordinator has its samples; the worker will find no files.
        try FileManager.default.moveItem(atPath: "\(folder)/x.npy", toPath: "\(folder)/x.moved")
        let workerLog = "\(folder)/worker.log"
        let worker = try Command.start(["worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", "no-files"],
                                       stderr: workerLog)
        defer { kill(worker.processIdentifier, SIGKILL) }
        #expect(Command.wait(coordinator, timeout: 60) == 0)
        let coordinatorText = try String(contentsOfFile: log, encoding: .utf8)
        let workerText = try String(contentsOfFile: workerLog, encoding: .utf8)
        #expect(coordinatorText.contains("has no matching copy of the data; sending 120 samples"), "\(coordinatorText)")
        #expect(workerText.contains("no local copy of the data"), "\(workerText)")
        #expect(FileManager.default.contents(atPath: "\(folder)/a.st") == FileManager.default.contents(atPath: "\(folder)/b.st"))
    }
}
