/// Stochastic gradient descent with optional momentum, dampening, Nesterov and L2 weight decay (`torch.optim.SGD`).
public final class SGD: Optimizer {
    public struct Options: Sendable, Equatable {
        public var lr: Float = 0.01
        public var momentum: Float = 0
        public var dampening: Float = 0
        public var nesterov = false
        public var weightDecay: Float = 0
        public init() {}
    }

    public let options: Options
    public let parameterCount: Int
    public var steps = 0
    public var threads = 1
    private let velocity: Buffer<Float>

    public init(_ options: Options, parameterCount: Int) {
        self.options = options
        self.parameterCount = parameterCount
        velocity = Buffer(count: options.momentum == 0 ? 0 : parameterCount)
    }

    public var state: [Buffer<Float>] { options.momentum == 0 ? [] : [velocity] }

    public func step(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     scale: Float, learningRate lr: Float) {
        let o = options, v = velocity.pointer, wd = o.weightDecay, mu = o.momentum
        let first = steps == 0, nesterov = o.nesterov
        forEachRange(parameterCount, threads: threads) { range in
            if mu == 0 {
                for i in range { p[i] -= lr * (gradients[i] * scale + wd * p[i]) }
            } else if first {
                // The first step's velocity is the gradient itself.
                for i in range {
                    let g = gradients[i] * scale + wd * p[i]
                    v[i] = g
                    p[i] -= lr * (nesterov ? g + mu * g : g)
                }
            } else {
                // Velocity: a damped running sum of gradients; Nesterov looks ahead along it.
                let keep = 1 - o.dampening, ahead: Float = nesterov ? 1 : 0
                for i in range {
                    let g = gradients[i] * scale + wd * p[i]
                    v[i] = mu * v[i] + keep * g
                    p[i] -= lr * (ahead * (g + mu * v[i]) + (1 - ahead) * v[i])
                }
            }
        }
        steps += 1
    }
}
