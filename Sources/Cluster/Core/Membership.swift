import Wire
import Foundation

/// Where a worker is in its life with this coordinator.
package enum MemberState: Sendable, Equatable {
    /// Said hello and was sent the job; getting its data ready.
    case joining
    /// Holds job and data; takes micro-shards from the next assignment on.
    case ready
    /// Computing micro-shards of the current step.
    case assigned
    /// Gone: exited, silent, disconnected, refused or misbehaving. Its outstanding micro-shards went to others.
    case lost
}

/// Why a member was lost: said in the log line that names it.
package enum LossReason: Sendable, CustomStringConvertible {
    case silent(Duration)
    case exited(String)
    case restarted
    case reportedError(String)
    case malformed(String)
    case mismatched(String)
    /// Its weights were not the step's (a replica that applied other means than the coordinator checked).
    case staleWeights(String)
    case unreachable
    case overloaded
    case tooSlow(Duration)
    case refused(String)

    /// Lost for what it sent: the values it sent are not to be trusted.
    var refusesItsValues: Bool {
        switch self {
        case .mismatched, .malformed, .refused, .staleWeights: true
        default: false
        }
    }

    package var description: String {
        switch self {
        case .silent(let d): "silent for \(Seconds(d))"
        case .exited(let ending): ending
        case .restarted: "said hello again (it restarted)"
        case .reportedError(let text): "reported: \(text)"
        case .malformed(let text): "sent malformed messages (\(text))"
        case .mismatched(let text): "sent a mismatched result (\(text))"
        case .staleWeights(let text): "computed from other weights than the step's (\(text))"
        case .unreachable: "its connection is gone"
        case .overloaded: "stopped reading (its send queue is full)"
        case .tooSlow(let d): "returned no result within --worker-timeout (\(Seconds(d)))"
        case .refused(let why): "was refused: \(why)"
        }
    }
}

/// A duration printed as seconds: `3.0 s`.
struct Seconds: CustomStringConvertible {
    let duration: Duration
    init(_ duration: Duration) { self.duration = duration }
    var description: String { String(format: "%.1f s", duration / .seconds(1)) }
}

/// A worker as the coordinator knows it.
package struct Member: Sendable {
    package let id: UInt32
    package let identity: [UInt8]
    package let name: String
    package let host: String
    package let pid: String
    package let cores: String
    package let build: String
    /// Its OpenBLAS kernel and oneDNN instruction set.
    package let blas: String
    package let oneDNN: String
    package internal(set) var state = MemberState.joining
    var lastHeard: ContinuousClock.Instant
    /// Measured micro-shards per second (an exponential moving average; 1 before the first result).
    package internal(set) var speed = 1.0
    /// The step whose weights it holds.
    var weightsStep: Int?
    /// The step whose weights it was sent in parts, and how many parts (all of them: it holds them, and the step's
    /// weights header says so instead of carrying them).
    var partsStep: Int?
    var partsSent = 0
    /// Sharded layout: where its peer socket listens (checked against the address its connection comes from) and,
    /// with keys, its public key; nil when it offers none.
    var peerEndpoint: String?
    var peerKey: CurvePublicKey?
    /// With keys, the key its connection was admitted with (`PeerFields.connectionKey`).
    var connectionKey: String?
    /// Sharded layout: the step whose weights it makes itself from the means of the step before (it was in the
    /// layout when they went out).
    var meansStep: Int?
    /// Told to rejoin after it was lost (said once).
    var toldToRejoin = false
    /// When it was lost.
    var lostAt: ContinuousClock.Instant?
    /// When an assignment it has not answered was sent, after it was withdrawn (another member answered it first):
    /// a member that answers nothing for --worker-timeout from then is lost as too slow.
    var unansweredSince: ContinuousClock.Instant?
    /// The member offered a result region and the coordinator mapped it: its results may come in its slots.
    var hasResultRegion = false
    /// The member mapped the coordinator's weights region: its weights go there, not in a message.
    var readsWeightsRegion = false
    /// Samples computed and seconds spent on them since the last `takeShares` (for per-epoch metrics).
    var sharedSamples = 0, sharedSeconds = 0.0, sharedComputeSeconds = 0.0, sharedSteps = 0

    /// How every coordinator line names this worker: `w2 "name" (host, pid 1234)`.
    package var label: String { "w\(id) \"\(name)\" (\(host), pid \(pid))" }

    var isActive: Bool { state == .ready || state == .assigned }
}

/// Every worker that has said hello; lost ones stay for a while for the record (and to answer them). Bounded and
/// indexed whatever the peers do: an identity finds its member in one lookup, the members not lost are kept apart
/// (heartbeats and silence checks go over those only), and a lost member's place is reused once it has been lost for
/// `expiry`, or at once when the table is full.
struct MemberTable {
    private(set) var members: [Member] = []
    private var nextID: UInt32 = 1
    /// The newest member with each routing identity.
    private var byIdentity: [[UInt8]: Int] = [:]
    /// Members not lost, by place, in order (kept sorted as it changes: read every tick, it allocates nothing then).
    private(set) var liveInOrder: [Int] = []
    /// Lost members' places in the order they were lost (a place may be listed again after it was reused and lost).
    private var lostOrder: [Int] = []
    /// How long a lost member is remembered before its place may go to a newcomer.
    var expiry: Duration = .seconds(60)

    subscript(index: Int) -> Member {
        get { members[index] }
        set {
            let wasLost = members[index].state == .lost
            members[index] = newValue
            if newValue.state == .lost {
                removeLive(index)
                if !wasLost { lostOrder.append(index) }
            } else {
                insertLive(index)
            }
        }
    }

    /// The newest member (highest id) with this routing identity.
    func index(of identity: [UInt8]) -> Int? { byIdentity[identity] }

    var active: [Int] { liveInOrder.filter { members[$0].isActive } }

    private mutating func insertLive(_ index: Int) {
        let at = liveInOrder.partitioningIndex { $0 >= index }
        if at == liveInOrder.count || liveInOrder[at] != index { liveInOrder.insert(index, at: at) }
    }

    private mutating func removeLive(_ index: Int) {
        let at = liveInOrder.partitioningIndex { $0 >= index }
        if at < liveInOrder.count && liveInOrder[at] == index { liveInOrder.remove(at: at) }
    }
    var lost: [Member] { members.filter { $0.state == .lost } }

    /// Members the table holds at most: past it, a lost member's place is reused (hellos cannot grow it).
    static let capacity = 4096

    /// Admits a worker into the place of a member lost for longer than `expiry`, else a new place, else (the table
    /// full) the place of the member lost longest ago; never a place `inUse` names. Nil when there is none.
    mutating func admit(identity: [UInt8], fields: [String: String], now: ContinuousClock.Instant,
                        inUse: (Int) -> Bool = { _ in false }) -> Int? {
        func clean(_ key: String) -> String {
            // Names come from the network: printable ASCII only, bounded.
            let text = fields[key] ?? "?"
            return String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7F })
                .prefix(64))
        }
        var member = Member(id: nextID, identity: identity, name: clean("name"), host: clean("host"),
                            pid: clean("pid"), cores: clean("cores"), build: clean("build"), blas: clean("blas"),
                            oneDNN: clean("onednn"),
                            lastHeard: now)
        // Set by the shell only once checked (`Coordinator.checkedPeer`).
        member.peerEndpoint = fields[PeerFields.endpoint]
        member.peerKey = fields[PeerFields.key].flatMap { try? CurvePublicKey(z85: $0) }
        member.connectionKey = fields[PeerFields.connectionKey]
        var slot: Int
        if let expired = reusable(inUse: inUse, lostBefore: now - expiry) {
            slot = expired
        } else if members.count < Self.capacity {
            members.append(member)
            slot = members.count - 1
        } else if let oldest = reusable(inUse: inUse, lostBefore: nil) {
            slot = oldest
        } else {
            return nil
        }
        if members[slot].id != member.id {
            // A lost member's place: its identity no longer finds it.
            if byIdentity[members[slot].identity] == slot { byIdentity[members[slot].identity] = nil }
            members[slot] = member
        }
        byIdentity[identity] = slot
        insertLive(slot)
        nextID &+= 1
        return slot
    }

    /// Takes the place of the member lost longest ago (before `lostBefore`, if given) that `inUse` does not name out of
    /// the lost order. A place is listed once: it leaves the list when reused, and only a reused place is lost again.
    private mutating func reusable(inUse: (Int) -> Bool, lostBefore: ContinuousClock.Instant?) -> Int? {
        for (index, place) in lostOrder.enumerated() {
            if let lostBefore, let lostAt = members[place].lostAt, lostAt > lostBefore { return nil }
            if !inUse(place) {
                lostOrder.remove(at: index)
                return place
            }
        }
        return nil
    }
}

extension Array {
    /// The first index whose element satisfies `belongs`, where every element that does follows every one that does
    /// not (a binary search).
    func partitioningIndex(where belongs: (Element) -> Bool) -> Int {
        var low = 0, high = count
        while low < high {
            let middle = (low + high) / 2
            if belongs(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
