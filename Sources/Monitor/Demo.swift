// `faultfs demo`: a built-in writer (`faultfs demo-writer DIR`, re-executed
// so that the trace shows it as its own task, "demo-writer") and a built-in
// plan, run through `Runner`. It shows, in well under a minute:
//   1. write() succeeds into the page cache;
//   2. background writeback fails with ENOSPC (injected);
//   3. fsync reports it once, a second fsync says all is well;
//   4. the backing file lacks the data (checked after unmount);
//   5. a stall: Dirty/Writeback climb to the bdi limit, the writer is
//      throttled in balance_dirty_pages; then the release;
//   6. can a stuck disk exhaust memory? The bdi limit lifted (the writer
//      sets max_ratio 100, strict_limit 0 itself; the monitor samples the
//      change, and the mount takes it away), a stall, and the writer in a
//      small memory cgroup: dirty pages fill the cgroup and the writer is
//      throttled in reclaim; then the release.
import FaultRules
import Glibc
import System
import MonitorCore

public enum Demo {
    public static let phase1 = "[demo] phase 1"
    public static let phase2 = "[demo] phase 2"
    public static let phase3 = "[demo] phase 3"
    public static let memoryFile = "mem.dat"
    /// The writer's memory cgroup, and what phase 3 writes into it (more than fits).
    public static let memoryLimit: Int64 = 128 << 20
    public static let memoryBytes = 192 << 20
    /// How long phase 3 stalls before the plan releases it.
    public static let memoryStallSeconds = 8
    public static let errorFile = "demo.dat"
    public static let stallFile = "stall.dat"
    public static let errorBytes = 8 << 20
    public static let stallBytes = 256 << 20
    /// When the release happens (the stall starts about 3 s in).
    public static let releaseAtNs: Int64 = 12_000_000_000

    /// The plan, as a user would write it in a plan file.
    public static let planText = """
        when /phase 1/: fail writeback ENOSPC path=\(errorFile)
        when /phase 2/: clear
        when /phase 2/: stall writeback path=\(stallFile)
        at 12s: clear
        at 12s: release
        when /phase 3: can/: stall writeback path=\(memoryFile)
        when /phase 3: \(memoryStallSeconds) s/: clear
        when /phase 3: \(memoryStallSeconds) s/: release
        """

    public static func options(outDir: String, intervalNs: Int64 = 100_000_000) throws(MonitorError) -> RunOptions {
        var o = RunOptions(outDir: outDir, command: [ProcFS.selfExecutable(), "demo-writer"])
        o.intervalNs = intervalNs
        o.memoryLimit = memoryLimit
        do { o.plan = try Plan.parse(planText) } catch { throw MonitorError(error.description) }
        return o
    }

    /// Runs the demo; returns the run result (summary, report path, checks).
    public static func run(outDir: String, intervalNs: Int64 = 100_000_000, settings: [Setting] = []) throws(MonitorError) -> RunResult {
        var o = try options(outDir: outDir, intervalNs: intervalNs)
        o.settings = settings
        return try Runner.run(o) { dir in
            [check(dir + "/" + errorFile, expected: errorBytes, name: errorFile, note: "writeback failed: the data never reached it"),
             check(dir + "/" + stallFile, expected: stallBytes, name: stallFile, note: "stalled, then released: all of it arrived"),
             check(dir + "/" + memoryFile, expected: memoryBytes, name: memoryFile, note: "stalled with the bdi limit lifted, then released: all of it arrived")]
        }
    }

    /// The byte the writer puts at `offset`: 'A'...'Z', never 0 (a hole
    /// reads as 0, so it cannot pass for written data).
    @inline(__always) static func pattern(_ offset: Int) -> UInt8 { UInt8(65 + offset % 26) }

    /// Compares a backing file with what the writer wrote.
    static func check(_ path: String, expected: Int, name: String, note: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "backing file \(name): missing (\(Errno.current.description))" }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        var same = 0, offset = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            for i in 0..<n where buffer[i] == pattern(offset + i) { same += 1 }
            offset += n
        }
        return "backing file \(name) after unmount: \(same) of \(expected) bytes hold what the program wrote (size \(st.st_size)) — \(note)"
    }
}

/// The demo's writer, run as `faultfs demo-writer` with $FAULTFS_DIR set.
public enum DemoWriter {
    public static func run(dir: String) -> Int32 {
        setThreadName("demo-writer")
        let start = SystemClock.monotonicNanoseconds()
        @Sendable func say(_ s: String) {
            let t = formatFixed(Double(SystemClock.monotonicNanoseconds() - start) / 1e9, 2)
            var line = "[\(t)s] \(s)\n"
            line.withUTF8 { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        }
        func result(_ rc: Int) -> String { rc == 0 ? "0" : "\(errnoName(errno) ?? "errno \(errno)") (\(Errno.current.description))" }

        // Phase 1: an error in background writeback.
        say("\(Demo.phase1): writeback of \(Demo.errorFile) will fail with ENOSPC")
        SystemClock.sleep(nanoseconds: 500_000_000)
        let path = dir + "/" + Demo.errorFile
        let fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { say("open \(path): \(Errno.current.description)"); return 1 }
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        var writtenOK = 0
        for c in 0..<(Demo.errorBytes / chunk) {
            for i in 0..<chunk { buffer[i] = Demo.pattern(c * chunk + i) }
            let n = buffer.withUnsafeBytes { pwrite(fd, $0.baseAddress, chunk, off_t(c * chunk)) }
            if n == chunk { writtenOK += n } else { say("write at \(c * chunk): \(result(-1))") }
        }
        say("write \(Demo.errorBytes >> 20) MiB -> ok (\(writtenOK) bytes accepted into the page cache)")
        let sfr = csys_start_writeback(fd)
        say("sync_file_range(WRITE) -> \(result(Int(sfr))) (background writeback started; it does not report errors)")
        SystemClock.sleep(nanoseconds: 1_000_000_000)
        say("waited 1 s: the daemon has answered the writeback with ENOSPC; no one has been told yet")
        var rc = fsync(fd)
        say("fsync -> \(result(Int(rc)))" + (rc != 0 ? "   <- the writeback error, reported once" : ""))
        rc = fsync(fd)
        say("fsync again -> \(result(Int(rc)))" + (rc == 0 ? "   <- all is well, says the kernel: the error was reported once" : ""))
        var back = [UInt8](repeating: 0, count: 4096)
        let r = back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, 0) }
        let same = r == 4096 && (0..<4096).allSatisfy { back[$0] == Demo.pattern($0) }
        say("read back 4 KiB -> \(same ? "the new data (still in the page cache, now clean)" : "other data")")
        rc = close(fd)
        say("close -> \(result(Int(rc)))")

        // Phase 2: a stall.
        say("\(Demo.phase2): writeback of \(Demo.stallFile) stalls; writing \(Demo.stallBytes >> 20) MiB")
        SystemClock.sleep(nanoseconds: 500_000_000)
        let spath = dir + "/" + Demo.stallFile
        let sfd = open(spath, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o644)
        guard sfd >= 0 else { say("open \(spath): \(Errno.current.description)"); return 1 }
        var lastReport = SystemClock.monotonicNanoseconds()
        let total = writePattern(sfd, bytes: Demo.stallBytes, buffer: &buffer, say: say, result: result) { c, total, took in
            if took > 500_000_000 {
                say("write #\(c + 1) took \(formatFixed(Double(took) / 1e9, 1)) s   <- throttled in balance_dirty_pages (\(total >> 20) MiB written)")
            } else if (total >> 20) % 32 == 0 || SystemClock.monotonicNanoseconds() - lastReport > 1_000_000_000 {
                say("written \(total >> 20) MiB")
            }
            lastReport = SystemClock.monotonicNanoseconds()
        }
        let t0 = SystemClock.monotonicNanoseconds()
        rc = fsync(sfd)
        say("fsync -> \(result(Int(rc))) after \(formatFixed(Double(SystemClock.monotonicNanoseconds() - t0) / 1e9, 2)) s (the stall was released)")
        close(sfd)
        say("phase 2 done: \(total >> 20) MiB written to \(Demo.stallFile)")
        let rc3 = memoryPhase(dir: dir, buffer: &buffer, say: say, result: result)
        say("[demo] done")
        return rc3
    }

    /// Writes `bytes` of the demo pattern to `fd` with write(2), a buffer at a
    /// time, timing each: `after(index, total so far, nanoseconds)`. Returns
    /// the bytes written (it stops at a failed write, which it reports).
    static func writePattern(_ fd: Int32, bytes: Int, buffer: inout [UInt8], say: (String) -> Void, result: (Int) -> String,
                             after: (Int, Int, Int64) -> Void) -> Int {
        let chunk = buffer.count
        var total = 0
        for c in 0..<(bytes / chunk) {
            for i in 0..<chunk { buffer[i] = Demo.pattern(c * chunk + i) }
            let t0 = SystemClock.monotonicNanoseconds()
            let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress, chunk) }
            let took = SystemClock.monotonicNanoseconds() - t0
            if n != chunk { say("write -> \(result(-1))"); break }
            total += n
            after(c, total, took)
        }
        return total
    }

    /// Phase 3: the bdi limit lifted, writeback stalled, the writer in a
    /// small memory cgroup (the demo's --memory-limit).
    static func memoryPhase(dir: String, buffer: inout [UInt8], say: @escaping @Sendable (String) -> Void,
                            result: (Int) -> String) -> Int32 {
        let limit = Demo.memoryLimit >> 20, bytes = Demo.memoryBytes >> 20
        say("\(Demo.phase3): can a stuck disk exhaust memory? Lifting the mount's bdi limit, stalling writeback of \(Demo.memoryFile), writing \(bytes) MiB in a \(limit) MiB memory cgroup")
        var st = stat()
        guard stat(dir, &st) == 0 else { say("stat \(dir): \(Errno.current.description)"); return 1 }
        let bdi = "/sys/class/bdi/\(DeviceKnobs.name(of: st.st_dev))"
        var lifted: [(file: String, before: String, now: String)] = []
        for (file, value) in [("max_ratio", "100"), ("strict_limit", "0")] {
            let before = (File.readText(bdi + "/" + file) ?? "?").split(separator: "\n").first.map(String.init) ?? "?"
            do { try File.write(bdi + "/" + file, value); lifted.append((file, before, value)) } catch {
                say("\(bdi)/\(file): \(error.description) (the bdi limit stays)")
            }
        }
        if !lifted.isEmpty { say("\(bdi): " + lifted.map { "\($0.file) \($0.before) -> \($0.now)" }.joined(separator: ", ") + " (what faultfs run --bdi-max-ratio 100 --bdi-strict-limit off does)") }
        SystemClock.sleep(nanoseconds: 500_000_000)
        // The plan releases the stall on this line: the writer may be stuck in write() by then.
        startThread {
            SystemClock.sleep(nanoseconds: Int64(Demo.memoryStallSeconds) * 1_000_000_000)
            say("\(Demo.phase3): \(Demo.memoryStallSeconds) s of it; releasing the stall")
        }
        let path = dir + "/" + Demo.memoryFile
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { say("open \(path): \(Errno.current.description)"); return 1 }
        var slowest: Int64 = 0, slowAt = 0
        let total = writePattern(fd, bytes: Demo.memoryBytes, buffer: &buffer, say: say, result: result) { _, total, took in
            if took > slowest { slowest = took; slowAt = total >> 20 }
            if (total >> 20) % 32 == 0 { say("written \(total >> 20) MiB") }
        }
        say("slowest write: \(formatFixed(Double(slowest) / 1e9, 1)) s, at \(slowAt) MiB"
            + (slowest > 1_000_000_000 ? "   <- the cgroup was full of pages waiting for the stalled writeback: throttled in reclaim" : ""))
        let rc = fsync(fd)
        say("fsync -> \(result(Int(rc)))")
        close(fd)
        for l in lifted.reversed() { try? File.write(bdi + "/" + l.file, l.before) }
        say("phase 3 done: \(total >> 20) MiB written, not OOM-killed; the bdi limit is back ("
            + lifted.map { "\($0.file) \($0.before)" }.joined(separator: ", ") + ")")
        return rc == 0 ? 0 : 1
    }
}
