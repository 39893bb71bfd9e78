import CMatmul

/// The library that computes a network's matrix products.
///
/// Exact mode needs bits every worker reproduces, so it runs on OpenBLAS, whose kernel is named, checked and
/// followed across machines (`BLASKernel`). Fast mode promises no bits across machines and takes the faster
/// library where one exists: oneDNN's matmul primitives, planned once per shape (`scripts/bench-gemm.sh` measures
/// both on a step's products).
public enum GEMMLibrary: String, Sendable {
    case openBLAS = "OpenBLAS"
    case oneDNN

    /// The library fast mode uses.
    public static let fast: GEMMLibrary = .oneDNN

    /// The library and what it runs on this CPU, for `--verbose` and the benchmarks.
    public var description: String {
        switch self {
        case .openBLAS: "OpenBLAS \(BLAS.kernel)"
        case .oneDNN: String(cString: matmul_library_name())
        }
    }
}

/// A network's matrix products, `C[m×n] = op(A)[m×k] · op(B)[k×n] + beta · C` row-major, through one library.
///
/// oneDNN plans each shape on its first product and keeps the plan (with its scratchpad), so a steady-state step
/// plans and allocates nothing of its own; a shape oneDNN cannot plan goes to OpenBLAS. Used by one thread at a
/// time, as the network that owns it.
package final class Products {
    package let library: GEMMLibrary
    private var plans: [Shape: OpaquePointer?] = [:]
    /// Products oneDNN has run (tests compare it with the allocations its calls make).
    package private(set) var oneDNNRuns = 0

    private struct Shape: Hashable {
        var transA: Transpose, transB: Transpose
        var m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
        var beta: UInt32
    }

    package init(library: GEMMLibrary) { self.library = library }

    deinit {
        for case let plan? in plans.values { matmul_plan_destroy(plan) }
    }

    package func callAsFunction(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if library == .oneDNN, let plan = plan(Shape(transA: transA, transB: transB, m: m, n: n, k: k,
                                                     lda: lda, ldb: ldb, ldc: ldc, beta: beta.bitPattern)) {
            // OpenMP's thread count is per thread, and the caller's thread may change between steps.
            matmul_use_one_thread()
            if matmul_plan_run(plan, a, b, c) == 0 {
                oneDNNRuns += 1
                return
            }
        }
        gemm(transA, transB, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
    }

    /// The implementation oneDNN chose for each planned shape (for tests and `--verbose`).
    package var implementations: [String] {
        plans.values.compactMap { $0.map { String(cString: matmul_plan_implementation($0)) } }
    }

    private func plan(_ shape: Shape) -> OpaquePointer? {
        if let known = plans[shape] { return known }
        let made = matmul_plan_create(shape.transA == .transposed ? 1 : 0, shape.transB == .transposed ? 1 : 0,
                                      Int64(shape.m), Int64(shape.n), Int64(shape.k), Int64(shape.lda),
                                      Int64(shape.ldb), Int64(shape.ldc), Float(bitPattern: shape.beta), nil)
        plans[shape] = made
        return made
    }
}
