import CExactSum

/// An exact sum's counts, loss limbs and divergence, without its values.
package struct ExactSummary: Equatable, Sendable {
    package var samples = 0
    package var correct = 0
    package var loss = LossWords(high: 0, low: 0, window: Int8(CEXACT_LOWEST_WINDOW))
    package var overflowed = false

    package init(samples: Int = 0, correct: Int = 0, loss: LossWords, overflowed: Bool) {
        self.samples = samples
        self.correct = correct
        self.loss = loss
        self.overflowed = overflowed
    }

    init() {}
}

/// A loss sum as it travels: exact, its limbs and window; fast, the Float64's bits in `high`.
package struct LossWords: Equatable, Sendable {
    package var high: Int64
    package var low: Int64
    package var window: Int8

    package init(high: Int64, low: Int64, window: Int8) {
        self.high = high
        self.low = low
        self.window = window
    }
}

extension LossWords {
    /// An exact loss sum's limbs and window as they travel.
    init(_ limbs: cexact_scalar) {
        self.init(high: Int64(bitPattern: limbs.high), low: Int64(bitPattern: limbs.low),
                  window: Int8(truncatingIfNeeded: limbs.window))
    }

    /// The limbs and window of an exact loss sum, as the C loops take them.
    var limbs: cexact_scalar {
        cexact_scalar(high: UInt64(bitPattern: high), low: UInt64(bitPattern: low), window: Int32(window))
    }
}
