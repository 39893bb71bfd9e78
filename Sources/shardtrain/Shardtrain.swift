import ArgumentParser
import Engine

@main
struct Shardtrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shardtrain",
        abstract: "Data-parallel neural-network training.",
        subcommands: [Train.self, CoordinatorCommand.self, WorkerCommand.self, Launch.self, Keygen.self]
    )

    static func main() {
        // Before anything else: this may re-execute the program with a faster BLAS kernel.
        BLASKernel.selectAtLaunch()
        main(nil)
    }
}
