import Foundation
import Synchronization
import Testing
@testable import Wire

/// CurveZMQ keys and the ZAP handler, against libzmq itself: an authorised key gets through and is named by its
/// public key; an unlisted key and a plaintext peer never deliver a message.
@Suite struct CurveTests {
    static func folder() -> String {
        let path = NSTemporaryDirectory() + "curve-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("key files: the secret file is 0600, its public half is derived, and it reads back as the same pair")
    func keyFilesRoundTrip() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let base = folder + "/node"
        let pair = try CurveKeyPair.generate()
        let paths = try KeyFiles.write(pair, base: base)
        var info = stat()
        #expect(stat(paths.secret, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let read = try KeyFiles.readSecret(paths.secret)
        #expect(read.secretZ85 == pair.secretZ85 && read.publicKey == pair.publicKey)
        #expect(try KeyFiles.readPublicKey(paths.public) == pair.publicKey)
        #expect(throws: KeyError.self) { try KeyFiles.write(pair, base: base) }  // never overwrites
        #expect { try KeyFiles.readPublicKey(paths.secret) } throws: { "\($0)".contains("is a secret key file") }
    }

    @Test("bad key files are refused naming the file, the line or the mode")
    func badKeyFiles() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pair = try CurveKeyPair.generate()
        let loose = folder + "/loose.key"
        try (pair.secretZ85 + "\n").write(toFile: loose, atomically: true, encoding: .utf8)
        chmod(loose, 0o644)
        #expect { try KeyFiles.readSecret(loose) } throws: { "\($0)".contains("mode 644") && "\($0)".contains("chmod 600") }
        let list = folder + "/list"
        try "# workers\n\(pair.publicKey.z85)\nnot-a-key\n".write(toFile: list, atomically: true, encoding: .utf8)
        #expect { try KeyFiles.readPublicKeys(list) } throws: { "\($0)".contains("\(list) line 3") }
        #expect(throws: KeyError.self) { try KeyFiles.readPublicKeys(folder + "/missing") }
        // A folder of *.pub files, other files ignored.
        let keys = folder + "/keys"
        try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true)
        let other = try CurveKeyPair.generate()
        try pair.publicKey.z85.write(toFile: keys + "/a.pub", atomically: true, encoding: .utf8)
        try other.publicKey.z85.write(toFile: keys + "/b.pub", atomically: true, encoding: .utf8)
        try "junk".write(toFile: keys + "/notes.txt", atomically: true, encoding: .utf8)
        #expect(Set(try KeyFiles.readPublicKeys(keys)) == [pair.publicKey, other.publicKey])
    }

    /// A dealer that tries to reach `endpoint` for up to `seconds`; returns the monitor events it saw and
    /// whether its hello was delivered.
    static func attempt(_ context: Context, _ endpoint: String, keys: (CurveKeyPair, CurvePublicKey)?,
                        seconds: Double) throws -> [HandshakeMonitor.Event] {
        let dealer = try Socket(context, .dealer)
        try SocketTuning.worker(dealer, maximumMessageBytes: 1 << 20)
        if let (pair, server) = keys { try SocketTuning.curveClient(dealer, keyPair: pair, server: server) }
        let monitor = try HandshakeMonitor(dealer, context: context)
        defer { monitor.close(); dealer.close() }
        try dealer.connect(endpoint)
        var events: [HandshakeMonitor.Event] = []
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            _ = try? dealer.send([Message(copying: Array("hello".utf8))], wait: false)
            _ = try Socket.poll([monitor.socket], timeout: .milliseconds(50))
            events += monitor.drain()
            if events.contains(where: { if case .refused = $0 { true } else { $0 == .mechanismMismatch } }) { break }
        }
        return events
    }

    @Test("ZAP: an authorised key is admitted and named; an unlisted key is refused (400); plaintext mismatches")
    func zapAdmitsOnlyListedKeys() throws {
        #expect(Context.hasCurve)
        let context = try Context()
        let server = try CurveKeyPair.generate(), good = try CurveKeyPair.generate(), bad = try CurveKeyPair.generate()
        let refusals = Mutex<[String]>([])
        let zap = try ZAPHandler(context: context, authorized: [good.publicKey]) { line in
            refusals.withLock { $0.append(line) }
        }
        defer { zap.stop() }
        let router = try Socket(context, .router)
        defer { router.close() }
        try SocketTuning.coordinator(router, maximumMessageBytes: 1 << 20)
        try SocketTuning.curveServer(router, keyPair: server)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = router.lastEndpoint

        let refused = try Self.attempt(context, endpoint, keys: (bad, server.publicKey), seconds: 5)
        #expect(refused.contains(.refused(status: 400)), "\(refused)")
        let plain = try Self.attempt(context, endpoint, keys: nil, seconds: 15)
        #expect(plain.contains(.mechanismMismatch), "\(plain)")
        #expect(try router.receive(maximumFrames: 4) == nil, "a refused peer delivered a message")
        #expect(refusals.withLock { $0 }.contains { $0.contains(bad.publicKey.z85) && $0.contains("127.0.0.1") })

        let dealer = try Socket(context, .dealer)
        defer { dealer.close() }
        try SocketTuning.worker(dealer, maximumMessageBytes: 1 << 20)
        try SocketTuning.curveClient(dealer, keyPair: good, server: server.publicKey)
        try dealer.connect(endpoint)
        try dealer.send([Message(copying: Array("hello".utf8))])
        #expect(try Socket.poll([router], timeout: .seconds(10))[0])
        guard case .frames(let frames)? = try router.receive(maximumFrames: 4) else {
            Issue.record("the authorised worker's message did not arrive")
            return
        }
        #expect(frames.last?.bytes == Array("hello".utf8))
        #expect(frames.last?.property("User-Id") == good.publicKey.z85)
        #expect(zap.refusedCount == 1)  // a plaintext peer never reaches the ZAP handler
    }
}
