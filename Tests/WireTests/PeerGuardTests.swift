import Testing
@testable import Wire

/// The peer guard stays bounded whatever the peers do: 2,000 fresh identities sending 6 bad messages each neither
/// grow its memory past its table nor write more than its rate-limited lines.
@Suite struct PeerGuardTests {
    @Test("2,000 identities × 6 bad messages: at most 1,024 remembered, at most 20 lines per window plus a count")
    func boundedUnderManyIdentities() {
        var lines: [String] = []
        let guardian = PeerGuard(limit: 5, trackedPeers: 1024, linesPerWindow: 20, window: .seconds(3600)) {
            lines.append($0)
        }
        var cutOffs = 0
        for peer in 0..<2000 {
            let identity = withUnsafeBytes(of: UInt32(peer)) { Array($0) }
            for _ in 0..<6 where guardian.refused(identity, name: PeerGuard.name(identity), .tooManyFrames(9)) {
                cutOffs += 1
            }
            #expect(guardian.trackedCount <= 1024)
        }
        #expect(cutOffs == 2000 * 2, "the 5th and 6th message of every peer are cut off")
        #expect(lines.count == 20, "\(lines.count) lines")
        #expect(guardian.isCutOff(withUnsafeBytes(of: UInt32(1999)) { Array($0) }))
        #expect(!guardian.isCutOff(withUnsafeBytes(of: UInt32(0)) { Array($0) }), "the oldest identity is forgotten")
    }

    @Test("after the window the unlogged refusals are summed up in one line")
    func summaryAfterWindow() {
        var lines: [String] = []
        // The guard's clock is moved by hand: no sleep, so no race with a busy machine.
        let start = ContinuousClock.now
        var time = start
        let guardian = PeerGuard(limit: 100, linesPerWindow: 2, window: .seconds(10), now: { time }) { lines.append($0) }
        for peer in 0..<10 { guardian.refused([UInt8(peer)], name: "p\(peer)", .tooManyFrames(9)) }
        time = start + .seconds(9.9)
        guardian.refused([98], name: "inside", .tooManyFrames(9))
        #expect(lines.count == 2, "still inside the window: \(lines)")
        time = start + .seconds(12)
        guardian.refused([99], name: "late", .tooManyFrames(9))
        #expect(lines.count == 4, "\(lines)")
        #expect(lines[2] == "9 more refusals were not logged in the last 12 s")
        #expect(lines[3].contains("late"))
    }
}

@Suite struct LineBudgetTests {
    @Test("20 lines per 10 s window; the rest are counted and summed up once the window has passed")
    func budget() {
        var budget = LineBudget(what: "join lines")
        var now = ContinuousClock.now
        let first = (0..<30).map { _ in budget.take(at: now) }
        #expect(first.filter(\.allowed).count == 20 && first.allSatisfy { $0.summary == nil })
        now += .seconds(11)
        let next = budget.take(at: now)
        #expect(next.allowed && next.summary == "10 more join lines were not logged in the last 11 s")
        #expect(budget.take(at: now + .seconds(20)).summary == nil, "nothing withheld since")
    }
}
