import CUpdate

/// Stochastic gradient descent with optional momentum, dampening, Nesterov and L2 weight decay (`torch.optim.SGD`).
package final class SGD: Optimizer {
    package struct Options: Sendable, Equatable {
        package var lr: Float = 0.01
        package var momentum: Float = 0
        package var dampening: Float = 0
        package var nesterov = false
        package var weightDecay: Float = 0
        package init() {}
    }

    package let options: Options
    package let parameterCount: Int
    package var steps = 0
    package var threads = 1
    private let velocity: Buffer<Float>

    package init(_ options: Options, parameterCount: Int) {
        self.options = options
        self.parameterCount = parameterCount
        velocity = Buffer(count: options.momentum == 0 ? 0 : parameterCount)
    }

    package var state: [Buffer<Float>] { options.momentum == 0 ? [] : [velocity] }

    package func update(_ part: Range<Int>, parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                       scale: Float, learningRate lr: Float, checkFinite: Bool) -> Bool {
        let o = options, first = steps == 0
        // Without momentum there is no velocity buffer; the loop then never reads it.
        let v = o.momentum == 0 ? p : velocity.pointer
        // One pass (CUpdate): the update and the finiteness check stream the buffers once, in the CPU's widest
        // vectors. The first step's velocity is the gradient itself; later ones are a damped running sum.
        let sawNonFinite = anyRange(part.count, threads: threads) { range in
            let at = part.lowerBound + range.lowerBound
            return cupdate_sgd(p + at, gradients + at, v + at, range.count, scale, lr, o.weightDecay, o.momentum,
                               o.dampening, o.nesterov ? 1 : 0, first ? 1 : 0) == 0
        }
        return !(checkFinite && sawNonFinite)
    }
}
