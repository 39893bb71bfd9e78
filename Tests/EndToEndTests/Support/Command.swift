import Foundation
import Synchronization

/// Runs the built `shardtrain` binary as a user would.
enum Command {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The binary beside the test bundle (same build folder and configuration).
    static let binary: URL = {
        let folder = Bundle.main.bundleURL.pathExtension == "xctest"
            ? Bundle.main.bundleURL.deletingLastPathComponent() : Bundle.main.bundleURL
        return folder.appendingPathComponent("shardtrain")
    }()

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        var lines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Runs the binary to its end; `environment` adds to (or, with an empty value, removes from) this process's.
    /// `raw`: `arguments[0]` names the program to run, the rest are its arguments.
    static func run(_ arguments: [String], environment: [String: String] = [:], raw: Bool = false) throws -> Result {
        let process = Process()
        process.executableURL = raw ? URL(fileURLWithPath: arguments[0]) : binary
        process.arguments = raw ? Array(arguments.dropFirst()) : arguments
        process.environment = merged(environment)
        process.currentDirectoryURL = repository
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    static func merged(_ changes: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in changes { environment[key] = value.isEmpty ? nil : value }
        return environment
    }

    /// A job file of `text` in the temporary folder, and its uninterrupted in-process run (one thread): the saved
    /// weights (`NAME-reference.st`), their SHA-256 and the printed lines — what every interrupted or distributed run
    /// of it must give.
    static func jobWithReference(_ name: String, _ text: String, flags: [String] = [])
        -> (file: String, weights: String, digest: String, stdout: String) {
        let file = temporaryPath("\(name)-job.yaml"), weights = temporaryPath("\(name)-reference.st")
        try? text.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try? run(["train", "--config", file, "--threads", "1", "--save", weights] + flags)
        return (file, weights, (try? FailureTests.digest(weights)) ?? "no reference", result?.stdout ?? "")
    }

    /// A job whose SGD learning rate makes it diverge within a few dozen steps, written to the temporary folder.
    static func divergingJob(_ name: String, reduction: String, extra: String = "") throws -> String {
        let path = temporaryPath("\(name).yaml")
        try """
            model: {layers: [{units: 1}]}
            loss: mse
            optimizer: {name: sgd, lr: 10}
            data: {builtin: regression, samples: 64}
            batch_size: 64
            epochs: 500
            reduction: \(reduction)
            \(extra)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A job file of `text` in the temporary folder, named `name`; its path.
    static func job(_ name: String, _ text: String) -> String {
        let path = temporaryPath(name)
        try? text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The pids of the workers a coordinator's log says joined ("… (host, pid 4242) joined with …").
    static func workerPIDs(inLog text: String) -> [Int32] {
        text.split(separator: "\n").filter { $0.contains(" joined with ") }.compactMap { line in
            line.split(separator: "pid ").dropFirst().first.flatMap { Int32($0.prefix { $0.isNumber }) }
        }
    }

    static func temporaryPath(_ name: String) -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shardtrain-e2e-\(getpid())")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder.appendingPathComponent(name).path
    }
}

extension Command {
    /// Starts the binary in the background, standard error to `stderr` (a file path), standard output discarded.
    /// Starts the binary with `arguments` (or, `raw`, the program that `arguments[0]` names).
    static func start(_ arguments: [String], stderr: String, environment: [String: String] = [:],
                      raw: Bool = false) throws -> Process {
        _ = FileManager.default.createFile(atPath: stderr, contents: nil)
        let process = Process()
        process.executableURL = raw ? URL(fileURLWithPath: arguments[0]) : binary
        process.arguments = raw ? Array(arguments.dropFirst()) : arguments
        process.environment = merged(environment)
        process.currentDirectoryURL = repository
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: stderr)
        try process.run()
        return process
    }

    /// The first line of the file that contains `text` (and `also`), waiting up to `timeout` seconds for it.
    static func waitForLine(in path: String, containing text: String, timeout: Double, and also: String = "") throws
        -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let content = try? String(contentsOfFile: path, encoding: .utf8),
               let line = content.split(separator: "\n").first(where: { $0.contains(text) && (also.isEmpty || $0.contains(also)) }) {
                return String(line)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let content = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        throw CommandError(message: "no line containing '\(text)' within \(timeout) s; log: \(content.suffix(500))")
    }

    /// The exit status, or nil if the process is still running after `timeout` seconds (it is then killed).
    static func wait(_ process: Process, timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            return nil
        }
        return process.terminationStatus
    }

    struct CommandError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}

extension Command {
    /// A loopback TCP port for one coordinator of this test process: never handed out twice here, free when chosen,
    /// and below the kernel's ephemeral range (`ip_local_port_range`), so neither an outgoing connection nor a `:*`
    /// bind of any process can be given it meanwhile — the race a port bound to 0 and released would run.
    static func reservedPort() -> Int {
        let ephemeralStart = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { Int($0.split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") } ?? 32768
        return portLock.withLock { next in
            while true {
                // Test processes running side by side start at different places (by pid) and count up.
                if next == 0 { next = 10000 + Int(getpid() % 500) * 40 }
                let port = next
                next = next + 1 >= ephemeralStart ? 10000 : next + 1
                if isFree(port) { return port }
            }
        }
    }

    private static let portLock = Mutex(0)

    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
