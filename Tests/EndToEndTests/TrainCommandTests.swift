import Foundation
import Testing

/// `shardtrain train` as a process: what it prints, writes and refuses.
@Suite(.serialized)
struct TrainCommandTests {
    @Test("with the seed's initial weights it prints exactly what the seed's numpy program prints")
    func seedOutput() throws {
        let result = try Command.run(["train", "--config", "examples/xor.yaml",
                                      "--init", "examples/seed-init.safetensors"])
        #expect(result.status == 0, "\(result.stderr)")
        // The seed program's output, verbatim.
        #expect(result.stdout == """
            Epoch 0: loss = 0.2643
            Epoch 200: loss = 0.2502
            Epoch 400: loss = 0.2500
            Epoch 600: loss = 0.2500
            Epoch 800: loss = 0.2500

            Predictions: [0.5 0.5 0.5 0.5]
            Expected:    [0. 1. 1. 0.]

            """)
    }

    @Test("the XOR example learns; metrics has one JSON object per epoch; saved weights load back")
    func xorExample() throws {
        let metrics = Command.temporaryPath("xor.jsonl"), weights = Command.temporaryPath("xor.safetensors")
        let result = try Command.run(["train", "--config", "examples/xor.yaml", "--metrics", metrics, "--save", weights])
        #expect(result.status == 0, "\(result.stderr)")
        let predictions = try #require(result.lines.first { $0.hasPrefix("Predictions: ") })
        let values = predictions.dropFirst("Predictions: [".count).dropLast().split(separator: " ").compactMap { Double($0) }
        #expect(values.map { $0.rounded() } == [0, 1, 1, 0], "\(predictions)")

        let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1000)
        let last = try JSONSerialization.jsonObject(with: Data(lines[999].utf8)) as! [String: Any]
        #expect(last["epoch"] as? Int == 999 && last["step"] as? Int == 1000)
        #expect((last["loss"] as? Double ?? 1) < 0.02)
        #expect((last["samples_per_second"] as? Double ?? 0) > 0)
        // The rate as configured (not a widened float32), and the wall clock of each record.
        #expect(lines[999].contains("\"learning_rate\":0.5,"), "\(lines[999])")
        let time = last["time"] as? Double ?? 0
        #expect(abs(time - Date().timeIntervalSince1970) < 600, "time \(time)")
        let low = try Command.run(["train", "--config", "examples/xor.yaml", "--lr", "0.01", "--epochs", "1",
                                   "--metrics", metrics])
        let lowText = try String(contentsOfFile: metrics, encoding: .utf8)
        #expect(low.status == 0 && lowText.contains("\"learning_rate\":0.01,"), "\(lowText)")
        // Per-step records beside the epoch ones: their losses average to the epoch's (one batch per epoch here).
        let stepped = try Command.run(["train", "--config", "examples/xor.yaml", "--epochs", "3", "--metrics", metrics,
                                       "--metrics-steps"])
        #expect(stepped.status == 0)
        let records = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        let steps = records.filter { $0["record"] as? String == "step" }, epochs = records.filter { $0["record"] == nil }
        #expect(steps.count == 3 && epochs.count == 3)
        #expect(zip(steps, epochs).allSatisfy { ($0["loss"] as? Double) == ($1["loss"] as? Double) })

        // Continue from the saved weights: the first epoch's loss is the trained one, not the initial one.
        let resumed = try Command.run(["train", "--config", "examples/xor.yaml", "--init", weights, "--epochs", "1"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let first = try #require(resumed.lines.first)
        let loss = try #require(Double(first.replacingOccurrences(of: "Epoch 0: loss = ", with: "")))
        #expect(loss < 0.02, "\(first)")
    }

    @Test("the same job and seed save the same bytes; fast reduction and flags run")
    func determinism() throws {
        let a = Command.temporaryPath("a.st"), b = Command.temporaryPath("b.st"), c = Command.temporaryPath("c.st")
        let job = ["train", "--config", "examples/xor.yaml", "--epochs", "50", "--optimizer", "adam", "--lr", "0.05"]
        #expect(try Command.run(job + ["--save", a]).status == 0)
        #expect(try Command.run(job + ["--save", b]).status == 0)
        #expect(FileManager.default.contents(atPath: a) == FileManager.default.contents(atPath: b))
        let fast = try Command.run(job + ["--reduction", "fast", "--no-shuffle", "--batch-size", "3", "--save", c])
        #expect(fast.status == 0, "\(fast.stderr)")
    }

    @Test("bad input: one line on stderr naming what is wrong, exit status 2", arguments: [
        (["--config", "examples/nope.yaml"], "examples/nope.yaml: cannot read the job file"),
        (["--config", "examples/xor.yaml", "--epochs", "0"], "--epochs 0: must be at least 1"),
        (["--config", "examples/xor.yaml", "--epochs", "-1"], "--epochs -1: no flag takes a negative number"),
        (["--config", "examples/xor.yaml", "--optimizer", "lion"],
         "The value 'lion' is invalid for '--optimizer <optimizer>'. Please provide one of 'sgd', 'rmsprop', 'adam' or 'adamw'."),
        (["--config", "examples/xor.yaml", "--reduction", "sloppy"], "The value 'sloppy' is invalid for '--reduction <reduction>'. Please provide one of 'exact' and 'fast'."),
        (["--config", "examples/xor.yaml", "--init", "examples/xor.yaml"], "examples/xor.yaml: header length"),
        (["--config", "examples/xor.yaml", "--epochs", "2", "--steps", "2"], "give --epochs or --steps, not both"),
        (["--config", "examples/xor.yaml", "--epochs", "1000000000000000000"],
         "epochs 1000000000000000000 is beyond 1000000000"),
        (["--config", "examples/xor.yaml", "--steps", "9223372036854775807"], "steps 9223372036854775807 is beyond"),
        (["--config", "examples/xor.yaml", "--micro-shard", "1000000000000000000"],
         "micro_shard 1000000000000000000 is beyond"),
        (["--config", "examples/xor.yaml", "--workers", "1", "--worker-timeout", "nan"],
         "--worker-timeout nan: give seconds"),
    ])
    func badInput(arguments: [String], message: String) throws {
        let result = try Command.run(["train"] + arguments)
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test("a job too large for this machine's memory is refused before allocating, saying how much it needs",
          arguments: [
              "model: {layers: [{units: 500000000}, {units: 2, activation: softmax}]}\nloss: cross_entropy\n"
                  + "data: {builtin: spirals, samples: 100, classes: 2}",
              "model: {layers: [{units: 8}, {units: 2, activation: softmax}]}\nloss: cross_entropy\n"
                  + "data: {builtin: spirals, samples: 1000000000000, classes: 2}",
              // No model.inputs: the width is the built-in set's, counted before it is generated.
              "model: {layers: [{units: 8}, {units: 2, activation: softmax}]}\nloss: cross_entropy\n"
                  + "data: {builtin: blobs, samples: 1000, classes: 2, features: 50000000}",
          ])
    func tooLarge(job: String) throws {
        let file = Command.temporaryPath("too-large.yaml")
        try job.write(toFile: file, atomically: true, encoding: .utf8)
        // Under a 2 GB address-space limit: a run that generated the data or allocated the model before refusing
        // would fail to allocate (a crash, not exit 2 with the refusal), however fast or slow the machine is.
        let result = try Command.run(["/bin/sh", "-c", "ulimit -v 2000000 && exec \"$0\" \"$@\"",
                                      Command.binary.path, "train", "--config", file], raw: true)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("the job needs about") && result.stderr.contains("is available here"),
                "\(result.stderr)")
    }

    @Test("more threads than micro-shards or cores (the default on a machine of 3 or more): the bits of one thread")
    func manyThreads() throws {
        let one = Command.temporaryPath("digits-threads-1.st")
        let reference = try Command.run(["train", "--config", "examples/digits/digits.yaml", "--epochs", "1",
                                         "--threads", "1", "--save", one])
        #expect(reference.status == 0, "\(reference.stderr)")
        for threads in [3, 8, 100] {
            let out = Command.temporaryPath("digits-threads-\(threads).st")
            let run = try Command.run(["train", "--config", "examples/digits/digits.yaml", "--epochs", "1",
                                       "--threads", String(threads), "--save", out])
            #expect(run.status == 0 && run.stdout == reference.stdout, "--threads \(threads): \(run.stderr)")
            #expect(FileManager.default.contents(atPath: out) == FileManager.default.contents(atPath: one))
        }
    }

    @Test("sizes that once aborted train: a micro-shard far beyond the batch, a batch far beyond the data, a 30,000-layer model with a worker")
    func oddSizesTrain() throws {
        let huge = try Command.run(["train", "--config", "examples/xor.yaml", "--micro-shard", "1000000000000"])
        #expect(huge.status == 0, "\(huge.stderr)")
        let batch = try Command.run(["train", "--config", "examples/xor.yaml", "--batch-size", "1000000000",
                                     "--reduction", "fast"])
        #expect(batch.status == 0, "\(batch.stderr)")
        let deep = Command.temporaryPath("deep.yaml")
        try ("model: {layers: [" + Array(repeating: "{units: 1}", count: 30_000).joined(separator: ", ") + "]}\n"
             + "loss: mse\ndata: {builtin: regression, samples: 8}\nbatch_size: 8\nepochs: 1\n")
            .write(toFile: deep, atomically: true, encoding: .utf8)
        let local = try Command.run(["train", "--config", deep, "--workers", "1", "--join-timeout", "30"])
        #expect(local.status == 0, "\(local.stderr.suffix(500))")
    }

    @Test("on a terminal a progress line is redrawn on standard error; not when redirected, nor with --no-progress")
    func progressLine() throws {
        // `script` gives the run a terminal, as a user's shell would.
        func onTerminal(_ extra: String) throws -> String {
            let command = "\(Command.binary.path) train --config examples/spirals.yaml --epochs 40 \(extra)"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            process.arguments = ["-qec", command, "/dev/null"]
            process.currentDirectoryURL = Command.repository
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: output, as: UTF8.self)
        }
        let shown = try onTerminal("")
        #expect(shown.contains("\r\u{1b}[Kepoch ") && shown.contains(" samples/s  ETA "), "\(shown.prefix(600))")
        #expect(shown.contains("Epoch 0: loss = "))
        let off = try onTerminal("--no-progress")
        #expect(!off.contains("ETA") && off.contains("Epoch 0: loss = "), "\(off.prefix(600))")
        let redirected = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "40"])
        #expect(!redirected.stderr.contains("ETA") && !redirected.stdout.contains("\u{1b}"))
    }

    @Test("a diverging run stops with a message naming the step, status 3", arguments: ["exact", "fast"])
    func divergence(reduction: String) throws {
        let job = try Command.divergingJob("diverge-\(reduction)", reduction: reduction)
        let result = try Command.run(["train", "--config", job])
        #expect(result.status == 3)
        #expect(result.stderr.contains("training diverged at step"), "\(result.stderr)")
    }
}
