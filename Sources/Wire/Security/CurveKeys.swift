import CZeroMQ
import Foundation

/// A CurveZMQ key problem: an unreadable, malformed or exposed key file, or a bad authorised list.
package struct KeyError: Error, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// A Curve25519 public key in Z85 text (40 characters), the form libzmq's socket options take.
package struct CurvePublicKey: Hashable, Sendable, CustomStringConvertible {
    package let z85: String

    /// Checks `text` is 40 Z85 characters that decode to 32 bytes.
    package init(z85 text: String) throws {
        guard Self.isZ85Key(text) else {
            // Not echoed: a line that is not a public key may be a secret one (a file mixed up, a stray character).
            throw KeyError("not a CurveZMQ public key (40 Z85 characters; this line has \(text.count))")
        }
        z85 = text
    }

    /// Short and stable, for logs: the key's first 12 characters.
    package var fingerprint: String { String(z85.prefix(12)) }
    package var description: String { z85 }

    static func isZ85Key(_ text: String) -> Bool {
        guard text.utf8.count == 40 else { return false }
        var bytes = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&bytes, text) != nil
    }
}

/// A CurveZMQ key pair: the secret half stays in a file only its owner can read.
package struct CurveKeyPair: Sendable {
    package let publicKey: CurvePublicKey
    package let secretZ85: String

    /// A fresh key pair from libzmq's generator (libsodium's randomness).
    package static func generate() throws -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41), secretText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else {
            throw KeyError("this libzmq cannot make CurveZMQ keys (built without CURVE)")
        }
        return CurveKeyPair(publicKey: try CurvePublicKey(z85: cText(publicText)),
                            secretZ85: cText(secretText))
    }

    /// The pair of a Z85 secret key (its public half is derived).
    package init(secretZ85: String) throws {
        guard CurvePublicKey.isZ85Key(secretZ85) else { throw KeyError("not a CurveZMQ secret key (40 Z85 characters)") }
        var publicText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicText, secretZ85) == 0 else { throw KeyError("not a CurveZMQ secret key") }
        self.publicKey = try CurvePublicKey(z85: cText(publicText))
        self.secretZ85 = secretZ85
    }

    private init(publicKey: CurvePublicKey, secretZ85: String) {
        self.publicKey = publicKey
        self.secretZ85 = secretZ85
    }
}

/// Key files: `NAME.key` holds the secret key (mode 0600) and `NAME.pub` the public one, each a Z85 line; lines
/// starting with `#` are comments.
package enum KeyFiles {
    /// Writes `base.key` (0600, never overwriting) and `base.pub`; returns the two paths.
    package static func write(_ pair: CurveKeyPair, base: String) throws -> (secret: String, public: String) {
        let secretPath = base + ".key", publicPath = base + ".pub"
        for path in [secretPath, publicPath] where FileManager.default.fileExists(atPath: path) {
            throw KeyError("\(path) already exists; remove it or pick another --output")
        }
        let secretText = "# shardtrain CurveZMQ secret key: keep it private (its public half is in \(publicPath))\n"
            + pair.secretZ85 + "\n"
        let descriptor = open(secretPath, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw KeyError("cannot create \(secretPath): \(String(cString: strerror(errno)))") }
        let written = secretText.utf8CString.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count - 1) }
        let synced = fsync(descriptor) == 0
        Glibc.close(descriptor)
        guard written == secretText.utf8.count, synced else { throw KeyError("cannot write \(secretPath)") }
        do {
            try (pair.publicKey.z85 + "\n").write(toFile: publicPath, atomically: true, encoding: .utf8)
        } catch {
            throw KeyError("cannot write \(publicPath): \(error.localizedDescription)")
        }
        return (secretPath, publicPath)
    }

    /// Reads a secret key file, refusing one that others may read or change (as ssh does).
    package static func readSecret(_ path: String) throws -> CurveKeyPair {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw KeyError("cannot read the key \(path): \(String(cString: strerror(errno))); make one with "
                + "`shardtrain keygen --output NAME`")
        }
        // Group read is allowed (Kubernetes mounts Secrets group-readable under fsGroup); nothing else is.
        guard info.st_mode & 0o037 == 0 else {
            throw KeyError("the key \(path) has mode \(String(info.st_mode & 0o777, radix: 8)): others can read or "
                + "change it; run `chmod 600 \(path)`")
        }
        let keys = try keyLines(path, what: "secret key")
        guard keys.count == 1 else { throw KeyError("\(path): holds \(keys.count) keys; a secret key file holds one") }
        do { return try CurveKeyPair(secretZ85: keys[0].text) } catch let error as KeyError {
            throw KeyError("\(path) line \(keys[0].line): \(error.message)")
        }
    }

    /// Reads a file of public keys (one per line), or a folder's `*.pub` files.
    package static func readPublicKeys(_ path: String) throws -> [CurvePublicKey] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw KeyError("cannot read the public keys \(path): no such file or folder")
        }
        let files: [String]
        if isFolder.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = names.filter { $0.hasSuffix(".pub") }.sorted().map { (path as NSString).appendingPathComponent($0) }
            guard !files.isEmpty else { throw KeyError("the folder \(path) holds no *.pub file") }
        } else {
            files = [path]
        }
        var keys: [CurvePublicKey] = []
        for file in files {
            // Read once, through keyLines' checks (a regular file of this user's: a FIFO cannot hang this).
            let lines = try keyLines(file, what: "public key", keepComments: true)
            // A secret key parses as a key too: refuse to take one for a public key (and to have it lying around).
            if lines.first?.text.hasPrefix("# shardtrain CurveZMQ secret key") == true {
                throw KeyError("\(file) is a secret key file; give the public key (its .pub file) here")
            }
            for (line, text) in lines where !text.hasPrefix("#") {
                do { keys.append(try CurvePublicKey(z85: text)) } catch let error as KeyError {
                    throw KeyError("\(file) line \(line): \(error.message)")
                }
            }
        }
        guard !keys.isEmpty else { throw KeyError("\(path) holds no public key") }
        return keys
    }

    /// Reads one public key (a worker's `--coordinator-key`).
    package static func readPublicKey(_ path: String) throws -> CurvePublicKey {
        let keys = try readPublicKeys(path)
        guard keys.count == 1 else { throw KeyError("\(path) holds \(keys.count) keys; give the file of one") }
        return keys[0]
    }

    /// The non-comment lines of a small text file, with their line numbers.
    /// The file's non-empty lines (comments too with `keepComments`), trimmed.
    private static func keyLines(_ path: String, what: String, keepComments: Bool = false) throws
        -> [(line: Int, text: String)] {
        // A regular file of this user's (or root's): a FIFO or device would block or never end, and a key file
        // another user owns may have been put there by them.
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw KeyError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw KeyError("the \(what) \(path) is not a regular file") }
        guard info.st_uid == geteuid() || info.st_uid == 0 else {
            throw KeyError("the \(what) \(path) is owned by another user (uid \(info.st_uid)); use key files of your own")
        }
        // O_NONBLOCK: should the file have been swapped for a FIFO since, the open does not wait for a writer.
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw KeyError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))")
        }
        var opened = stat()
        guard fstat(descriptor, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw KeyError("the \(what) \(path) is not a regular file")
        }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: false)
        defer { close(descriptor) }
        // Key files are tiny; a huge one is not a key file and is not read into memory.
        let bytes = (try? handle.read(upToCount: 1 << 20)) ?? Data()
        guard bytes.count < 1 << 20 else { throw KeyError("\(path) is not a key file (over 1 MB)") }
        guard let text = String(data: bytes, encoding: .utf8) else { throw KeyError("\(path) is not UTF-8 text") }
        return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { index, line in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return trimmed.isEmpty || (trimmed.hasPrefix("#") && !keepComments) ? nil : (index + 1, trimmed)
        }
    }
}

/// The text of a NUL-terminated C buffer.
func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
