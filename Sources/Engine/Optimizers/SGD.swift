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
    public private(set) var steps = 0
    private let velocity: Buffer<Float>

    public init(_ options: Options, parameterCount: Int) {
        self.options = options
        self.parameterCount = parameterCount
        velocity = Buffer(count: options.momentum == 0 ? 0 : parameterCount)
    }

    public var state: [Buffer<Float>] { options.momentum == 0 ? [] : [velocity] }

    public func step(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     learningRate lr: Float) {
        let o = options, v = velocity.pointer, first = steps == 0
        for i in 0..<parameterCount {
            // L2 penalty folded into the gradient.
            var g = gradients[i] + o.weightDecay * p[i]
            if o.momentum != 0 {
                // Velocity: the first step takes the gradient as is, later ones a damped running sum.
                v[i] = first ? g : o.momentum * v[i] + (1 - o.dampening) * g
                // Nesterov looks ahead along the velocity.
                g = o.nesterov ? g + o.momentum * v[i] : v[i]
            }
            p[i] -= lr * g
        }
        steps += 1
    }
}
