import ArgumentParser
import Engine
import Foundation

@main
struct Shardtrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shardtrain",
        abstract: "Data-parallel neural-network training.",
        version: Version.text,
        subcommands: [Train.self, Evaluate.self, Predict.self, Equivalence.self, Plot.self, CoordinatorCommand.self, WorkerCommand.self, Launch.self,
                      Keygen.self]
    )

    static func main() {
        // Before anything else: this may re-execute the program with a faster BLAS kernel.
        BLASKernel.selectAtLaunch()
        raiseDescriptorLimit()
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            failParsing(error)
        }
        do {
            try command.run()
        } catch let error as ExitCode {
            exit(withError: error)
        } catch where exitCode(for: error) == .success {
            exit(withError: error)  // `shardtrain help` and the like: printed as the parser prints them
        } catch {
            // What the commands do not turn into a message themselves (a transport failure, say): the cluster or
            // the machine failed, not the input.
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            Foundation.exit(4)
        }
    }

    private static func failParsing(_ error: Error) -> Never {
        // Help and version print as the parser has them; a bad flag is bad input like any other: one line,
        // status 2 (the parser's own would be several lines and 64).
        let code = exitCode(for: error)
        guard code != .success, !(error is ExitCode) else { exit(withError: error) }
        var message = Self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        // A mistyped command reads to the parser as stray arguments; say what it is.
        let commands = configuration.subcommands.map { $0._commandName }
        if let first = CommandLine.arguments.dropFirst().first, !first.hasPrefix("-"), first != "help",
           !commands.contains(first) {
            message = "unknown command '\(first)'; the commands are \(commands.joined(separator: ", "))"
        }
        // A negative number after a flag reads to the parser as another flag ("Missing value for '--epochs …'").
        let arguments = Array(CommandLine.arguments.dropFirst())
        if message.hasPrefix("Missing value for '--"),
           let flag = message.split(separator: "'").dropFirst().first?.split(separator: " ").first,
           let value = zip(arguments, arguments.dropFirst()).first(where: {
               $0.0 == flag && $0.1.hasPrefix("-") && Double($0.1) != nil })?.1 {
            message = "\(flag) \(value): no flag takes a negative number (every count, size, seed and rate is "
                + "positive or zero)"
        }
        // The parser's own messages (capitalised) name no remedy; the project's validations do.
        let fromParser = message.first?.isUppercase ?? true
        let hint = fromParser ? " (`shardtrain help` lists the commands and their flags)" : ""
        FileHandle.standardError.write(Data("error: \(message)\(hint)\n".utf8))
        Foundation.exit(2)
    }
}

/// A coordinator holds one descriptor per connection: allow as many as the system lets this process have, so a
/// crowd of connections (idle ones are dropped after their handshake limit) does not starve it.
private func raiseDescriptorLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
