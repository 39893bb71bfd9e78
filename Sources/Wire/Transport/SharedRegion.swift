import CPlatform
import Foundation

/// Shared memory between the coordinator and a worker on its machine, so the megabytes of a step travel without being
/// copied through a socket: a sealed memfd holding a header and `slotCount` slots, written by the process that made
/// it and mapped read-only by the other.
///
/// Two kinds. A worker's *result region* has two slots: it computes its sums straight into one while the coordinator
/// may still hold the other, and the coordinator says in each assignment which slot to use (one no result of the
/// step in progress holds) or none. The coordinator's *weights region* has one slot: it writes each step's weights
/// there before handing out the step, and the workers that mapped it copy them from there.
///
/// Why: a result is megabytes (up to 17 bytes per parameter in exact mode), and through a socket each one is copied into
/// the kernel and out again on the step's critical path, and the weights reach the last worker later than the first.
///
/// The reader finds the region as `/proc/PID/fd/FD` and maps it only if it is this user's memfd of exactly the
/// expected size, sealed against shrinking (so reading it can never fault) and starting with the token it was told
/// (so a pid from another pid namespace cannot name some other process's memory). The writer can change a slot at
/// any time, as it could send any bytes: the reader checks what it reads as it checks a message, and the arithmetic
/// it does on the values cannot trap whatever they are.
package final class SharedRegion: @unchecked Sendable {
    /// Slots of a worker's result region.
    package static let resultSlots = 2
    /// The header: 8 bytes of magic, then the 8-byte token; slots start on the next page.
    private static let headerBytes = 4096
    private static let magic: UInt64 = 0x314E_4752_4E52_5453  // "STRNRGN1"

    package let slotBytes: Int
    package let slotCount: Int
    package let size: Int
    /// The writer's descriptor (its /proc path is what the reader opens); -1 in a reader's mapping.
    package let descriptor: Int32
    package let token: UInt64
    private let base: UnsafeMutableRawPointer

    private static func stride(_ slotBytes: Int) -> Int { (slotBytes + 4095) / 4096 * 4096 }
    private static func size(_ slotBytes: Int, _ slots: Int) -> Int { headerBytes + slots * stride(slotBytes) }

    /// A region to write, of `slots` slots of `slotBytes` bytes; nil where memfds are not available.
    package init?(creatingFor slotBytes: Int, slots: Int) {
        var mapping: UnsafeMutableRawPointer?
        let size = Self.size(slotBytes, slots)
        let fd = cplatform_region_create(size, &mapping)
        guard fd >= 0, let mapping else { return nil }
        self.slotBytes = slotBytes
        slotCount = slots
        self.size = size
        descriptor = fd
        base = mapping
        token = UInt64.random(in: 1 ... .max)
        base.storeBytes(of: Self.magic.littleEndian, as: UInt64.self)
        (base + 8).storeBytes(of: token.littleEndian, as: UInt64.self)
    }

    /// A read-only view of `offer`'s region of `slots` slots of `slotBytes`; throws saying why it cannot be used.
    package init(mapping offer: RegionOffer, slots: Int, slotBytes: Int) throws {
        let size = Self.size(slotBytes, slots)
        var why: UnsafePointer<CChar>?
        guard offer.pid > 0, offer.descriptor >= 0,
              let mapping = cplatform_region_map(offer.pid, offer.descriptor, size, &why) else {
            throw RegionError(why.map { String(cString: $0) } ?? "a pid or descriptor out of range")
        }
        let header = (UInt64(littleEndian: mapping.load(as: UInt64.self)),
                      UInt64(littleEndian: mapping.load(fromByteOffset: 8, as: UInt64.self)))
        guard header == (Self.magic, offer.token) else {
            cplatform_region_unmap(mapping, size)
            throw RegionError("not the region described (another process's memory)")
        }
        self.slotBytes = slotBytes
        slotCount = slots
        self.size = size
        descriptor = -1
        base = mapping
        token = offer.token
    }

    deinit {
        cplatform_region_unmap(base, size)
        if descriptor >= 0 { close(descriptor) }
    }

    /// How a reader in process `pid` (this one) finds this region.
    package var offer: RegionOffer { RegionOffer(pid: getpid(), descriptor: descriptor, token: token) }

    /// Slot `index`'s bytes (`index` below `slotCount`; writable only in the writer's region).
    package func slot(_ index: Int) -> UnsafeMutableRawBufferPointer {
        precondition((0..<slotCount).contains(index), "region slot \(index) does not exist")
        return UnsafeMutableRawBufferPointer(start: base + Self.headerBytes + index * Self.stride(slotBytes),
                                             count: slotBytes)
    }
}

/// Why a shared region cannot be used.
package struct RegionError: Error, CustomStringConvertible {
    package let description: String
    init(_ description: String) { self.description = description }
}
