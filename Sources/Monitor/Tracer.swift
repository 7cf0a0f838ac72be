// Kernel trace through a tracefs *instance* of our own
// (/sys/kernel/tracing/instances/faultfs-<pid>): its own buffer, clock,
// events and filters, so the global tracing state is never touched and
// removing the instance undoes everything. tracefs is mounted if needed and
// unmounted again if we mounted it.
//
// Clock: tracefs has no realtime clock. The instance uses trace_clock=mono
// (CLOCK_MONOTONIC), and each event's time is shifted by an offset measured
// at start: realtime - monotonic.
import Glibc
import System
import MonitorCore
import Synchronization

public final class Tracer: @unchecked Sendable {
    public static let root = "/sys/kernel/tracing"
    public let instance: String
    public private(set) var notes: [String] = []
    /// The events enabled, with their filters (for the settings table).
    public private(set) var enabled: [(event: String, filter: String?)] = []
    private var mountedTracefs = false
    private let offsetNs: Int64
    private let stopFlag = Atomic<Bool>(false)
    private let done = Atomic<Bool>(false)
    private let handler: @Sendable ([TraceEvent], Int) -> Void

    /// Sets up the instance and starts reading it on a thread. `handler`
    /// receives parsed events (time shifted to CLOCK_REALTIME) and the
    /// number of events the kernel reported lost. Returns nil, with the
    /// reason in `failure`, when tracefs cannot be used.
    public static func start(device: DeviceID, failure: inout String?,
                             handler: @escaping @Sendable ([TraceEvent], Int) -> Void) -> Tracer? {
        var mounted = false
        if !Sys.exists(root + "/instances") {
            guard MountTable.topMount(at: root)?.fileSystemType == nil || MountTable.topMount(at: root)?.fileSystemType == "tracefs" else {
                failure = "\(root) is something else than tracefs"; return nil
            }
            guard Sys.mountPseudo(type: "tracefs", at: root) else {
                failure = "tracefs not available (cannot mount at \(root): \(Errno.current.description))"; return nil
            }
            mounted = true
        }
        removeStaleInstances()
        let name = "\(root)/instances/faultfs-\(getpid())"
        guard mkdir(name, 0o755) == 0 || errno == EEXIST else {
            failure = "cannot create tracefs instance \(name): \(Errno.current.description)"
            if mounted { _ = Sys.unmount(root) }
            return nil
        }
        let t = Tracer(instance: name, handler: handler, offsetNs: SystemClock.realtimeNanoseconds() - SystemClock.monotonicNanoseconds())
        t.mountedTracefs = mounted
        t.configure(device: device)
        if t.enabled.isEmpty {
            failure = "no trace event could be enabled"
            t.removeInstance()
            return nil
        }
        startThread { t.readLoop() }
        return t
    }

    private init(instance: String, handler: @escaping @Sendable ([TraceEvent], Int) -> Void, offsetNs: Int64) {
        self.instance = instance; self.handler = handler; self.offsetNs = offsetNs
    }

    private func configure(device: DeviceID) {
        _ = Sys.write(instance + "/tracing_on", "0")
        if Sys.write(instance + "/trace_clock", "mono") != nil { notes.append("trace_clock mono refused: times may be off") }
        _ = Sys.write(instance + "/buffer_size_kb", "4096")
        // s_dev inside the kernel is MKDEV(major, minor) = major << 20 | minor.
        let kdev = (UInt64(device.major) << 20) | UInt64(device.minor)
        let plan: [(String, String?)] = [
            ("filemap/filemap_set_wb_err", "s_dev == \(kdev)"),
            ("filemap/file_check_and_advance_wb_err", "s_dev == \(kdev)"),
            ("fuse/fuse_request_end", "connection == \(kdev) && error != 0"),
            ("writeback/balance_dirty_pages", "bdi == \"\(device)\""),
            // WRITE requests queued by an application's own thread (its close
            // or fsync writing back), not by the flusher: ties a failing
            // writeback to the call it happened in. Without the writeback
            // cache every write(2) sends one: one event per write.
            ("fuse/fuse_request_send", "connection == \(kdev) && opcode == \(FuseRequestSend.writeOpcode) && !(comm ~ \"kworker*\")"),
            // No device in this event: reclaim throttling is machine-wide.
            ("vmscan/mm_vmscan_throttled", nil),
        ] + Self.reportingCalls
        // The thread group id in every line: fds and /proc are per process.
        if Sys.write(instance + "/options/record-tgid", "1") != nil { notes.append("option record-tgid refused: threads not mapped to processes") }
        for (event, filter) in plan {
            let dir = "\(instance)/events/\(event)"
            guard Sys.exists(dir + "/enable") else { notes.append("trace event \(event) does not exist on this kernel"); continue }
            var applied = filter
            if let filter, let err = Sys.write(dir + "/filter", filter) {
                notes.append("filter '\(filter)' on \(event) refused (\(err)): recorded unfiltered")
                applied = nil
            }
            if let err = Sys.write(dir + "/enable", "1") { notes.append("cannot enable \(event): \(err)"); continue }
            enabled.append((event.replacingOccurrences("/", ":"), applied))
        }
        _ = Sys.write(instance + "/trace", "", create: true)
        _ = Sys.write(instance + "/tracing_on", "1")
    }

    /// The entry events' filter until `follow` names threads: pid 0 (the
    /// idle task) makes no system calls.
    static let nobody = "common_pid == 0"
    /// At most this many threads in a filter; beyond, entries are recorded unfiltered.
    static let maxFollowed = 200
    private var followed: Set<Int32> = []

    /// Limits the sys_enter_* events to these threads (those of the
    /// processes holding files on the mount, from the /proc samples):
    /// unfiltered, close(2) alone is thousands of events a second on a busy
    /// machine. A thread that opens and closes a file between two samples
    /// is not followed; its close is not tied to a file. Called from one
    /// thread (the sampler).
    func follow(threads: Set<Int32>) {
        guard threads != followed else { return }
        followed = threads
        let filter = threads.isEmpty ? Self.nobody
            : threads.count > Self.maxFollowed ? "0" : threads.sorted().map { "common_pid == \($0)" }.joined(separator: " || ")
        for (event, _) in enabled where event.hasPrefix("syscalls:sys_enter_") {
            _ = Sys.write("\(instance)/events/\(event.replacingOccurrences(":", "/"))/filter", filter)
        }
    }

    /// Every call that can return a writeback or I/O error to the
    /// application. Exits are filtered in the kernel to failures (EAGAIN and
    /// EINTR left out: sockets and pipes return them all day; EBADF too:
    /// closing a bad fd is common and never a file's error). Entries are
    /// traced for the calls taking an fd except the write family, and only
    /// for the threads `follow` names (no filter can pick the mount's fds in
    /// the kernel). A failing write is tied to its file through the
    /// injection's requesting thread instead.
    static let reportingCalls: [(String, String?)] = {
        let exitFilter = "ret < 0 && ret != -11 && ret != -4 && ret != -9"
        let exits = ["close", "fsync", "fdatasync", "msync", "sync_file_range", "syncfs", "write", "pwrite64", "writev", "pwritev", "pwritev2"]
            .map { ("syscalls/sys_exit_" + $0, Optional(exitFilter)) }
        let enters = ["close", "fsync", "fdatasync", "sync_file_range", "syncfs"].map { ("syscalls/sys_enter_" + $0, Optional(nobody)) }
        // A process ending with the file open: its files are closed by the kernel, not by close(2).
        return exits + enters + [("sched/sched_process_exit", "group_dead == 1")]
    }()

    private func readLoop() {
        let fd = open(instance + "/trace_pipe", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        defer { if fd >= 0 { close(fd) }; done.store(true, ordering: .releasing) }
        guard fd >= 0 else { return }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var idleRoundsAfterStop = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                pending += buffer[0..<n]
                if let lastNL = pending.lastIndex(of: 10) {
                    let chunk = String(decoding: pending[...lastNL], as: UTF8.self)
                    pending.removeSubrange(...lastNL)
                    deliver(chunk)
                }
                continue
            }
            if stopFlag.load(ordering: .acquiring) {
                // Drain: stop after a few empty reads.
                idleRoundsAfterStop += 1
                if idleRoundsAfterStop > 3 { break }
            }
            SystemClock.sleep(nanoseconds: 50_000_000)
        }
    }

    private func deliver(_ text: String) {
        var events: [TraceEvent] = []
        var lost = 0
        for line in text.split(separator: "\n") {
            let l = String(line)
            if let n = TraceParser.lostEvents(l) { lost += n; continue }
            guard var e = TraceParser.parse(l) else { continue }
            e.timeNs = e.traceTimeNs + offsetNs
            events.append(e)
        }
        if !events.isEmpty || lost > 0 { handler(events, lost) }
    }

    /// Stops reading (after draining what is buffered), removes the instance
    /// and unmounts tracefs if we mounted it.
    public func stop() {
        _ = Sys.write(instance + "/tracing_on", "0")
        stopFlag.store(true, ordering: .releasing)
        var rounds = 0
        while !done.load(ordering: .acquiring) && rounds < 100 { SystemClock.sleep(nanoseconds: 20_000_000); rounds += 1 }
        removeInstance()
    }

    private func removeInstance() {
        for (event, _) in enabled {
            _ = Sys.write("\(instance)/events/\(event.replacingOccurrences(":", "/"))/enable", "0")
        }
        // rmdir fails while a reader holds trace_pipe open: retry briefly.
        var tries = 0
        while rmdir(instance) != 0 && errno == EBUSY && tries < 50 { SystemClock.sleep(nanoseconds: 20_000_000); tries += 1 }
        if mountedTracefs { _ = Sys.unmount(Self.root); mountedTracefs = false }
    }

    /// Instances left by a monitor that was killed (its pid is gone).
    static func removeStaleInstances() {
        for name in File.names(inDirectory: root + "/instances") ?? [] {
            guard name.hasPrefix("faultfs-"), let pid = Int32(name.dropFirst(8)) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { _ = rmdir("\(root)/instances/\(name)") }
        }
    }
}
