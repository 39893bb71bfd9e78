import Wire

/// One step's micro-shards as the coordinator hands them out: which ranges wait for a worker, which are out under
/// which attempt number, and the results that came back. A lost worker's outstanding ranges return to `waiting`
/// and go out again under new attempts; an answer to an attempt no longer outstanding is dropped. A value: the
/// coordinator's core owns the current one.
struct StepRound {
    struct Assignment {
        let member: Int
        let ranges: [Range<Int>]
        let samples: Int
        let sentAt: ContinuousClock.Instant
        /// The slot of the member's result region its answer must use (nil: as a message).
        var resultSlot: Int?
    }

    struct Result {
        let member: Int
        let firstMicroShard: Int
        let frame: GradientFrame
        /// The micro-shards it covers.
        var ranges: [Range<Int>] = []
        var microShards: Int { ranges.reduce(0) { $0 + $1.count } }
        /// When its assignment went out and when the result was in (for `--trace`).
        var sentAt: ContinuousClock.Instant? = nil
        var arrivedAt: ContinuousClock.Instant? = nil
    }

    let step: Int
    let epoch: Int
    let batchIndex: Int
    let batchSamples: Int
    let microShardSize: Int
    private(set) var waiting: [Range<Int>]
    private(set) var outstanding: [UInt64: Assignment] = [:]
    private(set) var results: [Result] = []
    private var nextAttempt: UInt64 = 1
    /// Attempts answered in full.
    private(set) var completedAttempts: [UInt64: Int] = [:]
    /// Results come in parts (`--overlap`).
    let inParts: Bool
    /// Counts changes to the outstanding and waiting micro-shards: the parts' bookkeeping looks at every part again
    /// after one.
    private(set) var revision = 0
    /// Results holding a NaN or ∞ being computed again by another member: the attempt doing so, and the member whose
    /// result it checks.
    private(set) var rechecks: [UInt64: Int] = [:]
    /// Members whose result this step was checked again (theirs are not checked twice).
    private(set) var suspects: Set<Int> = []
    /// Assignments out twice, each attempt with its twin: a slow member's micro-shards given to an idle one too; the
    /// first answer is taken and the other attempt withdrawn.
    private(set) var twins: [UInt64: UInt64] = [:]
    /// The longest an answer this step took.
    var slowestAnswer: Duration = .zero
    /// Result-region slots given out this step, per member: each holds its result until the step's sum is read, so
    /// none is given twice in a step (a member that takes over a lost one's micro-shards gets the other, then none).
    private var claimedSlots: [Int: Set<Int>] = [:]

    init(step: Int, epoch: Int, batchIndex: Int, microShards: Int, batchSamples: Int, microShardSize: Int,
         inParts: Bool = false) {
        self.inParts = inParts
        self.step = step
        self.epoch = epoch
        self.batchIndex = batchIndex
        self.batchSamples = batchSamples
        self.microShardSize = microShardSize
        waiting = microShards > 0 ? [0 ..< microShards] : []
    }

    var isComplete: Bool { waiting.isEmpty && outstanding.isEmpty }
    var waitingCount: Int { waiting.reduce(0) { $0 + $1.count } }

    func samples(in ranges: [Range<Int>]) -> Int {
        ranges.reduce(0) { $0 + min($1.upperBound * microShardSize, batchSamples) - $1.lowerBound * microShardSize }
    }

    /// Splits the waiting micro-shards over `members` in proportion to `speeds`: each gets the ranges of its share
    /// (possibly several, when earlier losses left gaps). Returns (member, attempt, ranges) to send.
    mutating func distribute(over members: [Int], speeds: [Double], now: ContinuousClock.Instant)
        -> [(member: Int, attempt: UInt64, ranges: [Range<Int>])] {
        guard !waiting.isEmpty, !members.isEmpty else { return [] }
        let shares = Sharding.split(waitingCount, speeds: speeds)
        var pieces = waiting[...]
        var sent: [(Int, UInt64, [Range<Int>])] = []
        for (member, share) in zip(members, shares) where !share.isEmpty {
            var need = share.count, ranges: [Range<Int>] = []
            while need > 0, let first = pieces.first {
                let take = min(need, first.count)
                ranges.append(first.lowerBound ..< first.lowerBound + take)
                need -= take
                if take == first.count { pieces = pieces.dropFirst() } else {
                    pieces[pieces.startIndex] = first.lowerBound + take ..< first.upperBound
                }
            }
            let attempt = nextAttempt
            nextAttempt += 1
            outstanding[attempt] = Assignment(member: member, ranges: ranges, samples: samples(in: ranges), sentAt: now,
                                              resultSlot: nil)
            sent.append((member, attempt, ranges))
        }
        waiting = Array(pieces)
        revision += 1
        return sent
    }

    /// A result-region slot of assignment `attempt`'s member not yet given out this step, now given to it; nil when
    /// both are (its answer then comes as a message).
    mutating func claimSlot(for attempt: UInt64) -> Int? {
        guard let member = outstanding[attempt]?.member else { return nil }
        let taken = claimedSlots[member, default: []]
        guard let slot = (0..<SharedRegion.resultSlots).first(where: { !taken.contains($0) }) else { return nil }
        claimedSlots[member, default: []].insert(slot)
        outstanding[attempt]?.resultSlot = slot
        return slot
    }

    /// The outstanding assignment `attempt`, if it is `member`'s.
    func assignment(_ attempt: UInt64, of member: Int) -> Assignment? {
        guard let a = outstanding[attempt], a.member == member else { return nil }
        return a
    }

    /// Takes `attempt`'s answer; returns its twin's assignment, withdrawn, if it had one.
    @discardableResult
    mutating func complete(_ attempt: UInt64, with frame: GradientFrame,
                           at now: ContinuousClock.Instant? = nil) -> Assignment? {
        guard let a = outstanding.removeValue(forKey: attempt) else { return nil }
        completedAttempts[attempt] = a.ranges[0].lowerBound
        revision += 1
        results.append(Result(member: a.member, firstMicroShard: a.ranges[0].lowerBound, frame: frame,
                              ranges: a.ranges, sentAt: a.sentAt, arrivedAt: now))
        guard let twin = twins.removeValue(forKey: attempt) else { return nil }
        twins[twin] = nil
        return outstanding.removeValue(forKey: twin)
    }

    /// Gives `attempt`'s micro-shards to `member` too, under a new attempt; nil if it is not outstanding or is out
    /// twice already.
    mutating func backup(_ attempt: UInt64, by member: Int, now: ContinuousClock.Instant) -> UInt64? {
        guard let slow = outstanding[attempt], twins[attempt] == nil else { return nil }
        let new = nextAttempt
        nextAttempt += 1
        outstanding[new] = Assignment(member: member, ranges: slow.ranges, samples: slow.samples, sentAt: now,
                                      resultSlot: nil)
        twins[new] = attempt
        twins[attempt] = new
        revision += 1
        return new
    }

    /// Takes `attempt` (answered with a NaN or ∞) back from its member and gives its micro-shards to `checker` under a
    /// new attempt; when they are out twice already, their twin is the check instead (`isNew` false). Nil if
    /// `attempt` is not outstanding.
    mutating func recheck(_ attempt: UInt64, by checker: Int, now: ContinuousClock.Instant)
        -> (attempt: UInt64, ranges: [Range<Int>], isNew: Bool)? {
        guard let taken = outstanding.removeValue(forKey: attempt) else { return nil }
        suspects.insert(taken.member)
        revision += 1
        if let twin = twins.removeValue(forKey: attempt) {
            twins[twin] = nil
            rechecks[twin] = taken.member
            return (twin, taken.ranges, false)
        }
        let new = nextAttempt
        nextAttempt += 1
        outstanding[new] = Assignment(member: checker, ranges: taken.ranges, samples: taken.samples, sentAt: now,
                                      resultSlot: nil)
        rechecks[new] = taken.member
        return (new, taken.ranges, true)
    }

    /// Takes back everything `member` holds (its answers so far stay); returns the ranges moved and the attempts
    /// they were out under.
    @discardableResult
    mutating func release(_ member: Int) -> (ranges: [Range<Int>], attempts: [UInt64]) {
        let mine = outstanding.filter { $0.value.member == member }
        var moved: [Range<Int>] = []
        for (attempt, assignment) in mine {
            outstanding[attempt] = nil
            // Out twice: the twin still computes them.
            if let twin = twins.removeValue(forKey: attempt) {
                twins[twin] = nil
                continue
            }
            moved += assignment.ranges
        }
        waiting = Self.merged(waiting + moved)
        revision += 1
        return (moved.sorted { $0.lowerBound < $1.lowerBound }, Array(mine.keys))
    }

    /// Takes back everything `member` holds and every answer it gave (computed from weights found wrong), to be
    /// computed again; returns the micro-shards that wait again.
    mutating func retract(_ member: Int) -> [Range<Int>] {
        let (moved, _) = release(member)
        let answered = results.filter { $0.member == member }
        results.removeAll { $0.member == member }
        for result in answered { completedAttempts[result.frame.attempt] = nil }
        waiting = Self.merged(waiting + answered.flatMap(\.ranges))
        return Self.merged(moved + answered.flatMap(\.ranges))
    }

    /// Sharded layout, after an owner is lost: every micro-shard waits again, answered or out (an answer's parts may
    /// have gone to the lost owner, or to no one yet), to be computed again from the same weights under new attempts;
    /// answers to the attempts taken back are dropped when they come.
    mutating func retractAll() {
        waiting = Self.merged(results.flatMap(\.ranges) + outstanding.values.flatMap(\.ranges) + waiting)
        (results, outstanding, completedAttempts) = ([], [:], [:])
        (twins, rechecks, suspects) = ([:], [:], [])
        revision += 1
    }

    /// Whether `member` has work outstanding.
    func holds(_ member: Int) -> Bool { outstanding.values.contains { $0.member == member } }

    /// Whether the round still refers to `member` (work outstanding, or a result it sent).
    func references(_ member: Int) -> Bool { holds(member) || results.contains { $0.member == member } }

    /// Results in micro-shard order: fast mode then adds them in the same order for the same split.
    var orderedResults: [Result] { results.sorted { $0.firstMicroShard < $1.firstMicroShard } }

    static func merged(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, last.upperBound == r.lowerBound {
                out[out.count - 1] = last.lowerBound ..< r.upperBound
            } else {
                out.append(r)
            }
        }
        return out
    }
}

/// Ranges as people write them: `0-3, 7` for micro-shards 0 to 3 and 7.
func describe(_ ranges: [Range<Int>]) -> String {
    ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }.joined(separator: ", ")
}
