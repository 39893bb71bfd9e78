import Foundation
import Testing

/// The coordinator under pressure from the network: a crowd of idle connections that exhausts its descriptors does
/// not cost the run its result.
@Suite(.serialized)
struct HardeningTests {
    /// A TCP connection that never says anything.
    static func idleConnection(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return fd
    }

    @Test("descriptors exhausted by idle connections mid-run: checkpoints and --save are still written, the same bits")
    func descriptorsExhausted() throws {
        let port = Command.reservedPort(), log = Command.temporaryPath("exhausted.log")
        let out = Command.temporaryPath("exhausted.st"), folder = Command.temporaryPath("exhausted-checkpoints")
        try? FileManager.default.removeItem(atPath: out)
        try? FileManager.default.removeItem(atPath: folder)
        // A hard limit of 64 descriptors: a few hundred connections are far more than it can take.
        let command = [Command.binary.path, "coordinator", "--config", FailureTests.jobFile, "--bind",
                       "tcp://127.0.0.1:\(port)", "--workers", "1", "--heartbeat", "0.2", "--verbose", "--save", out,
                       "--checkpoint", folder].map { "'\($0)'" }.joined(separator: " ")
        let coordinator = try Command.start(["/bin/sh", "-c", "ulimit -n 64 && exec \(command)"], stderr: log, raw: true)
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        let worker = try FailureTests.worker(port, name: "steady", log: Command.temporaryPath("exhausted-worker.log"))
        try FailureTests.waitForStep(20, in: log)
        let crowd = (0..<300).map { _ in Self.idleConnection(port: port) }
        defer { crowd.forEach { close($0) } }
        let status = Command.wait(coordinator, timeout: 120)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(text.suffix(1500))")
        #expect(try FailureTests.digest(out) == FailureTests.reference.digest)
        let checkpoints = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        #expect(checkpoints.contains { $0.hasPrefix("checkpoint-") }, "\(checkpoints)")
        FailureTests.expectAllEnded([worker])
    }
}
