/// TensorBoard's event files (`events.out.tfevents.*`), as TensorFlow's summary writer writes them, so TensorBoard
/// and whatever reads its format show a run's scalars. The one place the format is written.
///
/// A file is TFRecords: each record is its data's length (u64), the masked CRC-32C of those 8 bytes, the data, and
/// the masked CRC-32C of the data, all little-endian. Each record's data is an `Event` protocol buffer
/// (tensorflow/core/util/event.proto): `wall_time` (field 1, double), `step` (2, int64), and `file_version` (3,
/// string, "brain.Event:2" in the first record) or `summary` (5: `value`s (1), each a `tag` (1, string) and a
/// `simple_value` (2, float)).
package enum TensorBoard {
    /// The first record of a file: which version of the format follows.
    package static func versionRecord(wallTime: Double) -> [UInt8] {
        var event = Protobuf()
        event.double(1, wallTime)
        event.bytes(3, Array("brain.Event:2".utf8))
        return record(event.bytes)
    }

    /// One record holding the scalars of `step`, in the order given.
    package static func scalarsRecord(wallTime: Double, step: Int, _ scalars: [(tag: String, value: Float)]) -> [UInt8] {
        var summary = Protobuf()
        for (tag, value) in scalars {
            var entry = Protobuf()
            entry.bytes(1, Array(tag.utf8))
            entry.float(2, value)
            summary.bytes(1, entry.bytes)
        }
        var event = Protobuf()
        event.double(1, wallTime)
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.bytes(5, summary.bytes)
        return record(event.bytes)
    }

    /// `data` framed as a TFRecord.
    static func record(_ data: [UInt8]) -> [UInt8] {
        var length: [UInt8] = []
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { length += $0 }
        var out = length
        withUnsafeBytes(of: masked(crc32c(length)).littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: masked(crc32c(data)).littleEndian) { out += $0 }
        return out
    }

    /// TFRecord's mask: a CRC rotated right by 15 bits plus a constant, so a CRC of data holding CRCs stays strong.
    static func masked(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as iSCSI and TFRecord use it.
    static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }
}

/// The protocol-buffer wire encoding of the few field kinds an `Event` needs.
private struct Protobuf {
    private(set) var bytes: [UInt8] = []

    mutating func varint(_ field: Int, _ value: UInt64) {
        key(field, wireType: 0)
        putVarint(value)
    }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, wireType: 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, wireType: 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    /// A length-delimited field: a string or an embedded message.
    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        key(field, wireType: 2)
        putVarint(UInt64(value.count))
        bytes += value
    }

    private mutating func key(_ field: Int, wireType: UInt64) { putVarint(UInt64(field) << 3 | wireType) }

    private mutating func putVarint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }
}
