import Foundation
import Testing

/// `shardtrain launch` placed by torchrun's variables, as Kubeflow's PyTorchJob sets them for every replica.
@Suite(.serialized)
struct LaunchTests {
    @Test("three processes under torchrun's variables give the bits of train --workers 2, and all exit 0")
    func torchrunVariables() throws {
        let port = Command.reservedPort()
        let reference = Command.temporaryPath("launch-reference.st"), out = Command.temporaryPath("launch.st")
        let local = try Command.run(["train", "--config", "examples/spirals.yaml", "--epochs", "10", "--workers", "2",
                                     "--save", reference])
        #expect(local.status == 0, "\(local.stderr)")
        let folder = Command.temporaryPath("launch-checkpoints")
        try? FileManager.default.removeItem(atPath: folder)
        let ranks = try (0..<3).map { rank in
            try Command.start(["launch", "--config", "examples/spirals.yaml", "--epochs", "10", "--save", out,
                               "--checkpoint", folder, "--idle-timeout", "20"],
                              stderr: Command.temporaryPath("launch-\(rank).log"),
                              environment: ["RANK": "\(rank)", "WORLD_SIZE": "3", "MASTER_ADDR": "localhost",
                                            "MASTER_PORT": "\(port)"])
        }
        // Workers exit 0 when told the run finished; one that waited out its --idle-timeout would exit 4, saying
        // "… within --idle-timeout" (a worker that starts before the coordinator listens says it retries until then).
        for (rank, process) in ranks.enumerated() {
            let status = Command.wait(process, timeout: 120)
            let log = (try? String(contentsOfFile: Command.temporaryPath("launch-\(rank).log"), encoding: .utf8)) ?? ""
            #expect(status == 0 && !log.contains("within --idle-timeout"), "rank \(rank): \(log)")
        }
        let coordinatorLog = try String(contentsOfFile: Command.temporaryPath("launch-0.log"), encoding: .utf8)
        #expect(coordinatorLog.contains("coordinator on tcp://127.0.0.1:\(port)"), "\(coordinatorLog)")
        #expect(FileManager.default.contents(atPath: out) == FileManager.default.contents(atPath: reference))
    }

    @Test("a launch with no place is bad input, exit 2, naming what to set")
    func noPlace() throws {
        let result = try Command.run(["launch", "--config", "examples/xor.yaml"],
                                     environment: ["RANK": "", "WORLD_SIZE": "", "SLURM_PROCID": "", "SLURM_NTASKS": ""])
        #expect(result.status == 2 && result.stderr.contains("launch: no rank"), "\(result.stderr)")
    }
}
