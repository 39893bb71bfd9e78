@testable import Cluster
import CDigest
import Foundation
import Testing
import Wire

/// The keyed digest replicas are compared by, against its definition written out plainly.
@Suite(.serialized) struct ReplicaDigestTests {
    static let prime: UInt64 = (1 << 61) - 1

    /// NH as the header defines it: the words in pairs, each plus its key word modulo 2^32, multiplied to 64 bits and
    /// summed modulo 2^64; a word past the end read as 0.
    static func nh(_ words: ArraySlice<UInt32>, _ key: [UInt32]) -> UInt64 {
        let words = Array(words)
        var sum: UInt64 = 0
        for i in stride(from: 0, to: words.count, by: 2) {
            let a = UInt64(words[i] &+ key[i])
            let b = UInt64((i + 1 < words.count ? words[i + 1] : 0) &+ key[i + 1])
            sum = sum &+ a &* b
        }
        return sum
    }

    /// (a · b + c) mod p with a full-width product, a, b < p.
    static func hornerStep(_ h: UInt64, _ r: UInt64, _ c: UInt64) -> UInt64 {
        let (high, low) = h.multipliedFullWidth(by: r)
        let product = UInt64(high) << 3 | low >> 61  // the product divided by 2^61 …
        let remainder = low & prime                  // … and its remainder
        return ((product % prime + remainder) % prime + c) % prime
    }

    /// The digest as the header defines it: NH of each block of 1024 words, its two halves (high first) Horner's
    /// coefficients at the key's point modulo 2^61 − 1.
    static func digest(_ words: [UInt32], _ key: (words: [UInt32], point: UInt64)) -> UInt64 {
        var h: UInt64 = 0
        for first in stride(from: 0, to: words.count, by: 1024) {
            let block = nh(words[first..<min(first + 1024, words.count)], key.words)
            h = hornerStep(hornerStep(h, key.point, block >> 32), key.point, block & 0xFFFF_FFFF)
        }
        return h
    }

    /// splitmix64, as the header names it: the key's words two to an output (low half first), then its point.
    static func referenceKey(_ seed: UInt64) -> (words: [UInt32], point: UInt64) {
        var state = seed
        func next() -> UInt64 {
            state = state &+ 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var words: [UInt32] = []
        while words.count < 1024 {
            let z = next()
            words += [UInt32(truncatingIfNeeded: z), UInt32(truncatingIfNeeded: z >> 32)]
        }
        let point = next() % prime
        return (words, point == 0 ? 1 : point)
    }

    @Test("every build gives the definition's digest and NH, at any length (odd, within a block and across blocks), under splitmix64's key")
    func againstDefinition() throws {
        var generator = SystemRandomNumberGenerator()
        for level in 0...2 where cdigest_use_level(Int32(level)) == 1 {
            for count in [1, 2, 3, 7, 64, 1023, 1024, 1025, 2048, 4099, 51_776] {
                let words = (0..<count).map { _ in UInt32.random(in: .min ... .max, using: &generator) }
                let seed = UInt64.random(in: 1 ... .max, using: &generator)
                var key = cdigest_key()
                cdigest_make_key(seed, &key)
                let reference = Self.referenceKey(seed)
                let made = withUnsafeBytes(of: key.words) { Array($0.bindMemory(to: UInt32.self)) }
                #expect(made == reference.words && key.point == reference.point, "level \(level)")
                #expect(cdigest(words, count, &key) == Self.digest(words, reference), "level \(level), \(count) words")
                if count <= 1024 {
                    #expect(cdigest_nh(words, count, made) == Self.nh(words[...], made), "level \(level), \(count) words")
                }
            }
        }
        // The loop ends on the best level this CPU has, which the rest of the run uses.
    }

    @Test("one flipped bit anywhere, in the weights or a state buffer, or two words swapped, changes only that part's digest")
    func changesShow() throws {
        let parts = PartSplit(parameterCount: 40_000, size: 16_384)
        let weights = (0..<40_000).map { Float($0 % 977) * 0.001 - 0.3 }, state = weights.map { $0 * 0.5 }
        let seed = ReplicaDigests.drawSeed()
        func digests(_ w: [Float], _ s: [Float], seed: UInt64 = seed) -> [UInt64] {
            w.withUnsafeBufferPointer { w in
                s.withUnsafeBufferPointer { s in
                    ReplicaDigests.digests(of: [w.baseAddress!, s.baseAddress!], parts: parts, seeds: [seed, seed ^ 1])[0]
                }
            }
        }
        let honest = digests(weights, state)
        #expect(honest.count == 6)
        for (array, index) in [(0, 0), (0, 16_383), (0, 16_384), (0, 39_999), (1, 5), (1, 39_999)] {
            var (w, s) = (weights, state)
            if array == 0 { w[index] = Float(bitPattern: w[index].bitPattern ^ 1) } else {
                s[index] = Float(bitPattern: s[index].bitPattern ^ 1)
            }
            let other = digests(w, s), changed = array * 3 + index / 16_384
            #expect(other[changed] != honest[changed] && other.indices.allSatisfy { $0 == changed || other[$0] == honest[$0] },
                    "array \(array), parameter \(index)")
        }
        var swapped = weights
        swapped.swapAt(100, 7_000)
        let afterSwap = digests(swapped, state)
        #expect(afterSwap[0] != honest[0] && afterSwap.dropFirst() == honest.dropFirst())
        // Another key, other digests of the same replica; the same key, the same ones, however many keys at once.
        #expect(digests(weights, state, seed: seed ^ 2) != honest)
        let alone = weights.withUnsafeBufferPointer { w in state.withUnsafeBufferPointer { s in
            ReplicaDigests.digests(of: [w.baseAddress!, s.baseAddress!], parts: parts, seeds: [seed])[0] } }
        #expect(alone == honest)
    }
}

/// The coordinator's side: a result counts only when its replica's digests are the coordinator's.
@Suite struct CoordinatorCoreReplicaTests {
    /// Three members of a sharded step of 6 micro-shards (one part of 8 parameters, weights and one state buffer),
    /// each expected to digest to its number; the last step's one part was peer 3's.
    static func started(step: Int = 1, harness: CoreHarness? = nil) throws -> (CoreHarness, [AssignmentOrder]) {
        var h = harness ?? CoreHarness(workers: 3) { $0.overlap = true }
        if harness == nil {
            try h.join(1, 2, 3)
            h.core.sharding = true
            h.core.partsComplete = { _ in true }
        }
        h.beginStep(step, microShards: 6)
        h.core.eligible = Set([h.member(1), h.member(2), h.member(3)])
        let orders = h.handOut().assignments.map(\.order)
        h.core.replicaChecks = [h.member(1): .init(digests: [1, 1], fromMeans: true),
                                h.member(2): .init(digests: [2, 2], fromMeans: true),
                                h.member(3): .init(digests: [3, 3], fromMeans: true)]
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

    @Test("a replica that differs in one other owner's part: its work is computed again, the step's weights and state sent at once; a second member naming the owner loses it, not admitted again")
    func resyncAndBlame() throws {
        var (h, orders) = try Self.started()
        let first = try Self.answer(&h, 1, orders[0], digests: [1, 99])
        #expect(first.losses.isEmpty && first.logged("its replica for step 1 differs from the coordinator's in part 0, "
            + "whose means w3 \"p3\"") && first.logged("are computed again"), "\(first.logs)")
        #expect(first.weights.map(\.member) == [h.member(1)] && first.weights[0].form == .withState)
        #expect(h.core.round!.waitingCount == 2 && h.core.staleReplicas == [h.member(1)])
        #expect(h.core.replicaChecks[h.member(1)]?.fromMeans == false)
        // The accused owner's own answer counts.
        #expect(try Self.answer(&h, 3, orders[2], digests: [3, 3]).isEmpty)
        let second = try Self.answer(&h, 2, orders[1], digests: [98, 2])
        #expect(second.losses.map(\.member) == [h.member(3)] && second.losses[0].valuesRefused)
        #expect(second.logged("other than the ones it sent the coordinator"), "\(second.logs)")
        let hello = try h.hello(3)
        #expect(hello.replies.contains { if case .shutdown(let why, .failed) = $0 { why.contains("not admitted again") } else { false } })
    }

    @Test("differing again after the step's replica was sent, having been sent it whole, or where no other owner sent the means: lost")
    func lostWhenNoVictim() throws {
        var (h, orders) = try Self.started()
        _ = try Self.answer(&h, 1, orders[0], digests: [99, 1])
        let again = h.handOut().assignments.filter { $0.member == h.member(1) }
        #expect(!again.isEmpty)
        let twice = try Self.answer(&h, 1, again[0].order, digests: [99, 1])
        #expect(twice.losses.map(\.member) == [h.member(1)] && twice.logged("which it was sent whole"), "\(twice.logs)")
        // Peer 3 owned the part itself: no one else to name.
        let own = try Self.answer(&h, 3, orders[2], digests: [7, 3])
        #expect(own.losses.map(\.member) == [h.member(3)], "\(own.logs)")
        // The coordinator's own part.
        var (other, otherOrders) = try Self.started()
        other.core.meansOwners = [nil]
        let coordinators = try Self.answer(&other, 2, otherOrders[1], digests: [2, 5])
        #expect(coordinators.losses.map(\.member) == [other.member(2)], "\(coordinators.logs)")
        let missing = try Self.answer(&other, 1, otherOrders[0], digests: [1])
        #expect(missing.losses.map(\.member) == [other.member(1)] && missing.logged("1 digests of its replica"))
    }

    @Test("once a part is applied, a member that differs sits the step out; the last one left is lost")
    func sitsOutWhenNotResyncable() throws {
        var (h, orders) = try Self.started()
        h.core.replicasResyncable = false
        let out = try Self.answer(&h, 1, orders[0], digests: [1, 99])
        #expect(out.losses.isEmpty && out.logged("sits the step out") && out.weights.isEmpty, "\(out.logs)")
        #expect(h.core.eligible == Set([h.member(2), h.member(3)]))
        h.core.eligible = [h.member(2)]
        // Lost, and the owner it names is now named by two.
        let last = try Self.answer(&h, 2, orders[1], digests: [2, 99])
        #expect(last.losses.map(\.member) == [h.member(2), h.member(3)], "\(last.logs)")
    }

    @Test("two members naming an owner within 16 steps lose it; named 16 steps apart, it stays; named twice by one, it owns no parts")
    func accusationsWindow() throws {
        var (h, orders) = try Self.started(step: 1)
        _ = try Self.answer(&h, 1, orders[0], digests: [99, 1])
        _ = h.core.endStep()
        (h, orders) = try Self.started(step: 17, harness: h)
        let late = try Self.answer(&h, 2, orders[1], digests: [99, 2])
        #expect(late.losses.isEmpty && !h.core.ownsNoParts(h.core.table[h.member(3)]), "\(late.logs)")
        _ = h.core.endStep()
        (h, orders) = try Self.started(step: 18, harness: h)
        let again = try Self.answer(&h, 2, orders[1], digests: [99, 2])
        #expect(again.losses.isEmpty && again.logged("w3 \"p3\" (h, pid 1003) owns no parts from the next step on: w2"),
                "\(again.logs)")
        #expect(h.core.ownsNoParts(h.core.table[h.member(3)]) && !h.core.ownsNoParts(h.core.table[h.member(2)]))
        _ = h.core.endStep()
        (h, orders) = try Self.started(step: 20, harness: h)
        let within = try Self.answer(&h, 1, orders[0], digests: [99, 1])
        #expect(within.losses.map(\.member) == [h.member(3)], "\(within.logs)")
    }

    @Test("a step that begins (a star step under --layout auto, say) holds no checks of the step before: a result without digests counts")
    func checksEndWithTheirStep() throws {
        var (h, _) = try Self.started(step: 1)
        _ = h.core.endStep()
        h.core.sharding = false
        h.beginStep(2, microShards: 6)
        let orders = h.handOut().assignments.map(\.order)
        #expect(h.core.replicaChecks.isEmpty && !h.core.replicasResyncable)
        let plain = try h.receive(1, h.resultFrames(1, orders[0], inParts: true))
        #expect(plain.losses.isEmpty && h.core.round!.completedAttempts[orders[0].attempt] != nil, "\(plain)")
    }

    @Test("with keys, an owner lost for two members' word is refused by the key its connection was admitted with, whatever its routing id or peer socket")
    func banByKey() throws {
        var h = CoreHarness(workers: 3) { $0.overlap = true }
        func keyedHello(_ peer: Int, key: String) throws -> [CoordinatorAction] {
            let decoded = try h.decode(Codec.hello(fields: ["name": "p\(peer)", "host": "h", "pid": "\(1000 + peer)",
                                                            "cores": "2", "build": "b", "blas": "Haswell", "onednn": "avx2"],
                                                   cores: 2, pid: Int32(1000 + peer)))
            guard case .hello(let fields) = decoded.payload else { throw CancellationError() }
            // As the shell passes it on: the connection's key, and no peer socket offered.
            let checked = PeerFields.checked(fields, address: "10.0.0.\(peer)", key: key)
            return h.core.receive(Envelope(header: decoded.header, payload: .hello(fields: checked)),
                                  from: CoreHarness.identity(peer), at: h.now)
        }
        for (peer, key) in [(1, "keyA"), (2, "keyB"), (3, "keyC")] {
            _ = try keyedHello(peer, key: key)
            try h.ready(peer)
        }
        h.core.sharding = true
        h.core.partsComplete = { _ in true }
        var (harness, orders) = try Self.started(harness: h)
        _ = try Self.answer(&harness, 1, orders[0], digests: [99, 1])
        let second = try Self.answer(&harness, 2, orders[1], digests: [99, 2])
        #expect(second.losses.map(\.member) == [harness.member(3)], "\(second.logs)")
        h = harness
        // The same key under a new routing id (a new process) is refused; another key is not.
        let again = try keyedHello(9, key: "keyC")
        #expect(again.replies.contains { if case .shutdown(let why, .failed) = $0 { why.contains("not admitted again") } else { false } })
        let other = try keyedHello(8, key: "keyD")
        #expect(other.replies.isEmpty, "\(other)")
    }
}
