import Foundation

/// A one-page HTTP server for `--prometheus`: `GET /metrics` answers with `body()`, anything else with 404, 405 or
/// 400, and the connection is closed after each answer. One thread of its own; one connection at a time, given 2 s in
/// all to send its request and 2 s to take the answer, so a client that stalls (or trickles a byte at a time) delays
/// the next scrape by at most that, and never the run or its end. Reads at most 8 KiB of a request. Binds where it is
/// told (`:9400` is every address, IPv6 and IPv4).
package final class MetricsServer: @unchecked Sendable {
    package let address: String
    package let port: UInt16
    private let listener: Int32
    private let body: @Sendable () -> [UInt8]
    private let requestTimeout: Int32 = 2000
    private var stopping = false
    private let lock = NSLock()
    private var thread: Thread?

    /// Listens on `address` ("HOST:PORT", ":PORT" for every address, "[::1]:PORT"); port 0 takes a free one.
    package init(address: String, body: @escaping @Sendable () -> [UInt8]) throws {
        self.address = address
        self.body = body
        let (host, portText) = try Self.split(address)
        guard UInt16(portText) != nil else {
            throw InputError("--prometheus \(address): the port \(portText) is not a number from 0 to 65535")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>?
        // Every address: IPv6's, which takes IPv4 too (glibc would offer 0.0.0.0 first, IPv4 only).
        if host.isEmpty { hints.ai_family = AF_INET6 }
        let status = getaddrinfo(host.isEmpty ? nil : host, portText, &hints, &found)
        guard status == 0, let info = found else {
            throw InputError("--prometheus \(address): cannot resolve \(host) (\(String(cString: gai_strerror(status)))); "
                + "give an address of this machine, or :PORT for every address")
        }
        defer { freeaddrinfo(found) }
        let descriptor = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
        var yes: Int32 = 1, no: Int32 = 0
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        if info.pointee.ai_family == AF_INET6 {
            setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &no, socklen_t(MemoryLayout<Int32>.size))
        }
        // Non-blocking: a client gone between poll and accept leaves accept failing, not waiting.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        guard descriptor >= 0, bind(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0,
              listen(descriptor, 16) == 0 else {
            let why = String(cString: strerror(errno))
            if descriptor >= 0 { close(descriptor) }
            throw InputError("--prometheus \(address): cannot listen there (\(why)); choose another port or address")
        }
        listener = descriptor
        var bound = sockaddr_storage(), length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        self.port = withUnsafePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        } // sin_port and sin6_port lie at the same offset
        let thread = Thread { [self] in serve() }
        thread.name = "metrics server"
        self.thread = thread
        thread.start()
    }

    /// "HOST:PORT" → (HOST, PORT), brackets taken off an IPv6 host.
    static func split(_ address: String) throws -> (String, String) {
        guard let colon = address.lastIndex(of: ":") else {
            throw InputError("--prometheus \(address): give HOST:PORT or :PORT (such as :9400)")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, String(address[address.index(after: colon)...]))
    }

    /// Stops serving and closes the socket (a scrape in progress is answered first).
    package func stop() {
        lock.withLock { stopping = true }
        while thread?.isFinished == false { usleep(1000) }
        close(listener)
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func serve() {
        while !isStopping {
            var wanted = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&wanted, 1, 100) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)  // not inherited by a worker started meanwhile
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) & ~O_NONBLOCK)
            // A client that takes no answer cannot hold a send for longer than this.
            var limit = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            answer(client)
            close(client)
        }
    }

    private func answer(_ client: Int32) {
        var request: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1024)
        // The request line and headers, up to the blank line; 8 KiB at most, all within one deadline.
        let deadline = ContinuousClock.now + .milliseconds(Int(requestTimeout))
        while request.count < 8192, !request.ends(with: [13, 10, 13, 10]), !request.ends(with: [10, 10]) {
            let left = Int32(max(0, (deadline - ContinuousClock.now) / .milliseconds(1)))
            guard left > 0, !isStopping else { return }
            var ready = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, left) > 0 else { return }
            let n = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            request += chunk[..<n]
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let words = line.split(separator: " ")
        let (status, type, payload): (String, String, [UInt8])
        if words.count != 3 || !words[2].hasPrefix("HTTP/") {
            (status, type, payload) = ("400 Bad Request", "text/plain", Array("not an HTTP request\n".utf8))
        } else if words[0] != "GET" && words[0] != "HEAD" {
            (status, type, payload) = ("405 Method Not Allowed", "text/plain", Array("only GET /metrics\n".utf8))
        } else if words[1] != "/metrics" && !words[1].hasPrefix("/metrics?") {
            (status, type, payload) = ("404 Not Found", "text/plain", Array("see /metrics\n".utf8))
        } else {
            (status, type, payload) = ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body())
        }
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(payload.count)\r\n"
            + "Connection: close\r\n\r\n"
        var out = Array(head.utf8)
        if words.first != "HEAD" { out += payload }
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(client, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            sent += n
        }
    }
}

private extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
