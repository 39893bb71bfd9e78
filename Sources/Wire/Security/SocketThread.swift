import Foundation
import Synchronization

/// A socket served on a thread of its own — the key check's, the handshake watcher's. The socket is made on that
/// thread (a ZeroMQ socket belongs to one thread), polled in slices until `stop()`, then closed there.
final class SocketThread: @unchecked Sendable {
    /// Shared with the thread (not the SocketThread itself, so that dropping this object stops the thread).
    private final class Control: Sendable {
        let stopping = Atomic<Bool>(false)
        let finished = DispatchSemaphore(value: 0)
    }
    private let control = Control()

    /// Starts the thread; returns once `make` has made the socket, or throws what it threw. `readable` is called on
    /// the thread whenever the socket has a message.
    init(name: String, make: @escaping @Sendable () throws -> Socket, readable: @escaping @Sendable (Socket) -> Void)
        throws {
        let ready = DispatchSemaphore(value: 0)
        let startError = Mutex<Error?>(nil)
        let thread = Thread { [control] in
            defer { control.finished.signal() }
            let socket: Socket
            do {
                socket = try make()
            } catch {
                startError.withLock { $0 = error }
                ready.signal()
                return
            }
            ready.signal()
            while !control.stopping.load(ordering: .acquiring) {
                if (try? Socket.poll([socket], timeout: .milliseconds(100)))?[0] == true { readable(socket) }
            }
            socket.close()
        }
        thread.name = name
        thread.start()
        ready.wait()
        if let error = startError.withLock({ $0 }) { throw error }
    }

    /// Stops the thread and closes its socket (once; waits for it).
    func stop() {
        guard !control.stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        control.finished.wait()
    }

    deinit { stop() }
}
