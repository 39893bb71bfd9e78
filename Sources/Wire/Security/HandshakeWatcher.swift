/// A listening socket's handshake events, read on their own thread as they happen: a connection that fails its
/// handshake is gone within a round trip, and only a reader that is already waiting can still see its address.
package final class HandshakeWatcher: Sendable {
    private let thread: SocketThread

    /// Watches `socket` (call on its owner's thread); `handle` receives the events on the watcher's thread.
    package init(_ socket: Socket, context: Context,
                handle: @escaping @Sendable ([HandshakeMonitor.Event]) -> Void) throws {
        let endpoint = try HandshakeMonitor.publish(socket)
        do {
            thread = try SocketThread(name: "shardtrain handshakes", make: {
                try HandshakeMonitor.reader(of: endpoint, context: context)
            }, readable: { reader in handle(HandshakeMonitor.drain(reader)) })
        } catch {
            socket.stopMonitor()
            throw error
        }
    }

    /// Stops `socket`'s events (call on its owner's thread), then the thread, closing its reader (once; waits for
    /// it). In that order: see `Socket.stopMonitor`.
    package func stop(watching socket: Socket) {
        socket.stopMonitor()
        thread.stop()
    }
}
