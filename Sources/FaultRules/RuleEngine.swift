// The rule table and the per-request decision. The fault layer calls
// `decide` for every request, so its common case (no rule for this op) costs
// one relaxed atomic load. The engine does no I/O itself: `needs(for:)` says
// what the armed rules look at, and the caller gathers that (a path, /proc
// reads) before `decide` takes any lock (lock order: see FaultLayer.swift).

import Synchronization

/// What the mount negotiated with the kernel, for warnings.
public struct MountFeatures: Sendable, Equatable {
    public var writebackCache: Bool

    public init(writebackCache: Bool) {
        self.writebackCache = writebackCache
    }
}

/// What the fault layer knows about one request; cheap to build.
public struct RequestInfo: Sendable {
    public var op: FaultOp
    public var inode: UInt64
    /// -1 when the request has no offset.
    public var offset: Int64
    /// 0 when the request has no length.
    public var length: Int64
    /// The calling thread (FUSE reports thread ids); 0 when there is no
    /// caller (writeback).
    public var pid: Int32

    public init(op: FaultOp, inode: UInt64 = 0, offset: Int64 = -1, length: Int64 = 0, pid: Int32 = 0) {
        self.op = op
        self.inode = inode
        self.offset = offset
        self.length = length
        self.pid = pid
    }
}

/// What the armed rules for an op look at, beyond the op itself: what the
/// caller has to gather about a request before `decide`.
public struct RequestNeeds: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The path below the mount root (`path=`).
    public static let path = RequestNeeds(rawValue: 1)
    /// The calling process's name (`comm=`).
    public static let comm = RequestNeeds(rawValue: 2)
    /// The calling thread's process (`pid=`).
    public static let processID = RequestNeeds(rawValue: 4)
    /// The request's byte range (`offset=`); always in `RequestInfo`, free to gather.
    public static let offset = RequestNeeds(rawValue: 8)

    /// What one rule looks at.
    init(_ rule: Rule) {
        self = []
        if rule.path != nil { insert(.path) }
        if rule.comm != nil { insert(.comm) }
        if rule.pid != nil { insert(.processID) }
        if rule.offsetRange != nil { insert(.offset) }
    }

    public var description: String {
        let names: [(RequestNeeds, String)] = [(.path, "path"), (.comm, "comm"), (.processID, "pid"), (.offset, "offset")]
        return "[" + names.filter { contains($0.0) }.map(\.1).joined(separator: ",") + "]"
    }
}

/// Supplies what is costly to compute about a request, at most once per
/// question per `decide`. It is asked while the engine holds its locks, so
/// it should only hand out what the caller gathered before (see `needs`).
public protocol RequestDetails {
    /// Relative to the mount root, without leading slash.
    func path() -> String?
    func comm() -> String?
    /// The process (thread group) of the calling thread `RequestInfo.pid`.
    func processID() -> Int32?
}

public extension RequestDetails {
    func processID() -> Int32? { nil }
}

/// The rule that matched a request and what to do to it.
public struct Decision: Sendable, Equatable {
    public let ruleID: String
    public let action: FaultAction
    /// For `corrupt`: the seed of this request's choice of bytes, the rule's
    /// next draw (so `seed=` makes it reproducible); 0 otherwise.
    public let corruptionSeed: UInt64

    public init(ruleID: String, action: FaultAction, corruptionSeed: UInt64 = 0) {
        self.ruleID = ruleID
        self.action = action
        self.corruptionSeed = corruptionSeed
    }
}

public final class RuleEngine: Sendable {
    private let features: MountFeatures
    private let table: Mutex<RuleTable>
    /// A copy of `table.index`, read without the mutex: most requests match
    /// no rule and never take it.
    private let index = ReadMostly(RuleIndex([]))
    /// `table.armedOps`, republished under the lock whenever it may change.
    private let armedMask = Atomic<UInt32>(0)
    /// Per need, the ops whose armed rules have it (see `needs(for:)`);
    /// republished with `armedMask`.
    private let opsNeedingPath = Atomic<UInt32>(0)
    private let opsNeedingComm = Atomic<UInt32>(0)
    private let opsNeedingProcessID = Atomic<UInt32>(0)
    private let opsNeedingOffset = Atomic<UInt32>(0)

    public init(features: MountFeatures) {
        self.features = features
        self.table = Mutex(RuleTable())
    }

    /// Ops that at least one non-dormant rule targets.
    public var armedOps: OpSet {
        OpSet(rawValue: armedMask.load(ordering: .relaxed))
    }

    /// What the armed rules for `op` look at: gather exactly these before
    /// `decide`. Relaxed loads, no lock. If the rules change in between,
    /// a rule whose need was not gathered sees nil and does not match: the
    /// request is decided as if it came before the change.
    public func needs(for op: FaultOp) -> RequestNeeds {
        let bit = OpSet.of(op).rawValue
        var needs: RequestNeeds = []
        if opsNeedingPath.load(ordering: .relaxed) & bit != 0 { needs.insert(.path) }
        if opsNeedingComm.load(ordering: .relaxed) & bit != 0 { needs.insert(.comm) }
        if opsNeedingProcessID.load(ordering: .relaxed) & bit != 0 { needs.insert(.processID) }
        if opsNeedingOffset.load(ordering: .relaxed) & bit != 0 { needs.insert(.offset) }
        return needs
    }

    /// Rules that can still inject (not dormant).
    public var armedRuleCount: Int {
        table.withLock { table in table.rules.count { !$0.isDormant } }
    }

    /// Rules are tried in order. Each rule whose filters match counts the
    /// request; the first that selects it (after/every/prob/count) wins, and
    /// later rules do not see it. Nil: pass the request on untouched.
    public func decide(_ info: RequestInfo, _ details: some RequestDetails) -> Decision? {
        guard armedMask.load(ordering: .relaxed) & OpSet.of(info.op).rawValue != 0 else { return nil }
        var lazyDetails = LazyDetails(source: details)
        // Only the rules that can match this request's path, in order.
        let candidates = index.read { $0.candidates(for: info.op) { lazyDetails.path() } }
        guard !candidates.isEmpty else { return nil }
        return table.withLock { table in
            // The rules changed since the index was read: ask again.
            var candidates = candidates.version == table.index.version
                ? candidates : table.index.candidates(for: info.op) { lazyDetails.path() }
            while let index = candidates.next() {
                guard !table.rules[index].isDormant,
                      table.rules[index].matches(info, &lazyDetails),
                      table.rules[index].countAndSelect()
                else { continue }
                let seed = table.rules[index].isCorrupt ? table.rules[index].draw() : 0
                let rule = table.rules[index]
                if rule.isDormant { publishArmedOps(table) }
                return Decision(ruleID: rule.id, action: rule.rule.action, corruptionSeed: seed)
            }
            return nil
        }
    }

    /// Applies all commands or none. Returns the ones the caller acts on
    /// (`release`, also for `clear` of a stall rule; `capacity`;
    /// `reset-counters`). For errors, `line` is the command's 1-based index.
    public func apply(_ commands: [ControlCommand]) -> Result<[ControlCommand], ParseError> {
        apply(located: commands.enumerated().map { LocatedCommand(command: $1, line: $0 + 1, idColumn: 1) })
    }

    /// Parses and applies one write to the control file, all or nothing.
    public func apply(text: String) -> Result<[ControlCommand], ParseError> {
        parseLocatedControl(text).flatMap(apply(located:))
    }

    private func apply(located commands: [LocatedCommand]) -> Result<[ControlCommand], ParseError> {
        table.withLock { table in
            var draft = table  // a copy, so that a failure leaves the table untouched
            var forCaller: [ControlCommand] = []
            for located in commands {
                do throws(ParseError) {
                    if let passOn = try draft.apply(located) { forCaller.append(passOn) }
                } catch {
                    return .failure(error)
                }
            }
            draft.index = RuleIndex(draft.rules, version: table.index.version &+ 1)
            table = draft
            index.write { $0 = draft.index }
            publishArmedOps(table)
            return .success(forCaller)
        }
    }

    /// The control file's contents: each rule's canonical text with its
    /// counters as a comment, then warnings as comments. Parses back to the
    /// same rules.
    public func renderRules() -> String {
        table.withLock { table in
            let ruleLines = table.rules.map { rule in
                "\(rule.rule)  # matched=\(rule.matched) hits=\(rule.hits)" + (rule.isDormant ? " dormant" : "")
            }
            let warningLines = table.rules.flatMap { $0.rule.warnings(for: features) }.map { "# warning: " + $0 }
            let coversBothSyncs = table.rules.contains { $0.rule.ops.isSuperset(of: .anyFsync) }
            let noteLines = coversBothSyncs
                ? ["# note: fsync means fsync(2) and fdatasync(2); fsync-only or fdatasync names one of them"] : []
            return (ruleLines + warningLines + noteLines).map { $0 + "\n" }.joined()
        }
    }

    /// Block mode's re-resolver: replaces the `ranges=` of rule `id` (the
    /// blocks its files hold now), keeping its counters. The index does not
    /// depend on ranges, so it stays. False if there is no such rule.
    public func replaceByteRanges(ofRule id: String, with ranges: ByteRangeSet) -> Bool {
        table.withLock { table in
            guard let index = table.rules.firstIndex(where: { $0.id == id }) else { return false }
            table.rules[index].rule.byteRanges = ranges
            return true
        }
    }

    /// Zeroes every rule's counters and restarts its random sequence, which
    /// re-arms rules whose count was exhausted.
    public func resetCounters() {
        table.withLock { table in
            table.resetCounters()
            publishArmedOps(table)
        }
    }

    private func publishArmedOps(_ table: RuleTable) {
        var path: UInt32 = 0, comm: UInt32 = 0, processID: UInt32 = 0, offset: UInt32 = 0
        for rule in table.rules where !rule.isDormant {
            let needs = RequestNeeds(rule.rule), ops = rule.rule.ops.rawValue
            if needs.contains(.path) { path |= ops }
            if needs.contains(.comm) { comm |= ops }
            if needs.contains(.processID) { processID |= ops }
            if needs.contains(.offset) { offset |= ops }
        }
        opsNeedingPath.store(path, ordering: .relaxed)
        opsNeedingComm.store(comm, ordering: .relaxed)
        opsNeedingProcessID.store(processID, ordering: .relaxed)
        opsNeedingOffset.store(offset, ordering: .relaxed)
        armedMask.store(table.armedOps.rawValue, ordering: .relaxed)
    }
}

// MARK: - The table, guarded by the engine's mutex

struct RuleTable: Sendable {
    var rules: [ActiveRule] = []
    /// Rebuilt whenever `rules` changes (not their counters).
    var index = RuleIndex([])
    /// The number in the next automatic id (`r1`, `r2`, ...); never reused.
    var nextAutoID = 1

    var armedOps: OpSet {
        rules.reduce(OpSet()) { $1.isDormant ? $0 : $0.union($1.rule.ops) }
    }

    mutating func resetCounters() {
        for index in rules.indices { rules[index].resetCounters() }
    }

    /// Applies one command; returns it if the caller must act on it.
    mutating func apply(_ located: LocatedCommand) throws(ParseError) -> ControlCommand? {
        func error(_ message: String) -> ParseError {
            ParseError(line: located.line, column: located.idColumn, message: message)
        }
        switch located.command {
        case .add(var rule):
            if let id = rule.id {
                guard isValidID(id) else { throw error("bad id \"\(id)\"; expected letters, digits, _ . or -") }
                guard !rules.contains(where: { $0.id == id }) else {
                    throw error("duplicate id \"\(id)\"; a rule with this id exists already (clear it first, or pick another id)")
                }
            } else {
                rule.id = takeAutoID()
            }
            rules.append(ActiveRule(rule))
            return nil
        case .clear(id: nil):
            // A held request belongs to its stall rule: removing the rule lets it go.
            let hadStall = rules.contains { $0.isStall }
            rules.removeAll()
            return hadStall ? .release(id: nil) : nil
        case .clear(id: let id?):
            guard let index = rules.firstIndex(where: { $0.id == id }) else {
                let known = rules.isEmpty ? "there are no rules" : "expected one of " + rules.map(\.id).joined(separator: ", ")
                throw error("no rule with id \"\(id)\"; \(known)")
            }
            let wasStall = rules[index].isStall
            rules.remove(at: index)
            return wasStall ? .release(id: id) : nil
        case .resetCounters:
            resetCounters()
            return located.command  // the caller keeps counters of its own
        case .release(let id):
            // Releasing ends the stall: its held requests go on, and no new
            // request is held (the rule is removed). Like `clear ID`, an id
            // that names no stall rule is an error (`clear` of a stall rule
            // releases its requests, so none outlives its rule).
            if let id, !rules.contains(where: { $0.id == id && $0.isStall }) {
                let stalls = rules.filter(\.isStall).map(\.id)
                let known = stalls.isEmpty ? "there are no stall rules" : "expected one of " + stalls.joined(separator: ", ")
                throw error("no stall rule with id \"\(id)\"; \(known)")
            }
            rules.removeAll { $0.isStall && (id == nil || $0.id == id) }
            return located.command
        case .capacity, .crash:
            return located.command
        }
    }

    private mutating func takeAutoID() -> String {
        while true {
            let id = "r\(nextAutoID)"
            nextAutoID += 1
            if !rules.contains(where: { $0.id == id }) { return id }
        }
    }
}

/// Which rules a request may match, so that a thousand armed rules cost a
/// request a few lookups rather than a thousand checks: rules are grouped by
/// op, and path rules whose pattern starts with a literal name (`pg_wal/**`,
/// `data/x.wal`) by that name. Candidates come out in rule order, so "the
/// first match acts" holds.
struct RuleIndex: Sendable {
    /// Changes with every change of the rules the indices refer to.
    let version: UInt64
    /// Per op: the rules that need no path or whose path starts with a wildcard.
    private var unindexed: [[Int]]
    /// Per op: first name → rules whose path pattern starts with that name.
    private var byFirstName: [[[UInt8]: [Int]]]

    init(_ rules: [ActiveRule], version: UInt64 = 0) {
        self.version = version
        unindexed = Array(repeating: [], count: FaultOp.allCases.count)
        byFirstName = Array(repeating: [:], count: FaultOp.allCases.count)
        for (index, active) in rules.enumerated() {
            for op in active.rule.ops.ops {
                if let name = active.rule.path?.literalFirstName {
                    byFirstName[Int(op.rawValue)][name, default: []].append(index)
                } else {
                    unindexed[Int(op.rawValue)].append(index)
                }
            }
        }
    }

    /// The candidate rule indices for `op`, ascending. `path` is asked only
    /// when some rule for `op` is indexed by name.
    func candidates(for op: FaultOp, path: () -> String?) -> Candidates {
        let o = Int(op.rawValue)
        var named: ArraySlice<Int> = []
        if !byFirstName[o].isEmpty, let path = path() {
            named = byFirstName[o][Array(PathGlob.firstName(of: path))]?[...] ?? []
        }
        return Candidates(version: version, a: unindexed[o][...], b: named)
    }

    /// Merges two ascending index lists.
    struct Candidates {
        let version: UInt64
        var a: ArraySlice<Int>
        var b: ArraySlice<Int>
        var isEmpty: Bool { a.isEmpty && b.isEmpty }
        mutating func next() -> Int? {
            switch (a.first, b.first) {
            case let (x?, y?): if x < y { a.removeFirst(); return x } else { b.removeFirst(); return y }
            case let (x?, nil): a.removeFirst(); return x
            case let (nil, y?): b.removeFirst(); return y
            case (nil, nil): return nil
            }
        }
    }
}

/// A rule in the table, with its counters.
struct ActiveRule: Sendable {
    /// Only `byteRanges` ever changes (`replaceByteRanges`).
    fileprivate(set) var rule: Rule
    let id: String
    /// Requests that passed the filters while the rule was armed.
    private(set) var matched: UInt64 = 0
    /// Requests the rule injected into.
    private(set) var hits: UInt64 = 0
    private var random: SplitMix64

    /// `rule.id` must be set.
    init(_ rule: Rule) {
        self.rule = rule
        self.id = rule.id ?? ""
        self.random = SplitMix64(seed: rule.seed ?? 1)
    }

    /// Dormant rules are skipped and do not count towards `armedOps`.
    var isDormant: Bool {
        rule.count.map { hits >= $0 } ?? false
    }

    var isStall: Bool {
        if case .stall = rule.action { return true }
        return false
    }

    var isCorrupt: Bool {
        if case .corrupt = rule.action { return true }
        return false
    }

    mutating func resetCounters() {
        self = ActiveRule(rule)
    }

    /// The rule's next random number (after `prob=`'s draw, if any).
    mutating func draw() -> UInt64 { random.next() }

    /// The filters: op, caller, offset, path. Cheapest checks first; the
    /// path and comm are fetched only if a filter needs them.
    func matches(_ info: RequestInfo, _ details: inout LazyDetails<some RequestDetails>) -> Bool {
        guard rule.ops.contains(info.op) else { return false }
        if rule.pid != nil || rule.comm != nil {
            guard info.pid != 0 else { return false }  // writeback: no caller to compare
            // `pid=` names a process or one of its threads.
            if let pid = rule.pid, pid != info.pid, details.processID() != pid { return false }
        }
        if let range = rule.offsetRange, !range.overlaps(offset: info.offset, length: info.length) { return false }
        if let set = rule.byteRanges, !set.overlaps(offset: info.offset, length: info.length) { return false }
        if let comm = rule.comm, details.comm() != comm { return false }
        if let glob = rule.path {
            guard let path = details.path(), glob.matches(path[...]) else { return false }
        }
        return true
    }

    /// Counts a request that passed the filters; true if this one gets the fault.
    mutating func countAndSelect() -> Bool {
        let index = matched  // 0-based among matching requests
        matched += 1
        guard index >= rule.after else { return false }
        if let every = rule.every, (index - rule.after + 1) % every != 0 { return false }
        if let probability = rule.probability, random.nextUnitInterval() >= probability { return false }
        hits += 1
        return true
    }
}

/// Asks `RequestDetails` at most once per question per request.
struct LazyDetails<Source: RequestDetails> {
    let source: Source
    private var cachedPath: String??
    private var cachedComm: String??
    private var cachedProcessID: Int32??

    init(source: Source) {
        self.source = source
    }

    mutating func path() -> String? {
        if cachedPath == nil { cachedPath = .some(source.path()) }
        return cachedPath!
    }

    mutating func comm() -> String? {
        if cachedComm == nil { cachedComm = .some(source.comm()) }
        return cachedComm!
    }

    mutating func processID() -> Int32? {
        if cachedProcessID == nil { cachedProcessID = .some(source.processID()) }
        return cachedProcessID!
    }
}
