import Wire

/// Heartbeats out, and members lost: silent, too slow, exited, unreachable, or for what they sent.
extension CoordinatorCore {
    /// Why a send to a member failed.
    enum SendFailure {
        /// No connection routes to it (libzmq dropped it, or it never was).
        case unroutable
        /// Its send queue is full: it stopped reading.
        case queueFull
        case other
    }

    /// Heartbeats out if they are due, and nothing else: what a long stretch of work in the shell calls (members are
    /// judged only by `tick`, once the messages waiting have been read, so queued beats count).
    mutating func heartbeats(at now: ContinuousClock.Instant) -> [CoordinatorAction] {
        self.now = now
        beatIfDue(at: now)
        return drain()
    }

    private mutating func beatIfDue(at now: ContinuousClock.Instant) {
        guard now - lastHeartbeat >= settings.heartbeat else { return }
        lastHeartbeat = now
        heartbeatRounds += 1
        // A member preparing its data reads nothing until it is ready: beats queued for it would fill its receive
        // queue, and then libzmq stops reading its connection — its ZMTP pings' answers included — and drops it
        // (libzmq 4.3.4 may then abort the worker). One round in three still finds a connection that is gone.
        for index in table.liveInOrder where table[index].state != .joining || heartbeatRounds % 3 == 0 {
            emit(.send(member: index, .heartbeat(step: round?.step ?? 0)))
        }
    }

    /// Time passed: silent and too-slow members are lost, and heartbeats go out when due.
    mutating func tick(at now: ContinuousClock.Instant) -> [CoordinatorAction] {
        self.now = now
        // A member computing an assignment may be silent for long: it beats between micro-shards, and a busy machine
        // or a large model stretches that. Its liveness is then its connection's: libzmq's I/O thread answers ZMTP
        // pings while the worker computes, and drops the connection after `silence` when the process is stopped, gone
        // or cut off, so the next send finds it unroutable (`sendFailed`). The same holds for one still preparing its
        // data (a large built-in data set takes seconds to generate). An idle member has nothing to do but beat.
        for index in table.liveInOrder where table[index].state == .ready && round?.holds(index) != true {
            let silent = now - table[index].lastHeard
            if silent > settings.silence { lose(index, .silent(silent)) }
        }
        for (_, assignment) in round?.outstanding ?? [:] where now - assignment.sentAt > settings.workerTimeout {
            lose(assignment.member, .tooSlow(settings.workerTimeout))
        }
        for index in table.liveInOrder {
            if let since = table[index].unansweredSince, now - since > settings.workerTimeout {
                lose(index, .tooSlow(settings.workerTimeout))
            }
        }
        backUpSlowAssignments(at: now)
        beatIfDue(at: now)
        return drain()
    }

    /// Gives the micro-shards of an assignment far slower than the answers lately to an idle member too (the first
    /// answer is taken): a member that beats but computes slowly, or not at all, does not hold the step up. Slower
    /// means four times the slowest answer of this step or the last, and two heartbeats at least; with no answer yet in
    /// the run, ten heartbeats.
    private mutating func backUpSlowAssignments(at now: ContinuousClock.Instant) {
        guard let current = round, !current.inParts, current.waitingCount == 0 else { return }
        let lately = max(current.slowestAnswer, lastStepSlowest)
        let patience = lately > .zero ? max(lately * 4, settings.heartbeat * 2) : settings.heartbeat * 10
        // Looked at every tick: nothing is allocated unless an assignment is that slow.
        guard current.outstanding.contains(where: { current.twins[$0.key] == nil && now - $0.value.sentAt > patience })
        else { return }
        for (attempt, slow) in current.outstanding.sorted(by: { $0.key < $1.key })
        where round!.twins[attempt] == nil && now - slow.sentAt > patience {
            let idle = table.active.filter { $0 != slow.member && !round!.holds($0) && !round!.suspects.contains($0) }
            guard let helper = idle.max(by: { table[$0].speed < table[$1].speed }),
                  let backup = round!.backup(attempt, by: helper, now: now) else { break }
            let compared = lately > .zero ? "the slowest answer lately took \(Seconds(lately))" : "no answer yet to compare"
            emit(.log("step \(current.step): \(table[slow.member].label) has not answered micro-shards "
                + "\(describe(slow.ranges)) in \(Seconds(now - slow.sentAt)) (\(compared)); \(table[helper].label) "
                + "computes them too"))
            assign(helper, attempt: backup, ranges: slow.ranges)
        }
    }

    /// A send to `member` failed.
    mutating func sendFailed(_ member: Int, _ failure: SendFailure, at now: ContinuousClock.Instant)
        -> [CoordinatorAction] {
        self.now = now
        switch failure {
        case .unroutable where table[member].state == .joining && now - table[member].lastHeard <= settings.silence:
            // A worker sent its job connects again, with the frame bound the job gives it (the same routing id, which
            // libzmq hands over): a send in between finds no connection. One gone for good is silent by the next beat
            // that fails.
            return drain()
        case .unroutable:
            // libzmq drops a connection silent for `silence`: say so, rather than only that it is gone.
            let silent = now - table[member].lastHeard
            lose(member, silent > settings.silence ? .silent(silent) : .unreachable)
        case .queueFull: lose(member, .overloaded)
        case .other: lose(member, .unreachable)
        }
        return drain()
    }

    /// A worker process this coordinator started has exited, ending as `ending`.
    mutating func exited(pid: Int32, ending: String) -> [CoordinatorAction] {
        if let index = table.liveInOrder.first(where: { table[$0].pid == String(pid) }) {
            lose(index, .exited(ending))
        }
        return drain()
    }

    /// `member` is lost for `reason` (one the shell found: a message its peer guard refused, a part's values).
    mutating func lost(_ member: Int, _ reason: LossReason) -> [CoordinatorAction] {
        lose(member, reason)
        return drain()
    }

    /// Declares a member lost and takes back its outstanding micro-shards, naming both.
    mutating func lose(_ index: Int, _ reason: LossReason) {
        guard table[index].state != .lost else { return }
        let newcomer = table[index].state == .joining
        lossCount += 1
        table[index].lostAt = now
        table[index].state = .lost
        table[index].hasResultRegion = false
        table[index].readsWeightsRegion = false
        if case .tooSlow = reason {
            // Bounded as the table is: identities come from the network.
            if tooSlowStreak.count >= MemberTable.capacity { tooSlowStreak.removeAll() }
            tooSlowStreak[table[index].identity, default: 0] += 1
        }
        if case .mismatched = reason {
            if wrongValuesStreak.count >= MemberTable.capacity { wrongValuesStreak.removeAll() }
            wrongValuesStreak[table[index].identity, default: 0] += 1
        }
        var line = "\(table[index].label) lost: \(reason)"
        var released: [UInt64] = []
        let left = activeCount
        if let step = round?.step {
            let (moved, attempts) = round!.release(index)
            released = attempts
            if !moved.isEmpty {
                line += "; step \(step) (epoch \(round!.epoch), batch \(round!.batchIndex)): micro-shards "
                    + "\(describe(moved)) " + (left == 0 ? "wait for a worker" : "go to the other workers")
            }
        }
        // Always said, with its reason, whether or not it had become active: a loss is an event (within the budget of
        // newcomers' lines for one that never became ready).
        line += left == 0 ? " (no workers left)" : " (\(left) left)"
        if let line = newcomer ? newcomerLine(line) : line { emit(.log(line)) }
        emit(.lost(member: index, attempts: released, valuesRefused: reason.refusesItsValues, label: table[index].label))
    }
}
