import FaultRules

// "Error injected → recorded by kernel → told to": joins the fault layer's
// injections with the filemap tracepoints.
//
// Facts used (see docs/kernel-behaviour.md):
// - A failed writeback reply makes the kernel call mapping_set_error(), which
//   fires filemap_set_wb_err on the inode (dev, ino). For a FUSE mount the
//   kernel's ino is the FUSE node id, which the injection carries.
// - An fsync-family call fires file_check_and_advance_wb_err; the caller was
//   told an error when old != new, and the errno is new & 0xfff.
// - errseq reports once per open file description, and one report covers
//   every error recorded since that file's cursor last moved; the latest
//   errno wins. So two injections before one fsync share that one report.
// - close() reports EIO/ENOSPC through the legacy AS_EIO/AS_ENOSPC bits,
//   which have no tracepoint: these paths see fsync-family reports only.
//   Telling.swift adds every other call (syscall exit events), exits and
//   who had the file open; the report is drawn from that.

/// The kernel recording the error (filemap_set_wb_err).
public struct KernelRecord: Sendable, Equatable {
    public var timeNs: Int64
    /// The task in whose context it was recorded (the daemon thread replying).
    public var task: String
    public var pid: Int32
    /// Delay from the injection.
    public var delayMs: Double
}

/// One process being told (file_check_and_advance_wb_err with old != new).
public struct Told: Sendable, Equatable {
    public var task: String
    public var pid: Int32
    public var timeNs: Int64
    /// Delay from the injection to the report.
    public var delayMs: Double
    /// The errno the process got (may differ from the injected one: the
    /// latest recorded error overwrites earlier ones).
    public var reportedErrno: Int32
    /// Hashed struct file pointer: one entry per open file description.
    public var file: String
    /// The tracepoint is hit by fsync, fdatasync, msync(MS_SYNC) and
    /// sync_file_range(WAIT); it does not say which.
    public var call: String
    /// How many injections this single report covers (errseq coalescing).
    public var coversInjections: Int
}

public struct ErrorPath: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable {
        /// At least one process was told.
        case told
        /// Recorded by the kernel but no fsync-family call reported it.
        case neverTold = "never told"
        /// No filemap_set_wb_err followed: not a writeback error (e.g. an
        /// fsync/flush reply or a write without writeback_cache, returned
        /// directly by the call), or tracing was unavailable.
        case notRecorded = "not recorded"
    }
    public var injection: InjectionEvent
    /// The inode number matched in the trace.
    public var kernelIno: UInt64
    public var recorded: KernelRecord?
    public var told: [Told]
    public var status: Status {
        if !told.isEmpty { return .told }
        return recorded == nil ? .notRecorded : .neverTold
    }
}

public enum Derivation {
    public static let fsyncFamily = "fsync/fdatasync/msync"

    /// - Parameters:
    ///   - injections: the fault layer's events (any order); only errors
    ///     (`isError`) are followed, stalls and releases are left out.
    ///   - traceEvents: parsed trace events, `timeNs` on the injections' clock.
    ///   - mountDevice: the FUSE mount's st_dev ("0:39"); nil accepts any device.
    ///   - inodeMap: injection inode → kernel ino, for a fault layer that logs
    ///     some other number; empty means identity (FUSE node id = kernel ino).
    ///   - slackNs: how far before the injection a kernel event may lie and
    ///     still be matched (clock skew between daemon and trace clock).
    public static func errorPaths(injections: [InjectionEvent], traceEvents: [TraceEvent],
                                  mountDevice: DeviceID?, inodeMap: [UInt64: UInt64] = [:],
                                  slackNs: Int64 = 0) -> [ErrorPath] {
        // Index the two tracepoints by inode, in time order.
        var sets: [UInt64: [(ev: TraceEvent, rec: SetWbErr)]] = [:]
        var checks: [UInt64: [(index: Int, ev: TraceEvent, rec: CheckAndAdvanceWbErr)]] = [:]
        let sorted = traceEvents.enumerated().sorted { ($0.element.timeNs, $0.offset) < ($1.element.timeNs, $1.offset) }
        for (i, ev) in sorted {
            switch ev.payload {
            case .setWbErr(let s) where mountDevice == nil || s.dev == mountDevice:
                sets[s.ino, default: []].append((ev, s))
            case .checkAndAdvance(let c) where (mountDevice == nil || c.dev == mountDevice) && c.reported:
                checks[c.ino, default: []].append((i, ev, c))
            default: break
            }
        }

        let order = injections.filter(\.isError).enumerated().sorted { ($0.element.timeNs, $0.offset) < ($1.element.timeNs, $1.offset) }
        var paths: [ErrorPath] = []
        var cover: [Int: Int] = [:]      // check event index → injections it covers
        var toldIndex: [[Int]] = []      // per path, the check event index of each Told
        for (_, inj) in order {
            let ino = inodeMap[inj.inode] ?? inj.inode
            var path = ErrorPath(injection: inj, kernelIno: ino, recorded: nil, told: [])
            var indices: [Int] = []
            let from = inj.timeNs - slackNs
            let inoSets = sets[ino] ?? []
            let si = firstIndex(inoSets, atOrAfter: from) { $0.ev.timeNs }
            if si < inoSets.count {
                let s = inoSets[si]
                path.recorded = KernelRecord(timeNs: s.ev.timeNs, task: s.ev.task, pid: s.ev.pid,
                                             delayMs: ms(s.ev.timeNs - inj.timeNs))
                // Each open file is told once: the first reporting check per
                // `file` at/after the recording covers this injection.
                var seenFiles = Set<String>()
                let inoChecks = checks[ino] ?? []
                for c in inoChecks[firstIndex(inoChecks, atOrAfter: s.ev.timeNs) { $0.ev.timeNs }...] where !seenFiles.contains(c.rec.file) {
                    seenFiles.insert(c.rec.file)
                    cover[c.index, default: 0] += 1
                    indices.append(c.index)
                    path.told.append(Told(task: c.ev.task, pid: c.ev.pid, timeNs: c.ev.timeNs,
                                          delayMs: ms(c.ev.timeNs - inj.timeNs), reportedErrno: c.rec.reportedErrno,
                                          file: c.rec.file, call: fsyncFamily, coversInjections: 0))
                }
            }
            paths.append(path)
            toldIndex.append(indices)
        }
        // Second pass: now that every injection is matched, say how many
        // injections each report covered.
        for p in paths.indices {
            for t in paths[p].told.indices { paths[p].told[t].coversInjections = cover[toldIndex[p][t]] ?? 1 }
        }
        return paths
    }

    static func ms(_ ns: Int64) -> Double { Double(ns) / 1e6 }

    /// The first index whose time is at or after `t`, in an array sorted by
    /// time (binary search: a run may hold thousands of injections).
    static func firstIndex<T>(_ list: [T], atOrAfter t: Int64, time: (T) -> Int64) -> Int {
        var lo = 0, hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if time(list[mid]) < t { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

/// An errno for the report: its name from FaultRules' table ("EIO"), else
/// "errno N". The sign is ignored.
public func errnoLabel(_ e: Int32) -> String {
    let a = abs(e)
    return errnoName(a) ?? "errno \(a)"
}

/// Rows of the "injected → told" table that differ only in time (and
/// offset): one row with a count and a time range.
public struct ErrorPathGroup: Sendable, Equatable {
    /// In time order; never empty.
    public var paths: [ErrorPath]
    public var first: ErrorPath { paths[0] }
    public var count: Int { paths.count }
    public var firstNs: Int64 { paths[0].injection.timeNs }
    public var lastNs: Int64 { paths[paths.count - 1].injection.timeNs }
}

extension Derivation {
    /// Groups paths with the same rule, action, op, file (path and inode),
    /// errno, outcome, and the same processes told (thread, call, errno
    /// got). Which daemon thread the kernel recorded it in does not split a
    /// group. Groups come in the order of their first injection.
    public static func group(_ paths: [ErrorPath]) -> [ErrorPathGroup] {
        struct ToldKey: Hashable { var task: String; var pid: Int32; var call: String; var errno: Int32 }
        struct Key: Hashable {
            var rule: String, action: String, op: String, path: String, ino: UInt64, errno: Int32
            var status: ErrorPath.Status
            var told: [ToldKey]
        }
        var groups: [ErrorPathGroup] = []
        var index: [Key: Int] = [:]
        for p in paths.sorted(by: { $0.injection.timeNs < $1.injection.timeNs }) {
            let i = p.injection
            let key = Key(rule: i.ruleID, action: i.action.name, op: i.op.name, path: i.pathText, ino: p.kernelIno, errno: i.errno,
                          status: p.status, told: p.told.map { ToldKey(task: $0.task, pid: $0.pid, call: $0.call, errno: $0.reportedErrno) })
            if let g = index[key] {
                groups[g].paths.append(p)
            } else {
                index[key] = groups.count
                groups.append(ErrorPathGroup(paths: [p]))
            }
        }
        return groups
    }
}
