import Foundation
import Testing

/// Data bigger than the memory a process may use: float32 `.npy` files, in shards, mapped rather than read, train
/// under a cgroup memory limit smaller than the data to the bits of an in-memory run of the same rows.
@Suite struct LargeDataTests {
    /// The memory controller's folder for a new cgroup (v1 or v2), or nil where this process cannot make one.
    static func cgroupRoot() -> (folder: String, limitFile: String, peakFile: String?)? {
        guard geteuid() == 0 else { return nil }
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/cgroup.procs") {
            return ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.max_usage_in_bytes")
        }
        if let controllers = try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.controllers", encoding: .utf8),
           controllers.contains("memory") {
            return ("/sys/fs/cgroup", "memory.max", "memory.peak")
        }
        return nil
    }

    @Test("128 MB of float32 features in 4 files train under a 64 MB cgroup limit to the SHA-256 of an in-memory run")
    func biggerThanMemory() throws {
        guard let root = Self.cgroupRoot() else {
            print("LargeDataTests: skipped: needs root and a cgroup memory controller")
            return
        }
        let folder = Command.temporaryPath("large-data")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // 32,000 samples of 1,000 features in 4 float32 files (kept small: other suites run beside this one), and the same rows as one float64 file (read and
        // converted into memory: the reference).
        try Self.python("""
            import numpy as np
            rng = np.random.default_rng(5)
            parts = [rng.standard_normal((8000, 1000), dtype=np.float32) for _ in range(4)]
            for i, x in enumerate(parts):
                np.save(f"x-{i}.npy", x)
                np.save(f"y-{i}.npy", (x[:, 0] + x[:, 1] > 0).astype(np.int64))
            whole = np.concatenate(parts)
            np.save("whole-x.npy", whole.astype(np.float64))
            np.save("whole-y.npy", (whole[:, 0] + whole[:, 1] > 0).astype(np.int64))
            # Out of the page cache: read again, their pages count against the cgroup that reads them.
            import os
            for i in range(4):
                fd = os.open(f"x-{i}.npy", os.O_RDONLY)
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
            """, in: folder)
        let job = """
            model:
              layers:
                - {units: 32, activation: relu}
                - {units: 2, activation: softmax}
            loss: cross_entropy
            optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
            batch_size: 512
            micro_shard: 128
            epochs: 1
            validation_split: 0.1
            data: {features: "DATA", targets: "TARGETS"}
            """
        try job.replacingOccurrences(of: "DATA", with: "x-*.npy").replacingOccurrences(of: "TARGETS", with: "y-*.npy")
            .write(toFile: folder + "/sharded.yaml", atomically: true, encoding: .utf8)
        try job.replacingOccurrences(of: "DATA", with: "whole-x.npy").replacingOccurrences(of: "TARGETS", with: "whole-y.npy")
            .write(toFile: folder + "/whole.yaml", atomically: true, encoding: .utf8)

        let reference = try Command.run(["train", "--config", folder + "/whole.yaml", "--threads", "1",
                                         "--save", folder + "/whole.st"])
        #expect(reference.status == 0, "\(reference.stderr)")

        let limit = 64 << 20
        let (limited, peak) = try Self.trainLimited(folder + "/sharded.yaml", saving: folder + "/sharded.st", root: root,
                                                    limit: limit)
        #expect(limited.status == 0, "\(limited.stderr)")
        #expect(limited.stdout == reference.stdout, "the same printed lines")
        #expect(try Self.sha256(folder + "/sharded.st") == Self.sha256(folder + "/whole.st"))
        print("LargeDataTests: 128,000,000 bytes of features under a limit of \(limit) bytes; the cgroup's peak: "
            + "\(peak.map(String.init) ?? "not reported")")
        // The data's pages went through the cgroup (its usage reached the limit and was reclaimed), and no further.
        if let peak { #expect(peak <= limit && peak > limit / 2, "peak \(peak)") }
    }

    @Test("72 MB of IDX images (288 MB as Floats) train mapped under a 64 MB cgroup limit to the SHA-256 of the same images gzipped, read into memory")
    func idxBiggerThanMemory() throws {
        guard let root = Self.cgroupRoot() else {
            print("LargeDataTests: skipped: needs root and a cgroup memory controller")
            return
        }
        let folder = Command.temporaryPath("large-idx")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // 92,000 images of 28 × 28 pixels whose class is in their brightness, as MNIST's files are laid out.
        try Self.python("""
            import gzip, os, struct
            import numpy as np
            rng = np.random.default_rng(7)
            n = 92000
            labels = rng.integers(0, 10, n, dtype=np.uint8)
            images = np.clip(rng.normal(labels[:, None, None] * 20.0 + 30, 40, (n, 28, 28)), 0, 255).astype(np.uint8)
            image_bytes = struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + images.tobytes()
            label_bytes = struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.tobytes()
            for name, data in [("images-idx3-ubyte", image_bytes), ("labels-idx1-ubyte", label_bytes)]:
                open(name, "wb").write(data)
                open(name + ".gz", "wb").write(gzip.compress(data, 1))
            fd = os.open("images-idx3-ubyte", os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            """, in: folder)
        let job = """
            model:
              layers:
                - {units: 16, activation: relu}
                - {units: 10, activation: softmax}
            loss: cross_entropy
            optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
            batch_size: 1024
            micro_shard: 256
            steps: 40
            validation_split: 0.05
            data: {images: IMAGES, labels: LABELS}
            """
        try job.replacingOccurrences(of: "IMAGES", with: "images-idx3-ubyte")
            .replacingOccurrences(of: "LABELS", with: "labels-idx1-ubyte")
            .write(toFile: folder + "/mapped.yaml", atomically: true, encoding: .utf8)
        try job.replacingOccurrences(of: "IMAGES", with: "images-idx3-ubyte.gz")
            .replacingOccurrences(of: "LABELS", with: "labels-idx1-ubyte.gz")
            .write(toFile: folder + "/gzipped.yaml", atomically: true, encoding: .utf8)
        let reference = try Command.run(["train", "--config", folder + "/gzipped.yaml", "--threads", "1",
                                         "--save", folder + "/gzipped.st"])
        #expect(reference.status == 0, "\(reference.stderr)")

        let limit = 64 << 20
        let (limited, peak) = try Self.trainLimited(folder + "/mapped.yaml", saving: folder + "/mapped.st", root: root,
                                                    limit: limit)
        #expect(limited.status == 0, "\(limited.stderr)")
        #expect(limited.stdout.replacingOccurrences(of: "images-idx3-ubyte", with: "images-idx3-ubyte.gz")
            == reference.stdout, "the same printed lines")
        #expect(try Self.sha256(folder + "/mapped.st") == Self.sha256(folder + "/gzipped.st"))
        print("LargeDataTests: 72,128,016 bytes of IDX images under a limit of \(limit) bytes; the cgroup's peak: "
            + "\(peak.map(String.init) ?? "not reported")")
        if let peak { #expect(peak <= limit, "peak \(peak)") }
    }

    /// Runs a numpy script in `folder`: the data a test trains on.
    static func python(_ script: String, in folder: String) throws {
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        make.currentDirectoryURL = URL(fileURLWithPath: folder)
        make.arguments = ["python3", "-c", script]
        try make.run()
        make.waitUntilExit()
        try #require(make.terminationStatus == 0, "numpy is needed to write the data")
    }

    /// Trains `config` in-process, saving to `save`, in a new cgroup limited to `limit` bytes (removed after): the run,
    /// and the cgroup's peak where the kernel reports one.
    static func trainLimited(_ config: String, saving save: String, root: (folder: String, limitFile: String,
                             peakFile: String?), limit: Int) throws -> (Command.Result, Int?) {
        let cgroup = root.folder + "/shardtrain-test-\(getpid())-\((config as NSString).lastPathComponent)"
        try FileManager.default.createDirectory(atPath: cgroup, withIntermediateDirectories: false)
        defer { rmdir(cgroup) }
        try "\(limit)".write(toFile: cgroup + "/" + root.limitFile, atomically: false, encoding: .utf8)
        // The shell joins the cgroup, then becomes shardtrain: nothing else runs in it.
        let run = try Command.run(["/bin/sh", "-c", "echo $$ > \(cgroup)/cgroup.procs && exec \"$0\" \"$@\"",
                                   Command.binary.path, "train", "--config", config, "--threads", "1", "--save", save],
                                  raw: true)
        let peak = root.peakFile.flatMap { try? String(contentsOfFile: cgroup + "/" + $0, encoding: .utf8) }
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        return (run, peak)
    }

    static func sha256(_ path: String) throws -> String {
        let result = Process(), pipe = Pipe()
        result.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        result.arguments = [path]
        result.standardOutput = pipe
        try result.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        result.waitUntilExit()
        return String(text.prefix(64))
    }
}
