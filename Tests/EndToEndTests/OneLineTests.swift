import Foundation
import Jobs
import Testing

/// One event, one line, in words that fit it: what the commands say when stopped, refused or misdirected.
@Suite(.serialized)
struct OneLineTests {
    /// A job long enough to be stopped in the middle (hundreds of thousands of steps).
    static let longJob = Command.job("one-line-long.yaml", """
        model: {layers: [{units: 16, activation: relu}, {units: 4, activation: softmax}]}
        loss: cross_entropy
        batch_size: 96
        micro_shard: 8
        epochs: 100000
        data: {builtin: blobs, samples: 960, classes: 4, features: 8, noise: 3.0}
        """)

    @Test("SIGINT to train --workers 2: one stop line (the local workers repeat nothing), no socket file left")
    func interruptedOnce() throws {
        let log = Command.temporaryPath("one-line-sigint.log")
        let run = try Command.start(["train", "--config", Self.longJob, "--workers", "2", "--verbose"], stderr: log)
        try FailureTests.waitForStep(20, in: log)
        kill(run.processIdentifier, SIGINT)
        #expect(Command.wait(run, timeout: 60) == 130)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        let stops = lines.filter { $0.contains("SIGINT") }
        #expect(stops.count == 1 && stops[0].hasPrefix("error: stopped by SIGINT after ")
                && stops[0].hasSuffix("no --checkpoint folder was given, so they are lost"), "\(stops)")
        #expect(!lines.contains { $0.contains("the coordinator stopped the run") }, "\(lines.suffix(5))")
    }

    @Test("workers generating a large built-in data set are not lost to silence meanwhile (no false alarm)")
    func preparingIsNotSilence() throws {
        let job = Command.job("one-line-large-data.yaml", """
            model: {layers: [{units: 4, activation: relu}, {units: 2, activation: softmax}]}
            loss: cross_entropy
            batch_size: 64
            micro_shard: 32
            steps: 2
            data: {builtin: blobs, samples: 2000, classes: 2, features: 784}
            """)
        // A 0.2 s heartbeat: each worker of a debug build spends many of them generating 2,000 × 784 samples first.
        let result = try Command.run(["train", "--config", job, "--workers", "2", "--heartbeat", "0.2"])
        #expect(result.status == 0 && !result.stderr.contains(" lost: ") && result.stderr.contains("ready (2/2)"),
                "\(result.stderr)")
    }

    @Test("SIGKILL of train leaves no socket file behind")
    func killedLeavesNoFile() throws {
        let log = Command.temporaryPath("one-line-sigkill.log")
        let run = try Command.start(["train", "--config", Self.longJob, "--workers", "1", "--verbose"], stderr: log)
        try FailureTests.waitForStep(5, in: log)
        kill(run.processIdentifier, SIGKILL)
        #expect(Command.wait(run, timeout: 60) != nil)
        // Its local worker notices its parent is gone, removes the socket file and exits.
        let text = try String(contentsOfFile: log, encoding: .utf8)
        for pid in Command.workerPIDs(inLog: text) {
            var ended = false
            for _ in 0..<600 where !ended {
                ended = kill(pid, 0) != 0
                if !ended { Thread.sleep(forTimeInterval: 0.1) }
            }
            #expect(ended, "worker pid \(pid) outlived its parent")
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: "/tmp")
            .filter { $0.hasPrefix("shardtrain-\(run.processIdentifier)-") }
        #expect(left.isEmpty, "\(left)")
    }

    @Test("a worker started with SIGINT ignored (as a script's background job is) still stops on SIGINT")
    func backgroundWorkerStops() throws {
        let port = Command.reservedPort(), log = Command.temporaryPath("one-line-bg-worker.log")
        let worker = try Command.start(["/bin/sh", "-c", "trap '' INT; exec \"$0\" \"$@\"", Command.binary.path,
                                        "worker", "--connect", "tcp://127.0.0.1:\(port)", "--idle-timeout", "600"],
                                       stderr: log, raw: true)
        // Nothing listens there: it says so at once, then keeps trying.
        let line = try Command.waitForLine(in: log, containing: "nothing answers at tcp://127.0.0.1:\(port) yet",
                                           timeout: 60)
        #expect(line.contains("retrying until --idle-timeout (600.0 s)"), "\(line)")
        kill(worker.processIdentifier, SIGINT)
        let status = Command.wait(worker, timeout: 30)
        #expect(status != nil && worker.terminationReason == .uncaughtSignal && status == SIGINT, "\(String(describing: status))")
    }

    @Test("bad input, each refused in one line naming what to do, exit 2")
    func badInput() throws {
        let negative = Command.temporaryPath("negative-lr.yaml"), twice = Command.temporaryPath("twice.yaml")
        try "model: {layers: [{units: 1}]}\nloss: mse\noptimizer: {name: sgd, lr: -1}\ndata: {builtin: regression}\n"
            .write(toFile: negative, atomically: true, encoding: .utf8)
        try "model: {layers: [{units: 1}]}\nloss: mse\nloss: mae\ndata: {builtin: regression}\n"
            .write(toFile: twice, atomically: true, encoding: .utf8)
        let listener = try Command.start(["coordinator", "--config", "examples/xor.yaml", "--bind",
                                          "tcp://127.0.0.1:\(Command.reservedPort())", "--workers", "1"],
                                         stderr: Command.temporaryPath("one-line-listener.log"))
        defer { kill(listener.processIdentifier, SIGKILL); _ = Command.wait(listener, timeout: 10) }
        let busy = try Command.waitForLine(in: Command.temporaryPath("one-line-listener.log"), containing: "waiting for 1 worker",
                                           timeout: 60)
        let endpoint = String(busy.split(separator: " ")[5])
        let cases: [([String], String)] = [
            (["train", "--config", negative], "optimizer.lr: must be positive, got -1.0"),
            (["train", "--config", twice], "line 2: 'loss' appears more than once in one mapping; keep one"),
            (["coordinator", "--config", "examples/xor.yaml", "--workers", "1", "--threads", "2"],
             "--threads 2: a coordinator computes no micro-shards"),
            (["coordinator", "--config", "examples/xor.yaml", "--workers", "1", "--bind", endpoint],
             "cannot listen on \(endpoint)"),
            (["launch", "--config", "examples/xor.yaml", "--rank", "0", "--world-size", "2", "--master-addr", "192.0.2.1"],
             "give --key (make keys"),
            (["launch", "--config", "examples/xor.yaml", "--rank", "0", "--world-size", "2", "--master-addr",
              "no-such-host.invalid"], "no-such-host.invalid"),
            (["coordinator", "--config", "examples/xor.yaml", "--workers", "5000", "--bind",
              "tcp://127.0.0.1:\(Command.reservedPort())"], "5000 workers: a coordinator holds at most 4096"),
            (["coordinator", "--config", "examples/xor.yaml", "--workers", "1", "--heartbeat", "5000"],
             "--heartbeat 5000.0: give seconds between 0.01 and 3600"),
        ]
        for (arguments, message) in cases {
            let result = try Command.run(arguments)
            // launch says where it stands first; then, as every other command, one error line.
            let lines = result.stderr.split(separator: "\n").filter { !$0.hasPrefix("launch: rank ") }
            #expect(result.status == 2 && lines.count == 1 && lines[0].hasPrefix("error: ") && lines[0].contains(message),
                    "\(arguments): \(result.stderr)")
        }
    }

    @Test("each command's help shows only its own key flags")
    func ownFlagsOnly() throws {
        let worker = try Command.run(["worker", "--help"]).stdout
        let coordinator = try Command.run(["coordinator", "--help"]).stdout
        let launch = try Command.run(["launch", "--help"]).stdout
        #expect(worker.contains("--coordinator-key") && !worker.contains("--authorized"))
        #expect(coordinator.contains("--authorized") && !coordinator.contains("--coordinator-key"))
        #expect(launch.contains("--key") && !launch.contains("--authorized") && !launch.contains("--coordinator-key"))
    }

    @Test("more compute threads than cores: one warning saying so")
    func oversubscription() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let result = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "1", "--workers", "2",
                                      "--threads", String(cores)])
        #expect(result.status == 0, "\(result.stderr)")
        let warnings = result.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        #expect(warnings.count == 1 && warnings[0].contains("2 workers × \(cores) thread")
                && warnings[0].contains("on \(cores) core"), "\(result.stderr)")
    }

    @Test("evaluate names its own flag for a CSV's target; plot writes beside its input and draws no validation key without validation; equivalence ends with its verdict")
    func toolsWording() throws {
        let weights = Command.temporaryPath("one-line-xor.st"), metrics = Command.temporaryPath("one-line-xor.jsonl")
        let trained = try Command.run(["train", "--config", "examples/xor.yaml", "--save", weights, "--metrics", metrics])
        #expect(trained.status == 0, "\(trained.stderr)")
        let csv = Command.temporaryPath("one-line-xor.csv")
        try "a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let evaluated = try Command.run(["evaluate", "--config", "examples/xor.yaml", "--weights", weights, "--data", csv,
                                         "--target", "label"])
        #expect(evaluated.status == 2 && evaluated.stderr.contains("no column named 'label'")
                && evaluated.stderr.contains("set --target to one of them"), "\(evaluated.stderr)")

        let plotted = try Command.run(["plot", metrics])
        let svg = Command.temporaryPath("one-line-xor.svg")
        #expect(plotted.status == 0 && plotted.stderr.contains("wrote \(svg)"), "\(plotted.stderr)")
        let picture = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(picture.contains(">training</text>") && !picture.contains(">validation</text>"))

        let job = Command.job("one-line-uneven.yaml", """
            model: {layers: [{units: 4, activation: relu}, {units: 3, activation: softmax}]}
            loss: cross_entropy
            batch_size: 50
            micro_shard: 16
            steps: 4
            data: {builtin: spirals, samples: 200, classes: 3}
            """)
        let checked = try Command.run(["equivalence", "--config", job, "--workers", "1,2"])
        #expect(checked.status == 0, "\(checked.stderr)")
        #expect(checked.lines.first == "50 samples per batch in 4 micro-shards: 3 of 16 and 1 of 2", "\(checked.stdout)")
        let last = checked.lines.last { !$0.isEmpty } ?? ""
        #expect(last == "verdict: the same — every exact run (2) gave the in-process run's bits", "\(checked.stdout)")
    }
}
