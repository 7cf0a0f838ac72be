import FaultRules

// The report's answer to "who was told": summary lines and the table cell,
// from `Derivation.tellings`. Categories (the README's monitor section says
// the same):
// - told by X: a traced call (fsync, fdatasync, close, msync, write, ...)
//   returned the error; X is the file system whose call it was (FUSE, or
//   ext4/XFS/Btrfs in block mode).
// - lost at exit: nobody was told, and a process that had the file open
//   exited with it still open; the kernel closed it, the error went nowhere.
// - never told: recorded by the kernel, and no traced call returned it.

/// Injections grouped like `Derivation.group`, with their tellings.
public struct TellingGroup: Sendable {
    public var tellings: [Telling]
    public var paths: ErrorPathGroup { ErrorPathGroup(paths: tellings.map(\.path)) }
    public var first: Telling { tellings[0] }
}

extension Derivation {
    /// Groups injections alike in rule, action, op, file, errno, outcome,
    /// who was told and how, who lost it at exit and who had it open.
    public static func group(_ tellings: [Telling]) -> [TellingGroup] {
        struct Key: Hashable {
            var rule: String, action: String, op: String, path: String, ino: UInt64, errno: Int32
            var status: String
            var told: [String]
            var lost: [Int32]
            var holders: [Holder]
        }
        var groups: [TellingGroup] = []
        var index: [Key: Int] = [:]
        for t in tellings.sorted(by: { $0.path.injection.timeNs < $1.path.injection.timeNs }) {
            let i = t.path.injection
            let key = Key(rule: i.ruleID, action: i.action.name, op: i.op.name, path: i.pathText, ino: t.path.kernelIno, errno: i.errno,
                          status: t.status.rawValue, told: t.told.map { "\($0.call.task)|\($0.call.tid)|\($0.call.call)|\($0.call.errno)" },
                          lost: t.lostAtExit.map(\.holder.pid), holders: t.holders)
            if let g = index[key] { groups[g].tellings.append(t) } else {
                index[key] = groups.count
                groups.append(TellingGroup(tellings: [t]))
            }
        }
        return groups
    }
}

/// The block-mode file system of a run ("ext4"), if it was one.
func blockFileSystem(_ run: RunData) -> String? { run.setting("block.fs") }

/// "python3[123]"
func processLabel(_ comm: String, _ pid: Int32) -> String { "\(comm)[\(pid)]" }

/// The summary's "told / lost at exit / never told" lines.
func toldSummaryLines(_ run: RunData) -> [String] {
    let layer = Derivation.tellingLayer(blockFileSystem: blockFileSystem(run))
    if blockFileSystem(run) != nil { return innerFileSystemLines(run, layer: layer) }
    let tellings = Derivation.tellings(injections: run.injections, traceEvents: run.traceEvents, openFiles: run.openFiles,
                                       mountDevice: run.mountDevice)
    var out: [String] = []
    // One line per (thread, call, errno): a call may cover several injections.
    struct Key: Hashable { var task: String; var tid: Int32; var call: String; var errno: Int32 }
    var reports: [Key: [Telling.Told]] = [:]
    var order: [Key] = []
    var seen = Set<String>()
    for t in tellings {
        for told in t.told where seen.insert("\(told.call.timeNs)|\(told.call.tid)|\(told.call.file ?? "")").inserted {
            let k = Key(task: told.call.task, tid: told.call.tid, call: told.call.call, errno: told.call.errno)
            if reports[k] == nil { order.append(k) }
            reports[k, default: []].append(told)
        }
    }
    for k in order {
        let r = reports[k]!
        let delays = r.map(\.delayMs)
        let covered = r.reduce(0) { $0 + $1.coversInjections }
        let delay = r.count == 1 ? "after \(formatFixed(delays[0], 2)) ms"
            : "\(r.count) times, after \(formatFixed(delays.min()!, 2))–\(formatFixed(delays.max()!, 2)) ms"
        out.append("told: thread \(k.task)[\(k.tid)] got \(errnoLabel(k.errno)) via \(k.call) \(delay), told by \(layer)"
            + (covered > r.count ? " (covering \(covered) injections)" : ""))
    }
    let lost = tellings.filter { $0.status == .lostAtExit }
    var lostBy: [Int32: (String, [Telling])] = [:]
    for t in lost { for l in t.lostAtExit { lostBy[l.holder.pid, default: (l.holder.comm, [])].1.append(t) } }
    for (pid, (comm, list)) in lostBy.sorted(by: { $0.key < $1.key }) {
        let files = Set(list.map { "\($0.path.injection.pathText) (ino \($0.path.kernelIno))" }).sorted()
        out.append("lost at exit: \(processLabel(comm, pid)) exited with " + files.joined(separator: ", ")
            + " open, \(list.count) injection(s) never told: the kernel closed the file and its error went nowhere")
    }
    let never = tellings.filter { $0.status == .neverTold }
    if never.isEmpty {
        out.append("never told: none")
    } else {
        var byFile: [String: [Telling]] = [:]
        for t in never { byFile["\(t.path.injection.pathText) (ino \(t.path.kernelIno))", default: []].append(t) }
        for (file, list) in byFile.sorted(by: { $0.key < $1.key }) {
            let holders = Set(list.flatMap(\.holders)).sorted { $0.pid < $1.pid }
            out.append("never told: \(list.count) injection(s) on \(file) by any traced call; "
                + (holders.isEmpty ? "no process had it open at the sampled times"
                   : "had it open: " + holders.map { processLabel($0.comm, $0.pid) }.joined(separator: ", ")))
        }
    }
    let unrec = tellings.filter { $0.status == .notRecorded }.count
    if unrec > 0 { out.append("not recorded by the kernel: \(unrec) injection(s) (not writeback errors, and no failing call of the requesting thread seen)") }
    return out
}

/// Block mode: the injections hit the disk image, the inner file system
/// records the errors on its own inodes and tells its own callers. The
/// lines are per file of the inner file system.
func innerFileSystemLines(_ run: RunData, layer: String) -> [String] {
    let returns = Derivation.errorReturns(traceEvents: run.traceEvents, openFiles: run.openFiles, mountDevice: run.mountDevice)
    var out: [String] = []
    struct Key: Hashable { var task: String; var tid: Int32; var call: String; var errno: Int32; var ino: UInt64? }
    var counts: [Key: [ErrorReturn]] = [:]
    var order: [Key] = []
    let holdingPids = Set(run.openFiles.map(\.pid))
    for r in returns where r.ino != nil || holdingPids.contains(r.process) {
        let k = Key(task: r.task, tid: r.tid, call: r.call, errno: r.errno, ino: r.ino)
        if counts[k] == nil { order.append(k) }
        counts[k, default: []].append(r)
    }
    for k in order {
        let n = counts[k]!.count
        out.append("told: thread \(k.task)[\(k.tid)] got \(errnoLabel(k.errno)) via \(k.call)" + (n > 1 ? " \(n) times" : "")
            + " on " + (k.ino.map { "ino \($0)" } ?? "an unidentified file") + ", told by \(layer)")
    }
    // Errors the inner file system recorded on a file that no call returned.
    var recorded: [UInt64: Int64] = [:]
    for e in run.traceEvents {
        if case .setWbErr(let s) = e.payload, run.mountDevice == nil || s.dev == run.mountDevice { recorded[s.ino] = recorded[s.ino] ?? e.timeNs }
    }
    let index = HoldingIndex(traceEvents: run.traceEvents, openFiles: run.openFiles, mountDevice: run.mountDevice)
    var never: [String] = []
    for (ino, t) in recorded.sorted(by: { $0.key < $1.key }) where !returns.contains(where: { $0.ino == ino && $0.timeNs >= t }) {
        let holders = Derivation.uniqueHolders(index.holding(ino, at: t))
        never.append("ino \(ino)" + (holders.isEmpty ? "" : " (open in " + holders.map { processLabel($0.comm, $0.pid) }.joined(separator: ", ") + ")"))
    }
    out.append("never told: " + (never.isEmpty ? "none" : never.joined(separator: "; ") + " (recorded by \(layer), no traced call returned it)"))
    return out
}

/// The "told to" cell of the HTML table for one group.
func toldCellHTML(_ g: TellingGroup, layer: String) -> String {
    let t = g.first
    let count = g.tellings.count
    switch t.status {
    case .told:
        return t.told.indices.map { k in
            let c = t.told[k].call
            let delays = g.tellings.compactMap { $0.told.indices.contains(k) ? $0.told[k].delayMs : nil }
            let reports = Set(g.tellings.compactMap { $0.told.indices.contains(k) ? $0.told[k].call.timeNs : nil }).count
            let how: String
            switch c.resolvedBy {
            case .errseq: how = "kernel event <code>filemap:file_check_and_advance_wb_err</code> in the call"
            case .fd: how = "fd \(c.fd ?? -1) in the sampled /proc/\(c.process)/fd"
            case .request: how = "the failing writeback request was sent from this call (<code>fuse:fuse_request_send</code>)"
            case .unknown: how = "the requesting thread of the injection"
            }
            return "<span class=\"told\">thread " + xmlEscape(c.task) + "[\(c.tid)]</span>, <code>" + xmlEscape(c.call) + "</code> (told by "
                + xmlEscape(layer) + "; " + how + "), +" + delayRange(delays) + " ms, got " + errnoLabel(c.errno)
                + (count > reports ? " (\(reports == 1 ? "one report" : "\(reports) reports") for \(count) injections)"
                   : (t.told[k].coversInjections > 1 ? " (one report for \(t.told[k].coversInjections) injections)" : ""))
        }.joined(separator: "<br/>")
    case .lostAtExit:
        return "<span class=\"never\">lost at exit</span>: " + t.lostAtExit.map {
            xmlEscape(processLabel($0.holder.comm, $0.holder.pid)) + " exited with the file open, +" + formatFixed($0.delayMs, 2) + " ms"
        }.joined(separator: ", ")
    case .neverTold:
        return "<span class=\"never\">never told</span>" + (t.holders.isEmpty ? " (no process had it open at the sampled times)"
            : " (had it open: " + xmlEscape(t.holders.map { processLabel($0.comm, $0.pid) }.joined(separator: ", ")) + ")")
    case .notRecorded:
        return "<span class=\"muted\">—</span>"
    }
}

/// Block mode: who the inner file system told, per inode (the table above
/// follows the injections into the disk image, which no application opens).
func innerFileSystemHTML(_ run: RunData) -> String {
    guard let fs = blockFileSystem(run), run.traceAvailable else { return "" }
    let layer = Derivation.tellingLayer(blockFileSystem: fs)
    var h = "<h2>Told by " + xmlEscape(layer) + "</h2>\n<p class=\"muted\">The injections hit the disk image; " + xmlEscape(fs)
        + " records the errors on its own files and tells its own callers. Each line is a failing call on a file of " + xmlEscape(fs)
        + " (by inode), or an error it recorded that no traced call returned.</p>\n<ul>\n"
    for line in innerFileSystemLines(run, layer: layer) { h += "<li>" + xmlEscape(line) + "</li>\n" }
    return h + "</ul>\n"
}
