import Engine
import Testing

/// Which OpenBLAS kernel a CPU's features call for, and the self-check that guards a switch.
struct BLASKernelTests {
    static func cpu(_ configure: (inout CPUFeatures) -> Void) -> CPUFeatures {
        var cpu = CPUFeatures()
        configure(&cpu)
        return cpu
    }

    static let sse = cpu { $0.sse42 = true }
    static let avx2 = cpu { $0.sse42 = true; $0.avx = true; $0.avx2 = true; $0.fma = true }
    static let avx512 = cpu {
        $0 = avx2
        $0.avx512f = true; $0.avx512dq = true; $0.avx512bw = true; $0.avx512vl = true
    }
    static let bf16 = cpu { $0 = avx512; $0.avx512bf16 = true }

    @Test("a masked AVX-512 Xeon that loaded Prescott is offered Cooperlake first, then SkylakeX, Haswell")
    func maskedXeon() {
        #expect(BLASKernel.upgrades(from: "Prescott", cpu: Self.bf16)
            == ["Cooperlake", "SkylakeX", "Haswell", "Sandybridge", "Nehalem"])
        #expect(BLASKernel.upgrades(from: "Prescott", cpu: Self.avx512).first == "SkylakeX")
    }

    @Test("a kernel that is already the best the CPU allows, or one not known, is kept")
    func keeps() {
        #expect(BLASKernel.upgrades(from: "Cooperlake", cpu: Self.bf16).isEmpty)
        #expect(BLASKernel.upgrades(from: "SkylakeX", cpu: Self.avx512).isEmpty)
        #expect(BLASKernel.upgrades(from: "Haswell", cpu: Self.avx2).isEmpty)
        #expect(BLASKernel.upgrades(from: "NEOVERSEN1", cpu: Self.bf16).isEmpty)
        #expect(BLASKernel.upgrades(from: "Prescott", cpu: CPUFeatures()).isEmpty)
    }

    @Test("AMD CPUs with AVX2 are offered Zen before Haswell; AVX-512 needs all of F/DQ/BW/VL")
    func vendorsAndPartialAVX512() {
        var zen = Self.avx2
        zen.vendorAMD = true
        #expect(BLASKernel.candidates(for: zen).prefix(2) == ["Zen", "Haswell"])
        var partial = Self.avx2
        partial.avx512f = true
        #expect(BLASKernel.candidates(for: partial).first == "Haswell")
        #expect(!BLASKernel.canRun("SkylakeX", cpu: Self.avx2))
        #expect(BLASKernel.canRun("Prescott", cpu: Self.sse))
    }

    @Test("this CPU's loaded kernel passes the self-check")
    func selfCheck() {
        #expect(BLASKernel.selfCheck())
        #expect(!CPUFeatures.current.summary.isEmpty)
    }
}
