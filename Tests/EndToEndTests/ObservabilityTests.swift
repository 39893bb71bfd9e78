import Foundation
import Testing

/// What a run shows to the tools people watch runs with: TensorBoard's event files, read back by TensorBoard's own
/// reader (pip's `tensorboard`), against the run's metrics file; Prometheus' figures, scraped during a run and read by
/// Prometheus' own parser (pip's `prometheus_client`).
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

    @Test("--prometheus: scraped during a run with workers, Prometheus' parser reads the position, the figures and each worker's share; a silent connection and other requests are answered and serving goes on; SIGTERM stops it all")
    func prometheus() throws {
        let port = Command.reservedPort(), log = Command.temporaryPath("prometheus.log")
        let started = Date().timeIntervalSince1970
        let run = try Command.start(["train", "--config", "examples/spirals.yaml", "--epochs", "100000", "--workers", "2",
                                     "--prometheus", "127.0.0.1:\(port)"], stderr: log)
        defer { kill(run.processIdentifier, SIGKILL) }
        _ = try Command.waitForLine(in: log, containing: "serving Prometheus metrics on port \(port)", timeout: 60)
        let script = Command.repository.appendingPathComponent("scripts/prometheus_scrape.py").path
        let url = "http://127.0.0.1:\(port)/metrics"
        // Scraped until a worker's share is in (after the first epoch), however loaded the machine is.
        var scrape: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(120)
        repeat {
            scrape = try #require(Self.jsonLines(["python3", script, url, "--probe"]).first)
        } while (scrape["families"] as? [String: Any])?["shardtrain_worker_samples"] == nil && Date() < deadline
        #expect(scrape["status"] as? Int == 200)
        #expect((scrape["content_type"] as? String)?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(scrape["other_path"] as? String == "HTTP/1.1 404 Not Found")
        #expect(scrape["not_http"] as? String == "HTTP/1.1 400 Bad Request")
        let families = try #require(scrape["families"] as? [String: [String: Any]])
        func samples(_ name: String) -> [(labels: [String: String], value: Double)] {
            ((families[name]?["samples"] as? [[Any]]) ?? []).map { ($0[1] as? [String: String] ?? [:], $0[2] as? Double ?? .nan) }
        }
        func value(_ name: String) -> Double? { samples(name).first?.value }
        for gauge in ["shardtrain_step", "shardtrain_epoch", "shardtrain_total_steps", "shardtrain_loss",
                      "shardtrain_accuracy", "shardtrain_learning_rate", "shardtrain_samples_per_second",
                      "shardtrain_last_step_timestamp_seconds", "shardtrain_members", "shardtrain_worker_samples",
                      "shardtrain_worker_step_seconds"] {
            #expect(families[gauge]?["type"] as? String == "gauge", "\(gauge): \(String(describing: families[gauge]))")
        }
        #expect(families["shardtrain_worker_losses"]?["type"] as? String == "counter")
        #expect(value("shardtrain_worker_losses") == 0 && value("shardtrain_worker_rejoins") == 0)
        let step = try #require(value("shardtrain_step")), total = try #require(value("shardtrain_total_steps"))
        // spirals: 19 batches an epoch.
        #expect(step >= 19 && step < total && total == 1_900_000, "step \(step) of \(total)")
        let stamp = try #require(value("shardtrain_last_step_timestamp_seconds"))
        #expect(stamp >= started && stamp <= Date().timeIntervalSince1970)
        let members = Dictionary(uniqueKeysWithValues: samples("shardtrain_members").map { ($0.labels["state"] ?? "?", $0.value) })
        #expect(members.count == 4 && (members["ready"] ?? 0) + (members["assigned"] ?? 0) == 2 && members["lost"] == 0,
                "\(members)")
        let shares = samples("shardtrain_worker_samples")
        #expect(Set(shares.map { $0.labels["worker"] ?? "" }) == ["w1", "w2"] && shares.map(\.value).reduce(0, +) == 1200,
                "\(shares): spirals' 1,200 training samples an epoch")
        // SIGTERM: the run stops as it documents, and with it the server and every worker.
        kill(run.processIdentifier, SIGTERM)
        #expect(Command.wait(run, timeout: 60) == 143)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        for worker in Command.workerPIDs(inLog: text) { #expect(kill(worker, 0) != 0, "worker pid \(worker) still running") }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", script, url]
        probe.standardError = FileHandle.nullDevice
        probe.standardOutput = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        #expect(probe.terminationStatus != 0, "still serving after the run stopped")
    }

    @Test("--prometheus on an address that cannot be served is refused before training, in one line naming it")
    func refusedAddress() throws {
        for (address, why) in [("9400", "give HOST:PORT or :PORT"), ("127.0.0.1:99999", "is not a number from 0 to 65535"),
                               ("192.0.2.1:9400", "cannot listen there")] {
            let result = try Command.run(["train", "--config", "examples/xor.yaml", "--prometheus", address])
            #expect(result.status == 2 && result.stderr.contains("--prometheus \(address): ") && result.stderr.contains(why),
                    "\(address): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1 && !result.stdout.contains("Epoch"), "\(result.stderr)")
        }
    }
}

/// The stragglers line: which worker held the steps up, and whether by computing or by the rest.
@Suite struct StragglersTests {
    @Test("a worker that computes slower is named after the run, its computing far beyond the median worker's")
    func slowWorkerNamed() throws {
        let port = Command.reservedPort(), endpoint = "tcp://127.0.0.1:\(port)"
        let log = Command.temporaryPath("stragglers.log")
        let coordinator = try Command.start(["coordinator", "--config", "examples/spirals.yaml", "--bind", endpoint,
                                             "--workers", "3", "--epochs", "2"], stderr: log)
        var workers: [Process] = []
        defer { for process in workers + [coordinator] { kill(process.processIdentifier, SIGKILL) } }
        for (name, delay) in [("quick-1", ""), ("quick-2", ""), ("slow", "60")] {
            workers.append(try Command.start(["worker", "--connect", endpoint, "--name", name],
                                             stderr: Command.temporaryPath("stragglers-\(name).log"),
                                             environment: ["SHARDTRAIN_TEST_COMPUTE_DELAY_MS": delay]))
        }
        #expect(Command.wait(coordinator, timeout: 120) == 0)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").last { $0.hasPrefix("stragglers: ") }, "\(text.suffix(800))")
        #expect(line.contains("\"slow\" took"), "\(line)")
        // Its computing, 60 ms or more a result against a few ms, is many times the median's.
        let computing = line.split(separator: "computing ").last.flatMap { Double($0.prefix { $0.isNumber || $0 == "." }) }
        #expect((computing ?? 0) > 3, "\(line)")
        for worker in workers { #expect(Command.wait(worker, timeout: 30) == 0) }
    }
}

/// `--trace`: the run's timeline as a Chrome trace.
@Suite struct TraceTests {
    static func events(_ path: String) throws -> [[String: Any]] {
        let data = try #require(FileManager.default.contents(atPath: path))
        return try #require(JSONSerialization.jsonObject(with: data) as? [[String: Any]], "not a JSON array of events")
    }

    @Test("--trace with workers: every step's phases on the coordinator's row, and each worker's results on its own, inside their step; in-process, one span a step with its layers inside")
    func timeline() throws {
        let path = Command.temporaryPath("trace.json")
        let run = try Command.run(["train", "--config", "examples/spirals.yaml", "--workers", "2", "--epochs", "2",
                                   "--trace", path])
        #expect(run.status == 0, "\(run.stderr)")
        let events = try Self.events(path)
        let names = events.filter { $0["name"] as? String == "process_name" }
            .map { ($0["pid"] as! Int, ($0["args"] as! [String: Any])["name"] as! String) }
        #expect(names.count == 3 && names.contains { $0 == (0, "coordinator") }, "\(names)")
        #expect(names.filter { $0.1.hasPrefix("w") && $0.1.contains("\"local-") }.count == 2, "\(names)")
        let spans = events.filter { $0["ph"] as? String == "X" }
        func span(_ e: [String: Any]) -> (step: Int, start: Int, end: Int) {
            let args = e["args"] as! [String: Any], start = e["ts"] as! Int
            return (args["step"] as! Int, start, start + (e["dur"] as! Int))
        }
        // spirals: 1,200 training samples in batches of 64, so 19 steps an epoch, the last of 48 samples.
        for step in 0..<38 {
            let mine = spans.filter { span($0).step == step }
            let phases = Dictionary(uniqueKeysWithValues: mine.filter { $0["pid"] as? Int == 0 }
                .map { ($0["name"] as! String, span($0)) })
            let handOut = try #require(phases["hand-out"], "step \(step)"), wait = try #require(phases["wait for results"])
            let update = try #require(phases["update"])
            #expect(handOut.start <= wait.start && wait.end <= update.start && handOut.end <= wait.end, "step \(step)")
            let computing = mine.filter { $0["name"] as? String == "compute" }
            #expect(!computing.isEmpty, "step \(step)")
            for work in computing {
                let s = span(work)
                #expect(s.start >= handOut.start && s.end <= wait.end, "step \(step): \(work) outside \(handOut), \(wait)")
            }
            let samples = computing.map { ($0["args"] as! [String: Any])["samples"] as! Int }.reduce(0, +)
            #expect(samples == (step % 19 == 18 ? 48 : 64), "step \(step): \(samples) samples")
            // Each worker's own timeline: every layer's forward and backward (spirals: 3 layers), on a computing
            // thread, inside its computing.
            for work in computing {
                let pid = work["pid"] as! Int, inside = span(work)
                let layers = mine.filter { $0["pid"] as? Int == pid && ($0["tid"] as? Int ?? 0) >= 1 }
                let names = Set(layers.map { $0["name"] as! String })
                #expect(names == Set((1...3).flatMap { ["forward layer \($0)", "backward layer \($0)"] }), "step \(step): \(names)")
                #expect(layers.allSatisfy { span($0).start >= inside.start && span($0).end <= inside.end },
                        "step \(step): \(layers) outside \(inside)")
            }
        }

        let threads = events.filter { $0["name"] as? String == "thread_name" }
            .map { ($0["args"] as! [String: Any])["name"] as! String }
        #expect(threads.filter { $0 == "messages" }.count == 2 && threads.contains("computing thread 1"), "\(threads)")

        let local = Command.temporaryPath("trace-local.json")
        #expect(try Command.run(["train", "--config", "examples/xor.yaml", "--epochs", "30", "--trace", local]).status == 0)
        let localEvents = try Self.events(local)
        let steps = localEvents.filter { $0["name"] as? String == "step" }
        #expect(steps.count == 30 && steps.enumerated().allSatisfy { ($1["args"] as! [String: Any])["step"] as? Int == $0 + 1 })
        // In-process, the layers' spans on the computing threads, inside their step (xor: 2 layers).
        for step in steps {
            let s = span(step)
            let layers = localEvents.filter { ($0["tid"] as? Int ?? 0) >= 1 && $0["ph"] as? String == "X"
                && ($0["args"] as! [String: Any])["step"] as? Int == s.step }
            let names = Set(layers.map { $0["name"] as! String })
            #expect(Set(names.filter { !$0.hasPrefix("exact sum of ") })
                    == Set(["forward layer 1", "forward layer 2", "backward layer 1", "backward layer 2"]), "\(s)")
            #expect(layers.allSatisfy { span($0).start >= s.start && span($0).end <= s.end }, "\(s)")
        }
    }

    @Test("--trace with results in parts: each part's sending on the worker's row inside its computing, and the run's bits those of the untraced in-process run")
    func parts() throws {
        let path = Command.temporaryPath("trace-parts.json"), out = Command.temporaryPath("trace-parts.st")
        let run = try Command.run(["train", "--config", OverlapTests.jobFile, "--workers", "2", "--overlap", "on",
                                   "--trace", path, "--save", out])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try FailureTests.digest(out) == OverlapTests.reference)
        let spans = try Self.events(path).filter { $0["ph"] as? String == "X" }
        func step(_ e: [String: Any]) -> Int { (e["args"] as! [String: Any])["step"] as! Int }
        // 960 samples in batches of 48: 20 steps an epoch, 3 epochs; the 198,276 parameters in six parts of 33,056
        // (the fewest parts of at most 65,536 that spread evenly over 2 workers and the coordinator).
        for s in 0..<60 {
            let computing = spans.filter { step($0) == s && $0["name"] as? String == "compute" }
            #expect(computing.count == 2, "step \(s)")
            for work in computing {
                let pid = work["pid"] as! Int, start = work["ts"] as! Int, end = start + (work["dur"] as! Int)
                let sends = spans.filter { step($0) == s && $0["pid"] as? Int == pid && $0["tid"] as? Int == 0
                    && ($0["name"] as! String).hasPrefix("send part ") }
                #expect(Set(sends.map { $0["name"] as! String }) == Set((0..<6).map { "send part \($0)" }), "step \(s)")
                #expect(sends.allSatisfy { ($0["ts"] as! Int) >= start && ($0["ts"] as! Int) + ($0["dur"] as! Int) <= end })
            }
        }
    }
}
