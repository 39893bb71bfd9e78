import Foundation

/// A learning-rate schedule: a shape, optionally behind a linear warm-up, advanced per epoch or per step.
///
/// Closed forms of PyTorch's schedulers: `StepLR`, `ExponentialLR`, `CosineAnnealingLR`, and a warm-up that is
/// `SequentialLR([LinearLR(start_factor, total_iters: warmup), shape], milestones: [warmup])`.
package struct Schedule: Sendable, Equatable {
    package enum Shape: Sendable, Equatable {
        case constant
        /// Multiply by `gamma` every `stepSize` units.
        case step(stepSize: Int, gamma: Double)
        /// Multiply by `gamma` every unit.
        case exponential(gamma: Double)
        /// Half a cosine from the base rate down to `minimum` over `period` units.
        case cosine(period: Int, minimum: Double)
    }

    /// What one unit of schedule time is.
    package enum Unit: String, Sendable { case epoch, step }

    package var shape: Shape = .constant
    /// Units of linear warm-up before the shape starts (0 for none).
    package var warmup = 0
    /// The warm-up's first factor of the base rate (PyTorch `LinearLR`'s default, 1/3).
    package var warmupStartFactor = 1.0 / 3.0
    package var unit: Unit = .epoch

    package init(shape: Shape = .constant, warmup: Int = 0, warmupStartFactor: Double = 1.0 / 3.0,
                unit: Unit = .epoch) {
        self.shape = shape
        self.warmup = warmup
        self.warmupStartFactor = warmupStartFactor
        self.unit = unit
    }

    /// The learning rate at schedule time `t` (0-based) for base rate `base`.
    package func rate(base: Float, at t: Int) -> Float {
        let lr = Double(base)
        if t < warmup {
            let factor = warmupStartFactor + (1 - warmupStartFactor) * Double(t) / Double(warmup)
            return Float(lr * factor)
        }
        let u = t - warmup
        switch shape {
        case .constant:
            return base
        case .step(let size, let gamma):
            return Float(lr * Foundation.pow(gamma, Double(u / size)))
        case .exponential(let gamma):
            return Float(lr * Foundation.pow(gamma, Double(u)))
        case .cosine(let period, let minimum):
            return Float(minimum + (lr - minimum) * (1 + Foundation.cos(Double.pi * Double(u) / Double(period))) / 2)
        }
    }
}
