import Cluster
import Testing

/// A process's place from torchrun's or Slurm's variables, and Slurm host lists expanded as scontrol does.
struct LaunchEnvironmentTests {
    @Test("Slurm host lists: ranges, zero padding, several groups, plain names")
    func hostLists() throws {
        #expect(try SlurmHostList.expand("node[01-03,7]") == ["node01", "node02", "node03", "node7"])
        #expect(try SlurmHostList.expand("gpu-a[1-2]-x[08-09],login") == ["gpu-a1-x08", "gpu-a1-x09", "gpu-a2-x08",
                                                                           "gpu-a2-x09", "login"])
        #expect(try SlurmHostList.expand("vm") == ["vm"])
        #expect(throws: LaunchError.self) { try SlurmHostList.expand("node[1-") }
        #expect(throws: LaunchError.self) { try SlurmHostList.expand("node[3-1]") }
    }

    @Test("torchrun's variables, Slurm's, and flags over both")
    func places() throws {
        let torchrun = try LaunchPlace.resolve(rank: nil, worldSize: nil, host: nil, port: nil, environment: [
            "RANK": "2", "WORLD_SIZE": "4", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "23456"])
        #expect(torchrun == LaunchPlace(rank: 2, worldSize: 4, coordinatorHost: "10.1.2.3", port: 23456,
                                        source: "torchrun variables"))
        #expect(torchrun.connectEndpoint == "tcp://10.1.2.3:23456")
        let slurm = try LaunchPlace.resolve(rank: nil, worldSize: nil, host: nil, port: nil, environment: [
            "SLURM_PROCID": "0", "SLURM_NTASKS": "3", "SLURM_JOB_NODELIST": "cn[007-009]"])
        #expect(slurm == LaunchPlace(rank: 0, worldSize: 3, coordinatorHost: "cn007", port: 29500,
                                     source: "Slurm variables"))
        let flags = try LaunchPlace.resolve(rank: 1, worldSize: 2, host: "127.0.0.1", port: 4000, environment: [
            "SLURM_PROCID": "0", "SLURM_NTASKS": "3", "SLURM_JOB_NODELIST": "cn[007-009]"])
        #expect(flags.rank == 1 && flags.worldSize == 2 && flags.coordinatorHost == "127.0.0.1" && flags.port == 4000)
        // One process needs no coordinator host.
        let alone = try LaunchPlace.resolve(rank: nil, worldSize: nil, host: nil, port: nil,
                                            environment: ["RANK": "0", "WORLD_SIZE": "1"])
        #expect(alone.rank == 0 && alone.worldSize == 1)
        #expect(try LaunchPlace(rank: 0, worldSize: 2, coordinatorHost: "localhost", port: 5000, source: "")
            .bindEndpoint() == "tcp://127.0.0.1:5000")
    }

    @Test("a missing or impossible place is refused, naming what to set", arguments: [
        (["WORLD_SIZE": "2", "MASTER_ADDR": "h"], "no rank"),
        (["RANK": "0", "MASTER_ADDR": "h"], "no world size"),
        (["RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h"], "rank 2 is not within a world of 2"),
        (["RANK": "x", "WORLD_SIZE": "2"], "RANK=x is not an integer"),
        (["RANK": "0", "WORLD_SIZE": "2"], "no coordinator host"),
    ])
    func refusals(environment: [String: String], message: String) {
        #expect {
            _ = try LaunchPlace.resolve(rank: nil, worldSize: nil, host: nil, port: nil, environment: environment)
        } throws: { error in
            (error as? LaunchError)?.message.contains(message) == true
        }
    }
}
