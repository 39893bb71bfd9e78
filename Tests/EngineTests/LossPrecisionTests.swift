@testable import Engine
import Foundation
@testable import Jobs
@testable import Platform
import Testing

/// Losses where float32 arithmetic can lose what PyTorch keeps: confident and near-tie logits against float64
/// (values from Python's `math` in float64 on the same float32 inputs), and losses beyond float32's range.
struct LossPrecisionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let logits: [Float], target: Int, loss: Double, gradient: [Double]
        var testDescription: String { "logits \(logits), target \(target)" }
    }

    static let cases: [Case] = [
        // Confident: `peak + log Σ − z_target` cancels at the logits' magnitude (0.0067138672, 2.2e-4 off).
        Case(logits: [100, 95, 0], target: 0, loss: 0.006715348489123585,
             gradient: [-0.006692850924290283, 0.006692850924284819, 3.6951780620862946e-44]),
        Case(logits: [100, 95, 0], target: 1, loss: 5.006715348489124,
             gradient: [0.9933071490757097, -0.9933071490757152, 3.6951780620862946e-44]),
        // Very confident: the target's gradient −2.06e-9 is p − 1 with p one ulp from 1.
        Case(logits: [30, -30, 0, 10], target: 0, loss: 2.061245396589584e-09,
             gradient: [-2.061245396589584e-09, 8.756510744647233e-27, 9.357622949551818e-14,
                        2.0611536181900143e-09]),
        // A near tie: 1, 1 + 2⁻²³ and 1 − 2⁻²⁴.
        Case(logits: [1, 1.0000001192092896, 0.9999999403953552], target: 2, loss: 1.098612368140972,
             gradient: [0.3333333267105942, 0.3333333664470256, -0.6666666931576197]),
        Case(logits: [-50, -50.5], target: 0, loss: 0.47407698418010824,
             gradient: [-0.3775406687981464, 0.37754066879814485]),
    ]

    @Test("cross-entropy's loss and gradient match float64 on confident and near-tie logits", arguments: cases)
    func crossEntropyAgainstFloat64(c: Case) {
        let classes = c.logits.count
        var gradient = [Float](repeating: .nan, count: classes)
        let (loss, correct) = crossEntropyLoss(c.logits, [Float(c.target)], rows: 1, classes: classes, targetWidth: 1,
                                               gradient: &gradient)
        #expect(abs(loss - c.loss) <= 1e-6 * c.loss, "loss \(loss) against float64's \(c.loss)")
        for (value, expected) in zip(gradient, c.gradient) {
            #expect(abs(Double(value) - expected) <= 1e-6 * abs(expected) + 1e-30,
                    "gradient \(gradient) against float64's \(c.gradient)")
        }
        #expect(correct == (c.logits.indices.max { c.logits[$0] < c.logits[$1] } == c.target ? 1 : 0))
    }

    @Test("cross-entropy on class probabilities matches float64 on confident logits")
    func probabilityTargets() {
        var gradient = [Float](repeating: .nan, count: 3)
        let (loss, _) = crossEntropyLoss([100, 95, 0], [0.7, 0.2, 0.1], rows: 1, classes: 3, targetWidth: 3,
                                         gradient: &gradient)
        // float64: −Σ y_c log p_c and p_c − y_c on the float32 targets.
        let y = [Double(Float(0.7)), Double(Float(0.2)), Double(Float(0.1))]
        let logP = [-0.006715348489123585, -5.006715348489124, -100.00671534848912]
        let expected = -zip(y, logP).map(*).reduce(0, +)
        #expect(abs(loss - expected) <= 1e-6 * expected, "loss \(loss) against float64's \(expected)")
        for c in 0..<3 {
            let reference = exp(logP[c]) * y.reduce(0, +) - y[c]
            #expect(abs(Double(gradient[c]) - reference) <= 1e-6, "gradient \(gradient)")
        }
    }

    @Test("a class with no target mass adds nothing to the loss, even where its probability underflows to 0")
    func zeroTargetMass() {
        var gradient = [Float](repeating: .nan, count: 2)
        // log p of class 1 is −200 − log(1 + e^−200): finite; with −1e30 it is −∞ in float32, times a target of 0.
        let (loss, _) = crossEntropyLoss([0, -1e30], [1, 0], rows: 1, classes: 2, targetWidth: 2, gradient: &gradient)
        #expect(loss == 0 && gradient == [0, 0], "loss \(loss), gradient \(gradient)")
    }

    @Test("a per-sample loss beyond float32's range is a number, and training goes on while gradients are finite",
          arguments: [Reduction.exact, .fast])
    func lossBeyondFloat32(reduction: Reduction) throws {
        // MSE on constant targets of 2.2e19: each sample's loss is about (2.2e19)² = 4.84e38 > Float.greatestFinite.
        let rows = 16
        let data = try Dataset(name: "huge", features: (0..<(rows * 2)).map { Float($0 % 5) / 4 }, featureWidth: 2,
                               targets: [Float](repeating: 2.2e19, count: rows), targetWidth: 1)
        var options = TrainingOptions()
        options.batchSize = rows
        options.microShardSize = 4
        options.reduction = reduction
        options.length = .steps(3)
        options.optimizer = .sgd(sgd(lr: 1e-20))
        let spec = ModelSpec(inputs: 2, layers: [LayerSpec(units: 4, activation: .tanh),
                                                 LayerSpec(units: 1, activation: .identity)])
        let trainer = Trainer(spec: spec, loss: .mse, options: options, training: data)
        var losses: [Double] = []
        try trainer.run { losses.append($0.loss) }
        #expect(losses.count == 3)
        // The outputs are below 10 while the targets are 2.2e19: (y − ŷ)² is 4.84e38 to float32's precision.
        #expect(abs(losses[0] - 4.84e38) <= 1e-6 * 4.84e38, "\(losses)")
        #expect(Reporting.number(losses[0], 4) == "4.8400e+38")
    }

    @Test("a gradient that overflows stops the run naming the layer, the tensor and the step",
          arguments: [Reduction.exact, .fast])
    func divergenceNamesTheLayer(reduction: Reduction) throws {
        let rows = 8
        let data = try Dataset(name: "far", features: [Float](repeating: 1, count: rows * 2), featureWidth: 2,
                               targets: [Float](repeating: 3e38, count: rows), targetWidth: 1)
        var options = TrainingOptions()
        options.batchSize = rows
        options.microShardSize = 4
        options.reduction = reduction
        options.optimizer = .sgd(sgd(lr: 0.1))
        // The output's gradient 2(ŷ − y) is −6e38: beyond float32, so the last layer's bias gradient is −∞ first.
        let spec = ModelSpec(inputs: 2, layers: [LayerSpec(units: 1, activation: .identity)])
        let trainer = Trainer(spec: spec, loss: .mse, options: options, training: data)
        let error = #expect(throws: TrainingError.self) { try trainer.run { _ in } }
        let message = error?.message ?? ""
        #expect(message.hasPrefix("training diverged at step 0 (epoch 0): the gradient of layer 1 of 1 (0.weight[0]) is")
                && message.hasSuffix("lower the learning rate (now 0.1) or check the data"), "\(message)")
    }

    func sgd(lr: Float) -> SGD.Options {
        var options = SGD.Options()
        options.lr = lr
        return options
    }

    @Test("reported numbers: fixed where that shows the value, scientific where it would not")
    func numberFormat() {
        #expect(Reporting.number(0.26430256, 4) == "0.2643")
        #expect(Reporting.number(0, 4) == "0.0000")
        #expect(Reporting.number(123456.7, 4) == "123456.7000")
        #expect(Reporting.number(4.8e38, 4) == "4.8000e+38")
        #expect(Reporting.number(3e-7, 4) == "3.0000e-07")
        #expect(Reporting.number(.infinity, 4) == "inf")
    }
}

/// What a stop by a signal says, to whoever ran the command and to the workers.
struct InterruptedWordingTests {
    @Test("a stop says what it keeps or loses: a checkpoint, N steps, or nothing yet; workers hear no advice")
    func wording() {
        #expect(Interrupted(signal: SIGINT, checkpoint: nil, steps: 0).description == "stopped by SIGINT before the first step")
        #expect(Interrupted(signal: SIGTERM, checkpoint: nil, steps: 1).description
                == "stopped by SIGTERM after 1 step; no --checkpoint folder was given, so it is lost")
        let saved = Interrupted(signal: SIGTERM, checkpoint: "ck/checkpoint-0000000012.safetensors", steps: 12)
        #expect(saved.description == "stopped by SIGTERM; checkpoint written to ck/checkpoint-0000000012.safetensors; "
                + "continue with --resume")
        #expect(saved.reasonForWorkers == "the run was stopped by SIGTERM (a checkpoint was written)")
        #expect(!Interrupted(signal: SIGINT, checkpoint: nil).reasonForWorkers.contains("--resume"))
    }
}
