import Engine
import Testing
@testable import Wire

/// Seeded fuzzing of the decoder: random, truncated, bit-flipped, re-framed and oversized messages must each give
/// a value or a `WireError` — never a trap, never an out-of-bounds read (run under AddressSanitizer once).
struct FuzzTests {
    static let limits = Limits(parameterCount: 64, job: 1)

    /// Valid messages of every type, as raw frames.
    static func templates() throws -> [[[UInt8]]] {
        let floats = [UInt8](repeating: 0x3F, count: 4 * 64), limbs = [UInt8](repeating: 1, count: GradientFrame.exactBytesPerParameter * 64)
        return try [
            Codec.hello(fields: ["build": "b", "host": "h"], cores: 2, pid: 1).map(\.bytes),
            Codec.job(Array("job".utf8), job: 1, worker: 1, parameterCount: 64, maximumMicroShards: 8, exact: true, heartbeat: .seconds(1)).map(\.bytes),
            [Codec.weightsHeader(job: 1, step: 2, parameterCount: 64).bytes, floats],
            Codec.assignment(job: 1, step: 2, worker: 1, epoch: 0, batch: 0, ranges: [0..<2, 4..<8]).map(\.bytes),
            [Codec.gradientHeader(job: 1, step: 2, worker: 1, samples: 8, correct: 1, lossHigh: 3, lossLow: 4,
                                  exact: true, overflowed: false, attempt: 1).bytes, limbs],
            [Codec.gradientHeader(job: 1, step: 2, worker: 1, samples: 8, correct: 1, lossHigh: 0, lossLow: 0,
                                  exact: false, overflowed: false, attempt: 1).bytes, floats],
            Codec.heartbeat(job: 1, step: 2, worker: 1).map(\.bytes),
            Codec.error("e", job: 1, step: 2, worker: 1).map(\.bytes),
            Codec.shutdown("s", job: 1).map(\.bytes),
        ]
    }

    @Test("100,000 hostile messages through the decoder")
    func fuzzDecoder() throws {
        let templates = try Self.templates()
        for template in templates {  // the templates themselves are valid
            _ = try Codec.decode(template.map { try Message(copying: $0) }, limits: Self.limits)
        }
        var random = Xoshiro(seed: 20261129)
        var accepted = 0, refused = 0
        for _ in 0..<100_000 {
            var frames = templates[random.index(templates.count)]
            switch random.index(7) {
            case 0:  // random bytes in every frame
                frames = frames.map { random.bytes(random.index($0.count + 8)) }
            case 1:  // truncate one frame
                let i = random.index(frames.count)
                frames[i] = Array(frames[i].prefix(random.index(frames[i].count)))
            case 2, 3:  // flip bits
                for _ in 0...random.index(8) {
                    let i = random.index(frames.count)
                    guard !frames[i].isEmpty else { continue }
                    frames[i][random.index(frames[i].count)] ^= UInt8(1) << UInt8(random.index(8))
                }
            case 4:  // add or drop frames
                if random.index(2) == 0 || frames.count == 1 { frames.append(random.bytes(random.index(64))) } else { frames.removeLast() }
            case 5:  // oversize a payload
                if frames.count > 1 { frames[1] += random.bytes(1 + random.index(5000)) }
            default:  // random header fields (lengths and counts claiming anything)
                for offset in stride(from: 8, to: 80, by: 8) where random.index(3) == 0 {
                    let value = random.next()
                    withUnsafeBytes(of: value) { frames[0].replaceSubrange(offset ..< min(offset + 8, frames[0].count), with: $0.prefix(max(0, min(8, frames[0].count - offset)))) }
                }
            }
            do {
                let envelope = try Codec.decode(frames.map { try Message(copying: $0) }, limits: Self.limits)
                accepted += 1
                // Whatever is accepted is consistent with the limits.
                switch envelope.payload {
                case .weights(let w): #expect(w.count == 64 && w.message.count == 256)
                case .gradient(let g): #expect(g.message.count == (g.exact ? GradientFrame.exactBytesPerParameter * 64 : 256))
                case .assignment(_, _, _, let ranges, _, _, _, _): #expect(ranges.count <= Self.limits.maximumRanges)
                default: break
                }
            } catch let error as WireError {
                _ = error.description
                refused += 1
            }
        }
        #expect(refused > 50_000 && accepted > 1000, "accepted \(accepted), refused \(refused)")
    }
}
