import Wire
import Foundation

/// Where a worker is in its life with this coordinator.
public enum MemberState: Sendable, Equatable {
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
public enum LossReason: Sendable, CustomStringConvertible {
    case silent(Duration)
    case exited(String)
    case restarted
    case reportedError(String)
    case malformed(String)
    case mismatched(String)
    case unreachable
    case overloaded
    case tooSlow(Duration)
    case refused(String)

    /// Lost for what it sent: the values it sent are not to be trusted.
    var refusesItsValues: Bool {
        switch self {
        case .mismatched, .malformed, .refused: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .silent(let d): "silent for \(Seconds(d))"
        case .exited(let ending): ending
        case .restarted: "said hello again (it restarted)"
        case .reportedError(let text): "reported: \(text)"
        case .malformed(let text): "sent malformed messages (\(text))"
        case .mismatched(let text): "sent a mismatched result (\(text))"
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
public struct Member: Sendable {
    public let id: UInt32
    public let identity: [UInt8]
    public let name: String
    public let host: String
    public let pid: String
    public let cores: String
    public let build: String
    /// Its OpenBLAS kernel and oneDNN instruction set.
    public let blas: String
    public let oneDNN: String
    public internal(set) var state = MemberState.joining
    var lastHeard: ContinuousClock.Instant
    /// Measured micro-shards per second (an exponential moving average; 1 before the first result).
    public internal(set) var speed = 1.0
    /// The step whose weights it holds.
    var weightsStep: Int?
    /// The step whose weights it was sent in parts, and how many parts (all of them: it holds them, and the step's
    /// weights header says so instead of carrying them).
    var partsStep: Int?
    var partsSent = 0
    /// Told to rejoin after it was lost (said once).
    var toldToRejoin = false
    /// The member offered a result region and the coordinator mapped it: its results may come in its slots.
    var hasResultRegion = false
    /// The member mapped the coordinator's weights region: its weights go there, not in a message.
    var readsWeightsRegion = false
    /// Samples computed and seconds spent on them since the last `takeShares` (for per-epoch metrics).
    var sharedSamples = 0, sharedSeconds = 0.0

    /// How every coordinator line names this worker: `w2 "name" (host, pid 1234)`.
    public var label: String { "w\(id) \"\(name)\" (\(host), pid \(pid))" }

    var isActive: Bool { state == .ready || state == .assigned }
}

/// Every worker that has said hello, in order of arrival; lost ones stay for the record (and to answer them).
struct MemberTable {
    private(set) var members: [Member] = []
    private var nextID: UInt32 = 1

    subscript(index: Int) -> Member {
        get { members[index] }
        set { members[index] = newValue }
    }

    /// The newest member (highest id) with this routing identity: places are reused, so not always the last.
    func index(of identity: [UInt8]) -> Int? {
        var newest: Int?
        for index in members.indices where members[index].identity == identity {
            if newest == nil || members[index].id > members[newest!].id { newest = index }
        }
        return newest
    }

    var active: [Int] { members.indices.filter { members[$0].isActive } }
    var lost: [Member] { members.filter { $0.state == .lost } }

    /// Members the table holds at most: past it, a lost member's place is reused (hellos cannot grow it).
    static let capacity = 4096

    /// Admits a worker; when the table is full, the oldest lost member that `inUse` does not name gives up its
    /// place. Nil when there is none.
    mutating func admit(identity: [UInt8], fields: [String: String], now: ContinuousClock.Instant,
                        inUse: (Int) -> Bool = { _ in false }) -> Int? {
        func clean(_ key: String) -> String {
            // Names come from the network: printable ASCII only, bounded.
            let text = fields[key] ?? "?"
            return String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7F })
                .prefix(64))
        }
        let member = Member(id: nextID, identity: identity, name: clean("name"), host: clean("host"),
                            pid: clean("pid"), cores: clean("cores"), build: clean("build"), blas: clean("blas"),
                            oneDNN: clean("onednn"),
                            lastHeard: now)
        let slot: Int
        if members.count < Self.capacity {
            members.append(member)
            slot = members.count - 1
        } else if let reusable = members.indices.first(where: { members[$0].state == .lost && !inUse($0) }) {
            members[reusable] = member
            slot = reusable
        } else {
            return nil
        }
        nextID &+= 1
        return slot
    }
}
