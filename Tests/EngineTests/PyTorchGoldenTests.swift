@testable import Engine
import Foundation
@testable import Jobs
import Testing

/// Forward outputs, losses, gradients, optimizer trajectories and schedules against PyTorch 2.13
/// (fixtures from scripts/make_goldens.py).
struct PyTorchGoldenTests {
    nonisolated(unsafe) static let forwardBackwardCases = Fixtures.goldens["forward_backward"] as! [[String: Any]]
    nonisolated(unsafe) static let optimizerCases = Fixtures.goldens["optimizers"] as! [[String: Any]]
    nonisolated(unsafe) static let scheduleCases = Fixtures.goldens["schedules"] as! [[String: Any]]

    @Test("forward, loss and gradient", arguments: forwardBackwardCases.indices)
    func forwardBackward(index: Int) throws {
        let golden = Self.forwardBackwardCases[index]
        let name = golden.string("name")
        let spec = golden.model, x = golden.floats("x"), y = golden.floats("y")
        let loss = try #require(Loss(rawValue: golden.string("loss")))
        let targetWidth = golden.int("target_width"), rows = x.count / spec.inputs
        let network = Network(spec: spec, loss: loss, targetWidth: targetWidth, capacity: rows, library: .oneDNN)
        _ = network.input.elements.update(fromContentsOf: x)
        _ = network.targets.elements.update(fromContentsOf: y)
        let parameters = Buffer(golden.floats("parameters")), gradient = Buffer<Float>(count: parameters.count)

        let statistics = network.gradientSum(rows: rows, parameters: parameters.pointer, gradient: gradient.pointer)
        let output = Array(UnsafeBufferPointer(start: network.output, count: rows * spec.outputs))
        let mean = gradient.array.map { $0 / Float(rows) }

        #expect(firstMismatch(output, golden.floats("output"), absolute: 1e-6) == nil, "\(name) output")
        let expectedLoss = golden.double("loss_value")
        #expect(abs(statistics.lossSum / Double(rows) - expectedLoss) <= 1e-5 * abs(expectedLoss) + 1e-7,
                "\(name) loss \(statistics.lossSum / Double(rows)) vs \(expectedLoss)")
        let mismatch = firstMismatch(mean, golden.floats("gradient"), absolute: 1e-6)
        #expect(mismatch == nil, "\(name) gradient: \(mismatch ?? "")")
    }

    @Test("ten optimizer steps", arguments: optimizerCases.indices)
    func optimizerTrajectory(index: Int) throws {
        let golden = Self.optimizerCases[index]
        let (trainer, losses) = try train(golden, steps: 10) { options, data in options.batchSize = data.count }

        let label = "\(golden.string("optimizer")) \(golden.dictionary("options"))"
        let expectedLosses = golden.doubles("losses")
        #expect(losses.count == 10)
        for (step, (actual, expected)) in zip(losses, expectedLosses).enumerated() {
            #expect(abs(actual - expected) <= 1e-5 * abs(expected), "\(label) loss at step \(step)")
        }
        let mismatch = firstMismatch(trainer.parameters.array, golden.floats("final_parameters"), absolute: 1e-6)
        #expect(mismatch == nil, "\(label) parameters after 10 steps: \(mismatch ?? "")")
    }

    @Test("targets near 6.5e6: exact and fast training follow PyTorch's 21 SGD steps", arguments: Reduction.allCases)
    func largeTargets(reduction: Reduction) throws {
        let golden = Fixtures.goldens["large_targets"] as! [String: Any]
        let (trainer, losses) = try train(golden, steps: 21) { options, _ in
            options.batchSize = golden.int("batch_size")
            options.microShardSize = 4  // 8 micro-shards per batch, each loss sum near 1e14
            options.reduction = reduction
        }
        // Each epoch's loss is the mean over its three equal batches of PyTorch's per-step losses.
        let steps = golden.doubles("losses")
        let expected = stride(from: 0, to: steps.count, by: 3).map { steps[$0 ..< $0 + 3].reduce(0, +) / 3 }
        #expect(losses.count == 7)
        for (epoch, (actual, wanted)) in zip(losses, expected).enumerated() {
            #expect(abs(actual - wanted) <= 1e-5 * abs(wanted), "\(reduction) loss in epoch \(epoch): \(actual) vs \(wanted)")
        }
        let mismatch = firstMismatch(trainer.parameters.array, golden.floats("final_parameters"), relative: 1e-5,
                                     absolute: 0)
        #expect(mismatch == nil, "\(reduction) parameters after 21 steps: \(mismatch ?? "")")
    }

    @Test("learning-rate schedules", arguments: scheduleCases.indices)
    func schedule(index: Int) throws {
        let golden = Self.scheduleCases[index]
        let job = """
            model: {inputs: 1, layers: [{units: 1}]}
            loss: mse
            optimizer: {name: sgd, lr: 0.1}
            schedule: \(try String(data: JSONSerialization.data(withJSONObject: golden["schedule"]!), encoding: .utf8)!)
            data: {builtin: xor}
            """
        let schedule = try Job.parse(job, file: "golden.yaml", folder: "").options.schedule
        let expected = golden.doubles("rates")
        for (t, rate) in expected.enumerated() {
            let actual = schedule.rate(base: 0.1, at: t)
            #expect(abs(Double(actual) - rate) <= 1e-6 * rate, "\(golden["schedule"]!) at \(t): \(actual) vs \(rate)")
        }
    }

    /// Trains a golden case's model, data and optimizer from its initial parameters, in order, with MSE; returns
    /// the trainer and each epoch's loss.
    private func train(_ golden: [String: Any], steps: Int, configure: (inout TrainingOptions, Dataset) -> Void)
        throws -> (Trainer, [Double]) {
        let spec = golden.model, x = golden.floats("x"), y = golden.floats("y")
        let data = try Dataset(name: "golden", features: x, featureWidth: spec.inputs, targets: y,
                               targetWidth: spec.outputs)
        var options = TrainingOptions()
        options.length = .steps(steps)
        options.shuffle = false
        options.optimizer = try optimizerConfig(golden.string("optimizer"), golden.dictionary("options"))
        configure(&options, data)
        let trainer = Trainer(spec: spec, loss: .mse, options: options, training: data,
                              initialParameters: golden.floats("parameters"))
        var losses: [Double] = []
        try trainer.run { losses.append($0.loss) }
        return (trainer, losses)
    }

    private func optimizerConfig(_ name: String, _ o: [String: Any]) throws -> OptimizerConfig {
        let text = try String(data: JSONSerialization.data(withJSONObject: o.merging(["name": name]) { a, _ in a }),
                              encoding: .utf8)!
        let job = "model: {inputs: 1, layers: [{units: 1}]}\nloss: mse\noptimizer: \(text)\ndata: {builtin: xor}\n"
        return try Job.parse(job, file: "golden.yaml", folder: "").options.optimizer
    }
}
