import Foundation
import Testing

/// `shardtrain equivalence` against runs the test makes itself.
@Suite(.serialized)
struct EquivalenceCommandTests {
    @Test("equivalence: every exact run carries the SHA-256 of a separate in-process train; exit 0; a warning for idle workers")
    func exactRunsAgree() throws {
        let weights = Command.temporaryPath("equivalence-reference.st")
        let trained = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "3", "--save", weights])
        #expect(trained.status == 0)
        let digest = try FailureTests.digest(weights)
        let result = try Command.run(["equivalence", "--config", "examples/spirals.yaml", "--workers", "1,2,5",
                                      "--epochs", "3", "--reduction", "both"])
        #expect(result.status == 0, "\(result.stderr)")
        let exact = result.lines.filter { $0.hasPrefix("exact ") }
        #expect(exact.count == 4 && exact.allSatisfy { $0.contains(String(digest.prefix(16))) }, "\(result.stdout)")
        #expect(exact.dropFirst().allSatisfy { $0.contains(" = ") }, "\(result.stdout)")
        #expect(result.lines.filter { $0.hasPrefix("fast ") }.count == 4)
        // Shares follow the workers' measured speeds, so the split varies; but 4 micro-shards never reach 5 workers.
        let fiveWorkers = try #require(exact.first { $0.hasPrefix("exact     5 ") })
        let shares = fiveWorkers.split(separator: " ").filter { $0.contains("+") }
        #expect(!shares.isEmpty && shares.allSatisfy { $0.split(separator: "+").count <= 4 }, "\(result.stdout)")
        #expect(result.stdout.contains("32+32 ×"), "\(result.stdout)")
        #expect(result.stderr.contains("warning: with 5 workers, 1 gets no micro-shards"), "\(result.stderr)")
    }
}

extension EquivalenceCommandTests {
    #if DEBUG
    static let debugBuild = true
    #else
    static let debugBuild = false
    #endif

    @Test("equivalence: an exact run that differs (a test build's worker slightly off) exits 1",
          .enabled(if: debugBuild, "the switch exists in debug builds only"))
    func differingRunExitsOne() throws {
        let result = try Command.run(["equivalence", "--config", "examples/xor.yaml", "--workers", "1", "--steps", "20"],
                                     environment: ["SHARDTRAIN_TEST_FLIP_BIT": "1"])
        #expect(result.status == 1, "\(result.stdout)\n\(result.stderr)")
        #expect(result.lines.contains { $0.hasPrefix("exact     1 ") && $0.contains(" ≠") }, "\(result.stdout)")
        #expect(result.lines.last { !$0.isEmpty } == "verdict: DIFFERENT — exact with 1 worker gave other bits than in-process",
                "\(result.stdout)")
    }
}

/// Exact sums over float32's whole range, end to end: the regression whose targets reach 6.5e6 (per-micro-shard loss
/// sums near 1e14; PyTorch's run of it is a golden in Tests/EngineTests) gives the same bits with 1 to 5 workers.
@Suite(.serialized)
struct LargeTargetTests {
    @Test("targets near 6.5e6: exact runs with 1, 2, 3, 4 and 5 workers are bit-identical to the in-process run")
    func sameBitsAnyWorkerCount() throws {
        let fixture = Command.repository.appendingPathComponent("Tests/EngineTests/Fixtures/goldens.json")
        let goldens = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture)) as! [String: Any]
        let golden = goldens["large_targets"] as! [String: Any]
        let x = (golden["x"] as! [NSNumber]).map(\.floatValue), y = (golden["y"] as! [NSNumber]).map(\.floatValue)
        var csv = "a,b,c,d,e,f,y\n"
        for row in y.indices {
            csv += (x[6 * row ..< 6 * row + 6].map { "\($0)" } + ["\(y[row])"]).joined(separator: ",") + "\n"
        }
        let data = Command.temporaryPath("large-targets.csv"), job = Command.temporaryPath("large-targets.yaml")
        try csv.write(toFile: data, atomically: true, encoding: .utf8)
        try """
            model: {layers: [{units: 1, activation: identity}]}
            loss: mse
            optimizer: {name: sgd, lr: 0.1, momentum: 0.5}
            batch_size: 32
            micro_shard: 4
            epochs: 7
            shuffle: false
            data: {csv: \(data), target: y}
            """.write(toFile: job, atomically: true, encoding: .utf8)
        let result = try Command.run(["equivalence", "--config", job, "--workers", "1,2,3,4,5"])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        let exact = result.lines.filter { $0.hasPrefix("exact ") }
        #expect(exact.count == 6 && exact.dropFirst().allSatisfy { $0.contains(" = ") }, "\(result.stdout)")
    }
}
