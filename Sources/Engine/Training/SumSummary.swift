import CExactSum

/// An exact sum's counts, loss limbs and divergence, without its values.
public struct ExactSummary: Equatable, Sendable {
    public var samples = 0
    public var correct = 0
    public var loss = LossWords(high: 0, low: 0, window: Int8(CEXACT_LOWEST_WINDOW))
    public var overflowed = false

    public init(samples: Int = 0, correct: Int = 0, loss: LossWords, overflowed: Bool) {
        self.samples = samples
        self.correct = correct
        self.loss = loss
        self.overflowed = overflowed
    }

    init() {}
}

/// A loss sum as it travels: exact, its limbs and window; fast, the Float64's bits in `high`.
public struct LossWords: Equatable, Sendable {
    public var high: Int64
    public var low: Int64
    public var window: Int8

    public init(high: Int64, low: Int64, window: Int8) {
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
