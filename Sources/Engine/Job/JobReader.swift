import Yams

/// Walks one YAML/JSON mapping of a job file, turning each key into a typed value and refusing keys nobody read.
///
/// Every error names the file, the line and the dotted key path, e.g. `job.yaml:7: optimizer.lr: …`.
struct JobReader {
    let file: String
    let path: String
    private let node: Node
    private let entries: [(key: String, value: Node)]
    private var read: Set<String> = []

    init(_ node: Node, file: String, path: String) throws {
        self.file = file
        self.path = path
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

    func fail(_ key: String, _ node: Node?, _ message: String) -> InputError {
        InputError("\(node.map { Self.location(file, $0) } ?? "\(file): ")\(keyPath(key)): \(message)")
    }

    mutating func string(_ key: String) throws -> String? {
        guard let value = node(key) else { return nil }
        guard value.scalar != nil, let text = value.string else { throw fail(key, value, "expected a word") }
        return text
    }

    mutating func int(_ key: String, minimum: Int = Int.min) throws -> Int? {
        guard let value = node(key) else { return nil }
        guard let number = value.int else {
            throw fail(key, value, "expected a whole number, got '\(value.string ?? "a collection")'")
        }
        guard number >= minimum else { throw fail(key, value, "must be at least \(minimum), got \(number)") }
        return number
    }

    mutating func double(_ key: String, in range: ClosedRange<Double> = -.greatestFiniteMagnitude ... .greatestFiniteMagnitude)
        throws -> Double? {
        guard let value = node(key) else { return nil }
        guard let number = value.float ?? value.int.map(Double.init), number.isFinite else {
            throw fail(key, value, "expected a number, got '\(value.string ?? "a collection")'")
        }
        guard range.contains(number) else {
            throw fail(key, value, "must lie in \(range.lowerBound)…\(range.upperBound), got \(number)")
        }
        return number
    }

    mutating func bool(_ key: String) throws -> Bool? {
        guard let value = node(key) else { return nil }
        guard let flag = value.bool else {
            throw fail(key, value, "expected true or false, got '\(value.string ?? "a collection")'")
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
