import CPlatform
import Foundation

/// Shared memory through which a worker on the coordinator's machine hands over its results without sending their
/// bytes: a sealed memfd the worker owns, holding a header and two result slots, mapped read-only by the coordinator.
///
/// Why: a result is megabytes (17 bytes per parameter in exact mode), and through a socket each one is copied into
/// the kernel and out again on the step's critical path; from shared memory the coordinator reads it in place. Why
/// two slots: a worker may compute one result while the coordinator still holds the other; the coordinator says in
/// each assignment which slot it may write (one no result of the step in progress uses), or none.
///
/// The coordinator finds the region as `/proc/PID/fd/FD` and maps it only if it is this user's memfd of exactly the
/// expected size, sealed against shrinking (so reading it can never fault) and starting with the token the worker
/// sent (so a pid from another pid namespace cannot name some other process's memory). A worker can change its
/// slots at any time, as it could send any bytes: the coordinator checks what it reads, and the arithmetic it does
/// on it cannot trap whatever the values.
public final class ResultRegion: @unchecked Sendable {
    public static let slotCount = 2
    /// The header: 8 bytes of magic, then the 16-byte token; slots start on the next page.
    private static let headerBytes = 4096
    private static let magic: UInt64 = 0x314E_4752_4E52_5453  // "STRNRGN1"

    public let slotBytes: Int
    public let size: Int
    /// The worker's descriptor (its /proc path is what the coordinator opens); -1 in the coordinator's mapping.
    public let descriptor: Int32
    public let token: (UInt64, UInt64)
    private let base: UnsafeMutableRawPointer

    private static func stride(_ slotBytes: Int) -> Int { (slotBytes + 4095) / 4096 * 4096 }
    private static func size(_ slotBytes: Int) -> Int { headerBytes + slotCount * stride(slotBytes) }

    /// A worker's region for results of `slotBytes` bytes each; nil where memfds are not available.
    public init?(creatingFor slotBytes: Int) {
        var mapping: UnsafeMutableRawPointer?
        let size = Self.size(slotBytes)
        let fd = cplatform_region_create(size, &mapping)
        guard fd >= 0, let mapping else { return nil }
        self.slotBytes = slotBytes
        self.size = size
        descriptor = fd
        base = mapping
        token = (UInt64.random(in: 1 ... .max), UInt64.random(in: 1 ... .max))
        base.storeBytes(of: Self.magic.littleEndian, as: UInt64.self)
        (base + 8).storeBytes(of: token.0.littleEndian, as: UInt64.self)
        (base + 16).storeBytes(of: token.1.littleEndian, as: UInt64.self)
    }

    /// The coordinator's read-only view of worker process `pid`'s region `fd`; throws saying why it cannot be used.
    public init(mapping pid: Int32, fd: Int32, token: (UInt64, UInt64), slotBytes: Int) throws {
        let size = Self.size(slotBytes)
        var why: UnsafePointer<CChar>?
        guard pid > 0, fd >= 0, let mapping = cplatform_region_map(pid, fd, size, &why) else {
            throw RegionError(why.map { String(cString: $0) } ?? "a pid or descriptor out of range")
        }
        let header = (UInt64(littleEndian: mapping.load(as: UInt64.self)),
                      UInt64(littleEndian: mapping.load(fromByteOffset: 8, as: UInt64.self)),
                      UInt64(littleEndian: mapping.load(fromByteOffset: 16, as: UInt64.self)))
        guard header == (Self.magic, token.0, token.1) else {
            cplatform_region_unmap(mapping, size)
            throw RegionError("not the region the worker described (another process's memory)")
        }
        self.slotBytes = slotBytes
        self.size = size
        descriptor = -1
        base = mapping
        self.token = token
    }

    deinit {
        cplatform_region_unmap(base, size)
        if descriptor >= 0 { close(descriptor) }
    }

    /// Slot `index`'s bytes (`index` below `slotCount`).
    public func slot(_ index: Int) -> UnsafeMutableRawBufferPointer {
        precondition((0..<Self.slotCount).contains(index), "result slot \(index) does not exist")
        return UnsafeMutableRawBufferPointer(start: base + Self.headerBytes + index * Self.stride(slotBytes),
                                             count: slotBytes)
    }
}

/// Why a worker's result region cannot be used.
public struct RegionError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
