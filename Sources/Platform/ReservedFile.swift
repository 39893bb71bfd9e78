import Foundation

/// An output file opened before the work that fills it: a temporary file beside `path`, held open, so the result
/// can be written even when the process has since run out of descriptors (a flood of connections), and so an
/// unwritable destination is reported before training rather than after. `commit` writes, fsyncs and renames it
/// into place; a reservation never committed is removed.
package final class ReservedFile {
    package let path: String
    private let temporary: String
    private var descriptor: Int32

    /// Opens the temporary file; throws `InputError` naming `what` (e.g. "--save") and the reason. While the process
    /// is out of descriptors it tries again for up to `patience` (connections that never finish their handshake are
    /// dropped within seconds, and give theirs back).
    ///
    /// The temporary name is `.NAME.PID.RANDOM.tmp`, created exclusively and never through a symlink (`O_EXCL`,
    /// `O_NOFOLLOW`): in a shared folder another user cannot plant a link there to have this process overwrite a
    /// file of theirs choosing. `mode` is the most the finished file gets, less the umask's bits (checkpoints 0600:
    /// they hold the whole run).
    package init(_ path: String, what: String, mode: mode_t = 0o644, patience: Duration = .seconds(10)) throws {
        self.path = path
        try Self.refuseForeignLink(path, what: what)
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent()
        var name = ""
        let deadline = ContinuousClock.now + patience
        repeat {
            name = folder.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt64.random(in: 0 ... .max)).tmp").path
            descriptor = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if descriptor < 0, errno == EEXIST { continue }  // another name, then
            guard descriptor < 0, errno == EMFILE || errno == ENFILE, ContinuousClock.now < deadline else { break }
            usleep(100_000)
        } while true
        temporary = name
        guard descriptor >= 0 else {
            throw InputError("\(what) \(path): cannot create it (\(String(cString: strerror(errno)))); check that the "
                + "folder exists and is writable")
        }
    }

    /// A destination that is a symlink owned by another user is refused: renaming over it would replace their link,
    /// and following it would write where they chose.
    package static func refuseForeignLink(_ path: String, what: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK, info.st_uid != geteuid() else { return }
        throw InputError("\(what) \(path): is a symbolic link owned by another user (uid \(info.st_uid)); write to a "
            + "path of your own")
    }

    deinit {
        if descriptor >= 0 {
            close(descriptor)
            unlink(temporary)
        }
    }

    /// Writes `data`, flushes it to disk and renames it to `path`, or to `destination` in the same folder (then
    /// flushes the folder, when a descriptor for it can be had). A reservation commits once.
    package func commit(_ data: Data, as destination: String? = nil) throws {
        let path = destination ?? self.path
        precondition(descriptor >= 0, "a reserved file is committed once")
        func failure(_ what: String) -> InputError {
            InputError("\(path): cannot \(what) it (\(String(cString: strerror(errno)))); check the folder's space "
                + "and permissions")
        }
        var written = 0
        let ok = data.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = Foundation.write(descriptor, raw.baseAddress! + written, raw.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return true
        }
        guard ok, fsync(descriptor) == 0 else { throw failure("write") }
        close(descriptor)
        descriptor = -1
        do { try Self.refuseForeignLink(path, what: "writing") } catch { unlink(temporary); throw error }
        guard rename(temporary, path) == 0 else {
            let error = failure("rename")
            unlink(temporary)
            throw error
        }
        let folder = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }
}
