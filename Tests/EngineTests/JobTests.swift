@testable import Engine
import Foundation
@testable import Jobs
@testable import Platform
import Testing

struct JobTests {
    static let base = """
        model:
          inputs: 2
          layers:
            - {units: 3, activation: relu}
            - {units: 1, activation: sigmoid}
        loss: mse
        optimizer: {name: sgd, lr: 0.5, momentum: 0.9}
        batch_size: 4
        epochs: 10
        data: {builtin: xor}
        """

    @Test("the example job parses into the seed's network")
    func example() throws {
        let job = try Job.load(Fixtures.example("xor.yaml"))
        #expect(job.model == ModelSpec(inputs: 2, layers: [LayerSpec(units: 3, activation: .relu),
                                                           LayerSpec(units: 1, activation: .sigmoid)]))
        #expect(job.loss == .mse && job.options.batchSize == 4 && job.options.length == .epochs(1000))
        var sgd = SGD.Options()
        sgd.lr = 0.5
        #expect(job.options.optimizer == .sgd(sgd))
        #expect(job.data == .xor)
    }

    @Test("JSON jobs parse too; the default optimizer is Adam with lr 0.001")
    func json() throws {
        let job = try Job.parse("""
            {"model": {"layers": [{"units": 2, "activation": "softmax"}]}, "loss": "cross_entropy",
             "data": {"builtin": "blobs", "classes": 2}}
            """, file: "j.json", folder: "")
        #expect(job.options.optimizer == .adam(Adam.Options()))
        #expect(job.options.optimizer.learningRate == 0.001)
    }

    @Test("each one-value setting reads the same from the file and from its flag, and is refused the same way")
    func settingsTable() throws {
        let cases: [JobSetting: (good: String, bad: String, message: String)] = [
            .batchSize: ("8", "0", "must be at least 1, got 0"),
            .epochs: ("3", "0", "must be at least 1, got 0"),
            .steps: ("5", "-1", "must be at least 1, got -1"),
            .seed: ("9", "-2", "must be at least 0, got -2"),
            .shuffle: ("false", "maybe", "expected true or false, got 'maybe'"),
            .dropLast: ("true", "2", "expected true or false, got '2'"),
            .microShard: ("2", "x", "expected a whole number, got 'x'"),
            .reduction: ("fast", "sloppy", "unknown reduction 'sloppy'; use exact or fast"),
            .gemm: ("openblas", "mkl", "unknown GEMM library 'mkl'; use onednn or openblas"),
            .validationSplit: ("0.25", "1.5", "must lie in 0…0.99, got 1.5"),
            .logEvery: ("4", "0", "must be at least 1, got 0"),
        ]
        #expect(Set(cases.keys) == Set(JobSetting.allCases), "every setting is covered")
        let plain = try Job.parse(Self.base, file: "j.yaml", folder: "")
        for (setting, value) in cases {
            // The base job without this key (and, for steps, without epochs: a file gives one or the other).
            let base = Self.base.split(separator: "\n", omittingEmptySubsequences: false).filter {
                !$0.hasPrefix("\(setting.key):") && !(setting == .steps && $0.hasPrefix("epochs:"))
            }.joined(separator: "\n")
            let fromFile = try Job.parse(base + "\n\(setting.key): \(value.good)", file: "j.yaml", folder: "")
            var overrides = JobOverrides()
            overrides.settings = [setting: value.good]
            let fromFlag = try overrides.apply(to: plain)
            #expect(fromFile == fromFlag && fromFile != plain, "\(setting.key)")
            #expect(try Job.parse(fromFile.canonicalText, file: "c.json", folder: "") == fromFile, "\(setting.key)")
            #expect {
                try Job.parse(base + "\n\(setting.key): \(value.bad)", file: "j.yaml", folder: "")
            } throws: { ($0 as? InputError)?.message == "j.yaml:\(base.split(separator: "\n").count + 1): \(setting.key): \(value.message)" }
            overrides.settings = [setting: value.bad]
            #expect {
                try overrides.apply(to: plain)
            } throws: { ($0 as? InputError)?.message == "\(setting.flag) \(value.bad): \(value.message)" }
        }
    }

    @Test("flags override the file")
    func overrides() throws {
        var o = JobOverrides()
        o.settings = [.steps: "7", .shuffle: "false", .seed: "3"]
        o.optimizer = "adamw"
        o.learningRate = 0.01
        let job = try o.apply(to: Job.parse(Self.base, file: "j.yaml", folder: ""))
        #expect(job.options.length == .steps(7) && !job.options.shuffle && job.options.seed == 3)
        var adamW = Adam.Options.adamW
        adamW.lr = 0.01
        #expect(job.options.optimizer == .adam(adamW))
        var keep = JobOverrides()
        keep.optimizer = "sgd"
        let same = try keep.apply(to: Job.parse(Self.base, file: "j.yaml", folder: ""))
        guard case .sgd(let options) = same.options.optimizer else { Issue.record("not sgd"); return }
        #expect(options.momentum == 0.9, "re-naming the file's optimizer keeps its options")
    }

    @Test("unknown keys and bad values are refused naming the key", arguments: [
        ("optimizer: {name: sgd, lr: 0.5, momentom: 0.9}", "j.yaml:7: optimizer.momentom: unknown key"),
        ("optimizer: {name: sgd, lr: -1}", "optimizer.lr: must be positive, got -1.0"),
        ("optimizer: {name: lion}", "unknown optimizer 'lion'"),
        ("optimizer: {name: sgd, nesterov: true}", "nesterov: needs momentum"),
        ("loss: hinge", "loss: unknown loss 'hinge'"),
        ("batch_size: 0", "batch_size: must be at least 1, got 0"),
        ("batch_size: many", "batch_size: expected a whole number, got 'many'"),
        ("steps: 5", "give either 'epochs' or 'steps', not both"),
        ("colour: blue", "colour: unknown key; the job takes"),
        ("data: {builtin: mnist}", "unknown data set 'mnist'"),
        ("data: {features: x.npy}", "data.targets: missing"),
        ("schedule: {name: step}", "schedule.step_size: missing"),
        ("schedule: {name: cosine, t_max: 5, unit: week}", "unknown unit 'week'"),
        ("model: {layers: [{units: 3, activation: swish}]}", "model.layers[0].activation: unknown activation 'swish'"),
        ("model: {layers: [{units: 3, activation: relu, negative_slope: 0.2}]}", "only leaky_relu takes"),
        ("model: {layers: []}", "model.layers: expected a list of layers"),
        ("shuffle: maybe", "shuffle: expected true or false"),
        ("reduction: approximate", "unknown reduction 'approximate'"),
        ("model: [1, 2]", "model must be a mapping"),
    ])
    func refusesBadJobs(line: String, message: String) {
        let key = String(line.prefix { $0 != ":" })
        var lines = Self.base.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let index = lines.firstIndex(where: { $0.hasPrefix(key + ":") }), !["steps", "colour"].contains(key) {
            // Replace the whole top-level entry (model spans several lines).
            var end = index + 1
            while end < lines.count, lines[end].hasPrefix(" ") { end += 1 }
            lines.replaceSubrange(index ..< end, with: [line])
        } else {
            lines.append(line)
        }
        #expect {
            _ = try Job.parse(lines.joined(separator: "\n"), file: "j.yaml", folder: "")
        } throws: { error in
            let text = (error as? InputError)?.message ?? ""
            return text.hasPrefix("j.yaml") && text.contains(message) && !text.contains("\n")
        }
    }

    @Test("a model that does not fit its loss or data is refused before training", arguments: [
        ("loss: bce", "{units: 1, activation: identity}", "bce reads probabilities"),
        ("loss: bce_logits", "{units: 1, activation: sigmoid}", "bce_logits reads logits"),
        ("loss: cross_entropy", "{units: 1, activation: softmax}", "needs at least 2 output units"),
        ("loss: cross_entropy", "{units: 2, activation: relu}", "cross_entropy reads logits"),
        ("loss: mse", "{units: 2, activation: sigmoid}", "targets have 1 columns but the model has 2 output units"),
    ])
    func refusesMismatches(loss: String, output: String, message: String) throws {
        let text = Self.base.replacingOccurrences(of: "loss: mse", with: loss)
            .replacingOccurrences(of: "{units: 1, activation: sigmoid}", with: output)
        let job = try Job.parse(text, file: "j.yaml", folder: "")
        #expect {
            _ = try job.checked(against: job.loadData())
        } throws: { error in ((error as? InputError)?.message ?? "").contains(message) }
    }

    @Test("class targets out of range, wrong input width and missing files are refused")
    func refusesDataMismatches() throws {
        let classes = """
            model: {layers: [{units: 2, activation: softmax}]}
            loss: cross_entropy
            data: {features: features-f4.npy, targets: targets-i8.npy}
            """
        let job = try Job.parse(classes, file: "j.yaml", folder: Fixtures.folder.path)
        #expect(throws: InputError.self) { _ = try job.checked(against: job.loadData()) }
        let wide = Self.base.replacingOccurrences(of: "inputs: 2", with: "inputs: 5")
        let wideJob = try Job.parse(wide, file: "j.yaml", folder: "")
        #expect { _ = try wideJob.checked(against: wideJob.loadData()) } throws: {
            ((($0 as? InputError)?.message) ?? "").contains("model.inputs is 5 but xor has 2 features")
        }
        let missing = classes.replacingOccurrences(of: "targets-i8.npy", with: "absent.npy")
        let missingJob = try Job.parse(missing, file: "j.yaml", folder: Fixtures.folder.path)
        #expect { _ = try missingJob.loadData() } throws: {
            ((($0 as? InputError)?.message) ?? "").contains("absent.npy: cannot read the file")
        }
    }
}
