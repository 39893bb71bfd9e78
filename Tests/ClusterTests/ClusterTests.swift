@testable import Cluster
import Engine
import Jobs
import Platform
import Testing
import Wire

struct ShardingTests {
    @Test("ranges cover every micro-shard once, in order, in proportion to speed")
    func proportional() {
        let ranges = Sharding.split(10, speeds: [1, 3])
        #expect(ranges == [0..<3, 3..<10])
        #expect(Sharding.split(8, speeds: [1, 1, 1]) == [0..<3, 3..<6, 6..<8])
        #expect(Sharding.split(2, speeds: [1, 5, 2]).map(\.count) == [0, 1, 1])
        #expect(Sharding.split(100, speeds: [1, 1000]).first?.count == 1, "a slow worker keeps one, so it is re-measured")
        for shards in [1, 7, 64] {
            for speeds in [[1.0], [2, 1], [1, 2, 3, 4, 5], [0, .nan, 3]] {
                let ranges = Sharding.split(shards, speeds: speeds)
                #expect(ranges.count == speeds.count)
                #expect(ranges.reduce(0) { $0 + $1.count } == shards)
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            }
        }
    }
}

struct JobAnnouncementTests {
    @Test("a job survives its canonical text exactly; the announcement carries the data's fingerprint")
    func roundTrip() throws {
        var job = try Job.parse("""
            model: {layers: [{units: 7, activation: leaky_relu, negative_slope: 0.3}, {units: 3, activation: softmax}]}
            loss: cross_entropy
            optimizer: {name: adamw, lr: 0.0003, betas: [0.85, 0.995], weight_decay: 0.1, amsgrad: true}
            schedule: {name: cosine, t_max: 17, eta_min: 0.0001, warmup: 3, warmup_start_factor: 0.2, unit: step}
            batch_size: 33
            steps: 41
            seed: 12
            shuffle: false
            drop_last: true
            micro_shard: 5
            reduction: fast
            validation_split: 0.15
            data: {builtin: blobs, samples: 90, classes: 3, features: 4, noise: 0.7, seed: 3}
            """, file: "j.yaml", folder: "")
        job.model.inputs = 4
        let announcement = JobAnnouncement(job: job, samples: 90, fingerprint: String(repeating: "ab", count: 32),
                                           blas: "SkylakeX", oneDNN: "avx2", partSize: 51_776)
        let back = try JobAnnouncement(bytes: announcement.bytes)
        #expect(back == announcement)
        // A part size off the 16-parameter granule, or beyond 65,536, is refused before any use.
        for bad in ["parts=51777", "parts=65552", "parts=4080", "parts=0", "parts=x"] {
            let text = String(decoding: announcement.bytes, as: UTF8.self).replacingOccurrences(of: "parts=51776", with: bad)
            #expect(throws: ClusterError.self) { try JobAnnouncement(bytes: Array(text.utf8)) }
        }
    }

    @Test("SHA-256 of known vectors")
    func sha256() {
        var empty = SHA256()
        #expect(empty.hexDigest() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var abc = SHA256()
        abc.update(Array("abc".utf8))
        #expect(abc.hexDigest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var long = SHA256()
        for _ in 0..<1000 { long.update(Array("a".utf8)) }
        long.update(Array(repeating: UInt8(ascii: "b"), count: 1000))
        var once = SHA256()
        once.update(Array(repeating: UInt8(ascii: "a"), count: 1000) + Array(repeating: UInt8(ascii: "b"), count: 1000))
        #expect(long.hexDigest() == once.hexDigest(), "streaming in pieces hashes the same")
    }
}

/// Hellos cannot grow the coordinator's member table without bound.
@Suite struct MemberTableTests {
    @Test("past its capacity the table reuses the oldest lost place not in use, and refuses when there is none")
    func bounded() {
        var table = MemberTable()
        let now = ContinuousClock.now
        for peer in 0..<MemberTable.capacity {
            #expect(table.admit(identity: [UInt8(peer & 255), UInt8(peer >> 8)], fields: [:], now: now) == peer)
        }
        #expect(table.admit(identity: [1, 2, 3], fields: [:], now: now) == nil, "full of live members")
        table[7].state = .lost
        table[9].state = .lost
        #expect(table.admit(identity: [1, 2, 3], fields: [:], now: now, inUse: { $0 == 7 }) == 9)
        #expect(table[9].identity == [1, 2, 3] && table[9].id == UInt32(MemberTable.capacity + 1))
        #expect(table.members.count == MemberTable.capacity)
        #expect(table.admit(identity: [4, 5, 6], fields: ["name": "\u{1b}[31mred\u{7}"], now: now) == 7)
        #expect(table[7].name == "[31mred", "control characters are dropped from names")
        // A worker whose old entry is lost and whose hello took a lower place is found at its new place.
        table[11].state = .lost
        table[4000].state = .lost
        let old = table[4000].identity
        #expect(table.admit(identity: old, fields: [:], now: now) == 11)
        #expect(table.index(of: old) == 11, "the newest entry for an identity, wherever it sits")
    }

    @Test("a place lost longer than the expiry goes to a newcomer before the table grows; one lost more recently does not")
    func expiry() {
        var table = MemberTable()
        table.expiry = .seconds(60)
        var now = ContinuousClock.now
        for peer in 0..<3 { _ = table.admit(identity: [UInt8(peer)], fields: [:], now: now) }
        table[1].lostAt = now
        table[1].state = .lost
        now += .seconds(30)
        table[2].lostAt = now
        table[2].state = .lost
        #expect(table.admit(identity: [9], fields: [:], now: now + .seconds(29)) == 3, "none expired yet: a new place")
        #expect(table.admit(identity: [10], fields: [:], now: now + .seconds(31)) == 1, "the oldest loss expired")
        #expect(table.index(of: [1]) == nil, "the expired member's identity no longer finds it")
        #expect(table.admit(identity: [11], fields: [:], now: now + .seconds(61)) == 2)
        #expect(table.liveInOrder == [0, 1, 2, 3] && table.members.count == 4)
    }

    @Test("an identity flood: 20,000 hellos, each lost, leave a table no larger than the live members and a minute's losses")
    func flood() {
        var table = MemberTable()
        table.expiry = .seconds(1)
        var now = ContinuousClock.now
        for peer in 0..<20_000 {
            let place = table.admit(identity: [UInt8(peer & 255), UInt8(peer >> 8 & 255), 7], fields: [:], now: now)!
            table[place].lostAt = now
            table[place].state = .lost
            now += .milliseconds(10)
        }
        #expect(table.members.count <= 101, "\(table.members.count) places for at most 100 losses a second")
        #expect(table.liveInOrder.isEmpty)
    }
}

struct ResultSlotTests {
    @Test("a member's result slots are given once per step: two assignments get both, a third gets none, a new step starts over")
    func slotsOncePerStep() {
        var round = StepRound(step: 3, epoch: 0, batchIndex: 0, microShards: 6, batchSamples: 6, microShardSize: 1)
        let now = ContinuousClock.now
        // Member 0 takes everything three times over (as when the others are lost one after another).
        var slots: [Int?] = []
        for _ in 0..<3 {
            for (_, attempt, _) in round.distribute(over: [0, 1], speeds: [1, 1], now: now) {
                if round.assignment(attempt, of: 0) != nil { slots.append(round.claimSlot(for: attempt)) }
                round.release(1)
            }
        }
        #expect(slots == [0, 1, nil])
        var next = StepRound(step: 4, epoch: 0, batchIndex: 0, microShards: 2, batchSamples: 2, microShardSize: 1)
        let attempts = next.distribute(over: [0, 1], speeds: [1, 1], now: now).map(\.attempt)
        #expect(attempts.map { next.claimSlot(for: $0) } == [0, 0], "each member's first slot, in a new step")
        #expect(next.assignment(attempts[0], of: 0)?.resultSlot == 0)
    }
}

/// A worker's reading of its connection's handshake events (the events libzmq's monitor gives).
struct HandshakeVerdictTests {
    @Test("three connections closed during the handshake end the worker with the likely cause, with keys or without")
    func closedDuringHandshake() throws {
        // Without keys: a CurveZMQ coordinator closes the connection before the worker may read why.
        var plain = HandshakeVerdict(endpoint: "tcp://box:5555", keys: nil)
        #expect(plain.judge([.disconnected(descriptor: 7), .disconnected(descriptor: 7)]) == nil)
        let plainVerdict = plain.judge([.disconnected(descriptor: 7)])
        let refusal = try #require(plainVerdict)
        #expect(refusal.contains("tcp://box:5555") && refusal.contains("requires CurveZMQ keys")
            && refusal.contains("--key and --coordinator-key"), "\(refusal)")
        // With keys: the wrong coordinator key.
        let pair = try CurveKeyPair.generate()
        var keyed = HandshakeVerdict(endpoint: "tcp://box:5555", keys: WorkerKeys(keyPair: pair,
                                                                               coordinatorKey: pair.publicKey))
        let keyedVerdict = keyed.judge(Array(repeating: HandshakeMonitor.Event.disconnected(descriptor: 7), count: 3))
        let wrongKey = try #require(keyedVerdict)
        #expect(wrongKey.contains("--coordinator-key") && wrongKey.contains("not its public key"), "\(wrongKey)")
        // A connection that completed its handshake and dropped later (a network blip) is no refusal.
        var blips = HandshakeVerdict(endpoint: "tcp://box:5555", keys: nil)
        for _ in 0..<5 { #expect(blips.judge([.succeeded, .disconnected(descriptor: 7)]) == nil) }
    }
}
