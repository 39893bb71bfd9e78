import CMatmul
import Foundation

/// The library that computes a network's matrix products, a job setting (`gemm`).
///
/// oneDNN's matmul primitives, planned once per shape, are the default: faster than OpenBLAS on a step's products
/// (`scripts/bench-gemm.sh` measures both). Either library's bits depend on the instruction set it runs, so exact
/// mode admits a worker only when its products of the job match the coordinator's bit for bit (`fingerprint`).
package enum GEMMLibrary: String, Sendable, CaseIterable {
    case oneDNN = "onednn"
    case openBLAS = "openblas"

    /// What computes this library's products in a process running `isa` (oneDNN) and `kernel` (OpenBLAS), as join
    /// lines name it: "oneDNN avx512_core_bf16", "BLAS Cooperlake".
    package func kernels(oneDNN isa: String, blas kernel: String) -> String {
        self == .oneDNN ? "oneDNN \(isa)" : "BLAS \(kernel)"
    }

    /// What computes this library's products here.
    package var kernels: String { kernels(oneDNN: OneDNN.isa, blas: BLASKernel.description) }

    /// The library and what it runs on this CPU, for `--verbose`, the join lines and the benchmarks.
    package var description: String {
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
        if library == .oneDNN {
            // A library call costs ~0.5 µs before any arithmetic: the smallest products (the seed's XOR net) loop
            // here.
            if m * n * k <= Int(matmul_small_limit) {
                matmul_small(transA == .transposed ? 1 : 0, transB == .transposed ? 1 : 0, Int64(m), Int64(n),
                             Int64(k), a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
                return
            }
            let shape = Shape(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
                              beta: beta.bitPattern)
            if let plan = plan(shape) {
                // OpenMP's thread count is per thread, and the caller's thread may change between steps.
                matmul_use_one_thread()
                let status = matmul_plan_run(plan, a, b, c)
                if status == 0 {
                    oneDNNRuns += 1
                    return
                }
                // From now on this shape goes to OpenBLAS, every time (its bits then differ from other workers').
                matmul_plan_destroy(plan)
                plans[shape] = .some(nil)
                Self.report("oneDNN could not run a \(m)×\(n)×\(k) product (status \(status))")
            }
        }
        gemm(transA, transB, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
    }

    /// The implementation oneDNN chose for each planned shape (for tests).
    package var implementations: [String] {
        plans.values.compactMap { $0.map { String(cString: matmul_plan_implementation($0)) } }
    }

    private func plan(_ shape: Shape) -> OpaquePointer? {
        if let known = plans[shape] { return known }
        var error = [CChar](repeating: 0, count: 128)
        let made = matmul_plan_create(shape.transA == .transposed ? 1 : 0, shape.transB == .transposed ? 1 : 0,
                                      Int64(shape.m), Int64(shape.n), Int64(shape.k), Int64(shape.lda),
                                      Int64(shape.ldb), Int64(shape.ldc), Float(bitPattern: shape.beta), &error)
        plans[shape] = .some(made)
        if made == nil {
            Self.report("oneDNN could not plan a \(shape.m)×\(shape.n)×\(shape.k) product ("
                        + String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + ")")
        }
        return made
    }

    /// One line on standard error when a product leaves oneDNN (planning never fails on the CPUs measured; the
    /// fingerprint still catches a worker whose products differ because of it).
    private static func report(_ what: String) {
        FileHandle.standardError.write(Data("GEMM: \(what); OpenBLAS computes it instead\n".utf8))
    }
}

extension Products {
    /// Output rows of a block of a layer's weight gradient: about 2^17 parameters (a few of a worker's parts on the
    /// models where sending them early pays, and a block that stays in cache while it is written), a multiple of 16
    /// rows (a vector of the products' kernels) and 16 at least, so more than 2^17 where a row is over 2^13 inputs.
    package static func weightGradientBlockRows(of dense: ParameterLayout.Dense) -> Int {
        max(16, (1 << 17) / max(dense.inputs, 1) / 16 * 16)
    }

    /// The blocks of a layer's weight gradient.
    package static func weightGradientBlockCount(of dense: ParameterLayout.Dense) -> Int {
        let size = weightGradientBlockRows(of: dense)
        return (dense.outputs + size - 1) / size
    }

    /// One layer's weight gradient dW = dzᵀ · x  [out, in] into `weights`, a block of output rows at a time from the
    /// last, calling `blockWritten` with each block's first row once it is written. The one place these products are
    /// shaped: `Network`, the fingerprint and the benchmarks all multiply through it, so what exact mode compares at
    /// join is what training computes (a block's shape can take another kernel than the whole product's, or the
    /// plain loop). The blocks depend only on the layer's shape, so every run of a model multiplies alike.
    package func weightGradient(of dense: ParameterLayout.Dense, rows: Int, dz: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, into weights: UnsafeMutablePointer<Float>,
                                blockWritten: (_ firstRow: Int) -> Void = { _ in }) {
        let size = Self.weightGradientBlockRows(of: dense)
        for block in stride(from: Self.weightGradientBlockCount(of: dense) - 1, through: 0, by: -1) {
            let first = block * size, outputs = min(first + size, dense.outputs) - first
            self(.transposed, .none, m: outputs, n: dense.inputs, k: rows, dz + first, lda: dense.outputs,
                 x, ldb: dense.inputs, beta: 0, weights + first * dense.inputs, ldc: dense.inputs)
            blockWritten(first)
        }
    }
}

extension Products {
    /// A hash of the bits of every product a network of `spec` makes on a micro-shard of each of `rows` samples
    /// (forward, weight gradients, input gradients; the shapes and strides `Network` uses), on fixed made-up inputs.
    /// Two processes with the same fingerprint compute these products identically, so exact mode compares it
    /// instead of trusting library and kernel names.
    package static func fingerprint(library: GEMMLibrary, spec: ModelSpec, rows: [Int]) -> UInt64 {
        let products = Products(library: library)
        let layers = spec.layout.layers
        let largestRows = rows.max() ?? 1
        let widest = max(spec.inputs, layers.map(\.outputs).max() ?? 1)
        let x = Buffer<Float>(count: largestRows * widest), dz = Buffer<Float>(count: largestRows * widest)
        let w = Buffer<Float>(count: layers.map { $0.inputs * $0.outputs }.max() ?? 1)
        let out = Buffer<Float>(count: max(largestRows * widest, w.count))
        var random = Xoshiro(seed: 0x5EED)
        for buffer in [x, dz, w] {
            for i in 0..<buffer.count { buffer[i] = random.nextUnitFloat() * 2 - 1 }
        }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ count: Int) {
            for i in 0..<count {
                hash = (hash ^ UInt64(out[i].bitPattern)) &* 0x0000_0100_0000_01B3
            }
        }
        for r in Set(rows).sorted() {
            for d in layers {
                products(.none, .transposed, m: r, n: d.outputs, k: d.inputs, x.pointer, lda: d.inputs,
                         w.pointer, ldb: d.inputs, beta: 0, out.pointer, ldc: d.outputs)
                mix(r * d.outputs)
                products.weightGradient(of: d, rows: r, dz: dz.pointer, x: x.pointer, into: out.pointer)
                mix(d.outputs * d.inputs)
                products(.none, .none, m: r, n: d.inputs, k: d.outputs, dz.pointer, lda: d.outputs,
                         w.pointer, ldb: d.inputs, beta: 0, out.pointer, ldc: d.inputs)
                mix(r * d.inputs)
            }
        }
        return hash
    }
}
