// The fault layer: three decorators around the file system it serves, from
// the kernel inwards:
//
//   ControlFiles   `.faultfs/` (control, stats, events, status); steering
//   FaultInjector  the rule checks: fail, delay, stall, drop, short, corrupt
//   CrashSimulator `-o crashsim` only: keeps what a `crash` must undo
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
// CapacityLimit's mutex, CrashSimulator's journal mutex, and below us the passthrough's FDCache and inode
// table. In particular no I/O happens under an engine lock: a request's
// path (PathCache, then the inner file system's FDCache and readlink) and
// its caller's comm and tgid (/proc) are gathered first, as
// `RuleEngine.needs(for:)` says, and only then does `decide` lock.
import FaultRules
import FuseKit
import Glibc
import Synchronization

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
    /// Where the fault layer's own notices go (crash simulation stopped, an
    /// undo step that failed); stderr when nil.
    public var log: (@Sendable (String) -> Void)?
    public init() {}
}

/// The fault layer around `inner`, assembled: serve `fileSystem`.
public final class FaultLayer: Sendable {
    public let engine: RuleEngine
    let recorder: InjectionRecorder
    let capacity: CapacityLimit
    let injector: FaultInjector
    let control: ControlFiles
    let crashes: CrashControl

    /// The file system to serve: the control files, over the injector,
    /// over the capacity limit, over `inner`.
    public var fileSystem: any FileSystem { control }

    public init(wrapping inner: any FileSystem, tree: any BackingTree, options: FaultLayerOptions) throws(Errno) {
        engine = RuleEngine(features: MountFeatures(writebackCache: options.writebackCache))
        recorder = try InjectionRecorder(tree: tree, eventsPath: options.eventsPath)
        let capacity = CapacityLimit(wrapping: inner, tree: tree, recorder: recorder)
        self.capacity = capacity
        let recorder = self.recorder
        let log = options.log ?? { printError("faultfs: " + $0) }
        let simulator = options.crashSimulation.map { names in
            CrashSimulator(wrapping: capacity, tree: tree, recorder: recorder, names: names,
                           spillDirectory: options.crashSpillDirectory, log: log)
        }
        crashes = CrashControl(simulator: simulator, onCrash: options.onCrash)
        injector = FaultInjector(wrapping: simulator ?? capacity, tree: tree, engine: engine, recorder: recorder)
        control = try ControlFiles(wrapping: injector, options: options, engine: engine, recorder: recorder,
                                   gate: injector.gate, capacity: capacity, crashes: crashes)
    }

    /// Applies control text (a write to `control`, or `-o rules=FILE`), all
    /// or nothing.
    public func applyControl(_ text: String) -> Result<Void, ParseError> { control.applyControl(text) }

    /// Undoes, in the backing tree, every change not yet durable (the
    /// session must be gone: nothing may change the tree meanwhile), forgets
    /// them, empties the graveyard, and records the crash (status `crashes`
    /// and `last_crash`, a `crash` event). Ends the crash in progress. With
    /// crash simulation off or stopped it undoes nothing (and says so in the
    /// report: all zero).
    public func crash(_ request: CrashRequest) -> CrashReport {
        var report = CrashReport()
        report.request = request
        if let simulator = crashes.simulator, simulator.isRunning { report = simulator.crash(request) }
        crashes.finish(report)
        recorder.append(InjectionEvent(timeNs: SystemClock.realtimeNanoseconds(), ruleID: "-", action: .crash,
                                       op: .fsync, offset: -1, length: 0, crash: report))
        return report
    }

    /// A crash accepted by the control file did not happen (the server could
    /// not end the session): the next `crash` is accepted again.
    public func cancelCrash() { crashes.cancel() }

    /// `crashsim` in `.faultfs/status`: off, posix, journal, or stopped.
    public var crashSimulation: MountStatus.CrashSimulation { crashes.state }

    /// Crashes since the mount, and the last one's report.
    public var crashCount: Int { crashes.record.withLock { $0.count } }
    public var lastCrash: CrashReport? { crashes.record.withLock { $0.last } }

    /// Removes a crash graveyard left in the backing root `rootFD` by a
    /// daemon that was killed (at the next mount, and by `faultfs umount`
    /// of a dead mount). Harmless when there is none.
    public static func removeCrashGraveyard(rootFD: Int32) { CrashSimulator.removeGraveyard(rootFD: rootFD) }

    /// The graveyard's name at the backing root (the passthrough hides it:
    /// `PassthroughOptions.hiddenRootNames`).
    public static let crashGraveyardName = CrashSimulator.graveyardName
}

/// The crash command's state: whether a crash is in progress, and the
/// crashes so far (for `status`).
final class CrashControl: Sendable {
    let simulator: CrashSimulator?
    private let onCrash: (@Sendable (CrashRequest) -> Void)?
    private let inProgress = Atomic<Bool>(false)
    let record = Mutex<(count: Int, last: CrashReport?)>((0, nil))

    init(simulator: CrashSimulator?, onCrash: (@Sendable (CrashRequest) -> Void)?) {
        self.simulator = simulator
        self.onCrash = onCrash
    }

    var state: MountStatus.CrashSimulation {
        guard let simulator else { return .off }
        return simulator.isRunning ? MountStatus.CrashSimulation(simulator.names) : .stopped
    }

    static let offMessage = "crash: this mount has no crash simulation; mount it with -o crashsim"
    static let busyMessage = "crash: a crash is already in progress"

    /// Takes the crash in hand, or says why not (the message, and the errno
    /// the control write fails with).
    func begin() -> (message: String, errno: Errno)? {
        guard let simulator else { return (Self.offMessage, .EINVAL) }
        if let reason = simulator.stoppedBecause {
            return ("crash: crash simulation stopped (\(reason)); remount to start it again", .EINVAL)
        }
        guard onCrash != nil else { return ("crash: this server cannot restart the mount after a crash", .EINVAL) }
        guard inProgress.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return (Self.busyMessage, Errno(EBUSY))
        }
        simulator.crashPending.store(true, ordering: .releasing)
        return nil
    }

    /// Set when a handle of `control` is released (after close(2) returned):
    /// the crash's own write and close have then had their replies.
    private let controlClosed = Atomic<Bool>(false)

    /// Hands the accepted crash to the server, on a thread of its own, once
    /// the writer has closed `control` (its write was answered, so the abort
    /// cannot fail it) or after a second (a writer that keeps it open).
    func start(_ request: CrashRequest) {
        guard let onCrash else { return }
        controlClosed.store(false, ordering: .releasing)
        startThread { [self] in
            for _ in 0..<100 where !controlClosed.load(ordering: .acquiring) { usleep(10_000) }
            onCrash(request)
        }
    }

    /// A handle of `control` was released.
    func noteControlClosed() { controlClosed.store(true, ordering: .releasing) }

    func cancel() {
        simulator?.crashPending.store(false, ordering: .releasing)
        inProgress.store(false, ordering: .releasing)
    }

    func finish(_ report: CrashReport) {
        record.withLock { $0 = ($0.count + 1, report) }
        cancel()
    }
}
