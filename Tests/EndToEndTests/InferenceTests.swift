import Foundation
import Jobs
import Testing

/// `evaluate` and `predict` against what training itself reports: evaluate's figures are the train command's
/// Final and Validation lines, and predict's probabilities give back the training loss and accuracy when the test
/// computes cross-entropy and argmax from them itself.
@Suite(.serialized)
struct InferenceTests {
    @Test("evaluate on the saved weights prints train's Final and Validation figures")
    func evaluateMatchesTraining() throws {
        let weights = Command.temporaryPath("eval.st")
        let trained = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "20", "--save", weights])
        #expect(trained.status == 0, "\(trained.stderr)")
        let final = try #require(trained.lines.first { $0.hasPrefix("Final: ") })
        let validation = try #require(trained.lines.first { $0.hasPrefix("Validation: ") })
        let evaluated = try Command.run(["evaluate", "--config", "examples/spirals.yaml", "--weights", weights])
        #expect(evaluated.status == 0, "\(evaluated.stderr)")
        #expect(evaluated.lines.filter { !$0.isEmpty } == [final.replacingOccurrences(of: "Final", with: "Training") + " (1200 samples)",
                                    validation + " (300 samples)"], "\(evaluated.stdout)")
    }

    @Test("predict's probabilities reproduce the training loss and accuracy; classes are their argmax; CSV and npy")
    func predictMatchesTraining() throws {
        // Three noisy clusters in a CSV with a label column, as a user's file would be.
        var csv = "x,label,y\n"
        var rows: [(Double, Int, Double)] = []
        for i in 0..<150 {
            let label = i % 3
            let angle = Double(label) * 2.1 + Double(i % 7) * 0.05
            rows.append((cos(angle) * 2 + Double(i % 5) * 0.1, label, sin(angle) * 2 - Double(i % 4) * 0.1))
        }
        for row in rows { csv += "\(row.0),\(row.1),\(row.2)\n" }
        let data = Command.temporaryPath("clusters.csv"), job = Command.temporaryPath("clusters.yaml")
        try csv.write(toFile: data, atomically: true, encoding: .utf8)
        try """
            model: {layers: [{units: 16, activation: relu}, {units: 3, activation: softmax}]}
            loss: cross_entropy
            optimizer: {name: adam, lr: 0.05}
            batch_size: 30
            epochs: 15
            data: {csv: \(data), target: label}
            """.write(toFile: job, atomically: true, encoding: .utf8)
        let weights = Command.temporaryPath("clusters.st")
        let trained = try Command.run(["train", "--config", job, "--save", weights])
        #expect(trained.status == 0, "\(trained.stderr)")
        let final = try #require(trained.lines.first { $0.hasPrefix("Final: ") })

        let probabilities = Command.temporaryPath("p.csv"), classes = Command.temporaryPath("c.csv")
        let p = try Command.run(["predict", "--config", job, "--weights", weights, "--input", data, "--output", probabilities])
        #expect(p.status == 0, "\(p.stderr)")
        let c = try Command.run(["predict", "--config", job, "--weights", weights, "--input", data, "--output", classes,
                                 "--as", "classes"])
        #expect(c.status == 0, "\(c.stderr)")
        let pRows = try String(contentsOfFile: probabilities, encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: ",").compactMap { Double($0) } }
        let cRows = try String(contentsOfFile: classes, encoding: .utf8).split(separator: "\n").dropFirst().compactMap { Int($0) }
        #expect(pRows.count == 150 && cRows.count == 150)
        var loss = 0.0, correct = 0
        for (index, row) in pRows.enumerated() {
            #expect(abs(row.reduce(0, +) - 1) < 1e-5)
            loss -= log(row[rows[index].1])
            let argmax = row.indices.max { row[$0] < row[$1] }!
            #expect(cRows[index] == argmax)
            if argmax == rows[index].1 { correct += 1 }
        }
        // The printed loss has five significant digits (scientific below 1e-4); the probabilities in the CSV have
        // Float's, so their loss agrees to about 1e-6 of the loss plus their rounding near 1.
        let printed = final.split(separator: "=").dropFirst().first.flatMap { Double($0.split(separator: ",")[0]
            .trimmingCharacters(in: .whitespaces)) } ?? -1
        let expected = String(format: "accuracy = %.4f", Double(correct) / 150)
        #expect(abs(printed - loss / 150) <= 1e-3 * loss / 150 + 1e-6 && final.hasSuffix(expected),
                "train printed '\(final)', the predictions give loss \(loss / 150), \(expected)")

        // An identity output layer gives logits: probabilities are still their softmax.
        let logitsJob = Command.temporaryPath("clusters-logits.yaml"), logitsWeights = Command.temporaryPath("logits.st")
        try String(contentsOfFile: job, encoding: .utf8).replacingOccurrences(of: "activation: softmax",
                                                                              with: "activation: identity")
            .write(toFile: logitsJob, atomically: true, encoding: .utf8)
        #expect(try Command.run(["train", "--config", logitsJob, "--save", logitsWeights]).status == 0)
        let logitsOut = Command.temporaryPath("logits-p.csv")
        #expect(try Command.run(["predict", "--config", logitsJob, "--weights", logitsWeights, "--input", data,
                                 "--output", logitsOut]).status == 0)
        let logitRows = try String(contentsOfFile: logitsOut, encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: ",").compactMap { Double($0) } }
        #expect(logitRows.allSatisfy { row in abs(row.reduce(0, +) - 1) < 1e-5 && row.allSatisfy { $0 >= 0 } })

        // The same through .npy, and a wrong width named.
        let npy = Command.temporaryPath("p.npy")
        let viaNPY = try Command.run(["predict", "--config", job, "--weights", weights, "--input", data, "--output", npy])
        #expect(viaNPY.status == 0 && (FileManager.default.contents(atPath: npy)?.count ?? 0) == 128 + 150 * 3 * 4)
        let wide = Command.temporaryPath("wide.csv")
        try "a,b,c\n1,2,3\n".write(toFile: wide, atomically: true, encoding: .utf8)
        let refused = try Command.run(["predict", "--config", job, "--weights", weights, "--input", wide, "--output", npy])
        #expect(refused.status == 2 && refused.stderr.contains("the input has 3 feature columns") && refused.stderr.contains("give only the features"), "\(refused.stderr)")
    }
}

/// `shardtrain plot`, rendered as a user's viewer would: the SVG drawn to PNG by librsvg, then its pixels read.
@Suite(.serialized)
struct PlotCommandTests {
    @Test("plot two runs: an SVG that renders to a picture with ink in the runs' colours, a legend naming both")
    func rendersCurves() throws {
        let adam = Command.temporaryPath("adam.jsonl"), sgd = Command.temporaryPath("sgd.jsonl")
        #expect(try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "15", "--metrics", adam]).status == 0)
        #expect(try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "15", "--optimizer", "sgd",
                                 "--metrics", sgd]).status == 0)
        let svg = Command.temporaryPath("curves.svg"), png = Command.temporaryPath("curves.png")
        let plotted = try Command.run(["plot", adam, sgd, "--output", svg])
        #expect(plotted.status == 0, "\(plotted.stderr)")
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(text.contains(">adam</text>") && text.contains(">sgd</text>") && text.contains(">accuracy</text>"))
        #expect(text.components(separatedBy: "<polyline").count - 1 == 8, "2 runs × loss, val_loss, accuracy, val_accuracy")

        let renderer = "/usr/bin/rsvg-convert"
        try #require(FileManager.default.isExecutableFile(atPath: renderer), "rsvg-convert (librsvg2-bin) is needed")
        let render = Process()
        render.executableURL = URL(fileURLWithPath: renderer)
        render.arguments = ["-w", "860", svg, "-o", png]
        try render.run()
        render.waitUntilExit()
        #expect(render.terminationStatus == 0)
        let inspect = Process(), pipe = Pipe()
        inspect.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        inspect.arguments = [Command.repository.appendingPathComponent("scripts/png_ink.py").path, png]
        inspect.standardOutput = pipe
        try inspect.run()
        let fields = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: " ").map { String($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        inspect.waitUntilExit()
        #expect(fields.count == 4, "\(fields)")
        let ink = Double(fields[2]) ?? 0, colours = Int(fields[3]) ?? 0
        #expect(ink > 0.01 && ink < 0.5, "ink \(ink): blank or flooded")
        #expect(colours >= 3, "\(colours) colours")

        // A flat curve at a huge value still gets axes.
        let flat = Command.temporaryPath("flat.jsonl")
        try "{\"epoch\":0,\"loss\":1e20}\n{\"epoch\":1,\"loss\":1e20}\n".write(toFile: flat, atomically: true, encoding: .utf8)
        #expect(try Command.run(["plot", flat, "--output", svg]).status == 0)

        let bad = Command.temporaryPath("bad.jsonl")
        try "not json\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try Command.run(["plot", bad, "--output", svg])
        #expect(refused.status == 2 && refused.stderr.contains("line 1: not a metrics record"), "\(refused.stderr)")
    }
}

/// The real data set in examples/: it trains to the accuracy its README states, with workers.
@Suite struct DigitsExampleTests {
    @Test("examples/digits trains with 2 workers to the validation accuracy its README states")
    func digitsTrain() throws {
        let result = try Command.run(["train", "--config", "examples/digits/digits.yaml", "--workers", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let readme = try String(contentsOfFile: "\(Command.repository.path)/examples/digits/README.md", encoding: .utf8)
        let validation = try #require(result.lines.first { $0.hasPrefix("Validation: ") })
        let accuracy = try #require(validation.split(separator: "accuracy = ").last)
        #expect(readme.contains("validation accuracy of \(accuracy)"), "\(validation)")
        #expect((Double(accuracy) ?? 0) > 0.94)
    }
}

extension EquivalenceCommandTests {
    @Test("distributed --metrics records each worker's share of every epoch; the shares add up to the epoch's samples")
    func workerShares() throws {
        let metrics = Command.temporaryPath("shares.jsonl")
        let run = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "2", "--workers", "2",
                                   "--metrics", metrics])
        #expect(run.status == 0, "\(run.stderr)")
        for line in try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n") {
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let workers = try #require(record["workers"] as? [String: [String: Any]])
            #expect(Set(workers.keys) == ["w1", "w2"])
            #expect(workers.values.compactMap { $0["samples"] as? Int }.reduce(0, +) == 1200, "\(line)")
        }
    }
}
