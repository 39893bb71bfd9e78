import Foundation
import Testing

/// The kernel OpenBLAS loads is replaced by a stronger one the CPU can run, unless the user chose it (jobs on
/// `--gemm openblas`, whose products it computes).
struct BLASKernelSelectionTests {
    static func kernelLine(_ environment: [String: String]) throws -> (line: String, stderr: String) {
        let result = try Command.run(["train", "--config", "examples/xor.yaml", "--epochs", "1", "--verbose", "--gemm", "openblas"],
                                     environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        let line = try #require(result.lines.first { $0.contains("BLAS kernel") })
        return (String(line[line.range(of: "BLAS kernel ")!.upperBound...]), result.stderr)
    }

    /// The kernel OpenBLAS picks here without being told, and whether any stronger one exists for this CPU.
    static func native() throws -> String { try kernelLine(unset).line }

    /// Neither the machine's nor a parent's choice: what this CPU gets from OpenBLAS and shardtrain alone.
    static let unset = ["OPENBLAS_CORETYPE": "", "SHARDTRAIN_BLAS_SELECTED": "", "SHARDTRAIN_BLAS_REPLACEABLE": ""]

    @Test("a weak kernel that is only a machine default is replaced by the one shardtrain picks unaided")
    func replacesWeakDefault() throws {
        let unaided = try Self.native()
        let upgraded = try Self.kernelLine(["OPENBLAS_CORETYPE": "Prescott", "SHARDTRAIN_BLAS_REPLACEABLE": "1"])
        guard !unaided.hasPrefix("Prescott") else { return }  // a CPU without SSE4.2: nothing to upgrade to
        #expect(upgraded.line.hasSuffix("(chosen for this CPU; OpenBLAS loaded Prescott)"), "\(upgraded.line)")
        #expect(upgraded.line.split(separator: " ").first == unaided.split(separator: " ").first,
                "upgraded to \(upgraded.line), but unaided this machine runs \(unaided)")
        #expect(upgraded.stderr.isEmpty, "\(upgraded.stderr)")
    }

    @Test("an OPENBLAS_CORETYPE the user set always wins")
    func explicitWins() throws {
        let pinned = try Self.kernelLine(["OPENBLAS_CORETYPE": "Prescott"])
        #expect(pinned.line == "Prescott (OPENBLAS_CORETYPE)")
    }

    @Test("the same job gives the same bits whether the kernel was picked by OpenBLAS or by shardtrain")
    func sameBitsAfterReexecution() throws {
        let a = Command.temporaryPath("kernel-a.safetensors"), b = Command.temporaryPath("kernel-b.safetensors")
        let unaided = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "2", "--gemm", "openblas", "--save", a],
                                      environment: Self.unset)
        let native = try Self.native().split(separator: " ").first.map(String.init) ?? ""
        let replaced = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "2", "--gemm", "openblas", "--save", b],
                                       environment: ["OPENBLAS_CORETYPE": "Prescott", "SHARDTRAIN_BLAS_REPLACEABLE": "1"])
        #expect(unaided.status == 0 && replaced.status == 0)
        guard native != "Prescott" else { return }
        #expect(FileManager.default.contents(atPath: a) == FileManager.default.contents(atPath: b))
    }
}
