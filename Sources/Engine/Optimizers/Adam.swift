import Foundation

/// Adam (`torch.optim.Adam`) and, with `decoupledWeightDecay`, AdamW (`torch.optim.AdamW`): momentum on the
/// gradient and on its square, both bias-corrected, with optional AMSGrad.
public final class Adam: Optimizer {
    public struct Options: Sendable, Equatable {
        public var lr: Float = 0.001
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var eps: Float = 1e-8
        public var weightDecay: Float = 0
        public var amsgrad = false
        /// AdamW: decay the weights directly instead of adding an L2 term to the gradient.
        public var decoupledWeightDecay = false
        public init() {}

        /// AdamW's defaults (weight decay 0.01).
        public static var adamW: Options {
            var o = Options()
            o.decoupledWeightDecay = true
            o.weightDecay = 0.01
            return o
        }
    }

    public let options: Options
    public let parameterCount: Int
    public var steps = 0
    public var threads = 1
    private let firstMoment: Buffer<Float>
    private let secondMoment: Buffer<Float>
    private let secondMomentMax: Buffer<Float>

    public init(_ options: Options, parameterCount: Int) {
        self.options = options
        self.parameterCount = parameterCount
        firstMoment = Buffer(count: parameterCount)
        secondMoment = Buffer(count: parameterCount)
        secondMomentMax = Buffer(count: options.amsgrad ? parameterCount : 0)
    }

    public var state: [Buffer<Float>] {
        [firstMoment, secondMoment] + (options.amsgrad ? [secondMomentMax] : [])
    }

    public func step(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     scale: Float, learningRate lr: Float, checkFinite: Bool) -> Bool {
        if checkFinite && !gradientsAreFinite(gradients, count: parameterCount) { return false }
        steps += 1
        let o = options
        let m = firstMoment.pointer, v = secondMoment.pointer, vMax = secondMomentMax.pointer
        // Bias corrections in double precision, as PyTorch computes them from its Python-float step.
        let t = Double(steps)
        let stepSize = Float(Double(lr) / (1 - Foundation.pow(Double(o.beta1), t)))
        // A multiply by the reciprocal rather than PyTorch's divide: one division less per parameter.
        let inverseCorrection2Root = Float(1 / (1 - Foundation.pow(Double(o.beta2), t)).squareRoot())
        // Adam folds an L2 term into the gradient; AdamW decays the weights instead. Both as plain arithmetic with
        // neutral values (0, 1) when unused, so the loop has no branches and vectorises.
        let l2 = o.decoupledWeightDecay ? 0 : o.weightDecay
        let decay = o.decoupledWeightDecay ? 1 - lr * o.weightDecay : 1
        let (beta1, beta2, eps, amsgrad) = (o.beta1, o.beta2, o.eps, o.amsgrad)
        // Eight lanes at a time over the buffers' zero padding (explicit vectors: a scalar square root does not
        // vectorise). Each lane does the scalar arithmetic, so the bits are the same.
        forEachBlock(parameterCount, threads: threads) { i in
            let w = Vector8.load(p, i)
            let g = Vector8.load(gradients, i) * scale + l2 * w
            // First moment: running mean of the gradient.
            let first = Vector8.load(m, i)
            let mi = first + (1 - beta1) * (g - first)
            // Second moment: running mean of its square.
            var vi = beta2 * Vector8.load(v, i) + (1 - beta2) * g * g
            mi.store(m, i)
            vi.store(v, i)
            if amsgrad {
                // AMSGrad keeps the largest second moment seen, so steps never grow back.
                vi = Vector8.load(vMax, i).replacing(with: vi, where: vi .> Vector8.load(vMax, i))
                vi.store(vMax, i)
            }
            // Bias-corrected step: m̂ / (√v̂ + ε).
            (w * decay - stepSize * mi / (vi.squareRoot() * inverseCorrection2Root + eps)).store(p, i)
        }
        return true
    }
}
