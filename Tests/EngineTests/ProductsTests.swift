import Testing
@testable import Engine

/// Both GEMM libraries compute every product the network issues, against a double-precision reference.
struct ProductsTests {
    @Test("OpenBLAS and oneDNN products match a double-precision reference for every transpose and beta",
          arguments: [GEMMLibrary.openBLAS, .oneDNN])
    func productsMatchReference(library: GEMMLibrary) {
        let products = Products(library: library)
        var random = Xoshiro(seed: 11)
        // Odd sizes and padded leading dimensions, so a stride or transpose mix-up cannot pass.
        let m = 37, n = 29, k = 53, pad = 3
        for transA in [Transpose.none, .transposed] {
            for transB in [Transpose.none, .transposed] {
                for beta: Float in [0, 1, 0.5] {
                    let lda = (transA == .none ? k : m) + pad, ldb = (transB == .none ? n : k) + pad, ldc = n + pad
                    let a = (0..<(transA == .none ? m : k) * lda).map { _ in random.nextUnitFloat() * 2 - 1 }
                    let b = (0..<(transB == .none ? k : n) * ldb).map { _ in random.nextUnitFloat() * 2 - 1 }
                    var c = (0..<m * ldc).map { _ in random.nextUnitFloat() * 2 - 1 }
                    let before = c
                    for _ in 0..<2 {  // the second call runs the kept plan
                        c = before
                        products(transA, transB, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, beta: beta, &c, ldc: ldc)
                    }
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var sum = 0.0
                            for p in 0..<k {
                                let x = transA == .none ? a[i * lda + p] : a[p * lda + i]
                                let y = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
                                sum += Double(x) * Double(y)
                            }
                            sum += Double(beta) * Double(before[i * ldc + j])
                            worst = max(worst, abs(Double(c[i * ldc + j]) - sum))
                        }
                        // The padding between rows is never written.
                        for j in n..<ldc { #expect(c[i * ldc + j] == before[i * ldc + j]) }
                    }
                    #expect(worst < 1e-4, "\(library) \(transA) \(transB) beta \(beta): error \(worst)")
                }
            }
        }
        if library == .oneDNN {
            // Twelve shapes, each planned once and run twice, all by oneDNN.
            #expect(products.implementations.count == 12 && products.oneDNNRuns == 24,
                    "\(products.implementations)")
        }
    }

    @Test("the smallest products loop in k order with a rounded multiply and add: the scalar sum's bits on any CPU")
    func smallProductsAreScalarSums() {
        let products = Products(library: .oneDNN)
        var random = Xoshiro(seed: 12)
        for (m, n, k) in [(4, 3, 2), (4, 1, 3), (7, 5, 9), (1, 1, 1024), (8, 16, 8)] {
            #expect(m * n * k <= 1024)
            for transA in [Transpose.none, .transposed] {
                for transB in [Transpose.none, .transposed] {
                    for beta: Float in [0, 0.5] {
                        let lda = transA == .none ? k : m, ldb = transB == .none ? n : k
                        let a = (0..<m * k).map { _ in random.nextUnitFloat() * 2 - 1 }
                        let b = (0..<k * n).map { _ in random.nextUnitFloat() * 2 - 1 }
                        let before = (0..<m * n).map { _ in random.nextUnitFloat() * 2 - 1 }
                        var c = before
                        products(transA, transB, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, beta: beta, &c, ldc: n)
                        var expected = before
                        for i in 0..<m {
                            for j in 0..<n {
                                var sum: Float = 0
                                for p in 0..<k {
                                    let x = transA == .none ? a[i * lda + p] : a[p * lda + i]
                                    let y = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
                                    sum = sum + x * y
                                }
                                expected[i * n + j] = beta == 0 ? sum : sum + beta * before[i * n + j]
                            }
                        }
                        #expect(c.map(\.bitPattern) == expected.map(\.bitPattern), "\(m)×\(n)×\(k) \(transA) \(transB)")
                    }
                }
            }
        }
        #expect(products.oneDNNRuns == 0)
    }
}
