// The fault layer: three decorators around the file system it serves, from
// the kernel inwards:
//
//   ControlFiles   `.faultfs/` (control, stats, events, status); steering
//   FaultInjector  the rule checks: fail, delay, stall, drop, short
//   CapacityLimit  `capacity SIZE`: ENOSPC past SIZE, statfs shows SIZE
//   (inner)        the passthrough
//
// LOCK ORDER (the one place it is written; other files refer here).
// A thread holds at most these locks at once, taken in this order:
//
//   1. RuleEngine's table mutex  ->  2. RuleEngine's index (ReadMostly, write side)
//
// (only `RuleEngine.apply` nests them). Every other lock is a leaf, held
// only around its own memory and never across a call out: PathCache's
// ReadMostly, SnapshotNodes' and EventLog's mutexes, StallGate's mutex,
// CapacityLimit's mutex, and below us the passthrough's FDCache and inode
// table. In particular no I/O happens under an engine lock: a request's
// path (PathCache, then the inner file system's FDCache and readlink) and
// its caller's comm and tgid (/proc) are gathered first, as
// `RuleEngine.needs(for:)` says, and only then does `decide` lock.
import FaultRules
import FuseKit
import Glibc

public struct FaultLayerOptions: Sendable {
    /// The control directory's name at the mount root.
    public var controlName = ".faultfs"
    /// Who may write `control` (besides root): the mounting user.
    public var owner: uid_t = getuid()
    public var group: gid_t = getgid()
    /// A file every injection is appended to as a JSON line.
    public var eventsPath: String?
    /// Whether the mount asks for the writeback cache (for rule warnings and `status`).
    public var writebackCache = true
    // What `.faultfs/status` tells about the mount.
    public var version = "dev"
    public var commit = "unknown"
    public var mountPoint = ""
    public var source = ""
    public var mountOptions: [String] = []
    /// How long a `capacity SIZE` write waits for the backing tree to be
    /// measured before it returns with the capacity still "measuring".
    public var capacityMeasureWaitNanoseconds: UInt64 = 2_000_000_000
    /// Called after every control write that was applied (block mode's
    /// `file=` re-resolver starts on it).
    public var afterControlApplied: (@Sendable () -> Void)?
    /// Comment lines `control` shows before the rules, asked at each read
    /// (block mode: the image, the loop device, the file system on it).
    public var controlFacts: (@Sendable () -> [String])?
    /// Power-loss simulation (`-o crashsim[=journal]`): nil when off, and
    /// then the crash layer is not in the chain at all.
    public var crashSimulation: NameDurability?
    /// Where the crash layer keeps the old bytes it may have to put back
    /// (a nameless O_TMPFILE file in this directory, outside the mount).
    public var crashSpillDirectory = "/var/tmp"
    /// Called (on a thread of its own) once a `crash` command was accepted:
    /// the server ends the session, calls `FaultLayer.crash`, mounts again.
    public var onCrash: (@Sendable (CrashRequest) -> Void)?
    public init() {}
}

/// The fault layer around `inner`, assembled: serve `fileSystem`.
public final class FaultLayer: Sendable {
    public let engine: RuleEngine
    let recorder: InjectionRecorder
    let capacity: CapacityLimit
    let injector: FaultInjector
    let control: ControlFiles

    /// The file system to serve: the control files, over the injector,
    /// over the capacity limit, over `inner`.
    public var fileSystem: any FileSystem { control }

    public init(wrapping inner: any FileSystem, tree: any BackingTree, options: FaultLayerOptions) throws(Errno) {
        engine = RuleEngine(features: MountFeatures(writebackCache: options.writebackCache))
        recorder = try InjectionRecorder(tree: tree, eventsPath: options.eventsPath)
        capacity = CapacityLimit(wrapping: inner, tree: tree, recorder: recorder)
        injector = FaultInjector(wrapping: capacity, tree: tree, engine: engine, recorder: recorder)
        control = try ControlFiles(wrapping: injector, options: options, engine: engine, recorder: recorder,
                                   gate: injector.gate, capacity: capacity)
    }

    /// Applies control text (a write to `control`, or `-o rules=FILE`), all
    /// or nothing.
    public func applyControl(_ text: String) -> Result<Void, ParseError> { control.applyControl(text) }

    /// Undoes, in the backing tree, every change not yet durable (the
    /// session must be gone: nothing may change the tree meanwhile), and
    /// records the crash (status, event). Placeholder until the crash layer lands.
    public func crash(_ request: CrashRequest) -> CrashReport {
        var report = CrashReport()
        report.request = request
        return report
    }
}
