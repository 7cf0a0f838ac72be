import FaultRules

// "Who was told, by which call, or never": every call an application can
// learn of an I/O error from, joined with the injections.
//
// What the trace gives (see docs/kernel-behaviour.md, "Who is told"):
// - `syscalls:sys_exit_<call>` filtered in the kernel on `ret < 0`: the
//   thread and the errno of every failing close, fsync, fdatasync, msync,
//   sync_file_range, syncfs, write, pwrite64, writev, pwritev, pwritev2.
//   No fd, no file. (io_uring and AIO completions are not syscall returns:
//   not covered.)
// - `syscalls:sys_enter_<call>` for the calls taking an fd (not the write
//   family: too many): the fd, resolved to the file with the sampled
//   /proc/PID/fd of that process.
// - `filemap:file_check_and_advance_wb_err` inside the same syscall of the
//   same thread: the file (dev, ino) an fsync-family call reported on.
// - the fault layer's injection carries the requesting thread (the FUSE
//   header's pid): an error replied to a request (not to writeback) is
//   returned by that thread's call.
// - `sched:sched_process_exit`: a process that ends with the file open has
//   it closed by the kernel (exit_files), whose flush error goes nowhere:
//   "lost at exit". sys_exit_close does not fire for those closes.

/// The files on the mount one process had open at one sample.
public struct OpenFiles: Sendable, Equatable {
    public var timeNs: Int64
    /// The process (thread group) id.
    public var pid: Int32
    public var comm: String
    public var files: [OpenFile]
    public init(timeNs: Int64, pid: Int32, comm: String, files: [OpenFile]) {
        self.timeNs = timeNs; self.pid = pid; self.comm = comm; self.files = files
    }

    public func jsonLine() -> String {
        "{\"kind\":\"open_files\",\"time_ns\":\(timeNs),\"pid\":\(pid),\"comm\":" + jsonString(comm)
            + ",\"files\":[" + files.map { "[\($0.fd),\($0.ino)]" }.joined(separator: ",") + "]}"
    }

    init?(json o: JSONValue) {
        guard let t = o["time_ns"]?.int64, let pid = o["pid"]?.integer(as: Int32.self), let list = o["files"]?.array else { return nil }
        var files: [OpenFile] = []
        for f in list {
            guard let pair = f.array, pair.count == 2, let fd = pair[0].integer(as: Int32.self),
                  let ino = pair[1].integer(as: UInt64.self) else { return nil }
            files.append(OpenFile(fd: fd, ino: ino))
        }
        self.init(timeNs: t, pid: pid, comm: o["comm"]?.string ?? "", files: files)
    }
}

public struct OpenFile: Sendable, Equatable, Hashable {
    public var fd: Int32
    public var ino: UInt64
    public init(fd: Int32, ino: UInt64) { self.fd = fd; self.ino = ino }
}

/// One failing call the trace saw, with the file it concerned when known.
public struct ErrorReturn: Sendable, Equatable {
    public var task: String
    /// The thread.
    public var tid: Int32
    /// The process, when the trace recorded it (record-tgid).
    public var tgid: Int32?
    public var timeNs: Int64
    /// "close", "fsync", "msync", "write", ...
    public var call: String
    /// Positive errno returned.
    public var errno: Int32
    public var fd: Int32?
    /// The file's inode on the mount, when known.
    public var ino: UInt64?
    /// Hashed struct file (errseq reports only).
    public var file: String?
    /// How the file was found.
    public var resolvedBy: Resolution
    /// The process id to match against /proc samples.
    public var process: Int32 { tgid ?? tid }

    public enum Resolution: String, Sendable, Equatable {
        /// file_check_and_advance_wb_err in the same call names the file.
        case errseq
        /// The call's fd, found in the process's sampled /proc/PID/fd.
        case fd
        /// The failing writeback request was sent from this thread (its
        /// close or fsync wrote the pages back): fuse_request_send.
        case request
        /// Not resolved (fd not seen in a sample, or no fd traced).
        case unknown
    }
}

/// A process that had the file open when the error was recorded.
public struct Holder: Sendable, Equatable, Hashable {
    public var pid: Int32
    public var comm: String
}

/// Who held which file when, and the facts that decide it.
public struct HoldingIndex: Sendable {
    public var holdings: [Holding]
    /// filemap_set_wb_err times per inode of the mount.
    public var recordings: [UInt64: [Int64]]

    public init(traceEvents: [TraceEvent], openFiles: [OpenFiles], mountDevice: DeviceID?) {
        var exits: [Int32: Int64] = [:]
        var closes: [Int32: [(timeNs: Int64, fd: Int32)]] = [:]
        var recordings: [UInt64: [Int64]] = [:]
        for ev in traceEvents {
            switch ev.payload {
            case .processExit(let x) where x.groupDead != false:
                let pid = ev.tgid ?? x.pid
                exits[pid] = min(exits[pid] ?? .max, ev.timeNs)
            case .syscallEnter(let e) where e.call == "close":
                if let fd = e.fd { closes[ev.tgid ?? ev.pid, default: []].append((ev.timeNs, fd)) }
            case .setWbErr(let w) where mountDevice == nil || w.dev == mountDevice:
                recordings[w.ino, default: []].append(ev.timeNs)
            default: break
            }
        }
        self.recordings = recordings
        holdings = Derivation.holdings(openFiles: openFiles, exits: exits, closes: closes)
    }

    /// The processes holding `ino` at `t`. One that exited with it open
    /// still counts for the first recording after its exit: the kernel's
    /// close at exit writes the dirty pages back, and that writeback is
    /// what failed.
    public func holding(_ ino: UInt64, at t: Int64) -> [Holding] {
        holdings.filter { h in
            guard h.ino == ino, h.fromNs <= t else { return false }
            guard let until = h.untilNs, until < t else { return true }
            return h.endedByExit && (recordings[ino] ?? []).filter { $0 >= until }.min() == t
        }
    }
}

/// One process holding one file open (by one fd).
public struct Holding: Sendable, Equatable {
    public var pid: Int32
    public var comm: String
    public var ino: UInt64
    public var fd: Int32
    /// The first sample that showed it.
    public var fromNs: Int64
    /// Closed (traced close, or the first sample without it) or exited;
    /// nil: open until the end of the recording.
    public var untilNs: Int64?
    /// The process exited with it open: the kernel closed it.
    public var endedByExit: Bool
}

/// The answer for one injection.
public struct Telling: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable {
        case told
        /// Nobody was told, and a process holding the file exited with it
        /// open: the kernel closed it, the flush error went nowhere.
        case lostAtExit = "lost at exit"
        /// Recorded by the kernel, and no traced call returned it.
        case neverTold = "never told"
        /// Not a writeback error and no failing call seen for it (or no tracing).
        case notRecorded = "not recorded"
    }

    public struct Told: Sendable, Equatable {
        public var call: ErrorReturn
        public var delayMs: Double
        /// How many injections this one call reported (errseq and the
        /// legacy AS_EIO flag both coalesce).
        public var coversInjections: Int
    }

    public struct Lost: Sendable, Equatable {
        public var holder: Holder
        public var exitNs: Int64
        public var delayMs: Double
    }

    public var path: ErrorPath
    public var told: [Told]
    public var lostAtExit: [Lost]
    /// Processes that had the file open at the time (sampled /proc).
    public var holders: [Holder]
    public var status: Status {
        if !told.isEmpty { return .told }
        if !lostAtExit.isEmpty { return .lostAtExit }
        return path.recorded == nil ? .notRecorded : .neverTold
    }
}

extension Derivation {
    /// Calls whose legacy close() report (AS_EIO/AS_ENOSPC) carries any writeback error.
    static let closeErrnos: Set<Int32> = [5, 28]

    /// Every failing call in the trace, attributed to a file on the mount
    /// where possible. Failing calls are the sys_exit events with ret < 0;
    /// the fd comes from the same thread's last sys_enter of that call.
    public static func errorReturns(traceEvents: [TraceEvent], openFiles: [OpenFiles], mountDevice: DeviceID?) -> [ErrorReturn] {
        struct Pending { var enter: SyscallEnter?; var check: CheckAndAdvanceWbErr?; var checkEvent: TraceEvent? }
        var pending: [Int32: Pending] = [:]
        var out: [ErrorReturn] = []
        let snapshots = Dictionary(grouping: openFiles, by: \.pid)
        let sorted = traceEvents.enumerated().sorted { ($0.element.timeNs, $0.offset) < ($1.element.timeNs, $1.offset) }.map(\.element)
        // A reporting check with no traced exit after it (syscall events
        // unavailable): the call is one of the fsync family, which one unknown.
        func unmatched(_ p: Pending?) {
            guard let c = p?.check, let ev = p?.checkEvent else { return }
            out.append(ErrorReturn(task: ev.task, tid: ev.pid, tgid: ev.tgid, timeNs: ev.timeNs, call: fsyncFamily, errno: c.reportedErrno,
                                   fd: nil, ino: c.ino, file: c.file, resolvedBy: .errseq))
        }
        for ev in sorted {
            switch ev.payload {
            case .syscallEnter(let e):
                unmatched(pending[ev.pid])
                pending[ev.pid] = Pending(enter: e, check: nil)
            case .checkAndAdvance(let c) where (mountDevice == nil || c.dev == mountDevice) && c.reported:
                unmatched(pending[ev.pid])
                pending[ev.pid, default: Pending()].check = c
                pending[ev.pid]?.checkEvent = ev
            case .syscallExit(let x):
                let p = pending.removeValue(forKey: ev.pid) ?? Pending()
                guard x.errno != 0 else { continue }
                let fd = p.enter?.call == x.call ? p.enter?.fd : nil
                var r = ErrorReturn(task: ev.task, tid: ev.pid, tgid: ev.tgid, timeNs: ev.timeNs, call: x.call, errno: x.errno,
                                    fd: fd, ino: nil, file: nil, resolvedBy: .unknown)
                if let c = p.check {
                    r.ino = c.ino; r.file = c.file; r.resolvedBy = .errseq
                } else if let fd, let ino = inode(of: fd, pid: r.process, before: ev.timeNs, in: snapshots[r.process] ?? []) {
                    r.ino = ino; r.resolvedBy = .fd
                }
                out.append(r)
            default: break
            }
        }
        for p in pending.values { unmatched(p) }
        return out.sorted { $0.timeNs < $1.timeNs }
    }

    /// The inode behind `fd` in the process's last sample before `t` (or
    /// its first one after, for a file opened between two samples).
    static func inode(of fd: Int32, pid: Int32, before t: Int64, in list: [OpenFiles]) -> UInt64? {
        let before = list.last { $0.timeNs <= t }
        if let f = before?.files.first(where: { $0.fd == fd }) { return f.ino }
        return list.first { $0.timeNs > t }?.files.first { $0.fd == fd }?.ino
    }

    /// Who was told of each injected error, by which call, or why nobody was.
    public static func tellings(injections: [InjectionEvent], traceEvents: [TraceEvent], openFiles: [OpenFiles],
                                mountDevice: DeviceID?, slackNs: Int64 = 0) -> [Telling] {
        let paths = errorPaths(injections: injections, traceEvents: traceEvents, mountDevice: mountDevice, slackNs: slackNs)
        var returns = errorReturns(traceEvents: traceEvents, openFiles: openFiles, mountDevice: mountDevice)
        let sortedTrace = traceEvents.enumerated().sorted { ($0.element.timeNs, $0.offset) < ($1.element.timeNs, $1.offset) }.map(\.element)
        let index = HoldingIndex(traceEvents: traceEvents, openFiles: openFiles, mountDevice: mountDevice)
        let senders = RequestSenders(sorted: sortedTrace)
        func holding(_ ino: UInt64, at t: Int64) -> [Holding] { index.holding(ino, at: t) }

        var tellings: [Telling] = []
        var covers: [Int: Int] = [:]     // index in `returns` → injections covered
        var used: [[Int]] = []
        for path in paths {
            let inj = path.injection
            var t = Telling(path: path, told: [], lostAtExit: [], holders: [])
            var indices: [Int] = []
            if let rec = path.recorded {
                // Writeback error: errseq tells each open file once; the
                // legacy flag tells the first close() (or fsync that misses errseq).
                var files = Set<String>()
                var legacyTold = false
                for (i, r) in returns.enumerated() where r.timeNs >= rec.timeNs && r.ino == path.kernelIno {
                    if let f = r.file {
                        guard files.insert(f).inserted else { continue }
                    } else {
                        guard !legacyTold, closeErrnos.contains(r.errno) else { continue }
                        legacyTold = true
                    }
                    indices.append(i)
                }
                // The failing request sent from an application's thread: that
                // thread's next failing call returned it, whatever its fd.
                let sender = senders.sender(of: rec)
                if let i = sender.flatMap({ s in
                    returns.indices.first { returns[$0].tid == s.pid && returns[$0].timeNs >= rec.timeNs && returns[$0].ino == nil }
                }), !indices.contains(i) {
                    returns[i].ino = path.kernelIno
                    returns[i].resolvedBy = .request
                    indices.append(i)
                }
                let holds = holding(path.kernelIno, at: rec.timeNs)
                t.holders = uniqueHolders(holds)
                // Lost at exit: a holder nobody told that ended with the file still open.
                let toldProcesses = Set(indices.map { returns[$0].process })
                var lost = Set<Int32>()
                for h in holds where h.endedByExit && !toldProcesses.contains(h.pid) && lost.insert(h.pid).inserted {
                    t.lostAtExit.append(.init(holder: Holder(pid: h.pid, comm: h.comm), exitNs: h.untilNs ?? 0,
                                              delayMs: ms((h.untilNs ?? 0) - inj.timeNs)))
                }
                // A process too short-lived for the samples: its exit sent the failing writeback.
                if indices.isEmpty, let s = sender, let exit = sortedTrace.first(where: {
                    guard case .processExit = $0.payload else { return false }
                    return ($0.tgid ?? $0.pid) == (s.tgid ?? s.pid) && $0.timeNs <= s.timeNs
                }), lost.insert(s.tgid ?? s.pid).inserted {
                    let holder = Holder(pid: s.tgid ?? s.pid, comm: s.task)
                    t.lostAtExit.append(.init(holder: holder, exitNs: exit.timeNs, delayMs: ms(exit.timeNs - inj.timeNs)))
                    if !t.holders.contains(holder) { t.holders.append(holder) }
                }
            } else {
                // Replied to a request: that thread's next failing call returned it.
                if inj.pid != 0, let i = returns.firstIndex(where: {
                    ($0.tid == inj.pid || $0.tgid == inj.pid) && $0.timeNs >= inj.timeNs - slackNs && $0.errno == abs(inj.errno)
                }) { indices.append(i) }
                t.holders = uniqueHolders(holding(path.kernelIno, at: inj.timeNs))
            }
            for i in indices {
                covers[i, default: 0] += 1
                t.told.append(.init(call: returns[i], delayMs: ms(returns[i].timeNs - inj.timeNs), coversInjections: 0))
            }
            tellings.append(t)
            used.append(indices)
        }
        for k in tellings.indices {
            for j in tellings[k].told.indices { tellings[k].told[j].coversInjections = covers[used[k][j]] ?? 1 }
        }
        return tellings
    }

    /// The thread that sent the request whose failed reply recorded a
    /// writeback error: the daemon thread's last fuse_request_end with an
    /// error at or before the recording (the kernel records in the reply's
    /// context), joined on the request id with a fuse_request_send. nil
    /// when the flusher sent it (its sends are not traced).
    struct RequestSenders {
        struct Key: Hashable { var connection: UInt32; var req: UInt64 }
        /// Per daemon thread, its failing replies in time order.
        var ends: [Int32: [(timeNs: Int64, key: Key)]] = [:]
        var sends: [Key: TraceEvent] = [:]

        init(sorted: [TraceEvent]) {
            for e in sorted {
                switch e.payload {
                case .fuseRequestEnd(let r) where r.error != 0:
                    ends[e.pid, default: []].append((e.timeNs, Key(connection: r.connection, req: r.req)))
                case .fuseRequestSend(let s):
                    sends[Key(connection: s.connection, req: s.req)] = e
                default: break
                }
            }
        }

        func sender(of rec: KernelRecord) -> TraceEvent? {
            guard let list = ends[rec.pid] else { return nil }
            // The last end at or before the recording (binary search).
            var lo = 0, hi = list.count
            while lo < hi { let mid = (lo + hi) / 2; if list[mid].timeNs <= rec.timeNs { lo = mid + 1 } else { hi = mid } }
            guard lo > 0, let send = sends[list[lo - 1].key], send.timeNs <= list[lo - 1].timeNs else { return nil }
            return send
        }
    }

    static func uniqueHolders(_ list: [Holding]) -> [Holder] {
        var seen = Set<Int32>()
        return list.filter { seen.insert($0.pid).inserted }.map { Holder(pid: $0.pid, comm: $0.comm) }.sorted { $0.pid < $1.pid }
    }

    /// Who held which file when, from the /proc samples: from the first
    /// sample showing it to the traced close(2) of its fd, else the
    /// process's exit (the kernel closed it), else the first sample
    /// without it.
    public static func holdings(openFiles: [OpenFiles], exits: [Int32: Int64],
                                closes: [Int32: [(timeNs: Int64, fd: Int32)]]) -> [Holding] {
        var out: [Holding] = []
        for (pid, list) in Dictionary(grouping: openFiles, by: \.pid) {
            let samples = list.sorted { $0.timeNs < $1.timeNs }
            var open: [OpenFile: (from: Int64, last: Int64, comm: String)] = [:]
            func end(_ f: OpenFile, _ o: (from: Int64, last: Int64, comm: String), next: Int64?) {
                var h = Holding(pid: pid, comm: o.comm, ino: f.ino, fd: f.fd, fromNs: o.from, untilNs: next, endedByExit: false)
                if let c = (closes[pid] ?? []).first(where: { $0.fd == f.fd && $0.timeNs >= o.last && (next == nil || $0.timeNs <= next!) }) {
                    h.untilNs = c.timeNs
                } else if let e = exits[pid], e >= o.last {
                    h.untilNs = e; h.endedByExit = true
                }
                out.append(h)
            }
            for s in samples {
                let now = Set(s.files)
                for (f, o) in open where !now.contains(f) { end(f, o, next: s.timeNs); open[f] = nil }
                for f in s.files {
                    if let o = open[f] { open[f] = (o.from, s.timeNs, s.comm) } else { open[f] = (s.timeNs, s.timeNs, s.comm) }
                }
            }
            for (f, o) in open { end(f, o, next: nil) }
        }
        return out.sorted { ($0.fromNs, $0.pid, $0.fd) < ($1.fromNs, $1.pid, $1.fd) }
    }

    /// "FUSE", or "ext4 (block mode)": the file system whose call told the application.
    public static func tellingLayer(blockFileSystem: String?) -> String {
        blockFileSystem.map { $0 + " (block mode)" } ?? "FUSE"
    }
}
