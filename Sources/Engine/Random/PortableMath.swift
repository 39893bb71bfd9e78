/// log, sin and cos from IEEE-754 + − × ÷ and square root only.
///
/// Platform math libraries may differ in the last bit; these do not, so initial weights and synthetic data
/// sets are the same bits everywhere. Accurate to a few ulps, which is ample for drawing random numbers.
package enum PortableMath {
    package static func sqrt(_ x: Double) -> Double { x.squareRoot() }

    /// Natural logarithm for finite x > 0.
    package static func log(_ x: Double) -> Double {
        precondition(x > 0 && x.isFinite, "PortableMath.log needs a finite positive argument, got \(x)")
        // x = m · 2^e with m in [√½, √2), then log m = 2·atanh((m−1)/(m+1)) by its odd series.
        var e = Double(x.exponent)
        var m = x.significand  // [1, 2)
        if m > 1.4142135623730951 { m /= 2; e += 1 }
        let s = (m - 1) / (m + 1)
        let s2 = s * s
        var term = s, sum = s
        var n = 3.0
        while n < 40 {
            term *= s2
            sum += term / n
            n += 2
        }
        return e * 0.6931471805599453 + 2 * sum
    }

    package static func sin(_ x: Double) -> Double { sincos(x).sin }
    package static func cos(_ x: Double) -> Double { sincos(x).cos }

    /// sin and cos of a finite x, reduced to |r| ≤ π/4 by quarter turns.
    package static func sincos(_ x: Double) -> (sin: Double, cos: Double) {
        precondition(x.isFinite && abs(x) < 1e9, "PortableMath.sincos needs |x| < 1e9, got \(x)")
        let quarter = (x * 0.6366197723675814).rounded()  // x / (π/2)
        // π/2 split in two so that the reduction keeps ~70 bits.
        let r = (x - quarter * 1.5707963267948966) - quarter * 6.123233995736766e-17
        let r2 = r * r
        var sinSum = r, cosSum = 1.0
        var sinTerm = r, cosTerm = 1.0
        var k = 1.0
        while k < 20 {
            sinTerm *= -r2 / ((2 * k) * (2 * k + 1))
            cosTerm *= -r2 / ((2 * k - 1) * (2 * k))
            sinSum += sinTerm
            cosSum += cosTerm
            k += 1
        }
        switch Int(quarter) & 3 {
        case 0: return (sinSum, cosSum)
        case 1: return (cosSum, -sinSum)
        case 2: return (-sinSum, -cosSum)
        default: return (-cosSum, sinSum)
        }
    }
}
