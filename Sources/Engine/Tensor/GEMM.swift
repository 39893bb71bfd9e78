import CBLAS

/// Whether a GEMM operand is read as stored or transposed (a BLAS flag, never a copy).
package enum Transpose: Sendable {
    case none, transposed

    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// OpenBLAS's matrix product, row-major:
/// `C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C`.
///
/// `Products` (which every layer's product goes through) calls it for `gemm: openblas`; the kernel self-check too.
/// Leading dimensions are those of the matrices as stored.
@inline(__always)
package func gemm(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int,
    alpha: Float = 1,
    _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int,
    beta: Float,
    _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
    cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas,
                Int32(m), Int32(n), Int32(k), alpha,
                a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Controls OpenBLAS's thread pool for this process.
package enum BLAS {
    /// Sets how many threads OpenBLAS uses for the products of this process.
    package static func setThreads(_ count: Int) { openblas_set_num_threads(Int32(max(1, count))) }

    /// The CPU kernel OpenBLAS selected (for example "Haswell" or "SkylakeX").
    package static var kernel: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }
}
