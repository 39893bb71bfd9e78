import CExactSum
import Engine
import Testing
import Wire
@testable import Cluster

/// The sharded layout's bookkeeping (docs/scale-out.md): owners of parts, an owner's step, the coordinator's step,
/// and all three together adding real exact sums, against the in-process sum's bits.
@Suite struct ShardedLayoutTests {
    @Test("parts go round-robin over the members in id order; a lost owner's parts, and only those, go round-robin over the rest")
    func layout() {
        for parts in [1, 7, 29, 100] {
            for members in [[4], [9, 2], [3, 1, 2], [10, 20, 30, 40, 50, 60, 70, 80]] {
                var layout = ReductionLayout(parts: parts, members: members)
                let order = members.sorted()
                #expect(layout.owners == (0..<parts).map { order[$0 % order.count] })
                var alive = order
                while alive.count > 1 {
                    let lost = alive[alive.count / 2], before = layout.owners
                    alive.removeAll { $0 == lost }
                    let moved = layout.remove(lost, giving: alive)
                    #expect(moved.map(\.part) == before.indices.filter { before[$0] == lost })
                    for part in before.indices {
                        #expect(layout.owners[part] == (before[part] == lost ? moved.first { $0.part == part }!.owner : before[part]))
                    }
                    // Spread evenly: the moved parts' owners differ in count by at most one.
                    let counts = alive.map { owner in moved.filter { $0.owner == owner }.count }
                    #expect(counts.max()! - counts.min()! <= 1, "\(moved)")
                    #expect(Set(layout.owners).isSubset(of: alive))
                }
            }
        }
    }

    @Test("the coordinator owns a share, last in the round-robin; a lost worker's parts may go to it, and its own stay")
    func coordinatorShare() {
        let coordinator = ReductionLayout.coordinator
        var layout = ReductionLayout(parts: 29, members: [7, 3, 5, coordinator])
        #expect(layout.owners == (0..<29).map { [3, 5, 7, coordinator][$0 % 4] })
        let own = layout.parts(of: coordinator)
        #expect(own == Array(stride(from: 3, to: 29, by: 4)))
        let moved = layout.remove(5, giving: [3, 7, coordinator])
        // From the member after 5 in id order: 7, then the coordinator, then 3.
        #expect(moved.map(\.owner) == (0..<moved.count).map { [7, coordinator, 3][$0 % 3] })
        #expect(Set(own).isSubset(of: Set(layout.parts(of: coordinator))))
        #expect(ReductionLayout(parts: 2, members: [1, 2, coordinator]).parts(of: coordinator).isEmpty)
    }

    @Test("parts split evenly over the owners: no owner holds more than its share of the parameters plus a granule a part; parts of 4,096 to 65,536")
    func evenSplit() {
        for parameters in [1, 100, 5_000, 150_000, 1_863_690, 2_000_000, 10_000_003] {
            for owners in [1, 2, 3, 5, 9, 17] {
                let split = PartSplit(parameterCount: parameters, evenlyOver: owners)
                #expect(split.size % 16 == 0 && split.size >= 4096 && split.size <= 65_536)
                #expect(split.reduce(0) { $0 + $1.count } == parameters && split.first?.lowerBound == 0)
                #expect(zip(split, split.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                let layout = ReductionLayout(parts: split.count, members: Array(1...owners))
                let held = (1...owners).map { owner in layout.parts(of: owner).reduce(0) { $0 + split[$1].count } }
                let partsEach = (1...owners).map { layout.parts(of: $0).count }.max()!
                // The even share, counted apart from the split: ⌈P / owners⌉.
                let share = (parameters + owners - 1) / owners
                // Where the share is below the smallest part, one part may hold it all.
                #expect(held.max()! <= max(share, 4096) + 16 * partsEach, "\(parameters) over \(owners): \(held)")
                #expect(split.count >= (parameters + 65_535) / 65_536)
            }
        }
        // mnist-wide over 8 workers and the coordinator: 36 parts, 4 each, where 65,536 would make 29.
        let wide = PartSplit(parameterCount: 1_863_690, evenlyOver: 9)
        #expect(wide.count == 36 && wide.size == 51_776 && PartSplit(parameterCount: 1_863_690).count == 29)
    }

    @Test("an owner adds a part once, when it is its own, the order is in and every named contribution has come, in any order of events")
    func ownerInAnyOrder() {
        let a = Contribution(member: 1, attempt: 1), b = Contribution(member: 2, attempt: 2)
        let order = SumOrder(step: 5, revision: 0, contributions: [b, a], samples: 96)
        enum Event { case arrive(Contribution, Int), order, own(Int) }
        let events: [Event] = [.arrive(a, 0), .arrive(b, 0), .arrive(a, 3), .arrive(b, 3), .order, .own(3)]
        var permutations = 0
        func each(_ rest: [Event], _ done: [Event], _ body: ([Event]) -> Void) {
            if rest.isEmpty { body(done); return }
            for i in rest.indices { each(Array(rest[..<i] + rest[(i + 1)...]), done + [rest[i]], body) }
        }
        each(events, []) { sequence in
            permutations += 1
            var round = OwnerRound(step: 5, owning: [0])
            var sums: [OwnerRound.Action] = []
            for event in sequence {
                switch event {
                case .arrive(let c, let part): sums += round.arrived(c, part: part)
                case .order: sums += round.ordered(order)
                case .own(let part): sums += round.own([part])
                }
            }
            #expect(sums == [0, 3].map { .sum(part: $0, contributions: [a, b], samples: 96) }
                    || sums == [3, 0].map { .sum(part: $0, contributions: [a, b], samples: 96) })
            #expect(round.isDone)
            // The same contribution again (sent after a loss) adds nothing more under the same order.
            #expect(round.arrived(a, part: 0).isEmpty)
        }
        #expect(permutations == 720)
    }

    @Test("a later order revision replaces a lost contributor's result, even when the new attempt came first, and has parts added under the last one added again; an older one is ignored")
    func revisedOrder() {
        let a = Contribution(member: 1, attempt: 1), b = Contribution(member: 2, attempt: 2),
            c = Contribution(member: 3, attempt: 3)
        var round = OwnerRound(step: 1, owning: [0, 1])
        #expect(round.arrived(a, part: 0).isEmpty && round.arrived(a, part: 1).isEmpty)
        #expect(round.arrived(b, part: 1).isEmpty)
        #expect(round.ordered(SumOrder(step: 1, revision: 0, contributions: [a, b], samples: 8))
                == [.sum(part: 1, contributions: [a, b], samples: 8)])
        // b is lost before its part 0 came; c computes its micro-shards again, and c's part comes before the order.
        #expect(round.arrived(c, part: 0).isEmpty)
        #expect(round.ordered(SumOrder(step: 1, revision: 1, contributions: [a, c], samples: 8))
                == [.sum(part: 0, contributions: [a, c], samples: 8)])
        #expect(round.ordered(SumOrder(step: 1, revision: 0, contributions: [a, b], samples: 8)).isEmpty)
        #expect(round.ordered(SumOrder(step: 2, revision: 5, contributions: [a], samples: 8)).isEmpty)
        // Part 1, added under the first order, is added again under the new one once c's part 1 is in.
        #expect(!round.isDone)
        #expect(round.arrived(c, part: 1) == [.sum(part: 1, contributions: [a, c], samples: 8)])
        #expect(round.isDone)
    }

    @Test("a new order revision has every owned part added again, from contributions that came after the part was added")
    func everyPartAgain() {
        let a = Contribution(member: 1, attempt: 1), b = Contribution(member: 2, attempt: 2),
            a2 = Contribution(member: 1, attempt: 3), c = Contribution(member: 3, attempt: 4)
        var round = OwnerRound(step: 2, owning: [0, 1])
        for part in [0, 1] { for x in [a, b] { #expect(round.arrived(x, part: part).isEmpty) } }
        #expect(round.ordered(SumOrder(step: 2, revision: 0, contributions: [a, b], samples: 8))
                == [0, 1].map { .sum(part: $0, contributions: [a, b], samples: 8) })
        // b is lost: every micro-shard is computed again; the new attempts come before the new order, for summed parts.
        for part in [0, 1] { for x in [a2, c] { #expect(round.arrived(x, part: part).isEmpty) } }
        #expect(round.ordered(SumOrder(step: 2, revision: 1, contributions: [a2, c], samples: 8))
                == [0, 1].map { .sum(part: $0, contributions: [a2, c], samples: 8) })
        #expect(round.isDone)
    }

    @Test("a part whose sum was given up (a contribution refuted) waits with what it still holds for an order without the refuted one")
    func reopened() {
        let a = Contribution(member: 1, attempt: 1), b = Contribution(member: 2, attempt: 2),
            c = Contribution(member: 3, attempt: 3)
        var round = OwnerRound(step: 4, owning: [0])
        #expect(round.arrived(a, part: 0).isEmpty && round.arrived(b, part: 0).isEmpty)
        #expect(round.ordered(SumOrder(step: 4, revision: 0, contributions: [a, b], samples: 6))
                == [.sum(part: 0, contributions: [a, b], samples: 6)])
        #expect(round.reopen(1, holding: [a]).isEmpty, "never summed")
        #expect(round.reopen(0, holding: [a]).isEmpty && !round.isDone)
        #expect(round.arrived(c, part: 0).isEmpty, "the order held still names b")
        #expect(round.ordered(SumOrder(step: 4, revision: 1, contributions: [a, c], samples: 6))
                == [.sum(part: 0, contributions: [a, c], samples: 6)])
        #expect(round.isDone)
        // Refuted after the revision came: summed again at once from what is held.
        var late = OwnerRound(step: 4, owning: [0])
        _ = late.arrived(a, part: 0)
        _ = late.arrived(b, part: 0)
        _ = late.arrived(c, part: 0)
        _ = late.ordered(SumOrder(step: 4, revision: 0, contributions: [a, b], samples: 6))
        _ = late.ordered(SumOrder(step: 4, revision: 1, contributions: [a, c], samples: 6))
        #expect(late.reopen(0, holding: [a, c]) == [.sum(part: 0, contributions: [a, c], samples: 6)])
    }

    @Test("the coordinator orders once per cover, checks and applies each part once, only from its owner and for the order in force, and moves every part of a lost owner")
    func coordinatorStep() {
        let a = Contribution(member: 1, attempt: 1), b = Contribution(member: 2, attempt: 2)
        var step = ShardedStep(step: 3, layout: ReductionLayout(parts: 4, members: [1, 2]))
        let first = SumOrder(step: 3, revision: 0, contributions: [a, b], samples: 10)
        #expect(step.covered(by: [b, a], samples: 10) == [.order(first)])
        #expect(step.covered(by: [a, b], samples: 10).isEmpty)
        #expect(step.meanArrived(part: 0, from: 2, revision: 0).isEmpty, "part 0 is member 1's")
        #expect(step.meanArrived(part: 0, from: 1, revision: 1).isEmpty, "no such order yet")
        #expect(step.meanArrived(part: 0, from: 1, revision: 0) == [.check(part: 0)])
        #expect(step.meanArrived(part: 0, from: 1, revision: 0).isEmpty, "being checked")
        #expect(step.passed(part: 0) == [.apply(part: 0)])
        #expect(step.passed(part: 0).isEmpty)
        #expect(step.meanArrived(part: 0, from: 1, revision: 0).isEmpty, "applied")
        #expect(step.meanArrived(part: 1, from: 2, revision: 0) == [.check(part: 1)])
        #expect(step.passed(part: 1) == [.apply(part: 1)])
        #expect(step.meanArrived(part: 9, from: 1, revision: 0).isEmpty)
        #expect(step.meanArrived(part: 2, from: 1, revision: 0) == [.check(part: 2)])
        // Member 1 is lost (its check of part 2 failed, say): parts 0 and 2 move to member 2, part 0 too, though its
        // mean was applied here; part 2's check is void.
        #expect(step.lost(1, remaining: [2]) == [.moved([.init(part: 0, owner: 2), .init(part: 2, owner: 2)])])
        #expect(step.passed(part: 2).isEmpty, "its check is void")
        let second = SumOrder(step: 3, revision: 1, contributions: [Contribution(member: 2, attempt: 3)], samples: 10)
        #expect(step.covered(by: second.contributions, samples: 10) == [.order(second)])
        #expect(step.meanArrived(part: 0, from: 2, revision: 1).isEmpty, "applied already")
        #expect(step.meanArrived(part: 2, from: 1, revision: 1).isEmpty, "no longer its part")
        #expect(step.meanArrived(part: 2, from: 2, revision: 0).isEmpty, "for the last order")
        #expect(step.meanArrived(part: 2, from: 2, revision: 1) == [.check(part: 2)])
        #expect(step.meanArrived(part: 3, from: 2, revision: 1) == [.check(part: 3)])
        #expect(step.passed(part: 2) == [.apply(part: 2)])
        #expect(step.passed(part: 3) == [.apply(part: 3), .done])
        #expect(step.isDone)
        #expect(step.lost(2, remaining: [2]).isEmpty, "no one left to take its parts")
    }

    @Test("a part checked but not yet applied under an order since replaced is awaited again, for the new order only")
    func reopenedAfterNewOrder() {
        let a = Contribution(member: 1, attempt: 1), b = Contribution(member: 2, attempt: 2)
        var step = ShardedStep(step: 0, layout: ReductionLayout(parts: 2, members: [1, 2]))
        #expect(step.covered(by: [a, b], samples: 4).count == 1)
        #expect(step.meanArrived(part: 0, from: 1, revision: 0) == [.check(part: 0)])
        #expect(step.passed(part: 0) == [.apply(part: 0)])
        // b's counts are refused before the step's counts were all in: the step's micro-shards are computed again
        // under new attempts, which a new order names.
        let c = Contribution(member: 1, attempt: 3), d = Contribution(member: 2, attempt: 4)
        #expect(step.covered(by: [c, d], samples: 4) == [.order(SumOrder(step: 0, revision: 1, contributions: [c, d], samples: 4))])
        step.reopen([0])
        #expect(step.meanArrived(part: 0, from: 1, revision: 0).isEmpty, "the replaced order's mean")
        #expect(step.meanArrived(part: 0, from: 1, revision: 1) == [.check(part: 0)])
        #expect(step.passed(part: 0) == [.apply(part: 0)])
        #expect(step.meanArrived(part: 1, from: 2, revision: 1) == [.check(part: 1)])
        #expect(step.passed(part: 1) == [.apply(part: 1), .done])
    }
}

/// The three together on real exact sums: workers' results packed part by part to owners, orders from the
/// coordinator, an owner and contributor lost at a random moment, events in a random order. Every part's mean must
/// have the bits of the in-process sum of all micro-shards, however the parts were placed and whatever was lost.
@Suite struct ShardedSumTests {
    /// Per micro-shard, a gradient over `count` parameters spread over many magnitudes (so limbs and windows vary).
    static func gradients(_ random: inout Xoshiro, microShards: Int, count: Int) -> [[Float]] {
        (0..<microShards).map { _ in
            (0..<count).map { _ in Float(random.nextGaussian()) * Float(sign: .plus, exponent: -Int(random.next() % 30), significand: 1) }
        }
    }

    /// The exact sum of micro-shards `shards`, as a worker's result.
    static func sum(_ gradients: [[Float]], _ shards: Range<Int>) -> GradientSum {
        let count = gradients[0].count, sum = GradientSum(count: count, reduction: .exact)
        for shard in shards {
            let buffer = Buffer<Float>(gradients[shard])
            [UnsafePointer(buffer.pointer)].withUnsafeBufferPointer { p in
                [SliceStatistics(samples: 16)].withUnsafeBufferPointer { sum.addExact(p, $0, final: false) }
            }
        }
        return sum
    }

    /// What an owner does with `.sum`: each contribution's part, packed as it travels and unpacked, added, scaled.
    static func mean(of part: Range<Int>, _ contributions: [GradientSum], samples: Int) -> [Float] {
        let total = GradientSum(count: part.count, reduction: .exact)
        for contribution in contributions {
            let raw = contribution.valueBytes
            var packed = [UInt8](repeating: 0, count: cexact_pack_bound(part.count))
            let length = cexact_pack_range(raw.baseAddress!, contribution.count, part.lowerBound, part.upperBound, &packed)
            var unpacked = [UInt8](repeating: 0, count: part.count * Int(CEXACT_BYTES_PER_PARAMETER))
            #expect(cexact_unpack(packed, length, part.count, &unpacked) == 1)
            unpacked.withUnsafeBytes {
                total.add(bytes: $0, samples: 0, correct: 0, lossWords: LossWords(high: 0, low: 0, window: 0), overflowed: false)
            }
        }
        total.addStatistics(samples: samples, correct: 0, lossWords: LossWords(high: 0, low: 0, window: 0), overflowed: false)
        var mean = [Float](repeating: 0, count: part.count)
        _ = mean.withUnsafeMutableBufferPointer { total.writeMean(into: $0.baseAddress!) }
        return mean
    }

    @Test("any placement, any order of events, an owner and a contributor lost: the in-process sum's bits", arguments: [2, 3, 5])
    func sameBits(workers: Int) {
        var random = Xoshiro(seed: UInt64(40 + workers))
        let count = 1000, partSize = 96, microShards = 12, samples = microShards * 16
        let parts = stride(from: 0, to: count, by: partSize).map { $0 ..< min($0 + partSize, count) }
        let gradients = Self.gradients(&random, microShards: microShards, count: count)
        let reference = Self.mean(of: 0..<count, [Self.sum(gradients, 0..<microShards)], samples: samples)
        for trial in 0..<20 {
            let members = Array(1...workers)
            let runs = Sharding.split(microShards, speeds: members.map { _ in Double(random.next() % 4 + 1) })
            var results: [Contribution: GradientSum] = [:], covering: [Contribution: Range<Int>] = [:]
            for (member, run) in zip(members, runs) {
                let c = Contribution(member: member, attempt: UInt64(member))
                (results[c], covering[c]) = (Self.sum(gradients, run), run)
            }
            var coordinator = ShardedStep(step: 1, layout: ReductionLayout(parts: parts.count, members: members))
            var owners = Dictionary(uniqueKeysWithValues: members.map {
                ($0, OwnerRound(step: 1, owning: coordinator.layout.parts(of: $0)))
            })
            enum Event {
                case part(Contribution, Int, to: Int), order(SumOrder), mean(Int, from: Int, to: Int?, revision: Int)
                case passed(Int, revision: Int)
            }
            var queue: [Event] = results.keys.flatMap { c in parts.indices.map { Event.part(c, $0, to: coordinator.layout.owners[$0]) } }
            if case .order(let o)? = coordinator.covered(by: Array(covering.keys), samples: samples).first { queue.append(.order(o)) }
            var means: [Int: [Float]] = [:], alive = Set(members)
            // The parts whose means each worker has applied.
            var applied: [Int: Set<Int>] = [:]
            // The values that reached each owner, by part: what it can add.
            var held: [Int: [Int: Set<Contribution>]] = [:]
            // One member, owner and contributor both, is lost once at a random moment (with two or more workers).
            var lossAt = workers > 1 ? 1 + Int(random.next() % UInt64(queue.count)) : -1, losses = 0
            var handled = 0
            while !queue.isEmpty {
                let event = queue.remove(at: Int(random.next() % UInt64(queue.count)))
                handled += 1
                if handled == lossAt, let lost = alive.sorted().dropFirst(trial % workers).first ?? alive.first {
                    lossAt = -1
                    losses += 1
                    // What it had not yet sent is lost with it: some workers may have its means, others not.
                    queue.removeAll { if case .mean(_, let from, _, _) = $0 { from == lost } else { false } }
                    alive.remove(lost)
                    owners[lost] = nil
                    // Its micro-shards computed again by another member, under a new attempt; a new order follows.
                    for (c, run) in covering where c.member == lost {
                        let again = Contribution(member: alive.min()!, attempt: 100 + UInt64(lost))
                        (results[again], covering[again]) = (Self.sum(gradients, run), run)
                        covering[c] = nil  // its values stay where they went: an owner may add them under the first order
                        queue += parts.indices.map { Event.part(again, $0, to: coordinator.layout.owners[$0]) }
                    }
                    for action in coordinator.lost(lost, remaining: Array(alive)) {
                        guard case .moved(let moved) = action else { continue }
                        for m in moved {
                            _ = owners[m.owner]!.own([m.part])  // its contributions are not all in yet: nothing to sum
                            queue += covering.keys.map { Event.part($0, m.part, to: m.owner) }
                        }
                    }
                    if case .order(let o)? = coordinator.covered(by: Array(covering.keys), samples: samples).first { queue.append(.order(o)) }
                }
                var actions: [(Int, OwnerRound.Action)] = []
                switch event {
                case .part(let c, let part, let owner):
                    if owners[owner] != nil {
                        held[owner, default: [:]][part, default: []].insert(c)
                        actions = owners[owner]!.arrived(c, part: part).map { (owner, $0) }
                    }
                case .order(let o):
                    for owner in owners.keys.sorted() { actions += owners[owner]!.ordered(o).map { (owner, $0) } }
                case .mean(let part, let owner, nil, let revision):
                    // Checked (the spot check's answers come in any order with the rest), then applied.
                    if coordinator.meanArrived(part: part, from: owner, revision: revision) == [.check(part: part)] {
                        queue.append(.passed(part, revision: revision))
                    }
                case .passed(let part, let revision):
                    // The shell's checks are of one order revision: a later order voids them.
                    if coordinator.order?.revision == revision { _ = coordinator.passed(part: part) }
                case .mean(let part, _, let worker?, _):
                    applied[worker, default: []].insert(part)
                }
                for (owner, action) in actions {
                    guard case .sum(let part, let named, let samplesNamed) = action else { continue }
                    let missing = Set(named).subtracting(held[owner]?[part] ?? [])
                    #expect(missing.isEmpty, "w\(owner) added part \(part) without \(missing.sorted())")
                    guard missing.isEmpty else { continue }
                    let mean = Self.mean(of: parts[part], named.map { results[$0]! }, samples: samplesNamed)
                    #expect(means[part].map { $0 == mean } ?? true, "part \(part) summed twice to different bits")
                    #expect(mean.map(\.bitPattern) == reference[parts[part]].map(\.bitPattern),
                            "part \(part) by w\(owner) from \(named), \(workers) workers, trial \(trial)")
                    means[part] = mean
                    let revision = owners[owner]!.order!.revision
                    queue += [.mean(part, from: owner, to: nil, revision: revision)]
                        + members.map { .mean(part, from: owner, to: $0, revision: revision) }
                }
            }
            #expect(coordinator.isDone, "\(workers) workers, trial \(trial): parts \(coordinator.applied.sorted()) applied")
            #expect(losses == (workers > 1 ? 1 : 0))
            for worker in alive { #expect(applied[worker] == Set(parts.indices), "w\(worker) waits for parts, trial \(trial)") }
        }
    }
}
