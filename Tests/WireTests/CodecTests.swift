import CExactSum
import Testing
@testable import Wire

/// Every message type survives encode → decode, and each malformed case is refused with its own error.
struct CodecTests {
    static let limits = Limits(parameterCount: 5, job: 77)

    func floats(_ values: [Float]) throws -> Message {
        try values.withUnsafeBytes { try Message(copying: $0) }
    }

    @Test("round trip of every message type")
    func roundTrip() throws {
        let hello = try Codec.decode(Codec.hello(fields: ["build": "1.0", "host": "h", "name": "w1"], cores: 2,
                                                 pid: 4242), limits: Limits())
        guard case .hello(let fields) = hello.payload else { Issue.record("not hello"); return }
        #expect(fields == ["build": "1.0", "host": "h", "name": "w1", "cores": "2", "pid": "4242", "resuming": "0"])

        let job = try Codec.decode(Codec.job(Array("model: x".utf8), job: 77, worker: 3, parameterCount: 5,
                                             maximumMicroShards: 16, exact: true, heartbeat: .seconds(1)), limits: Limits())
        guard case .job(let text, 5, 16, true, .seconds(1), nil) = job.payload else { Issue.record("not job"); return }
        #expect(text == Array("model: x".utf8) && job.header.worker == 3 && job.header.job == 77)

        let weights = try Codec.decode([Codec.weightsHeader(job: 77, step: 9, parameterCount: 5),
                                        floats([1, 2, 3, 4, 5])], limits: Self.limits)
        guard case .weights(let frame) = weights.payload else { Issue.record("not weights"); return }
        var out = [Float](repeating: 0, count: 5)
        frame.copy(into: &out)
        #expect(out == [1, 2, 3, 4, 5] && weights.header.step == 9)

        let assignment = try Codec.decode(Codec.assignment(job: 77, step: 9, worker: 2, epoch: 1, batch: 4, attempt: 1,
                                                           ranges: [0..<3, 5..<9]), limits: Self.limits)
        guard case .assignment(1, 4, 1, let ranges, nil, false, false, false) = assignment.payload else { Issue.record("not assignment"); return }
        #expect(ranges == [0..<3, 5..<9])

        let limbs: [Int64] = (0..<10).map { Int64($0) - 4 }
        let windows: [Int8] = [-3, -1, 0, 1, 2]
        let exact = try Codec.decode([Codec.gradientHeader(job: 77, step: 9, worker: 2, samples: 64, correct: 10,
                                                           lossHigh: -5, lossLow: 7, lossWindow: -2, exact: true,
                                                           overflowed: false, attempt: 1),
                                      Message(copying: limbs.withUnsafeBytes(Array.init) + windows.map { UInt8(bitPattern: $0) })],
                                     limits: Self.limits)
        guard case .gradient(let g) = exact.payload else { Issue.record("not gradient"); return }
        #expect(g.samples == 64 && g.correct == 10 && g.lossHigh == -5 && g.lossLow == 7 && g.lossWindow == -2
            && g.exact && !g.overflowed && g.attempt == 1)
        #expect(g.withValues { Array($0[0..<80].bindMemory(to: Int64.self)) } == limbs)
        #expect(g.withValues { $0[80...].map { Int8(bitPattern: $0) } } == windows)

        let fast = try Codec.decode([Codec.gradientHeader(job: 77, step: 9, worker: 2, samples: 3, correct: 0,
                                                          lossHigh: Int64(bitPattern: 1.5.bitPattern), lossLow: 0,
                                                          exact: false, overflowed: false, attempt: 1),
                                     floats([1, 2, 3, 4, 5])], limits: Self.limits)
        guard case .gradient(let f) = fast.payload else { Issue.record("not gradient"); return }
        #expect(!f.exact && Double(bitPattern: UInt64(bitPattern: f.lossHigh)) == 1.5)

        #expect(try { if case .heartbeat = try Codec.decode(Codec.heartbeat(job: 77, step: 1, worker: 1), limits: Self.limits).payload { true } else { false } }())
        guard case .error("boom") = try Codec.decode(Codec.error("boom", job: 77, step: 1, worker: 1), limits: Self.limits).payload,
              case .shutdown("done", .finished) = try Codec.decode(Codec.shutdown("done", job: 77), limits: Self.limits).payload,
              case .shutdown("again", .rejoin) = try Codec.decode(Codec.shutdown("again", job: 77, disposition: .rejoin),
                                                                  limits: Self.limits).payload
        else { Issue.record("error/shutdown"); return }
    }

    @Test("shared regions: offers, an assignment's slot, a gradient left in a slot and weights in the region round-trip; mismatches are refused")
    func sharedRegions() throws {
        let offer = RegionOffer(pid: 4242, descriptor: 7, token: 0x1234_5678_9ABC_DEF0)
        guard case .ready(true, let decoded, true, 0xFEED_0000_0000_0001) = try Codec.decode(
                Codec.ready(job: 77, worker: 2, hasData: true, region: offer, readsWeightsRegion: true,
                            products: 0xFEED_0000_0000_0001), limits: Self.limits).payload,
              case .ready(false, nil, false, 0) = try Codec.decode(Codec.ready(job: 77, worker: 2, hasData: false),
                                                                   limits: Self.limits).payload
        else { Issue.record("not ready"); return }
        #expect(decoded == offer)
        let weightsOffer = RegionOffer(pid: Int32.max, descriptor: 12, token: 99)
        guard case .job(_, 5, 16, true, _, let gotOffer) = try Codec.decode(
            Codec.job([1, 2], job: 77, worker: 2, parameterCount: 5, maximumMicroShards: 16, exact: true,
                      heartbeat: .seconds(1), weightsRegion: weightsOffer), limits: Self.limits).payload,
              case .weightsInRegion = try Codec.decode([Codec.weightsHeader(job: 77, step: 3, parameterCount: 5, inRegion: true),
                                                        Message(copying: [UInt8]())], limits: Self.limits).payload
        else { Issue.record("not job or weights in region"); return }
        #expect(gotOffer == weightsOffer)
        #expect {
            _ = try Codec.decode([Codec.weightsHeader(job: 77, step: 3, parameterCount: 5, inRegion: true), floats([1, 2, 3, 4, 5])],
                                 limits: Self.limits)
        } throws: { ($0 as? WireError)?.description.contains("the weights are in the coordinator's weights region") ?? false }
        for slot in [nil, 0, 1] as [Int?] {
            guard case .assignment(1, 4, 1, _, let got, false, false, false) = try Codec.decode(
                Codec.assignment(job: 77, step: 9, worker: 2, epoch: 1, batch: 4, attempt: 1, ranges: [0..<3],
                                 resultSlot: slot), limits: Self.limits).payload
            else { Issue.record("not assignment"); return }
            #expect(got == slot)
        }
        let header = try Codec.gradientHeader(job: 77, step: 9, worker: 2, samples: 64, correct: 10, lossHigh: -5,
                                              lossLow: 7, lossWindow: -2, exact: true, overflowed: true, attempt: 1,
                                              regionSlot: 1)
        guard case .gradient(let g) = try Codec.decode([header, Message(copying: [UInt8]())], limits: Self.limits).payload
        else { Issue.record("not gradient"); return }
        #expect(g.regionSlot == 1 && g.overflowed && g.lossWindow == -2 && g.exact)
        #expect {
            _ = try Codec.decode([header, Message(copying: [UInt8](repeating: 0, count: 85))], limits: Self.limits)
        } throws: { ($0 as? WireError)?.description.contains("values are in the worker's result region") ?? false }
        #expect {
            _ = try Codec.decode(Codec.assignment(job: 77, step: 9, worker: 2, epoch: 1, batch: 4, attempt: 1,
                                                  ranges: [0..<3], resultSlot: 2), limits: Self.limits)
        } throws: { ($0 as? WireError)?.description.contains("result slot 3 beyond the region's 2") ?? false }
    }

    @Test("an exact result as micro-shards' Floats: read as sent, in a message or the region; impossible forms refused")
    func floatShards() throws {
        let values: [Float] = [1, -2, 0x1p-149, 3e38, -0.0, 0.5, 7, 8, 9, .nan]  // two micro-shards of 5; a NaN is the mean's to see
        func header(_ shards: Int, exact: Bool = true, slot: Int? = nil, packed: Bool = false) throws -> Message {
            try Codec.gradientHeader(job: 77, step: 1, worker: 2, samples: 6, correct: 1, lossHigh: 3, lossLow: 4,
                                     lossWindow: 1, exact: exact, overflowed: false, attempt: 1, regionSlot: slot,
                                     packed: packed, floatShards: shards)
        }
        guard case .gradient(let g) = try Codec.decode([header(2), floats(values)], limits: Self.limits).payload
        else { Issue.record("not gradient"); return }
        #expect(g.floatShards == 2 && g.exact && g.lossWindow == 1 && g.regionSlot == nil)
        #expect(g.withValues { Array($0.assumingMemoryBound(to: Float.self)) }.map(\.bitPattern) == values.map(\.bitPattern))
        guard case .gradient(let r) = try Codec.decode([header(4, slot: 0), Message(copying: [UInt8]())],
                                                       limits: Self.limits).payload
        else { Issue.record("not gradient"); return }
        #expect(r.floatShards == 4 && r.regionSlot == 0)
        let refused: [(Message, Message, String)] = [
            (try header(2), try floats(Array(values[..<9])), "expected 40 (5 parameters, 2 micro-shards' Floats)"),
            (try header(1), try floats(values), "expected 20 (5 parameters, 1 micro-shards' Floats)"),
            (try header(5), try floats(values + values), "5 micro-shards' Floats (at most 4)"),
            (try header(1, exact: false), try floats(Array(values[..<5])), "1 micro-shards' Floats in a fast sum"),
            (try header(1, packed: true), try floats(Array(values[..<5])), "packed values of a fast sum, in the result region or as Floats"),
        ]
        for (head, body, reason) in refused {
            #expect {
                _ = try Codec.decode([head, body], limits: Self.limits)
            } throws: { ($0 as? WireError)?.description.contains(reason) ?? false }
        }
    }

    /// An exact sum's wire bytes (`cexact_merge`'s layout) from its limbs and windows.
    static func sumBytes(high: [Int64], low: [Int64], windows: [Int8]) -> [UInt8] {
        high.withUnsafeBytes(Array.init) + low.withUnsafeBytes(Array.init) + windows.map { UInt8(bitPattern: $0) }
    }

    @Test("packed sums unpack to the same bytes, for any limbs and windows, and a range packs as its own sum; a packed frame that is not one is refused")
    func packedSums() throws {
        var mix = UInt64(0x2545_F491_4F6C_DD1D)
        func next() -> UInt64 { mix ^= mix << 13; mix ^= mix >> 7; mix ^= mix << 17; return mix }
        func limb() -> Int64 {
            // Gradient-like (few high bits, many trailing zeros) and extremes alike.
            switch next() % 6 {
            case 0: return 0
            case 1: return -1
            case 2: return Int64(bitPattern: next()) >> (next() % 64)
            case 3: return (Int64(bitPattern: next()) >> 40) << (next() % 40)
            case 4: return [Int64.min, Int64.max, 1 << 62, -(1 << 50)][Int(next() % 4)]
            default: return Int64(bitPattern: next())
            }
        }
        for count in [1, 5, 8, 9, 16, 17, 1000] {
            let high = (0..<count).map { _ in limb() }, low = (0..<count).map { _ in limb() }
            let uniform = next() % 2 == 0
            let windows = (0..<count).map { _ in uniform ? Int8(-1) : Int8(truncatingIfNeeded: next() % 6) - 3 }
            let raw = Self.sumBytes(high: high, low: low, windows: windows)
            var packed = [UInt8](repeating: 0, count: cexact_pack_bound(count))
            let length = cexact_pack(raw, count, &packed)
            var back = [UInt8](repeating: 0xAA, count: raw.count)
            #expect(cexact_unpack(packed, length, count, &back) == 1 && back == raw, "\(count) parameters")
            // A range of the sum packs as the sum of just those parameters would (a result sent in parts).
            let first = count / 3, end = count - count / 4
            if end > first {
                let part = Self.sumBytes(high: Array(high[first..<end]), low: Array(low[first..<end]),
                                         windows: Array(windows[first..<end]))
                var whole = [UInt8](repeating: 0, count: cexact_pack_bound(end - first)), ranged = whole
                let wholeLength = cexact_pack(part, end - first, &whole)
                let rangedLength = cexact_pack_range(raw, count, first, end, &ranged)
                #expect(rangedLength == wholeLength && ranged[..<rangedLength] == whole[..<wholeLength],
                        "parameters \(first)..<\(end) of \(count)")
            }
            // Through the codec: the frame's values are the unpacked bytes.
            let limits = Limits(parameterCount: count, job: 77)
            let header = try Codec.gradientHeader(job: 77, step: 1, worker: 2, samples: 4, correct: 0, lossHigh: 0,
                                                  lossLow: 0, exact: true, overflowed: false, attempt: 1, packed: true)
            guard case .gradient(let g) = try Codec.decode([header, Message(copying: Array(packed[..<length]))],
                                                           limits: limits).payload
            else { Issue.record("not gradient"); return }
            #expect(g.packed && g.withValues { Array($0) } == raw)
            // One byte short, one too many, a shift and width past 116 bits (the first block's shift is bits 6-12):
            // refused, naming the size.
            for bad in [Array(packed[..<(length - 1)]), Array(packed[..<length]) + [0], [0xFF, 0xFF] + Array(packed[2..<length])] {
                #expect {
                    _ = try Codec.decode([header, Message(copying: bad)], limits: limits)
                } throws: { ($0 as? WireError)?.description.contains("are not a sum of \(count) parameters") ?? false }
            }
        }
    }

    static func header(_ type: UInt16 = 3, version: UInt16 = Header.protocolVersion, magic: UInt32 = Header.magic, job: UInt64 = 77,
                       frames: UInt32 = 1, field0: UInt64 = 5, size: Int = 80) -> [UInt8] {
        var bytes: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        put(magic); put(version); put(type); put(job); put(UInt64(1)); put(UInt32(0)); put(frames); put(field0)
        for _ in 0..<5 { put(UInt64(0)) }
        return Array(bytes.prefix(size)) + Array(repeating: 0, count: max(0, size - bytes.count))
    }

    @Test("malformed messages are refused, each with its reason", arguments: [
        ([header(size: 79), [UInt8](repeating: 0, count: 20)], "header frame of 79 bytes"),
        ([header(magic: 0xDEADBEEF), [UInt8](repeating: 0, count: 20)], "bad magic 0xdeadbeef"),
        ([header(version: Header.protocolVersion - 1), [UInt8](repeating: 0, count: 20)],
         "protocol version \(Header.protocolVersion - 1) but this build speaks \(Header.protocolVersion)"),
        ([header(99), [UInt8](repeating: 0, count: 20)], "unknown message type 99"),
        ([header(frames: 2), [UInt8](repeating: 0, count: 20)], "declares 2 payload frames, carries 1"),
        ([header()], "declares 1 payload frames, carries 0"),
        ([header(job: 5), [UInt8](repeating: 0, count: 20)], "message for job 5, this is job 77"),
        ([header(), [UInt8](repeating: 0, count: 19)], "weights payload of 19 bytes; expected 20"),
        ([header(field0: 6), [UInt8](repeating: 0, count: 24)], "weights payload of 24 bytes"),
        ([header(4), [1, 0, 0, 0]], "assignment payload of 4 bytes"),
        ([header(4), [3, 0, 0, 0, 1, 0, 0, 0]], "range 0 is [3, 1)"),
        ([header(5, field0: 0), [UInt8](repeating: 0, count: 80)], "samples 0 and correct 0"),
        ([header(7), [0xFF, 0xFE]], "error text: not UTF-8"),
        ([header(1), Array("no equals".utf8)], "line without '='"),
        ([[UInt8]](repeating: header(), count: 4), "message of 4 frames"),
    ])
    func refuses(frames: [[UInt8]], reason: String) throws {
        let messages = try frames.map { try Message(copying: $0) }
        #expect {
            _ = try Codec.decode(messages, limits: Self.limits)
        } throws: { error in
            let text = (error as? WireError)?.description ?? ""
            return text.contains(reason) && !text.contains("\n")
        }
    }

    @Test("a NaN in a fast gradient is passed on for the update to find; a loss that is not finite needs the overflowed flag")
    func nonFinite() throws {
        let values: [Float] = [1, 2, .nan, 4, 5]
        func decode(loss: Double, overflowed: Bool) throws -> Envelope {
            try Codec.decode([Codec.gradientHeader(job: 77, step: 1, worker: 1, samples: 1, correct: 0,
                                                   lossHigh: Int64(bitPattern: loss.bitPattern), lossLow: 0, exact: false,
                                                   overflowed: overflowed, attempt: 1),
                              values.withUnsafeBytes { try Message(copying: $0) }], limits: Self.limits)
        }
        guard case .gradient(let frame) = try decode(loss: 3, overflowed: false).payload else {
            Issue.record("not a gradient"); return
        }
        #expect(frame.withValues { $0.load(fromByteOffset: 8, as: Float.self).isNaN })
        guard case .gradient(let diverged) = try decode(loss: .infinity, overflowed: true).payload else {
            Issue.record("not a gradient"); return
        }
        #expect(diverged.overflowed)
        #expect {
            _ = try decode(loss: .nan, overflowed: false)
        } throws: { ($0 as? WireError)?.description.contains("is not finite and the overflowed flag is not set") ?? false }
    }

    @Test("weights and gradients before a job are refused")
    func beforeJob() throws {
        #expect(throws: WireError.self) {
            _ = try Codec.decode([Codec.weightsHeader(job: 77, step: 1, parameterCount: 5),
                                  Message(copying: [UInt8](repeating: 0, count: 20))], limits: Limits())
        }
    }

    @Test("a peer's text is decoded printable: a newline cannot forge a log line, escape codes do not reach the terminal")
    func peerTextIsPrintable() throws {
        let text = "oops\nw9 \"x\" lost: forged\u{1B}[2J\u{7}é"
        let expected = "oops\\u{A}w9 \"x\" lost: forged\\u{1B}[2J\\u{7}é"
        guard case .error(let error)? = try? Codec.decode(Codec.error(text, job: 1, step: 0, worker: 0), limits: Limits()).payload,
              case .shutdown(let reason, _)? = try? Codec.decode(Codec.shutdown(text, job: 1, disposition: .failed),
                                                                 limits: Limits()).payload,
              case .hello(let fields)? = try? Codec.decode(Codec.hello(fields: ["name": "a\u{1B}]0;b"], cores: 1, pid: 1,
                                                                       resuming: 0), limits: Limits()).payload else {
            Issue.record("did not decode")
            return
        }
        #expect(error == expected && reason == expected, "\(error)")
        #expect(fields["name"] == "a\\u{1B}]0;b", "\(fields)")
    }
}

/// A result's computing time travels in the flags word's high half.
@Suite struct ComputingTimeTests {
    @Test("a result's computing time reads back to the µs, up to 71 minutes; flags bits 17-31 are still refused")
    func computingTime() throws {
        let limits = Limits(parameterCount: 2, job: 77)
        for micros in [0, 1, 1_234_567, Int64(UInt32.max)] {
            let header = try Codec.gradientHeader(job: 77, step: 1, worker: 2, samples: 4, correct: 0, lossHigh: 0,
                                                  lossLow: 0, exact: false, overflowed: false, attempt: 1,
                                                  computing: .microseconds(micros))
            guard case .gradient(let g) = try Codec.decode([header, Message(copying: [UInt8](repeating: 0, count: 8))],
                                                           limits: limits).payload
            else { Issue.record("not gradient"); return }
            #expect(g.computing == .microseconds(micros))
        }
        var bytes = CodecTests.header(5, field0: 4)
        // Field 4 (flags) lies at offset 32 + 4 * 8; bit 20 is no flag.
        bytes.replaceSubrange(64..<72, with: withUnsafeBytes(of: (UInt64(1) << 20 | 1).littleEndian, Array.init))
        #expect {
            _ = try Codec.decode([Message(copying: bytes), Message(copying: [UInt8](repeating: 0, count: 8))], limits: limits)
        } throws: { "\($0)".contains("flags \(UInt64(1) << 20 | 1) beyond") }
    }
}
