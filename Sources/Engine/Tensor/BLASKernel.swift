import CBLAS
import CPlatform
import Foundation

/// Which OpenBLAS kernel this process runs, and why.
///
/// OpenBLAS picks its kernel once, when the library loads, from the CPU's model; on a virtual machine whose model is
/// masked it can fall back to its SSE3 "Prescott" kernel on a CPU with AVX-512, at a fifth of the speed. The kernel
/// cannot be changed after loading, so `selectAtLaunch` re-executes the program with `OPENBLAS_CORETYPE` set to the
/// best kernel the CPU's features allow, after a self-check of that kernel in a child process. An
/// `OPENBLAS_CORETYPE` the user set always wins.
package enum BLASKernel {
    /// Environment variables the selection uses between a process and its re-execution (and its children).
    package enum Variable {
        /// OpenBLAS's own override, read when the library loads.
        package static let coreType = "OPENBLAS_CORETYPE"
        /// The kernel shardtrain chose for this process tree; set, selection is not repeated.
        package static let selected = "SHARDTRAIN_BLAS_SELECTED"
        /// The kernel OpenBLAS had loaded before shardtrain chose (for the report).
        package static let loadedBefore = "SHARDTRAIN_BLAS_LOADED_BEFORE"
        /// `1`: the `OPENBLAS_CORETYPE` in the environment is a machine-wide default shardtrain may replace.
        package static let replaceable = "SHARDTRAIN_BLAS_REPLACEABLE"
        /// `1`: the kernel is an exact-mode coordinator's, which this worker re-executed itself to follow.
        static let followed = "SHARDTRAIN_BLAS_FOLLOWED"
        /// Set in a self-check child: run the check, print the kernel name, exit.
        static let selfCheck = "SHARDTRAIN_BLAS_SELFCHECK"
    }

    /// How this process came to run its kernel.
    package enum Origin: Sendable, Equatable {
        /// OpenBLAS's own choice, which is already the best this CPU allows (or no better one passed its check).
        case library
        /// Set by the user in `OPENBLAS_CORETYPE`.
        case explicit
        /// Chosen by shardtrain in place of the kernel OpenBLAS loaded.
        case selected(replacing: String)
        /// An exact-mode coordinator's, in place of the kernel OpenBLAS loaded.
        case followed(replacing: String)
    }

    nonisolated(unsafe) package private(set) static var origin = Origin.library

    /// The loaded kernel's name, e.g. "Haswell", "SkylakeX", "Cooperlake".
    package static var loaded: String { BLAS.kernel }

    /// The kernel and how it was chosen, for `--verbose` and the worker join lines.
    package static var description: String {
        switch origin {
        case .library: return "\(loaded)"
        case .explicit: return "\(loaded) (OPENBLAS_CORETYPE)"
        case .selected(let before): return "\(loaded) (chosen for this CPU; OpenBLAS loaded \(before))"
        case .followed(let before): return "\(loaded) (the coordinator's; OpenBLAS loaded \(before))"
        }
    }

    // MARK: Kernels and CPUs

    /// OpenBLAS x86-64 kernels by strength; a kernel not listed is never replaced.
    static let strength: [String: Int] = [
        "prescott": 0, "core2": 1, "penryn": 1, "dunnington": 1, "atom": 1, "nano": 1, "nehalem": 2, "barcelona": 2,
        "bobcat": 2, "bulldozer": 3, "piledriver": 3, "steamroller": 3, "excavator": 3, "sandybridge": 3,
        "haswell": 4, "zen": 4, "skylakex": 5, "cooperlake": 6, "sapphirerapids": 7,
    ]

    /// The kernels worth trying for `cpu`, best first (an OpenBLAS build may lack some: the self-check tells).
    package static func candidates(for cpu: CPUFeatures) -> [String] {
        var names: [String] = []
        let avx512 = cpu.avx512f && cpu.avx512dq && cpu.avx512bw && cpu.avx512vl
        if avx512 && cpu.avx512bf16 && cpu.amxTile && cpu.amxBF16 { names.append("SapphireRapids") }
        if avx512 && cpu.avx512bf16 { names.append("Cooperlake") }
        if avx512 { names.append("SkylakeX") }
        if cpu.avx2 && cpu.fma { names += cpu.vendorAMD ? ["Zen", "Haswell"] : ["Haswell"] }
        if cpu.avx { names.append("Sandybridge") }
        if cpu.sse42 { names.append("Nehalem") }
        return names
    }

    /// Kernels stronger than `loaded` that `cpu` can run, best first; empty when `loaded` is unknown or best.
    package static func upgrades(from loaded: String, cpu: CPUFeatures) -> [String] {
        guard let current = strength[loaded.lowercased()] else { return [] }
        return candidates(for: cpu).filter { (strength[$0.lowercased()] ?? -1) > current }
    }

    /// Whether `cpu` can run `kernel` (a kernel not listed here is assumed runnable only when it is `loaded`).
    package static func canRun(_ kernel: String, cpu: CPUFeatures) -> Bool {
        guard let wanted = strength[kernel.lowercased()] else { return kernel.lowercased() == loaded.lowercased() }
        if wanted <= 2 { return true }
        return candidates(for: cpu).contains { $0.lowercased() == kernel.lowercased() }
    }

    // MARK: Launch

    /// Call first in `main`: answers a self-check request, or re-executes this program with a stronger kernel when
    /// OpenBLAS loaded a weaker one than the CPU allows and none was set by the user. Returns when this process
    /// keeps its kernel.
    package static func selectAtLaunch() {
        let environment = ProcessInfo.processInfo.environment
        if environment[Variable.selfCheck] == "1" {
            let passed = selfCheck()
            print(loaded)
            exit(passed ? 0 : 1)
        }
        if let selected = environment[Variable.selected] {
            let before = environment[Variable.loadedBefore] ?? selected
            origin = before.lowercased() == loaded.lowercased() ? .library
                : environment[Variable.followed] == "1" ? .followed(replacing: before) : .selected(replacing: before)
            return
        }
        if environment[Variable.coreType] != nil, environment[Variable.replaceable] != "1" {
            origin = .explicit
            return
        }
        let before = loaded
        var failures: [String] = []
        for candidate in upgrades(from: before, cpu: CPUFeatures.current) {
            switch checkInChild(candidate) {
            case .success:
                reexecute(kernel: candidate, loadedBefore: before)
            case .failure(let why):
                failures.append("\(candidate) \(why)")
            }
        }
        if !failures.isEmpty {
            FileHandle.standardError.write(Data(("BLAS: staying with OpenBLAS's \(before) kernel: "
                + failures.joined(separator: "; ") + "\n").utf8))
        }
        // Children (local workers) inherit the outcome instead of repeating the checks.
        setenv(Variable.selected, before, 1)
        setenv(Variable.loadedBefore, before, 1)
    }

    /// Re-executes this program with `kernel` once it passes its self-check; returns an error message when it
    /// cannot (the kernel failed its check, or the CPU cannot run it).
    package static func follow(_ kernel: String) -> String? {
        guard canRun(kernel, cpu: .current) else { return "this CPU (\(CPUFeatures.current.summary)) cannot run it" }
        if case .failure(let why) = checkInChild(kernel) { return why }
        setenv(Variable.followed, "1", 1)
        reexecute(kernel: kernel, loadedBefore: ProcessInfo.processInfo.environment[Variable.loadedBefore] ?? loaded)
    }

    private static func reexecute(kernel: String, loadedBefore: String) -> Never {
        setenv(Variable.coreType, kernel, 1)
        setenv(Variable.selected, kernel, 1)
        setenv(Variable.loadedBefore, loadedBefore, 1)
        unsetenv(Variable.replaceable)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        let reason = String(cString: strerror(errno))
        FileHandle.standardError.write(Data("BLAS: cannot re-execute with the \(kernel) kernel: \(reason)\n".utf8))
        exit(1)
    }

    private enum CheckResult { case success, failure(String) }

    /// Runs this program as a self-check child under `kernel`: it must load that kernel and compute correctly.
    private static func checkInChild(_ kernel: String) -> CheckResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = []
        var environment = ProcessInfo.processInfo.environment
        environment[Variable.coreType] = kernel
        environment[Variable.selfCheck] = "1"
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return .failure("could not be checked (\(error))") }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let reported = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if process.terminationReason == .uncaughtSignal {
            return .failure("crashed its self-check (signal \(process.terminationStatus))")
        }
        guard reported.lowercased() == kernel.lowercased() else {
            return .failure("is not in this OpenBLAS (it loaded \(reported.isEmpty ? "nothing" : reported))")
        }
        guard process.terminationStatus == 0 else { return .failure("gave wrong products in its self-check") }
        return .success
    }

    /// A few products of odd shapes and every transpose, against a double-precision reference.
    package static func selfCheck() -> Bool {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 500
        }
        for (m, n, k) in [(37, 29, 67), (128, 96, 200), (5, 300, 17)] {
            for (ta, tb) in [(Transpose.none, Transpose.none), (.transposed, .none), (.none, .transposed)] {
                let a = (0..<m * k).map { _ in next() }, b = (0..<k * n).map { _ in next() }
                var c = [Float](repeating: 0.5, count: m * n)
                let lda = ta == .none ? k : m, ldb = tb == .none ? n : k
                gemm(ta, tb, m: m, n: n, k: k, alpha: 1.5, a, lda: lda, b, ldb: ldb, beta: 0.25, &c, ldc: n)
                for i in 0..<m {
                    for j in 0..<n {
                        var exact = 0.0, magnitude = 0.0
                        for p in 0..<k {
                            let x = Double(ta == .none ? a[i * k + p] : a[p * m + i])
                            let y = Double(tb == .none ? b[p * n + j] : b[j * k + p])
                            exact += x * y
                            magnitude += abs(x * y)
                        }
                        let expected = 1.5 * exact + 0.25 * 0.5
                        guard abs(Double(c[i * n + j]) - expected) <= 1e-5 * (1.5 * magnitude + 1) else { return false }
                    }
                }
            }
        }
        return true
    }
}

/// What cpuid says this CPU (and its OS) can run.
package struct CPUFeatures: Sendable, Equatable {
    package var vendorAMD = false
    package var sse42 = false, avx = false, fma = false, avx2 = false
    package var avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false, avx512bf16 = false
    package var amxTile = false, amxBF16 = false

    package init() {}

    package static let current: CPUFeatures = {
        let f = ccpu_read()
        var features = CPUFeatures()
        features.vendorAMD = f.vendorAMD != 0
        features.sse42 = f.sse42 != 0
        features.avx = f.avx != 0
        features.fma = f.fma != 0
        features.avx2 = f.avx2 != 0
        features.avx512f = f.avx512f != 0
        features.avx512dq = f.avx512dq != 0
        features.avx512bw = f.avx512bw != 0
        features.avx512vl = f.avx512vl != 0
        features.avx512bf16 = f.avx512bf16 != 0
        features.amxTile = f.amxTile != 0
        features.amxBF16 = f.amxBF16 != 0
        return features
    }()

    /// e.g. "AVX-512 F/DQ/BW/VL, AVX-512 BF16, AVX2, FMA".
    package var summary: String {
        var parts: [String] = []
        let avx512 = [("F", avx512f), ("DQ", avx512dq), ("BW", avx512bw), ("VL", avx512vl)].filter(\.1).map(\.0)
        if !avx512.isEmpty { parts.append("AVX-512 " + avx512.joined(separator: "/")) }
        if avx512bf16 { parts.append("AVX-512 BF16") }
        if amxTile { parts.append(amxBF16 ? "AMX BF16" : "AMX") }
        if avx2 { parts.append("AVX2") }
        if fma { parts.append("FMA") }
        if avx && !avx2 { parts.append("AVX") }
        if parts.isEmpty { parts.append(sse42 ? "SSE4.2" : "no AVX") }
        return parts.joined(separator: ", ")
    }
}
