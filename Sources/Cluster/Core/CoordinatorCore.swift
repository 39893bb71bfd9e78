import Engine
import Jobs
import Wire

/// Everything the coordinator decides, as a value with no socket and no clock of its own: the member table, the
/// step's round and what each member holds. Each `mutating` method below is an event — a decoded message, a tick of
/// the caller's clock, a send that failed, a process that exited — and returns the actions it calls for, in order:
/// messages to send, lines to log, losses for the shell's own bookkeeping. `Coordinator` is the shell that owns the
/// socket, the time and the memory the actions name; the unit tests drive this directly. Only the events change
/// its state (the extensions in this folder); the shell reads it.
struct CoordinatorCore {
    /// What a ready worker must match to join this job.
    struct Admission {
        var reduction: Reduction
        var library: GEMMLibrary
        /// The coordinator's OpenBLAS kernel (`BLASKernel.loaded`).
        var blasKernel: String
        /// Exact mode: what every worker's products of the job must hash to.
        var productsFingerprint: UInt64
        /// Samples in the training data, sent to a worker without a matching copy.
        var samples: Int
        var microShardSize: Int
    }

    let settings: Coordinator.Settings
    let admission: Admission
    /// The parts a job's parameters come in.
    let partCount: Int
    /// The coordinator maps its weights into shared memory (an ipc endpoint).
    let hasWeightsRegion: Bool
    var table = MemberTable()
    /// The step being handed out and gathered, between `beginStep` and `endStep`.
    var round: StepRound?
    /// Whether `round`'s attempt has sent every part of its result (the shell's parts bookkeeping knows).
    var partsComplete: (UInt64) -> Bool = { _ in false }
    /// Sharded layout: the members a step's work may go to (those of the layout; nil: every active one).
    var eligible: Set<Int>?
    /// The step in flight goes through the sharded layout (`--layout auto` may send a step through the star).
    var sharding = false
    /// Training has started: later members join a running step.
    var started = false
    var lastHeartbeat: ContinuousClock.Instant
    /// Losses in a row for returning nothing within --worker-timeout, by routing identity (a worker keeps its identity
    /// when it joins again); at two it is not admitted again.
    var tooSlowStreak: [[UInt8]: Int] = [:]
    /// The same for losses for values no computation gives (a result or a part refuted).
    var wrongValuesStreak: [[UInt8]: Int] = [:]
    /// Workers refused for good, by routing identity (by key, with keys: `admissionKey`), and why (bounded as the
    /// table is).
    var notAdmittedAgain: [[UInt8]: String] = [:]
    /// The slowest answer of the last step (what a slow assignment is compared with before this step has any).
    var lastStepSlowest: Duration = .zero
    /// The latest time an event brought (for events that come without one).
    var now: ContinuousClock.Instant
    /// Join and loss lines of members that never became ready: bounded, as a flood of identities would write one each.
    var newcomerLines = LineBudget(what: "join and loss lines of workers that never became ready")
    /// Heartbeat rounds sent so far (a member still preparing its data gets one round in three).
    var heartbeatRounds = 0
    /// Members lost, and hellos from a worker this coordinator had before (rejoined or restarted), so far: what
    /// `--prometheus` counts.
    var lossCount = 0, rejoinCount = 0
    /// Sharded layout: what each member's digests of the step's replica must be (by member), and the owner of each part
    /// whose mean the last step's replicas applied (nil: the coordinator, or none) (`CoordinatorCore+Replicas.swift`).
    var replicaChecks: [Int: ReplicaCheck] = [:]
    var meansOwners: [Int?] = []
    /// By owner (its identity, or key with keys): who named it and at which step, for the last `accusationWindow`
    /// steps; and the workers named twice, who own no parts from then on (by identity, or key with keys).
    var accusations: [[UInt8]: [(accuser: [UInt8], step: Int)]] = [:]
    var demoted: Set<[UInt8]> = []
    /// Members found holding other weights this step (they start the next one from the coordinator's), and whether
    /// one can still take the step's weights from here (no part of the step applied yet).
    var staleReplicas: Set<Int> = []
    var replicasResyncable = false
    private var actions: [CoordinatorAction] = []

    init(settings: Coordinator.Settings, admission: Admission, partCount: Int, hasWeightsRegion: Bool,
         now: ContinuousClock.Instant) {
        self.settings = settings
        self.admission = admission
        self.partCount = partCount
        self.hasWeightsRegion = hasWeightsRegion
        lastHeartbeat = now
        self.now = now
    }

    var activeCount: Int { table.active.count }

    mutating func emit(_ action: CoordinatorAction) { actions.append(action) }

    /// `line` if the budget of newcomers' lines allows it now (after the summary of those withheld, if one is due).
    mutating func newcomerLine(_ line: String) -> String? {
        let (allowed, summary) = newcomerLines.take(at: now)
        if let summary { emit(.log(summary)) }
        return allowed ? line : nil
    }

    /// The actions emitted since the last call.
    mutating func drain() -> [CoordinatorAction] {
        let out = actions
        actions = []
        return out
    }

    func label(_ member: Int) -> String { table[member].label }

    // MARK: Steps

    /// A step begins: its micro-shards wait for `handOut`.
    mutating func beginStep(step: Int, epoch: Int, batchIndex: Int, microShards: Int, batchSamples: Int) {
        round = StepRound(step: step, epoch: epoch, batchIndex: batchIndex, microShards: microShards,
                          batchSamples: batchSamples, microShardSize: admission.microShardSize,
                          inParts: settings.overlap)
        // A step of the star, or one whose checks are not made yet: none from an earlier step apply.
        (replicaChecks, staleReplicas, replicasResyncable) = ([:], [], false)
    }

    /// The step's round, complete, taken from the core.
    mutating func endStep() -> StepRound {
        let finished = round!
        round = nil
        lastStepSlowest = finished.slowestAnswer
        return finished
    }

    /// Hands the round's waiting micro-shards to the active members in proportion to their speeds, each with the
    /// weights it lacks in the form it can take.
    mutating func handOut(at now: ContinuousClock.Instant) -> [CoordinatorAction] {
        self.now = now
        guard round != nil else { return [] }
        let active = table.active.filter { eligible?.contains($0) ?? true }
        // The round is changed where it lies (`round!`), never through a copy, which would copy its tables.
        for (member, attempt, ranges) in round!.distribute(over: active, speeds: active.map { table[$0].speed }, now: now) {
            assign(member, attempt: attempt, ranges: ranges)
        }
        return drain()
    }

    /// Sends `member` assignment `attempt` of the round, with the weights it lacks in the form it can take. A send
    /// that fails loses the member, and its ranges wait again for the next hand-out.
    mutating func assign(_ member: Int, attempt: UInt64, ranges: [Range<Int>]) {
        let step = round!.step
        if table[member].weightsStep != step {
            emit(.send(member: member, .weights(step: step, weightsForm(for: member, step: step))))
        }
        let slot = table[member].hasResultRegion ? round!.claimSlot(for: attempt) : nil
        emit(.send(member: member, .assignment(AssignmentOrder(
            step: step, epoch: round!.epoch, batch: round!.batchIndex, attempt: attempt, ranges: ranges,
            resultSlot: slot, inParts: round!.inParts))))
        table[member].weightsStep = step
        table[member].state = .assigned
    }

    private func weightsForm(for member: Int, step: Int) -> WeightsForm {
        let holder = table[member]
        if sharding { return holder.meansStep == step ? .fromMeans : .withState }
        if settings.overlap && holder.partsStep == step && holder.partsSent == partCount { return .fromParts }
        return holder.readsWeightsRegion ? .inRegion : .whole
    }

    /// A part of the next step's weights is made: it goes to every active member, who then holds it.
    mutating func partUpdated(_ part: Int, nextStep: Int) -> [CoordinatorAction] {
        for member in table.active {
            if table[member].partsStep != nextStep {
                table[member].partsStep = nextStep
                table[member].partsSent = 0
            }
            emit(.send(member: member, .weightsPart(step: nextStep, part: part)))
            table[member].partsSent += 1
        }
        return drain()
    }

    /// Sharded layout: an owner was lost mid-step, so the step's every micro-shard is computed again (`retractAll`);
    /// the members computing are free for the new assignments.
    mutating func retractStep() {
        guard round != nil else { return }
        round!.retractAll()
        for member in table.active where table[member].state == .assigned { table[member].state = .ready }
    }

    /// Parts already sent were undone: no member holds the next step's weights from its parts.
    mutating func partsUndone() {
        for member in table.members.indices { table[member].partsStep = nil }
    }

    /// Each worker's share since the last call (samples computed, seconds from assignment to result), and resets
    /// the counts.
    /// Members by state (joining, ready, assigned, lost), losses and rejoins so far.
    func census() -> (states: [String: Int], losses: Int, rejoins: Int) {
        var states: [String: Int] = [:]
        for member in table.members { states["\(member.state)", default: 0] += 1 }
        return (states, lossCount, rejoinCount)
    }

    mutating func takeShares() -> [WorkerShare] {
        var shares: [WorkerShare] = []
        for index in table.members.indices where table[index].sharedSamples > 0 {
            let member = table[index]
            shares.append(WorkerShare(worker: "w\(member.id)", label: "w\(member.id) \"\(member.name)\"",
                                      samples: member.sharedSamples, seconds: member.sharedSeconds,
                                      computeSeconds: member.sharedComputeSeconds, answers: member.sharedSteps))
            (table[index].sharedSamples, table[index].sharedSeconds) = (0, 0)
            (table[index].sharedComputeSeconds, table[index].sharedSteps) = (0, 0)
        }
        return shares
    }

    /// Samples each member computed in `round`, as --verbose lists them: "w1 32 samples, w2 32 samples".
    func shares(of round: StepRound) -> String {
        var shares: [UInt32: Int] = [:]
        for r in round.results { shares[table[r.member].id, default: 0] += r.frame.samples }
        return shares.sorted { $0.key < $1.key }.map { "w\($0.key) \($0.value) samples" }.joined(separator: ", ")
    }
}

/// What the core asks of its shell.
enum CoordinatorAction {
    /// Send to a member, unless it is lost by the time this is done (then it is not sent); `then` is logged once it
    /// is sent. A send that fails goes back to the core as `sendFailed`.
    case send(member: Int, Outgoing, then: String? = nil)
    /// Send to a peer whatever its state (one not or no longer a member); a failure is ignored.
    case reply(identity: [UInt8], Outgoing)
    case log(String)
    /// A member was lost: its shared memory is let go, and the parts' bookkeeping forgets these attempts (undoing the
    /// parts updated from them when `valuesRefused`).
    case lost(member: Int, attempts: [UInt64], valuesRefused: Bool, label: String)
    /// A part of a result passed the core's checks: the shell keeps its values (and reports back if they are no
    /// part of a real result).
    case takePart(member: Int, PartOrder)
}

/// A message the shell encodes for a member (its id and the job's fill the header).
enum Outgoing: Equatable {
    case job
    case data
    case heartbeat(step: Int)
    case shutdown(String, Disposition)
    case error(String)
    case weights(step: Int, WeightsForm)
    case weightsPart(step: Int, part: Int)
    case assignment(AssignmentOrder)
    case peers(PeerList)
    case sumOrder(OrderedSum, step: Int)
    case spotCheck(SpotCheck, step: Int)
}

/// How a member gets a step's weights.
enum WeightsForm: Equatable {
    /// The Floats, in the message.
    case whole
    /// It reads them from the coordinator's weights region.
    case inRegion
    /// It holds them already, from the parts the last step's update sent.
    case fromParts
    /// Sharded layout: it makes them itself, from the last step's means.
    case fromMeans
    /// Sharded layout: the Floats and the optimizer's state, for a member that has not followed every update.
    case withState
}

struct AssignmentOrder: Equatable {
    var step: Int, epoch: Int, batch: Int
    var attempt: UInt64
    var ranges: [Range<Int>]
    var resultSlot: Int?
    var inParts: Bool
}

/// A part of a result, checked against its assignment.
struct PartOrder {
    var attempt: UInt64, array: Int, arrays: Int, first: Int
    var values: PartValues
    var microShards: Int
}
