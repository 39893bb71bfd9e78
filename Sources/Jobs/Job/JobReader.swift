import Engine
import Platform
import Yams

/// Walks one YAML/JSON mapping of a job file, turning each key into a typed value and refusing keys nobody read.
///
/// Every error names the file, the line and the dotted key path, e.g. `job.yaml:7: optimizer.lr: …`; a value
/// from the command line is named by its flag instead, e.g. `--batch-size 0: …`.
struct JobReader {
    let file: String
    let path: String
    /// Set when the mapping holds one value given on the command line: `file` is then its flag.
    let flagValue: String?
    private let node: Node
    private let entries: [(key: String, value: Node)]
    private var read: Set<String> = []

    init(_ node: Node, file: String, path: String, flagValue: String? = nil) throws {
        self.file = file
        self.path = path
        self.flagValue = flagValue
        self.node = node
        guard let mapping = node.mapping else {
            throw InputError("\(Self.location(file, node))\(path.isEmpty ? "the job" : path) must be a mapping of "
                + "keys to values")
        }
        var entries: [(String, Node)] = []
        for (key, value) in mapping {
            guard let name = key.string else {
                throw InputError("\(Self.location(file, key))\(path): keys must be strings")
            }
            entries.append((name, value))
        }
        self.entries = entries
    }

    static func location(_ file: String, _ node: Node) -> String {
        node.mark.map { "\(file):\($0.line): " } ?? "\(file): "
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    /// The raw node for `key`, marking it read.
    mutating func node(_ key: String) -> Node? {
        guard let entry = entries.first(where: { $0.key == key }) else { return nil }
        read.insert(key)
        return entry.value
    }

    /// A value as an error message shows it: quoted, and cut short, so a huge value is not echoed whole.
    static func shown(_ node: Node) -> String {
        guard let text = node.string else { return "a collection" }
        return text.count <= 60 ? "'\(text)'" : "'\(text.prefix(60))…' (\(text.count) characters)"
    }

    func fail(_ key: String, _ node: Node?, _ message: String) -> InputError {
        if let flagValue { return InputError("\(file) \(flagValue): \(message)") }
        return InputError("\(node.map { Self.location(file, $0) } ?? "\(file): ")\(keyPath(key)): \(message)")
    }

    mutating func string(_ key: String) throws -> String? {
        guard let value = node(key) else { return nil }
        guard value.scalar != nil, let text = value.string else { throw fail(key, value, "expected a word") }
        return text
    }

    mutating func int(_ key: String, minimum: Int = Int.min) throws -> Int? {
        guard let value = node(key) else { return nil }
        guard let number = value.int else {
            throw fail(key, value, "expected a whole number, got \(Self.shown(value))")
        }
        guard number >= minimum else { throw fail(key, value, "must be at least \(minimum), got \(number)") }
        return number
    }

    mutating func double(_ key: String, in range: ClosedRange<Double> = -.greatestFiniteMagnitude ... .greatestFiniteMagnitude)
        throws -> Double? {
        guard let value = node(key) else { return nil }
        guard let number = value.float ?? value.int.map(Double.init), number.isFinite else {
            throw fail(key, value, "expected a number, got \(Self.shown(value))")
        }
        guard range.contains(number) else {
            throw fail(key, value, "\(Self.requirement(range)), got \(number)")
        }
        return number
    }

    /// What a range asks of a number, as a person would say it.
    static func requirement(_ range: ClosedRange<Double>) -> String {
        let unbounded = range.upperBound == .greatestFiniteMagnitude
        switch range.lowerBound {
        case _ where unbounded && range.lowerBound > 0 && range.lowerBound <= .leastNormalMagnitude: return "must be positive"
        case _ where unbounded: return "must be at least \(Self.number(range.lowerBound))"
        default: return "must lie in \(Self.number(range.lowerBound))…\(Self.number(range.upperBound))"
        }
    }

    private static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"
    }

    /// A number the engine keeps as a Float: refused when float32 cannot hold it (it would become 0 or ∞).
    mutating func float(_ key: String, in range: ClosedRange<Double> = -.greatestFiniteMagnitude ... .greatestFiniteMagnitude)
        throws -> Float? {
        guard let number = try double(key, in: range) else { return nil }
        let narrowed = Float(number)
        guard narrowed.isFinite else {
            throw fail(key, node(key), "\(number) is beyond float32's range (±3.4e38), which the engine computes in")
        }
        guard narrowed != 0 || number == 0 else {
            throw fail(key, node(key), "\(number) is 0 in float32, which the engine computes in (smallest: 1.4e-45)")
        }
        return narrowed
    }

    mutating func bool(_ key: String) throws -> Bool? {
        guard let value = node(key) else { return nil }
        guard let flag = value.bool else {
            throw fail(key, value, "expected true or false, got \(Self.shown(value))")
        }
        return flag
    }

    mutating func mapping(_ key: String) throws -> JobReader? {
        guard let value = node(key) else { return nil }
        return try JobReader(value, file: file, path: keyPath(key))
    }

    /// Refuses any key that was never read, listing the ones this mapping knows.
    func finish(known: [String]) throws {
        for entry in entries where !read.contains(entry.key) {
            let near = known.filter { $0 != entry.key }
            throw fail(entry.key, entry.value, "unknown key; \(path.isEmpty ? "the job" : path) takes "
                + near.joined(separator: ", "))
        }
    }
}
