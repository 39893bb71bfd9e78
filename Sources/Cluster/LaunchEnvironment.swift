import Foundation

/// A process's place in one run, as the launcher that started it tells: torchrun's convention (which Kubeflow's
/// PyTorchJob sets for every replica) or Slurm's `srun`. Rank 0 is the coordinator; every other rank is a worker.
package struct LaunchPlace: Sendable, Equatable {
    package var rank: Int
    package var worldSize: Int
    /// The coordinator's host (a name or an address).
    package var coordinatorHost: String
    package var port: Int
    /// Which launcher's variables gave the place (for the log line).
    package var source: String

    package init(rank: Int, worldSize: Int, coordinatorHost: String, port: Int, source: String) {
        self.rank = rank
        self.worldSize = worldSize
        self.coordinatorHost = coordinatorHost
        self.port = port
        self.source = source
    }

    /// torchrun's default port, used when neither a flag nor MASTER_PORT gives one.
    package static let defaultPort = 29500

    /// The place from explicit values (flags), else torchrun's variables, else Slurm's; a missing or malformed
    /// value is an error naming the variable and what to set.
    package static func resolve(rank: Int?, worldSize: Int?, host: String?, port: Int?,
                               environment: [String: String]) throws -> LaunchPlace {
        func integer(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw LaunchError("\(name)=\(text.prefix(40)) is not an integer")
            }
            return value
        }
        let torchrun = environment["RANK"] != nil || environment["WORLD_SIZE"] != nil
        let slurm = environment["SLURM_PROCID"] != nil
        var source = torchrun ? "torchrun variables" : slurm ? "Slurm variables" : "flags"
        let resolvedRank = try rank ?? integer("RANK") ?? integer("SLURM_PROCID")
        let resolvedWorld = try worldSize ?? integer("WORLD_SIZE") ?? integer("SLURM_NTASKS")
        var resolvedHost = host ?? environment["MASTER_ADDR"]
        if resolvedHost == nil, let list = environment["SLURM_JOB_NODELIST"] ?? environment["SLURM_NODELIST"] {
            resolvedHost = try SlurmHostList.expand(list).first
        }
        let resolvedPort = try port ?? integer("MASTER_PORT") ?? defaultPort
        if rank != nil && worldSize != nil && host != nil { source = "flags" }
        guard let resolvedRank else {
            throw LaunchError("no rank: give --rank, or run under torchrun/Kubeflow (RANK) or srun (SLURM_PROCID)")
        }
        guard let resolvedWorld else {
            throw LaunchError("no world size: give --world-size, or set WORLD_SIZE (torchrun) or SLURM_NTASKS (srun)")
        }
        guard resolvedWorld >= 1, (0..<resolvedWorld).contains(resolvedRank) else {
            throw LaunchError("rank \(resolvedRank) is not within a world of \(resolvedWorld) processes (0 to "
                + "\(resolvedWorld - 1))")
        }
        // One process trains in-process: no coordinator to find.
        if resolvedWorld == 1 && (resolvedHost ?? "").isEmpty { resolvedHost = "127.0.0.1" }
        guard let resolvedHost, !resolvedHost.isEmpty else {
            throw LaunchError("no coordinator host: give --master-addr, or set MASTER_ADDR (torchrun) or "
                + "SLURM_JOB_NODELIST (srun)")
        }
        guard (1...65535).contains(resolvedPort) else { throw LaunchError("port \(resolvedPort) is not 1 to 65535") }
        return LaunchPlace(rank: resolvedRank, worldSize: resolvedWorld, coordinatorHost: resolvedHost,
                           port: resolvedPort, source: source)
    }

    /// Where rank 0 listens: the address the coordinator's host resolves to (so a loopback name stays loopback).
    package func bindEndpoint() throws -> String {
        "tcp://\(try Self.resolveAddress(coordinatorHost)):\(port)"
    }

    /// Where the other ranks connect.
    package var connectEndpoint: String {
        coordinatorHost.contains(":") ? "tcp://[\(coordinatorHost)]:\(port)" : "tcp://\(coordinatorHost):\(port)"
    }

    /// The first IPv4 address of `host` (or IPv6, bracketed, when it has none).
    static func resolveAddress(_ host: String) throws -> String {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let list else {
            throw LaunchError("cannot resolve the coordinator host \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var fallback: String?
        for entry in sequence(first: list, next: { $0.pointee.ai_next }) {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0,
                              NI_NUMERICHOST) == 0 else { continue }
            let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if entry.pointee.ai_family == AF_INET { return text }
            fallback = fallback ?? "[\(text)]"
        }
        guard let fallback else { throw LaunchError("the coordinator host \(host) has no usable address") }
        return fallback
    }
}

/// A launch environment that does not say where this process belongs.
package struct LaunchError: Error, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// Slurm's compressed host lists, expanded as `scontrol show hostnames` does: `node[01-03,7],gpu-a[1-2]-x` →
/// node01 node02 node03 node7 gpu-a1-x gpu-a2-x; zero padding is kept, several bracket groups multiply.
package enum SlurmHostList {
    package static func expand(_ list: String) throws -> [String] {
        var names: [String] = []
        for item in try splitTopLevel(list) where !item.isEmpty { names += try expandName(Substring(item)) }
        guard !names.isEmpty else { throw LaunchError("SLURM_JOB_NODELIST '\(list)' names no host") }
        return names
    }

    /// Splits at commas outside brackets.
    private static func splitTopLevel(_ list: String) throws -> [String] {
        var items: [String] = [], current = "", depth = 0
        for character in list {
            switch character {
            case "[": depth += 1
            case "]":
                depth -= 1
                guard depth >= 0 else { throw LaunchError("unbalanced ']' in host list '\(list)'") }
            case "," where depth == 0:
                items.append(current)
                current = ""
                continue
            default: break
            }
            current.append(character)
        }
        guard depth == 0 else { throw LaunchError("unbalanced '[' in host list '\(list)'") }
        items.append(current)
        return items.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    private static func expandName(_ name: Substring) throws -> [String] {
        guard let open = name.firstIndex(of: "[") else { return [String(name)] }
        guard let close = name[open...].firstIndex(of: "]") else { throw LaunchError("unbalanced '[' in '\(name)'") }
        let prefix = name[..<open], rest = name[name.index(after: close)...]
        var values: [String] = []
        for part in name[name.index(after: open)..<close].split(separator: ",") {
            let bounds = part.split(separator: "-", maxSplits: 1)
            guard let low = Int(bounds[0]), let high = Int(bounds.count == 2 ? bounds[1] : bounds[0]), low <= high,
                  high - low < 100_000 else {
                throw LaunchError("bad range '\(part)' in host list '\(name)'")
            }
            let width = bounds[0].count
            values += (low...high).map { value in
                let digits = String(value)
                return String(repeating: "0", count: max(0, width - digits.count)) + digits
            }
        }
        let tails = try expandName(rest)
        return values.flatMap { value in tails.map { "\(prefix)\(value)\($0)" } }
    }
}
