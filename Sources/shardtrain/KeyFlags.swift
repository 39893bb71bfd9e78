import ArgumentParser
import Cluster
import Engine
import Foundation
import Platform
import Wire

/// CurveZMQ flags, one group per command so that each shows only its own: a coordinator's (its key, whom it admits), a
/// worker's (its key, which coordinator it trusts) and launch's (one key shared by every rank).
private let keyHelp = ArgumentHelp("This process's secret key file (from `shardtrain keygen`).", valueName: "file")
private let insecureHelp = ArgumentHelp("Allow plaintext tcp that reaches other machines (only on a network you trust).")

struct CoordinatorKeyFlags: ParsableArguments {
    @Option(help: keyHelp) var key: String?
    @Option(help: ArgumentHelp("The worker keys to admit: a file with one public key per line or a folder of *.pub "
        + "files (default: only holders of --key itself).", valueName: "path"))
    var authorized: String?
    @Flag(help: insecureHelp) var insecure = false

    /// The coordinator's keys, or nil for plaintext, which is refused on an endpoint other machines can reach
    /// unless --insecure says so.
    func coordinatorKeys(listeningOn endpoint: String) throws -> CoordinatorKeys? {
        guard let key else {
            if authorized != nil { throw InputError("--authorized needs --key (this coordinator's secret key)") }
            try refusePlaintext(endpoint, listening: true, insecure: insecure, keysToGive: "--key and --authorized")
            return nil
        }
        let pair = try readingKeys { try KeyFiles.readSecret(key) }
        let admitted = try authorized.map { path in try readingKeys { try KeyFiles.readPublicKeys(path) } }
            ?? [pair.publicKey]
        return CoordinatorKeys(keyPair: pair, authorized: Set(admitted))
    }
}

struct WorkerKeyFlags: ParsableArguments {
    @Option(help: keyHelp) var key: String?
    @Option(help: ArgumentHelp("The coordinator's public key file (default: the public half of --key).",
                               valueName: "file"))
    var coordinatorKey: String?
    @Flag(help: insecureHelp) var insecure = false

    /// The worker's keys, or nil for plaintext (refused towards another machine unless --insecure).
    func workerKeys(connectingTo endpoint: String) throws -> WorkerKeys? {
        guard let key else {
            if coordinatorKey != nil { throw InputError("--coordinator-key needs --key (this worker's secret key)") }
            try refusePlaintext(endpoint, listening: false, insecure: insecure, keysToGive: "--key and --coordinator-key")
            return nil
        }
        let pair = try readingKeys { try KeyFiles.readSecret(key) }
        let server = try coordinatorKey.map { path in try readingKeys { try KeyFiles.readPublicKey(path) } }
            ?? pair.publicKey
        return WorkerKeys(keyPair: pair, coordinatorKey: server)
    }
}

/// `launch`: every rank holds the same key, so the coordinator admits it and the workers trust it.
struct SharedKeyFlags: ParsableArguments {
    @Option(help: ArgumentHelp("The run's secret key file (from `shardtrain keygen`), the same on every rank.",
                               valueName: "file"))
    var key: String?
    @Flag(help: insecureHelp) var insecure = false

    func coordinatorKeys(listeningOn endpoint: String) throws -> CoordinatorKeys? {
        guard let key else {
            try refusePlaintext(endpoint, listening: true, insecure: insecure, keysToGive: "--key")
            return nil
        }
        let pair = try readingKeys { try KeyFiles.readSecret(key) }
        return CoordinatorKeys(keyPair: pair, authorized: [pair.publicKey])
    }

    func workerKeys(connectingTo endpoint: String) throws -> WorkerKeys? {
        guard let key else {
            try refusePlaintext(endpoint, listening: false, insecure: insecure, keysToGive: "--key")
            return nil
        }
        let pair = try readingKeys { try KeyFiles.readSecret(key) }
        return WorkerKeys(keyPair: pair, coordinatorKey: pair.publicKey)
    }
}

private func refusePlaintext(_ endpoint: String, listening: Bool, insecure: Bool, keysToGive: String) throws {
    if let refusal = EndpointReach.plaintextRefusal(endpoint, keyed: false, insecure: insecure, listening: listening,
                                                    keysToGive: keysToGive) {
        throw InputError(refusal)
    }
}

private func readingKeys<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as KeyError { throw InputError(error.message) }
}

/// `shardtrain keygen --output NAME`: a CurveZMQ key pair, NAME.key (secret, 0600) and NAME.pub.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a CurveZMQ key pair: NAME.key (secret, mode 0600) and NAME.pub (public, one line).",
        version: Version.text)

    @Option(help: ArgumentHelp("Path and name of the two files, without extension.", valueName: "name")) var output: String

    func run() throws {
        try reportingFailures {
            do {
                let pair = try CurveKeyPair.generate()
                let paths = try KeyFiles.write(pair, base: output)
                print("secret key: \(paths.secret) (keep it private)")
                print("public key: \(paths.public) \(pair.publicKey.z85)")
            } catch let error as KeyError {
                throw InputError(error.message)
            }
        }
    }
}
