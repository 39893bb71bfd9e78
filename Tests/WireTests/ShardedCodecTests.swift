import CExactSum
import Testing
@testable import Wire

/// The sharded layout's messages: what is written reads back, and what no coordinator or owner would send is refused
/// with the field named, before anything of it is used.
struct ShardedCodecTests {
    static let limits = Limits(parameterCount: 200_000, job: 9)  // 4 parts
    static let key = try! CurveKeyPair.generate().publicKey

    @Test("a peers list, an order and a mean part read back as written")
    func roundTrip() throws {
        let list = PeerList(peers: [.init(worker: 1, endpoint: "tcp://10.0.0.1:5000", key: Self.key),
                                    .init(worker: 4, endpoint: "tcp://10.0.0.2:6000", key: nil)],
                            owners: [1, 4, PeerList.coordinator, 4])
        guard case .peers(let back) = try Codec.decode(Codec.peers(list, job: 9, step: 3), limits: Self.limits).payload
        else { Issue.record("not a peers message"); return }
        #expect(back == list)
        let order = OrderedSum(revision: 2, samples: 40, learningRate: 0.25, optimizerStep: 7, contributions: [
            .init(worker: 4, firstMicroShard: 0, microShards: 3, attempt: 11),
            .init(worker: 1, firstMicroShard: 3, microShards: 2, attempt: 12)])
        guard case .sumOrder(let sum) = try Codec.decode(Codec.sumOrder(order, job: 9, step: 3), limits: Self.limits).payload
        else { Issue.record("not an order"); return }
        #expect(sum == order)
        let values = [Float](repeating: 0.5, count: 200_000 - 196_608)
        let frames = [try Codec.meanPartHeader(job: 9, step: 3, worker: 4, part: 196_608..<200_000, learningRate: 0.25,
                                               optimizerStep: 7, samples: 40, revision: 2),
                      try values.withUnsafeBytes { try Message(copying: $0) }]
        guard case .meanPart(let mean) = try Codec.decode(frames, limits: Self.limits).payload else {
            Issue.record("not a mean part")
            return
        }
        #expect(mean.range == 196_608..<200_000 && mean.learningRate == 0.25 && mean.optimizerStep == 7 && mean.samples == 40
                && mean.revision == 2)
        // Packed, as across hosts: the same values, and the header says so.
        let ramp = (0..<values.count).map { Float($0) * -0.001 }
        let packedFrames = [try Codec.meanPartHeader(job: 9, step: 3, worker: 4, part: 196_608..<200_000, learningRate: 0.25,
                                                     optimizerStep: 7, samples: 40, revision: 2, packed: true),
                            try ramp.withUnsafeBufferPointer {
                                var packed = [UInt8](repeating: 0, count: cexact_pack_floats_bound(ramp.count))
                                let length = cexact_pack_floats($0.baseAddress!, ramp.count, &packed)
                                return try Message(copying: Array(packed[..<length]))
                            }]
        #expect(packedFrames[1].count < 4 * ramp.count)
        guard case .meanPart(let packedMean) = try Codec.decode(packedFrames, limits: Self.limits).payload else {
            Issue.record("not a packed mean part")
            return
        }
        var unpacked = [Float](repeating: 1, count: ramp.count)
        unpacked.withUnsafeMutableBufferPointer { packedMean.values.copy(into: $0.baseAddress!) }
        #expect(unpacked.map { $0.bitPattern } == ramp.map { $0.bitPattern } && packedMean.revision == 2)
        // Floats under a header that says packed are not a packed part (their bytes are no packed form).
        #expect(throws: WireError.self) {
            try Codec.decode([packedFrames[0], frames[1]], limits: Self.limits)
        }
    }

    @Test("a spot check and its answers (Floats, limbs, not held) read back as written")
    func spotCheckRoundTrip() throws {
        let check = SpotCheck(attempt: 12, revision: 1, part: 3, offsets: [0, 7, 3_391])
        guard case .spotCheck(let back) = try Codec.decode(Codec.spotCheck(check, job: 9, step: 3), limits: Self.limits).payload
        else { Issue.record("not a spot check"); return }
        #expect(back == check)
        var limbs = [UInt8](repeating: 0, count: 17 * 3)
        for i in 0..<48 { limbs[i] = UInt8(i * 7 % 251) }
        limbs[48...] = [0xFD, 0, 2]  // windows -3, 0 and 2
        for values in [SpotValues.Values.floats(arrays: 2, [1, -2, 3, 4.5, .ulpOfOne, 6]), .limbs(limbs), .notHeld] {
            let answer = SpotValues(attempt: 12, revision: 1, part: 3, count: 3, values: values)
            guard case .spotValues(let read) = try Codec.decode(Codec.spotValues(answer, job: 9, step: 3, worker: 4),
                                                                limits: Self.limits).payload
            else { Issue.record("not spot values"); return }
            #expect(read.attempt == 12 && read.revision == 1 && read.part == 3 && read.count == 3)
            switch (read.values, values) {
            case (.floats(let a, let x), .floats(let b, let y)): #expect(a == b && x == y)
            case (.limbs(let x), .limbs(let y)): #expect(x == y)
            case (.notHeld, .notHeld): break
            default: Issue.record("\(read.values) read back as another form")
            }
        }
    }

    @Test("a spot check beyond its part, out of order or of no parameters, and answers of the wrong size or windows, are refused")
    func badSpotChecks() throws {
        func check(part: UInt64, _ offsets: [UInt16]) throws -> [Message] {
            var bytes: [UInt8] = []
            for o in offsets { withUnsafeBytes(of: o.littleEndian) { bytes += $0 } }
            let header = Codec.header(SpotCheckFields(attempt: 1, revision: 0, part: Int(part), count: max(1, offsets.count)),
                                      job: 9, step: 3)
            return [try Message(copying: header.encoded()), try Message(copying: bytes)]
        }
        // The last part has 200,000 − 196,608 = 3,392 parameters.
        for (part, offsets) in [(3, [3_392]), (4, [0]), (0, [5, 5]), (0, [9, 2]), (0, [])] as [(UInt64, [UInt16])] {
            #expect(throws: WireError.self, "part \(part), offsets \(offsets)") {
                try Codec.decode(check(part: part, offsets), limits: Self.limits)
            }
        }
        #expect(throws: Never.self) { try Codec.decode(check(part: 3, [3_391]), limits: Self.limits) }
        func answer(_ values: SpotValues.Values, count: Int) throws -> [Message] {
            try Codec.spotValues(SpotValues(attempt: 1, revision: 0, part: 0, count: count, values: values), job: 9, step: 3,
                                 worker: 2)
        }
        var limbs = [UInt8](repeating: 0, count: 17 * 2)
        limbs[33] = 3  // window 3: beyond any sum of Floats
        for frames in [try answer(.limbs(limbs), count: 2), try answer(.floats(arrays: 1, [1, 2, 3]), count: 2),
                       try answer(.limbs([UInt8](repeating: 0, count: 17)), count: 2),
                       try answer(.floats(arrays: 1, [1]), count: 65)] {
            #expect(throws: WireError.self) { try Codec.decode(frames, limits: Self.limits) }
        }
    }

    @Test("a list with a host name, a port out of range, an owner that is no peer, or too few owners is refused",
          arguments: ["peer 1 tcp://example.org:5000\nowners 1 1 1 1", "peer 1 tcp://10.0.0.1:70000\nowners 1 1 1 1",
                      "peer 1 tcp://10.0.0.1:5000\nowners 1 2 1 1", "peer 1 tcp://10.0.0.1:5000\nowners 1 1 1",
                      "peer 1 tcp://10.0.0.1:5000 notakey\nowners 1 1 1 1", "peer 0 tcp://10.0.0.1:5000\nowners 0 0 0 0"])
    func badLists(text: String) throws {
        let header = Codec.header(PeersFields(peerCount: 1, partCount: 4), job: 9, step: 3)
        let frames = [try Message(copying: header.encoded()), try Message(copying: Array(text.utf8))]
        #expect(throws: WireError.self) { try Codec.decode(frames, limits: Self.limits) }
    }

    @Test("an order whose contributions are out of micro-shard order, or a mean with a learning rate of NaN, is refused")
    func badOrders() throws {
        let order = OrderedSum(revision: 0, samples: 40, learningRate: 0.25, optimizerStep: 7, contributions: [
            .init(worker: 4, firstMicroShard: 3, microShards: 3, attempt: 11),
            .init(worker: 1, firstMicroShard: 0, microShards: 2, attempt: 12)])
        #expect(throws: WireError.self) { try Codec.decode(Codec.sumOrder(order, job: 9, step: 3), limits: Self.limits) }
        let frames = [try Codec.meanPartHeader(job: 9, step: 3, worker: 4, part: 0..<65_536, learningRate: .nan,
                                               optimizerStep: 7, samples: 40, revision: 0),
                      try [Float](repeating: 0, count: 65_536).withUnsafeBytes { try Message(copying: $0) }]
        #expect(throws: WireError.self) { try Codec.decode(frames, limits: Self.limits) }
        // A form other than Floats (0) or packed (1) in the count word's high half.
        let formTwo = [try Message(copying: Header(type: .meanPart, job: 9, step: 3, frames: 1,
                                                   fields: [0, 65_536 | 2 << 32, UInt64(Float(0.25).bitPattern), 7, 40, 0])
                                                .encoded()), frames[1]]
        #expect { try Codec.decode(formTwo, limits: Self.limits) } throws: {
            ($0 as? WireError)?.description.contains("form 2 (0 Floats, 1 packed)") ?? false
        }
    }
}
