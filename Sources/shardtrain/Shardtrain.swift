import ArgumentParser

@main
struct Shardtrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shardtrain",
        abstract: "Data-parallel neural-network training.",
        subcommands: [Train.self, CoordinatorCommand.self, WorkerCommand.self]
    )
}
