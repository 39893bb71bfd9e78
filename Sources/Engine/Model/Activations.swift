import Foundation

/// An element-wise (or, for softmax, row-wise) activation, with its forward and backward passes side by side.
///
/// Forward is fused with the bias add: it takes `z = W·x` as GEMM left it, adds the bias in place, and writes
/// `a = f(z)`. Both stay in the workspace because backward needs them.
package enum Activation: Sendable, Equatable, CustomStringConvertible {
    case relu
    case leakyReLU(negativeSlope: Float)
    case sigmoid
    case tanh
    /// GELU with the exact erf form (PyTorch's default `approximate='none'`).
    case gelu
    case identity
    /// Softmax over each row; only on the output layer.
    case softmax

    /// The name used in job files and in PyTorch's `nn` module list.
    package var description: String {
        switch self {
        case .relu: "relu"
        case .leakyReLU: "leaky_relu"
        case .sigmoid: "sigmoid"
        case .tanh: "tanh"
        case .gelu: "gelu"
        case .identity: "identity"
        case .softmax: "softmax"
        }
    }

    /// He initialisation for the ReLU family, Xavier/Glorot for the rest.
    var usesHeInitialisation: Bool {
        switch self {
        case .relu, .leakyReLU, .gelu: true
        default: false
        }
    }

    /// Adds `bias` to each row of `z` [rows × cols] in place and writes the activation into `a`.
    func forward(z: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, a: UnsafeMutablePointer<Float>,
                 rows: Int, cols: Int) {
        for r in 0..<rows {
            let zr = z + r * cols, ar = a + r * cols
            for c in 0..<cols { zr[c] += bias[c] }
            switch self {
            case .relu:
                for c in 0..<cols { ar[c] = zr[c] > 0 ? zr[c] : 0 }
            case .leakyReLU(let slope):
                for c in 0..<cols { ar[c] = zr[c] > 0 ? zr[c] : zr[c] * slope }
            case .sigmoid:
                for c in 0..<cols { ar[c] = 1 / (1 + Foundation.exp(-zr[c])) }
            case .tanh:
                for c in 0..<cols { ar[c] = Foundation.tanh(zr[c]) }
            case .gelu:
                for c in 0..<cols { ar[c] = 0.5 * zr[c] * (1 + Foundation.erf(zr[c] * Float(0.5).squareRoot())) }
            case .identity:
                ar.update(from: zr, count: cols)
            case .softmax:
                softmaxRow(zr, into: ar, count: cols)
            }
        }
    }

    /// Chain rule through the activation, in place: `g ← g · f'(z)`, from the forward pass's saved `z` and `a`.
    func backward(gradient g: UnsafeMutablePointer<Float>, z: UnsafePointer<Float>, a: UnsafePointer<Float>,
                  rows: Int, cols: Int) {
        let count = rows * cols
        switch self {
        case .relu:
            // A bit mask rather than a branch, so the loop vectorises: keeps g where z > 0, else +0.
            let bits = UnsafeMutableRawPointer(g).assumingMemoryBound(to: UInt32.self)
            for i in 0..<count { bits[i] &= z[i] > 0 ? UInt32.max : 0 }
        case .leakyReLU(let slope):
            for i in 0..<count { g[i] *= z[i] > 0 ? 1 : slope }
        case .sigmoid:
            for i in 0..<count { g[i] = g[i] * (1 - a[i]) * a[i] }
        case .tanh:
            for i in 0..<count { g[i] = g[i] * (1 - a[i] * a[i]) }
        case .gelu:
            // d/dz [z·Φ(z)] = Φ(z) + z·φ(z)
            let invSqrt2 = Float(0.5).squareRoot(), invSqrt2Pi = 1 / (2 * Float.pi).squareRoot()
            for i in 0..<count {
                let cdf = 0.5 * (1 + Foundation.erf(z[i] * invSqrt2))
                let pdf = invSqrt2Pi * Foundation.exp(-0.5 * z[i] * z[i])
                g[i] = g[i] * (cdf + z[i] * pdf)
            }
        case .identity:
            break
        case .softmax:
            // Jacobian-vector product per row: g_i ← a_i · (g_i − Σ_j g_j · a_j).
            for r in 0..<rows {
                let o = r * cols
                var dot: Float = 0
                for c in 0..<cols { dot += g[o + c] * a[o + c] }
                for c in 0..<cols { g[o + c] = a[o + c] * (g[o + c] - dot) }
            }
        }
    }
}

/// Numerically stable softmax of one row: subtracts the row maximum before exponentiating.
func softmaxRow(_ z: UnsafePointer<Float>, into a: UnsafeMutablePointer<Float>, count: Int) {
    var peak = -Float.infinity
    for c in 0..<count { peak = max(peak, z[c]) }
    var total: Float = 0
    for c in 0..<count {
        a[c] = Foundation.exp(z[c] - peak)
        total += a[c]
    }
    for c in 0..<count { a[c] /= total }
}
