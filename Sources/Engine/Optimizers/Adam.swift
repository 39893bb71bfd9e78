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
    public private(set) var steps = 0
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
                     learningRate lr: Float) {
        steps += 1
        let o = options
        let m = firstMoment.pointer, v = secondMoment.pointer, vMax = secondMomentMax.pointer
        // Bias corrections in double precision, as PyTorch computes them from its Python-float step.
        let t = Double(steps)
        let stepSize = Float(Double(lr) / (1 - Foundation.pow(Double(o.beta1), t)))
        let correction2Root = Float((1 - Foundation.pow(Double(o.beta2), t)).squareRoot())
        let decay = 1 - lr * o.weightDecay
        for i in 0..<parameterCount {
            var g = gradients[i]
            if o.decoupledWeightDecay { p[i] *= decay } else { g += o.weightDecay * p[i] }
            // First moment: running mean of the gradient.
            m[i] += (1 - o.beta1) * (g - m[i])
            // Second moment: running mean of its square.
            v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g
            var second = v[i]
            if o.amsgrad {
                // AMSGrad keeps the largest second moment seen, so steps never grow back.
                vMax[i] = max(vMax[i], v[i])
                second = vMax[i]
            }
            let denominator = second.squareRoot() / correction2Root + o.eps
            p[i] -= stepSize * m[i] / denominator
        }
    }
}
