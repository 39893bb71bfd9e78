import CMatmul
import Foundation

/// The instruction set oneDNN runs, and how an exact-mode worker takes on the coordinator's.
///
/// oneDNN picks its kernels from the CPU's features when it first plans a product; `ONEDNN_MAX_CPU_ISA` caps that
/// choice and is read only then, so a worker follows another instruction set by re-executing itself with it.
package enum OneDNN {
    /// The cap oneDNN reads.
    package static let variable = "ONEDNN_MAX_CPU_ISA"
    /// Set by shardtrain when it re-executed a worker with the coordinator's instruction set.
    static let followed = "SHARDTRAIN_ONEDNN_FOLLOWED"

    /// The instruction set oneDNN dispatches to here, e.g. "avx512_core_bf16".
    package static var isa: String { String(cString: matmul_isa_name()) }

    /// The names `isa` can take (oneDNN 2.6's), the only ones a worker follows.
    package static let instructionSets: Set<String> = [
        "sse41", "avx", "avx2", "avx2_vnni", "avx512_mic", "avx512_mic_4ops", "avx512_core", "avx512_core_vnni",
        "avx512_core_bf16", "avx512_core_amx", "generic",
    ]

    /// Whether `ONEDNN_MAX_CPU_ISA` was set by the user (it then wins over following a coordinator).
    package static var pinnedByUser: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment[variable] != nil && environment[followed] == nil
    }

    /// Re-executes this program capped at `isa`; returns why it cannot when this process was already capped at it
    /// (so the CPU cannot run it) or cannot re-execute.
    package static func follow(_ isa: String) -> String {
        guard ProcessInfo.processInfo.environment[followed] != isa else {
            return "this CPU runs \(OneDNN.isa) under \(variable)=\(isa.uppercased())"
        }
        setenv(variable, isa.uppercased(), 1)
        setenv(followed, isa, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        return "cannot re-execute: \(String(cString: strerror(errno)))"
    }
}
