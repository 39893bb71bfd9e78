import Testing
@testable import Engine

/// Backpropagation against central finite differences of the loss, for every activation × loss pair and for
/// deeper nets.
struct GradientCheckTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let hidden: [Activation]
        let output: Activation
        let loss: Loss
        /// Class-index targets (cross-entropy) rather than one value per output.
        let classIndices: Bool
        var testDescription: String {
            "\(hidden.map(\.description).joined(separator: "→"))→\(output) with \(loss.rawValue)"
                + (classIndices ? " (class indices)" : "")
        }
    }

    static let activations: [Activation] = [.relu, .leakyReLU(negativeSlope: 0.2), .sigmoid, .tanh, .gelu, .identity]

    static let cases: [Case] = {
        // Each loss with the output activations it accepts.
        let heads: [(Activation, Loss, Bool)] = [
            (.identity, .mse, false), (.identity, .mae, false), (.sigmoid, .bce, false),
            (.identity, .bceLogits, false), (.softmax, .crossEntropy, true), (.identity, .crossEntropy, false),
            (.softmax, .mse, false),
        ]
        var all = activations.flatMap { hidden in heads.map { Case(hidden: [hidden], output: $0.0, loss: $0.1, classIndices: $0.2) } }
        // Every activation as the output layer under the regression losses.
        all += (activations + [.softmax]).flatMap { output in
            [Loss.mse, .mae].map { Case(hidden: [.tanh], output: output, loss: $0, classIndices: false) }
        }
        // Deeper nets.
        all.append(Case(hidden: [.tanh, .relu, .gelu], output: .softmax, loss: .crossEntropy, classIndices: true))
        all.append(Case(hidden: [.sigmoid, .leakyReLU(negativeSlope: 0.1), .tanh], output: .sigmoid, loss: .bce,
                        classIndices: false))
        return all
    }()

    @Test("analytic gradient matches finite differences", arguments: cases)
    func finiteDifferences(_ c: Case) {
        let widths = [3, 5, 4, 4].prefix(c.hidden.count + 1)
        let layers = zip(widths.dropFirst(), c.hidden).map { LayerSpec(units: $0, activation: $1) }
            + [LayerSpec(units: 3, activation: c.output)]
        let spec = ModelSpec(inputs: 3, layers: layers)
        let rows = 5, targetWidth = c.classIndices ? 1 : 3
        let network = Network(spec: spec, loss: c.loss, targetWidth: targetWidth, capacity: rows, library: .oneDNN)
        var random = Xoshiro(seed: 99)
        for i in 0..<network.input.count { network.input[i] = Float(random.nextGaussian()) }
        for i in 0..<network.targets.count {
            network.targets[i] = c.classIndices ? Float(random.nextIndex(below: 3))
                : c.loss == .bce || c.loss == .bceLogits || c.loss == .crossEntropy ? random.nextUnitFloat()
                : Float(random.nextGaussian())
        }
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        for i in 0..<parameters.count { parameters[i] = Float(random.nextGaussian() * 0.7) }
        let analytic = Buffer<Float>(count: parameters.count)
        _ = network.gradientSum(rows: rows, parameters: parameters.pointer, gradient: analytic.pointer)

        let h: Float = 1e-3
        func lossSum() -> Double {
            network.forward(rows: rows, parameters: parameters.pointer)
            return network.evaluate(rows: rows).lossSum
        }
        for i in 0..<parameters.count {
            let saved = parameters[i]
            parameters[i] = saved + h
            let up = lossSum()
            parameters[i] = saved - h
            let down = lossSum()
            parameters[i] = saved
            let numeric = Float((up - down) / Double(2 * h))
            let tolerance = 0.02 * max(abs(numeric), abs(analytic[i])) + 1e-3
            #expect(abs(numeric - analytic[i]) <= tolerance,
                    "parameter \(i): backprop \(analytic[i]) vs finite difference \(numeric)")
        }
    }
}
