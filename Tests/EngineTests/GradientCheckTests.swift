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

/// A layer's weight gradient is written a block of output rows at a time, and a worker sends what each block makes
/// final at once: the blocks must add up to the gradient, and what a call calls final must not change after it.
struct WeightGradientBlockTests {
    @Test("a layer of three blocks: the gradient a float64 backprop gives, and each call's tail final when called")
    func blocks() {
        // 1,024 inputs make blocks of 128 rows: 300 outputs are blocks at rows 256, 128 and 0.
        let spec = ModelSpec(inputs: 1024, layers: [LayerSpec(units: 300, activation: .relu), LayerSpec(units: 3, activation: .identity)])
        let rows = 4, inputs = 1024, hidden = 300, outputs = 3
        let network = Network(spec: spec, loss: .mse, targetWidth: outputs, capacity: rows, library: .oneDNN)
        var random = Xoshiro(seed: 7)
        for i in 0..<network.input.count { network.input[i] = Float(random.nextGaussian()) }
        for i in 0..<network.targets.count { network.targets[i] = Float(random.nextGaussian()) }
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        for i in 0..<parameters.count { parameters[i] = Float(random.nextGaussian() * 0.05) }
        let gradient = Buffer<Float>(count: parameters.count)
        var calls: [(first: Int, tail: [Float])] = []
        network.onLayerGradient = { first in
            calls.append((first, Array(UnsafeBufferPointer(start: gradient.pointer + first, count: gradient.count - first))))
        }
        _ = network.gradientSum(rows: rows, parameters: parameters.pointer, gradient: gradient.pointer)

        #expect(calls.map(\.first) == [hidden * (inputs + 1), 256 * inputs, 128 * inputs, 0])
        #expect(network.gradientCallsPerSum == calls.count)
        for call in calls {
            #expect(call.tail == Array(gradient.array[call.first...]), "the gradient from \(call.first) changed after its call")
        }

        // The same gradient in float64, written out: z1 = W1·x + b1, a1 = relu(z1), y = W2·a1 + b2, loss = Σ mean (y − t)².
        let p = parameters.array.map(Double.init), x = network.input.array.map(Double.init)
        let t = network.targets.array.map(Double.init)
        let w1 = 0, b1 = hidden * inputs, w2 = b1 + hidden, b2 = w2 + outputs * hidden
        var expected = [Double](repeating: 0, count: p.count)
        for r in 0..<rows {
            var z1 = [Double](repeating: 0, count: hidden), dy = [Double](repeating: 0, count: outputs)
            for h in 0..<hidden {
                var z = p[b1 + h]
                for i in 0..<inputs { z += p[w1 + h * inputs + i] * x[r * inputs + i] }
                z1[h] = z
            }
            for o in 0..<outputs {
                var y = p[b2 + o]
                for h in 0..<hidden { y += p[w2 + o * hidden + h] * max(z1[h], 0) }
                dy[o] = 2 * (y - t[r * outputs + o]) / Double(outputs)
                expected[b2 + o] += dy[o]
                for h in 0..<hidden { expected[w2 + o * hidden + h] += dy[o] * max(z1[h], 0) }
            }
            for h in 0..<hidden where z1[h] > 0 {
                var dz = 0.0
                for o in 0..<outputs { dz += dy[o] * p[w2 + o * hidden + h] }
                expected[b1 + h] += dz
                for i in 0..<inputs { expected[w1 + h * inputs + i] += dz * x[r * inputs + i] }
            }
        }
        let scale = expected.map(abs).max()!
        let errors = zip(gradient.array, expected).map { abs(Double($0) - $1) }
        let worst = errors.indices.max { errors[$0] < errors[$1] }!
        #expect(errors[worst] <= 1e-5 * scale, "parameter \(worst): \(gradient[worst]) against float64's \(expected[worst])")
    }
}
