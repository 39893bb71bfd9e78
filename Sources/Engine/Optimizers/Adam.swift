import CUpdate
import Foundation

/// Adam (`torch.optim.Adam`) and, with `decoupledWeightDecay`, AdamW (`torch.optim.AdamW`): momentum on the
/// gradient and on its square, both bias-corrected, with optional AMSGrad.
package final class Adam: Optimizer {
    package struct Options: Sendable, Equatable {
        package var lr: Float = 0.001
        package var beta1: Float = 0.9
        package var beta2: Float = 0.999
        package var eps: Float = 1e-8
        package var weightDecay: Float = 0
        package var amsgrad = false
        /// AdamW: decay the weights directly instead of adding an L2 term to the gradient.
        package var decoupledWeightDecay = false
        package init() {}

        /// AdamW's defaults (weight decay 0.01).
        package static var adamW: Options {
            var o = Options()
            o.decoupledWeightDecay = true
            o.weightDecay = 0.01
            return o
        }
    }

    package let options: Options
    package let parameterCount: Int
    package var steps = 0
    package var threads = 1
    private let firstMoment: Buffer<Float>
    private let secondMoment: Buffer<Float>
    private let secondMomentMax: Buffer<Float>

    package init(_ options: Options, parameterCount: Int) {
        self.options = options
        self.parameterCount = parameterCount
        firstMoment = Buffer(count: parameterCount)
        secondMoment = Buffer(count: parameterCount)
        secondMomentMax = Buffer(count: options.amsgrad ? parameterCount : 0)
    }

    package var state: [Buffer<Float>] {
        [firstMoment, secondMoment] + (options.amsgrad ? [secondMomentMax] : [])
    }

    package func update(_ part: Range<Int>, parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                       scale: Float, learningRate lr: Float, checkFinite: Bool) -> Bool {
        let o = options
        let m = firstMoment.pointer, v = secondMoment.pointer
        let vMax = o.amsgrad ? secondMomentMax.pointer : v  // read and written only with AMSGrad
        // Bias corrections in double precision, as PyTorch computes them from its Python-float step.
        let t = Double(steps + 1)
        // Adam folds an L2 term into the gradient; AdamW decays the weights instead. Both as plain arithmetic with
        // neutral values (0, 1) when unused, so the loop has no branches and vectorises. A multiply by the
        // reciprocal of the second correction's root rather than PyTorch's divide: one division less per parameter.
        let step = cupdate_adam_step(
            scale: scale, l2: o.decoupledWeightDecay ? 0 : o.weightDecay,
            decay: o.decoupledWeightDecay ? 1 - lr * o.weightDecay : 1, beta1: o.beta1, beta2: o.beta2, eps: o.eps,
            step_size: Float(Double(lr) / (1 - Foundation.pow(Double(o.beta1), t))),
            inverse_correction2_root: Float(1 / (1 - Foundation.pow(Double(o.beta2), t)).squareRoot()),
            amsgrad: o.amsgrad ? 1 : 0)
        // One pass (CUpdate), in the CPU's widest vectors, checking the gradients as it reads them.
        let sawNonFinite = withUnsafePointer(to: step) { step in
            anyRange(part.count, threads: threads) { range in
                let at = part.lowerBound + range.lowerBound
                return cupdate_adam(p + at, gradients + at, m + at, v + at, vMax + at, range.count, step) == 0
            }
        }
        return !(checkFinite && sawNonFinite)
    }
}
