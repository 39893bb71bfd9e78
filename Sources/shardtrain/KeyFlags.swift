import ArgumentParser
import Cluster
import Engine
import Foundation
import Wire

/// CurveZMQ flags: who this process is, whom a coordinator admits, which coordinator a worker trusts.
struct KeyFlags: ParsableArguments {
    @Option(help: ArgumentHelp("This process's secret key file (from `shardtrain keygen`).", valueName: "file"))
    var key: String?
    @Option(help: ArgumentHelp("Coordinator: the worker keys it admits, a file with one public key per line or a folder "
        + "of *.pub files (default: only holders of --key itself).", valueName: "path"))
    var authorized: String?
    @Option(help: ArgumentHelp("Worker: the coordinator's public key file (default: the public half of --key).",
                               valueName: "file"))
    var coordinatorKey: String?
    @Flag(help: "Allow plaintext tcp that reaches other machines (only on a network you trust).") var insecure = false

    /// The coordinator's keys, or nil for plaintext, which is refused on an endpoint other machines can reach
    /// unless --insecure says so.
    func coordinatorKeys(listeningOn endpoint: String) throws -> CoordinatorKeys? {
        guard let key else {
            if authorized != nil { throw InputError("--authorized needs --key (this coordinator's secret key)") }
            if let refusal = EndpointReach.plaintextRefusal(endpoint, keyed: false, insecure: insecure, listening: true) {
                throw InputError(refusal)
            }
            return nil
        }
        let pair = try reading { try KeyFiles.readSecret(key) }
        let admitted = try authorized.map { path in try reading { try KeyFiles.readPublicKeys(path) } } ?? [pair.publicKey]
        return CoordinatorKeys(keyPair: pair, authorized: Set(admitted))
    }

    /// The worker's keys, or nil for plaintext (refused towards another machine unless --insecure).
    func workerKeys(connectingTo endpoint: String) throws -> WorkerKeys? {
        guard let key else {
            if coordinatorKey != nil { throw InputError("--coordinator-key needs --key (this worker's secret key)") }
            if let refusal = EndpointReach.plaintextRefusal(endpoint, keyed: false, insecure: insecure, listening: false) {
                throw InputError(refusal)
            }
            return nil
        }
        let pair = try reading { try KeyFiles.readSecret(key) }
        let server = try coordinatorKey.map { path in try reading { try KeyFiles.readPublicKey(path) } } ?? pair.publicKey
        return WorkerKeys(keyPair: pair, coordinatorKey: server)
    }

    private func reading<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as KeyError { throw InputError(error.message) }
    }
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
