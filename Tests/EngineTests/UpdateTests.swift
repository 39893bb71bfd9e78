import Foundation
import CUpdate
import Testing
@testable import Engine

/// SGD's one-pass update: on every instruction set, the bits of torch.optim.SGD's arithmetic written out plainly,
/// and a NaN or infinity anywhere in the gradient reported. Serialized: the instruction set is the process's.
@Suite(.serialized)
struct UpdateTests {
    /// Runs `body` with the updates on each instruction set this CPU has (0 SSE2, 1 AVX2, 2 AVX-512), then the best.
    static func onEveryLevel(_ body: (Int) -> Void) {
        let best = cupdate_level()
        defer { _ = cupdate_use_level(best) }
        for level in 0...best {
            #expect(cupdate_use_level(level) == 1)
            body(Int(level))
        }
    }

    /// `torch.optim.SGD` for one element, scalar, in the order PyTorch documents.
    static func reference(_ p: inout Float, _ v: inout Float, g raw: Float, scale: Float, lr: Float,
                          _ o: SGD.Options, first: Bool) {
        var g = raw * scale
        g = g + o.weightDecay * p
        guard o.momentum != 0 else {
            p = p - lr * g
            return
        }
        v = first ? g : o.momentum * v + (1 - o.dampening) * g
        p = p - lr * (o.nesterov ? g + o.momentum * v : v)
    }

    static let variants: [SGD.Options] = [
        SGD.Options(),
        { var o = SGD.Options(); o.weightDecay = 0.01; return o }(),
        { var o = SGD.Options(); o.momentum = 0.9; o.dampening = 0.1; o.weightDecay = 1e-3; return o }(),
        { var o = SGD.Options(); o.momentum = 0.9; o.nesterov = true; return o }(),
    ]

    @Test("SGD on SSE2, AVX2 and AVX-512 gives the reference's bits, three steps, every variant",
          arguments: variants)
    func sgdMatchesReference(options: SGD.Options) {
        let count = 1_003  // vector bodies and a tail
        var random = Xoshiro(seed: 17)
        let start = (0..<count).map { _ in random.nextUnitFloat() - 0.5 }
        let gradients = (0..<3).map { _ in (0..<count).map { _ in (random.nextUnitFloat() - 0.5) * 8 } }
        var p = start, v = [Float](repeating: 0, count: count)
        for (step, g) in gradients.enumerated() {
            for i in 0..<count {
                Self.reference(&p[i], &v[i], g: g[i], scale: 0.25, lr: 0.05, options, first: step == 0)
            }
        }
        Self.onEveryLevel { level in
            let sgd = SGD(options, parameterCount: count), parameters = Buffer<Float>(start)
            for g in gradients {
                let gradient = Buffer<Float>(g)
                #expect(sgd.step(parameters: parameters.pointer, gradients: gradient.pointer, scale: 0.25,
                                 learningRate: 0.05, checkFinite: true))
            }
            #expect(parameters.array.map(\.bitPattern) == p.map(\.bitPattern), "level \(level) \(options)")
            if options.momentum != 0 {
                #expect(sgd.state[0].array.map(\.bitPattern) == v.map(\.bitPattern), "level \(level) velocity")
            }
        }
    }

    @Test("SGD's pass reports a NaN or ±∞ in any lane or the tail, and nothing for the largest finite values",
          arguments: variants)
    func sgdReportsNonFinite(options: SGD.Options) {
        let count = 1_003
        Self.onEveryLevel { level in
            for position in [0, 7, 15, 16, 500, 1_001, 1_002] {
                for bad in [Float.nan, .infinity, -.infinity, Float.greatestFiniteMagnitude] {
                    var g = [Float](repeating: 0.5, count: count)
                    g[position] = bad
                    let sgd = SGD(options, parameterCount: count), parameters = Buffer<Float>(count: count)
                    let gradient = Buffer<Float>(g)
                    let finite = sgd.step(parameters: parameters.pointer, gradients: gradient.pointer, scale: 0.25,
                                          learningRate: 0.05, checkFinite: true)
                    #expect(finite == bad.isFinite, "level \(level) \(bad) at \(position)")
                }
            }
        }
    }

    /// `torch.optim.Adam`/`AdamW` for one element, scalar (the bias corrections as `Adam` computes them).
    static func adamReference(_ p: inout Float, _ m: inout Float, _ v: inout Float, _ vMax: inout Float, g raw: Float,
                              scale: Float, lr: Float, _ o: Adam.Options, step: Int) {
        let t = Double(step)
        let stepSize = Float(Double(lr) / (1 - Foundation.pow(Double(o.beta1), t)))
        let correction = Float(1 / (1 - Foundation.pow(Double(o.beta2), t)).squareRoot())
        let l2: Float = o.decoupledWeightDecay ? 0 : o.weightDecay
        let decay: Float = o.decoupledWeightDecay ? 1 - lr * o.weightDecay : 1
        let g = raw * scale + l2 * p
        m = m + (1 - o.beta1) * (g - m)
        v = o.beta2 * v + (1 - o.beta2) * g * g
        var denominatorSquare = v
        if o.amsgrad {
            vMax = v > vMax ? v : vMax
            denominatorSquare = vMax
        }
        p = p * decay - stepSize * m / (denominatorSquare.squareRoot() * correction + o.eps)
    }

    static let adamVariants: [Adam.Options] = [
        Adam.Options(),
        { var o = Adam.Options(); o.weightDecay = 0.01; o.amsgrad = true; return o }(),
        Adam.Options.adamW,
    ]

    @Test("Adam on SSE2, AVX2 and AVX-512 gives the reference's bits, three steps, every variant",
          arguments: adamVariants)
    func adamMatchesReference(options: Adam.Options) {
        let count = 1_003
        var random = Xoshiro(seed: 23)
        let start = (0..<count).map { _ in random.nextUnitFloat() - 0.5 }
        let gradients = (0..<3).map { _ in (0..<count).map { _ in (random.nextUnitFloat() - 0.5) * 8 } }
        var p = start, m = [Float](repeating: 0, count: count), v = m, vMax = m
        for (step, g) in gradients.enumerated() {
            for i in 0..<count {
                Self.adamReference(&p[i], &m[i], &v[i], &vMax[i], g: g[i], scale: 0.25, lr: 0.01, options,
                                   step: step + 1)
            }
        }
        Self.onEveryLevel { level in
            let adam = Adam(options, parameterCount: count), parameters = Buffer<Float>(start)
            for g in gradients {
                let gradient = Buffer<Float>(g)
                #expect(adam.step(parameters: parameters.pointer, gradients: gradient.pointer, scale: 0.25,
                                  learningRate: 0.01, checkFinite: true))
            }
            #expect(parameters.array.map(\.bitPattern) == p.map(\.bitPattern), "level \(level) \(options)")
            #expect(adam.state[0].array.map(\.bitPattern) == m.map(\.bitPattern), "level \(level) first moment")
            #expect(adam.state[1].array.map(\.bitPattern) == v.map(\.bitPattern), "level \(level) second moment")
        }
    }

    @Test("Adam's pass reports a NaN or ±∞ in any lane or the tail", arguments: adamVariants)
    func adamReportsNonFinite(options: Adam.Options) {
        let count = 1_003
        Self.onEveryLevel { level in
            for position in [0, 15, 16, 1_002] {
                for bad in [Float.nan, .infinity, -.infinity, Float.greatestFiniteMagnitude] {
                    var g = [Float](repeating: 0.5, count: count)
                    g[position] = bad
                    let adam = Adam(options, parameterCount: count), parameters = Buffer<Float>(count: count)
                    let gradient = Buffer<Float>(g)
                    let finite = adam.step(parameters: parameters.pointer, gradients: gradient.pointer, scale: 0.25,
                                           learningRate: 0.01, checkFinite: true)
                    #expect(finite == bad.isFinite, "level \(level) \(bad) at \(position)")
                }
            }
        }
    }
}
