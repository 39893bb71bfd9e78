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
                            owners: [1, 4, 1, 4])
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
                                               optimizerStep: 7, samples: 40),
                      try values.withUnsafeBytes { try Message(copying: $0) }]
        guard case .meanPart(let mean) = try Codec.decode(frames, limits: Self.limits).payload else {
            Issue.record("not a mean part")
            return
        }
        #expect(mean.range == 196_608..<200_000 && mean.learningRate == 0.25 && mean.optimizerStep == 7 && mean.samples == 40)
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
                                               optimizerStep: 7, samples: 40),
                      try [Float](repeating: 0, count: 65_536).withUnsafeBytes { try Message(copying: $0) }]
        #expect(throws: WireError.self) { try Codec.decode(frames, limits: Self.limits) }
    }
}
