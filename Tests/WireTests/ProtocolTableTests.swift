import Foundation
import Testing
@testable import Wire

/// The table of messages in docs/distributed.md against the types that write and check each header.
struct ProtocolTableTests {
    static let table: [String: [String]] = {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/distributed.md")
        let text = (try? String(contentsOf: docs, encoding: .utf8)) ?? ""
        var rows: [String: [String]] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 3 else { continue }
            let fields = cells[2] == "none" ? [] : cells[2].components(separatedBy: ", ")
            rows[cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))] = fields
        }
        return rows
    }()

    @Test("every message type has a row, and its header fields are those its HeaderFields type writes, in order")
    func rows() {
        #expect(Set(Self.table.keys) == Set(MessageType.allCases.map { "\($0)" }))
        for type in MessageType.allCases {
            #expect(Self.table["\(type)"] == type.fieldNames, "\(type)")
            #expect(type.fieldNames.count <= 6, "a header has six fields")
        }
    }

    @Test("each type's fields read back as written")
    func roundTrip() throws {
        let region = RegionOffer(pid: 77, descriptor: 9, token: 0xABCD)
        let cases: [any HeaderFields] = [
            HelloFields(cores: 8, pid: 4242, previousWorker: 3),
            JobFields(parameterCount: 1000, maximumMicroShards: 64, exact: true, heartbeat: .milliseconds(250),
                      weightsRegion: region),
            WeightsFields(parameterCount: 1000, form: .fromParts),
            AssignmentFields(epoch: 2, batch: 9, attempt: 31, resultSlot: 1, inParts: false),
            AssignmentFields(epoch: 2, batch: 9, attempt: 31, resultSlot: nil, inParts: true, packsFloats: true),
            GradientFields(samples: 64, correct: 60, lossHigh: -5, lossLow: 7, lossWindow: -2, exact: true,
                           overflowed: true, attempt: 4, regionSlot: 1, packed: false, floatShards: 3, inParts: false),
            ReadyFields(hasData: true, region: region, readsWeightsRegion: true, products: 0xF00D),
            DataFields(samples: 100, featureWidth: 3, targetWidth: 1),
            ShutdownFields(disposition: .rejoin),
            WeightsPartFields(part: 65_536..<70_000),
            GradientPartFields(attempt: 5, array: 0, arrays: 1, part: 0..<65_536, form: .packedLimbsDiverged),
            WeightsFields(parameterCount: 1000, form: .withState, stateBuffers: 2, optimizerSteps: 41,
                          replicaKey: 0x1234_5678_9ABC_DEF0),
            WeightsFields(parameterCount: 1000, form: .fromMeans, replicaKey: 1),
            PeersFields(peerCount: 3, partCount: 4),
            SumOrderFields(revision: 1, samples: 48, contributions: 3, learningRate: 0.001, optimizerStep: 17, packsMeans: true),
            MeanPartFields(part: 65_536..<131_072, learningRate: 0.5, optimizerStep: 3, samples: 48, revision: 2, packed: true),
            GradientPartFields(attempt: 5, array: 1, arrays: 2, part: 0..<65_536, form: .packedFloats),
            SpotCheckFields(attempt: 9, revision: 1, part: 3, count: 32),
            SpotValuesFields(SpotValues(attempt: 9, revision: 1, part: 3, count: 2, values: .floats(arrays: 2, [1, 2, 3, 4]))),
            SpotValuesFields(SpotValues(attempt: 9, revision: 1, part: 3, count: 2, values: .notHeld)),
        ]
        for fields in cases {
            let words = fields.words + Array(repeating: 0, count: 6 - fields.words.count)
            let back = try type(of: fields).init(checking: words)
            #expect(back.words == fields.words, "\(type(of: fields))")
        }
    }
}
