@testable import Cluster
import CDigest
import Foundation
import Testing
import Wire

/// The keyed digest replicas are compared by, against the definition written out plainly.
@Suite(.serialized) struct ReplicaDigestTests {
    /// NH as the header defines it: the words in pairs, each plus its key word modulo 2^32, multiplied to 64 bits and
    /// summed modulo 2^64; a word past the end read as 0.
    static func reference(_ words: [UInt32], _ key: [UInt32]) -> UInt64 {
        var sum: UInt64 = 0
        for i in stride(from: 0, to: words.count, by: 2) {
            let a = UInt64(words[i] &+ key[i])
            let b = UInt64((i + 1 < words.count ? words[i + 1] : 0) &+ key[i + 1])
            sum = sum &+ a &* b
        }
        return sum
    }

    /// splitmix64, as the header names it, two key words an output (low half first).
    static func referenceKey(_ seed: UInt64, _ count: Int) -> [UInt32] {
        var state = seed, key: [UInt32] = []
        while key.count < count {
            state = state &+ 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            key += [UInt32(truncatingIfNeeded: z), UInt32(truncatingIfNeeded: z >> 32)]
        }
        return Array(key.prefix(count))
    }

    @Test("every build gives the definition's digest, at any length (odd ones too), and the key is splitmix64's")
    func againstDefinition() throws {
        var generator = SystemRandomNumberGenerator()
        for level in 0...2 where cdigest_use_level(Int32(level)) == 1 {
            for count in [1, 2, 3, 7, 16, 17, 63, 64, 65, 1001, 51_776] {
                let words = (0..<count).map { _ in UInt32.random(in: .min ... .max, using: &generator) }
                let seed = UInt64.random(in: 1 ... .max, using: &generator)
                var key = [UInt32](repeating: 0, count: (count + 1) / 2 * 2)
                cdigest_key(seed, &key, key.count)
                #expect(key == Self.referenceKey(seed, key.count), "level \(level), \(count) words")
                #expect(cdigest_nh(words, count, key) == Self.reference(words, key), "level \(level), \(count) words")
            }
        }
        // The loop ends on the best level this CPU has, which the rest of the run uses.
    }

    @Test("one flipped bit anywhere, or two words swapped, changes a part's digest")
    func changesShow() throws {
        let parts = PartSplit(parameterCount: 40_000, size: 16_384)
        let weights = (0..<40_000).map { Float($0 % 977) * 0.001 - 0.3 }
        var digests = ReplicaDigests(parts: parts)
        let seed = ReplicaDigests.drawSeed()
        let honest = weights.withUnsafeBufferPointer { digests.digests(of: $0.baseAddress!, seed: seed) }
        #expect(honest.count == 3)
        for index in [0, 1, 16_383, 16_384, 39_999] {
            var changed = weights
            changed[index] = Float(bitPattern: changed[index].bitPattern ^ 1)
            let other = changed.withUnsafeBufferPointer { digests.digests(of: $0.baseAddress!, seed: seed) }
            let part = index / 16_384
            #expect(other[part] != honest[part] && other.indices.allSatisfy { $0 == part || other[$0] == honest[$0] },
                    "bit 0 of parameter \(index)")
        }
        var swapped = weights
        swapped.swapAt(100, 7_000)
        #expect(swapped.withUnsafeBufferPointer { digests.digests(of: $0.baseAddress!, seed: seed) }[0] != honest[0])
        // Another key, another digest of the same weights.
        #expect(weights.withUnsafeBufferPointer { digests.digests(of: $0.baseAddress!, seed: seed ^ 1) } != honest)
    }
}

/// The coordinator's side: a result counts only when its weights' digests are the coordinator's.
@Suite struct CoordinatorCoreReplicaTests {
    /// Three members of a sharded step of 6 micro-shards (one part of 8 parameters), each expected to digest to its
    /// number; the last step's one part was peer 3's.
    static func started() throws -> (CoreHarness, [AssignmentOrder]) {
        var h = CoreHarness(workers: 3) { $0.overlap = true }
        try h.join(1, 2, 3)
        h.core.sharding = true
        h.core.partsComplete = { _ in true }
        h.beginStep(1, microShards: 6)
        let orders = h.handOut().assignments.map(\.order)
        h.core.replicaChecks = [h.member(1): .init(digests: [1], fromMeans: true),
                                h.member(2): .init(digests: [2], fromMeans: true),
                                h.member(3): .init(digests: [3], fromMeans: true)]
        h.core.meansOwners = [h.member(3)]
        h.core.replicasResyncable = true
        return (h, orders)
    }

    static func answer(_ h: inout CoreHarness, _ peer: Int, _ order: AssignmentOrder, digests: [UInt64]) throws
        -> [CoordinatorAction] {
        var frames = try h.resultFrames(peer, order, inParts: true)
        frames[1] = try ReplicaDigests.frame(digests)
        return try h.receive(peer, frames)
    }

    @Test("weights that differ: the member's work is computed again and it takes the step's weights with the state; two members' word loses the owner of the last means, who is not admitted again")
    func resyncAndBlame() throws {
        var (h, orders) = try Self.started()
        let first = try Self.answer(&h, 1, orders[0], digests: [99])
        #expect(first.losses.isEmpty && first.logged("its weights for step 1 differ from the coordinator's in part 0, "
            + "whose means w3 \"p3\"") && first.logged("are computed again"), "\(first.logs)")
        #expect(h.core.round!.waitingCount == 2 && h.core.table[h.member(1)].weightsStep == nil)
        #expect(h.core.staleReplicas == [h.member(1)])
        let again = h.handOut()
        #expect(again.weights.contains { $0.member == h.member(1) && $0.form == .withState }, "\(again)")
        // The accused owner's own answer counts.
        #expect(try Self.answer(&h, 3, orders[2], digests: [3]).isEmpty)
        let second = try Self.answer(&h, 2, orders[1], digests: [98])
        #expect(second.losses.map(\.member) == [h.member(3)] && second.losses[0].valuesRefused)
        #expect(second.logged("other than the ones it sent the coordinator"), "\(second.logs)")
        let hello = try h.hello(3)
        #expect(hello.replies.contains { if case .shutdown(let why, .failed) = $0 { why.contains("not admitted again") } else { false } })
    }

    @Test("matching digests count; once a part is applied a differing member is lost; digests missing lose the sender")
    func lossesWhenNotResyncable() throws {
        var (h, orders) = try Self.started()
        #expect(try Self.answer(&h, 1, orders[0], digests: [1]).isEmpty)
        h.core.replicasResyncable = false
        let stale = try Self.answer(&h, 2, orders[1], digests: [7])
        #expect(stale.losses.map(\.member) == [h.member(2)] && stale.logged("computed from other weights than the step's"),
                "\(stale.logs)")
        let missing = try Self.answer(&h, 3, orders[2], digests: [])
        #expect(missing.losses.map(\.member) == [h.member(3)] && missing.logged("0 digests of its weights"), "\(missing.logs)")
    }
}
