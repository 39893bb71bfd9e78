import CDelta
import Testing
@testable import Wire

/// The weights' change from one step to the next (`cdelta`): applied to the old weights it gives the new ones bit for
/// bit, whatever they hold, and a change that is not exactly one of the right size is refused.
struct WeightsChangeTests {
    func encode(_ previous: [UInt32], _ next: [UInt32]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: cdelta_bound(previous.count))
        let length = cdelta_encode(previous, next, previous.count, &out)
        return Array(out.prefix(length))
    }

    func apply(_ change: [UInt8], to weights: [UInt32]) -> [UInt32]? {
        var result = weights
        return cdelta_apply(change, change.count, &result, result.count) == 1 ? result : nil
    }

    @Test("old weights plus their change are the new ones, bit for bit, at every length")
    func roundTrip() {
        var random = SystemRandomNumberGenerator()
        let special: [Float] = [.nan, -.nan, .infinity, -.infinity, 0, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        for count in [1, 2, 3, 4, 5, 7, 8, 9, 1000, 4099] {
            let previous = (0..<count).map { _ in UInt32.random(in: 0 ... .max, using: &random) }
            // Every width: unchanged, low bits, three bytes, all four; and values that are not numbers.
            let next = previous.enumerated().map { i, old -> UInt32 in
                switch i % 5 {
                case 0: old
                case 1: old ^ UInt32.random(in: 1 ... 0xFFFF)
                case 2: old ^ UInt32.random(in: 0x1_0000 ... 0xFF_FFFF)
                case 3: old ^ UInt32.random(in: 0x100_0000 ... .max)
                default: special[i % special.count].bitPattern
                }
            }
            let change = encode(previous, next)
            #expect(change.count <= cdelta_bound(count))
            #expect(apply(change, to: previous) == next, "\(count) weights")
        }
    }

    @Test("a small step's change takes well under the Floats' 4 bytes per weight")
    func smallSteps() {
        var random = SystemRandomNumberGenerator()
        let previous = (0..<10_000).map { _ in Float.random(in: -0.1 ... 0.1, using: &random) }
        // What an optimizer step does: each weight moves by about 1e-4 of itself.
        let next = previous.map { $0 * (1 + Float.random(in: -1e-4 ... 1e-4, using: &random)) }
        let change = encode(previous.map(\.bitPattern), next.map(\.bitPattern))
        #expect(Double(change.count) / Double(previous.count) < 3.0)
        #expect(apply(change, to: previous.map(\.bitPattern)) == next.map(\.bitPattern))
    }

    @Test("a change that is not exactly one of the weights' size is refused")
    func malformed() {
        let previous: [UInt32] = [1, 2, 3, 4, 5, 6]
        let change = encode(previous, [0x1234_5678, 2, 0xFF, 4, 5, 0xABCD])
        #expect(apply(change, to: previous) != nil)
        #expect(apply(Array(change.dropLast()), to: previous) == nil, "truncated")
        #expect(apply(change + [0], to: previous) == nil, "a byte too many")
        #expect(apply([], to: previous) == nil, "empty")
        // Six weights: the second group's control byte may not give the absent seventh and eighth a width.
        var past = change
        let second = 1 + 4 + 0 + 2 + 0  // first group: control, 4 bytes, unchanged, 2 bytes, unchanged
        past[second] |= 0b0100_0000
        #expect(apply(past, to: previous) == nil, "a width past the end")
        #expect(apply(change, to: [1, 2, 3, 4, 5]) == nil, "another count")
    }

    @Test("the weights header names a change and its base; a base not before the step is refused")
    func header() throws {
        let limits = Limits(parameterCount: 5, job: 77)
        let previous: [UInt32] = [1, 2, 3, 4, 5], next: [UInt32] = [1, 2, 9, 4, 5]
        let change = encode(previous, next)
        let decoded = try Codec.decode([Codec.weightsHeader(job: 77, step: 9, parameterCount: 5, changeFrom: 8),
                                        Message(copying: change)], limits: limits)
        guard case .weightsChange(let base, let frame) = decoded.payload else { Issue.record("not a change"); return }
        #expect(base == 8 && frame.bytes == change)
        #expect(throws: WireError.self) {
            try Codec.decode([Codec.weightsHeader(job: 77, step: 9, parameterCount: 5, changeFrom: 9),
                              Message(copying: change)], limits: limits)
        }
        #expect(throws: WireError.self) {
            try Codec.decode([Codec.weightsHeader(job: 77, step: 9, parameterCount: 5, changeFrom: 8),
                              Message(copying: [UInt8](repeating: 0, count: cdelta_bound(5) + 1))], limits: limits)
        }
        var header = Header(type: .weights, job: 77, step: 9, frames: 1, fields: [5, 3])
        #expect(throws: WireError.self) {
            try Codec.decode([Message(copying: header.encoded()), Message(copying: change)], limits: limits)
        }
        header.fields[1] = 2
        #expect(throws: WireError.self, "an empty change") {
            try Codec.decode([Message(copying: header.encoded()), Message(copying: [UInt8]())], limits: limits)
        }
    }
}
