// `faultfs run`: mount faultfs over a directory (in place), monitor, run the
// workload, apply the fault plan, unmount, write the report. Ctrl-C and
// SIGTERM stop the workload and still clean up (unmount, trace instance,
// cgroup) and write the report.
import Glibc
import System
import FaultRules
import MonitorCore
import Synchronization

public struct RunOptions: Sendable {
    /// Mount over this directory; nil: a fresh temporary one ($FAULTFS_DIR).
    public var dir: String?
    public var outDir: String
    public var intervalNs: Int64 = 100_000_000
    public var plan: [PlanStep] = []
    public var memoryLimit: Int64?
    public var command: [String]
    /// Extra -o options for the mount.
    public var mountOptions: [String] = []
    public var live = true
    public var trace = true
    /// Block mode (`--fs`): the directory becomes this file system on a disk faultfs serves.
    public var block: BlockRunOptions?
    /// The mount's bdi limits for the run (restored afterwards).
    public var bdiLimits: BdiLimits?
    /// More settings for the run folder and the report (the build's version).
    public var settings: [Setting] = []
    public init(outDir: String, command: [String]) { self.outDir = outDir; self.command = command }
}

public struct RunResult: Sendable {
    public var exitCode: Int32
    public var summary: String
    public var reportPath: String
    /// Output of the `afterUnmount` hook.
    public var checks: [String]
    /// Plan steps the daemon refused, or whose trigger never came (the
    /// workload ended first). The run did not do what the plan said.
    public var planProblems: [String] = []
}

public enum Runner {
    /// Blocks SIGINT/SIGTERM/SIGHUP in this thread (call before starting any
    /// thread, so they all inherit the mask) and returns the set to wait on.
    static func blockStopSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return set
    }

    /// - Parameter afterUnmount: called with the backing directory once the
    ///   mount is gone (the demo compares the files there); its lines are
    ///   printed and recorded as notes.
    public static func run(_ o: RunOptions, afterUnmount: ((String) -> [String])? = nil) throws(MonitorError) -> RunResult {
        if o.block != nil && !(o.bdiLimits?.isEmpty ?? true) {
            throw MonitorError("--bdi-* options apply to the FUSE mount's bdi; with --fs the file system's bdi is the loop device's, which outlives the run")
        }
        var signals = blockStopSignals()
        let out = Path.absolute(o.outDir)
        guard Sys.makeDirectories(out) else { throw MonitorError("cannot create \(out): \(Errno.current.description)") }
        let injections = out + "/injections.jsonl"
        _ = Sys.write(injections, "", create: true)

        // The directory.
        var dir: String
        var madeTemp = false
        if let d = o.dir {
            dir = Path.absolute(d)
            guard Sys.isDirectory(dir) else { throw MonitorError("--dir \(d) is not a directory") }
        } else {
            var template = Array("/tmp/faultfs-run.XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
                throw MonitorError("mkdtemp: \(Errno.current.description)")
            }
            dir = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            madeTemp = true
        }
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        if realpath(dir, &resolved) != nil { dir = resolved.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }

        // Mount, by running ourselves.
        let exe = ProcFS.selfExecutable()
        let optionList = (["events=" + injections] + o.mountOptions).joined(separator: ",")
        let mountArgv = o.block.map { BlockRun.mountArguments(exe, $0, dir: dir, injections: injections, fsOptions: o.mountOptions) }
            ?? [exe, "mount", "-o", optionList, dir, dir]
        guard let mst = Spawn.runToEnd(mountArgv), Spawn.describe(mst).code == 0 else {
            if madeTemp { _ = rmdir(dir) }
            throw MonitorError("mounting failed: \(mountArgv.joined(separator: " "))")
        }
        let control = dir + "/.faultfs/control"
        let hasFaultLayer = o.block != nil || Sys.exists(control)
        // Block mode: plan lines go through `faultfs ctl` (it resolves sectors=, region=, file=).
        func writeControl(_ line: String) -> String? {
            o.block == nil ? Sys.write(control, line + "\n").map { refusal(written: line, error: $0, control: control) }
                : BlockRun.control(exe, dir: dir, line: line)
        }
        func unmountDir() -> String? { o.block == nil ? unmount(exe, dir) : BlockRun.unmount(exe, dir: dir) }
        let loopDevice = o.block == nil ? nil : BlockRun.loopDevice(at: dir)

        // Memory cgroup.
        var cgroup: MemoryCgroup?
        var notes: [String] = []
        if let limit = o.memoryLimit {
            switch MemoryCgroup.create(limit: limit) {
            case .success(let c): cgroup = c
            case .failure(let e): notes.append("memory cgroup not used: \(e.description)")
            }
        }

        // Monitor.
        var mo = MonitorOptions(mountPoint: dir, outDir: out)
        mo.intervalNs = o.intervalNs
        mo.injectionsPath = injections
        mo.cgroupMemoryStat = cgroup?.statFile
        mo.memoryCgroup = cgroup
        mo.live = o.live && isatty(STDERR_FILENO) != 0
        mo.trace = o.trace
        mo.settings = [Setting("run.dir", dir + (madeTemp ? " (temporary)" : "")), Setting("run.mount", mountArgv.joined(separator: " "))]
        mo.settings += o.settings
        for (i, step) in o.plan.enumerated() { mo.settings.append(Setting("plan.\(i + 1)", step.description)) }
        if let c = cgroup { mo.settings.append(Setting("cgroup", "\(c.path) (\(c.version.rawValue)), limit \(c.limit) bytes: workload inside, daemon outside")) }
        let monitor: MonitorSession
        if let b = o.block, let loop = loopDevice {
            mo.settings += [Setting(BlockRun.fileSystemSetting, b.fileSystem), Setting(BlockRun.deviceSetting, loop)]
        }
        do { monitor = try MonitorSession(mo) } catch {
            _ = unmountDir()
            cgroup?.remove()
            if madeTemp { _ = rmdir(dir) }
            throw error
        }
        for n in notes { monitor.record(.note(timeNs: nil, text: n)) }
        let (bdiOverride, bdiRefused) = setBdiLimits(o.bdiLimits, monitor: monitor)
        if !hasFaultLayer && !o.plan.isEmpty {
            monitor.record(.note(timeNs: nil, text: "\(control) does not exist: this faultfs has no fault layer, the plan was not applied"))
        }
        if let d = findDaemon(mountpoint: dir) { monitor.watch(WatchedProcess(role: "daemon", pid: d)) }
        // Block mode: the kernel's messages about the inner file system and its disk.
        var kernelLog: KernelLogReader?
        if let loop = loopDevice {
            switch KernelLogReader.start(device: loop, outputPath: out + "/" + KernelMessage.fileName) {
            case .success(let r): kernelLog = r
            case .failure(let e): monitor.record(.note(timeNs: nil, text: "kernel messages not read: \(e.description)"))
            }
        }

        // A crash step: `faultfs crash` writes the line and waits until the
        // mount is back (block mode: the file system remounted on the
        // crashed disk). The new mount has a new FUSE connection; the
        // monitor does not follow it: the run says so (chosen: following
        // would mean a second sampler and tracer mid-run).
        func crash(_ request: CrashRequest) -> String? {
            let before = Sys.device(of: dir)
            var argv = [exe, "crash", dir]
            if request.torn { argv += ["--torn", "--seed", String(request.seed), "--sector", String(request.sectorSize)] }
            guard let status = Spawn.runToEnd(argv, timeoutNs: 90_000_000_000) else { return "faultfs crash did not run, or ran past 90 s" }
            let described = Spawn.describe(status)
            guard described.code == 0 else { return "faultfs crash failed (\(described.text))" }
            let after = Sys.device(of: dir)
            let text = "crash: the mount is back on a new connection (device \(before?.description ?? "?") -> \(after?.description ?? "?")); "
                + "the per-mount figures (bdi, FUSE queue, trace) were taken for the device at the start"
                + (before == after ? " (the same number again)" : " and stop at the crash")
            monitor.record(.note(timeNs: SystemClock.realtimeNanoseconds(), text: text))
            return nil
        }
        // Plan steps at the start go in before the workload.
        var done = [Bool](repeating: false, count: o.plan.count)
        var planProblems: [String] = bdiRefused  // the run is not the one asked for
        func apply(_ i: Int) {
            done[i] = true
            let line = o.plan[i].line
            let t = SystemClock.realtimeNanoseconds()
            var result = "no control file"
            if hasFaultLayer, case .success(let commands) = parseControl(line), commands.count == 1,
               case .crash(let request) = commands[0] {
                result = crash(request) ?? "ok"
            } else if hasFaultLayer {
                result = writeControl(line) ?? "ok"
            }
            monitor.record(.control(timeNs: t, line: line, result: result))
            printError("faultfs run: \(formatSeconds(max(0, t - startNs))) \(line)" + (result == "ok" ? "" : " -> \(result)"))
            if result != "ok" { planProblems.append("plan step \(i + 1) '\(o.plan[i].description)': \(result)") }
        }
        var startNs = SystemClock.realtimeNanoseconds()
        for i in o.plan.indices { if case .at(let t) = o.plan[i].trigger, t <= 0 { apply(i) } }

        // The workload.
        var argv = o.command
        if let c = cgroup { argv = ["/bin/sh", "-c", "echo $$ > \"$0\" && exec \"$@\"", c.procsFile] + argv }
        let regexSteps = o.plan.indices.filter { if case .outputMatches = o.plan[$0].trigger { return true } else { return false } }
        startNs = SystemClock.realtimeNanoseconds()
        monitor.record(.workloadStart(timeNs: startNs, command: o.command.joined(separator: " ")))
        // Its stdout and stderr are copied to ours and into the run folder.
        let spawned = Spawn.start(argv, env: ["FAULTFS_DIR": dir, "FAULTFS_RUN_DIR": out], captureStdout: true, captureStderr: true)
        let copies = OutputCopies()
        var exitCode: Int32 = 127
        if let err = spawned.error {
            monitor.record(.workloadExit(timeNs: SystemClock.realtimeNanoseconds(), status: err, code: nil))
            printError("faultfs run: \(err)")
        } else {
            let pid = spawned.pid
            monitor.watch(WatchedProcess(role: "workload", pid: pid))
            let matched = MatchSet()
            if let fd = spawned.stdout {
                var patterns: [(index: Int, pattern: String)] = []
                for i in regexSteps { if case .outputMatches(let r) = o.plan[i].trigger { patterns.append((i, r)) } }
                let fixed = patterns
                copies.started()
                startThread { OutputScanner.run(fd: fd, copyTo: STDOUT_FILENO, file: out + "/" + RunData.workloadStdoutFile,
                                                patterns: fixed, matched: matched, copies: copies) }
            }
            if let fd = spawned.stderr {
                copies.started()
                startThread { OutputScanner.run(fd: fd, copyTo: STDERR_FILENO, file: out + "/" + RunData.workloadStderrFile,
                                                patterns: [], matched: matched, copies: copies) }
            }
            var bytesSeen: [pid_t: Int64] = [:]
            var stopping = false
            var killDeadline: Int64 = 0
            var lastBytesCheck: Int64 = 0
            while true {
                if let status = Spawn.poll(pid) {
                    let d = Spawn.describe(status)
                    exitCode = d.exitCode
                    monitor.record(.workloadExit(timeNs: SystemClock.realtimeNanoseconds(), status: d.text, code: d.code))
                    break
                }
                let now = SystemClock.realtimeNanoseconds()
                if !stopping {
                    for i in o.plan.indices where !done[i] {
                        switch o.plan[i].trigger {
                        case .at(let t): if now - startNs >= t { apply(i) }
                        case .outputMatches: if matched.contains(i) { apply(i) }
                        case .afterBytes(let n):
                            if now - lastBytesCheck >= 20_000_000 {
                                if written(tree: pid, seen: &bytesSeen) >= n { apply(i) }
                            }
                        }
                    }
                    if now - lastBytesCheck >= 20_000_000 { lastBytesCheck = now }
                } else if now > killDeadline {
                    kill(pid, SIGKILL)
                    killDeadline = Int64.max
                }
                var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
                let sig = sigtimedwait(&signals, nil, &ts)
                if sig > 0 && !stopping {
                    stopping = true
                    monitor.record(.note(timeNs: SystemClock.realtimeNanoseconds(), text: "stopped by signal \(sig): workload sent SIGTERM, stalled requests released"))
                    printError("\nfaultfs run: stopping (signal \(sig))")
                    kill(pid, SIGTERM)
                    // A workload blocked on a stalled request cannot die until it is answered.
                    if hasFaultLayer { _ = writeControl("clear"); _ = writeControl("release") }
                    killDeadline = SystemClock.realtimeNanoseconds() + 5_000_000_000
                }
            }
            if let c = cgroup { c.killAll() }
        }
        // Steps whose trigger never came: say so, a fault the plan promised did not happen.
        let endedAt = formatSeconds(max(0, SystemClock.realtimeNanoseconds() - startNs))
        for i in o.plan.indices where !done[i] {
            let problem = "plan step \(i + 1) '\(o.plan[i].description)' never applied: the workload ended at \(endedAt) before its trigger"
            planProblems.append(problem)
            monitor.record(.note(timeNs: nil, text: problem))
            printError("faultfs run: " + problem)
        }

        // Unmount (release anything stalled first, or the unmount waits forever).
        if hasFaultLayer { _ = writeControl("clear"); _ = writeControl("release") }
        if let b = bdiOverride { monitor.record(.note(timeNs: SystemClock.realtimeNanoseconds(), text: b.restore())) }
        let unmountProblem = unmountDir()
        kernelLog?.stop()  // after the unmount: its last errors are ours too
        if let p = unmountProblem { monitor.record(.note(timeNs: SystemClock.realtimeNanoseconds(), text: p)) }
        var checks: [String] = []
        if let hook = afterUnmount, unmountProblem == nil {
            checks = hook(dir)
            for c in checks { monitor.record(.note(timeNs: nil, text: c)) }
        }
        // The workload's output reaches its files (a child it left behind may
        // keep the pipes open: do not wait for that).
        copies.waitUntilDone(timeoutNs: 2_000_000_000)
        let cost = monitor.stop()
        cgroup?.remove()
        if madeTemp { removeTree(dir) }
        _ = cost
        let summary = try ReportWriter.write(runDir: out)
        return RunResult(exitCode: exitCode, summary: summary, reportPath: out + "/report.html", checks: checks,
                         planProblems: planProblems)
    }

    /// Sets the run's bdi limits on the mount, noting each change. Returns
    /// what to restore (nil when none asked) and the writes refused.
    static func setBdiLimits(_ limits: BdiLimits?, monitor: MonitorSession) -> (BdiOverride?, [String]) {
        guard let limits, !limits.isEmpty else { return (nil, []) }
        monitor.record(.setting(Setting(SettingKey.bdiRequested, limits.description)))
        guard let dev = monitor.device else {
            let problem = "bdi limits not set: the mount's device is unknown"
            monitor.record(.note(timeNs: nil, text: problem))
            return (nil, [problem])
        }
        let (o, done, refused) = BdiOverride.apply(limits, device: dev)
        let t = SystemClock.realtimeNanoseconds()
        for l in done + refused {
            monitor.record(.note(timeNs: t, text: l))
            printError("faultfs run: " + l)
        }
        return (o, refused)
    }

    /// What the daemon said about a refused control line: the `# error:`
    /// line it keeps in the control file, else the write's errno text.
    static func refusal(written line: String, error: String, control: String) -> String {
        let reason = (File.readText(control) ?? "").split(separator: "\n").last { $0.hasPrefix("# error: ") }
        return "refused: " + (reason.map { String($0.dropFirst("# error: ".count)) } ?? error)
    }

    /// Bytes written (wchar) by the tree, counting processes that already exited.
    static func written(tree pid: pid_t, seen: inout [pid_t: Int64]) -> Int64 {
        for p in Spawn.tree(pid) {
            guard let io = File.readText("/proc/\(p)/io") else { continue }
            for line in io.split(separator: "\n") where line.hasPrefix("wchar:") {
                if let v = Int64(line.dropFirst(6).drop { $0 == " " }) { seen[p] = max(seen[p] ?? 0, v) }
            }
        }
        return seen.values.reduce(0, +)
    }

    /// `faultfs umount DIR`, retried while busy, then lazily. nil when done.
    @discardableResult
    static func unmount(_ exe: String, _ dir: String) -> String? {
        for _ in 0..<50 {
            guard MountTable.topMount(at: dir)?.fileSystemType == "fuse.faultfs" else { return nil }
            if let st = Spawn.runToEnd([exe, "umount", dir]), Spawn.describe(st).code == 0 { return nil }
            SystemClock.sleep(nanoseconds: 100_000_000)
        }
        guard MountTable.topMount(at: dir)?.fileSystemType == "fuse.faultfs" else { return nil }
        _ = Spawn.runToEnd([exe, "umount", "--lazy", dir])
        return "\(dir) stayed busy: detached lazily"
    }

    /// The daemon serving `mountpoint`, as its status file says.
    static func findDaemon(mountpoint: String) -> pid_t? {
        guard let text = File.readText(MountStatus.path(mountPoint: mountpoint)) else { return nil }
        return try? MountStatus.decode(text).pid
    }

    static func removeTree(_ path: String) {
        _ = Spawn.runToEnd(["/bin/rm", "-rf", "--one-file-system", path])
    }
}

/// Copies one of the workload's streams to ours and to a file in the run
/// folder, and notes which patterns matched.
enum OutputScanner {
    static func run(fd: Int32, copyTo: Int32, file: String, patterns: [(index: Int, pattern: String)], matched: MatchSet,
                    copies: OutputCopies) {
        defer { copies.finished() }
        let saved = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { if saved >= 0 { close(saved) } }
        let compiled: [(Int, Regex<AnyRegexOutput>)] = patterns.compactMap { p in (try? Regex(p.pattern)).map { (p.index, $0) } }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        func check(_ line: String) {
            for (i, r) in compiled where line.contains(r) {
                matched.insert(i)
            }
        }
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            _ = buffer.withUnsafeBytes { write(copyTo, $0.baseAddress, n) }
            if saved >= 0 { _ = buffer.withUnsafeBytes { write(saved, $0.baseAddress, n) } }
            if compiled.isEmpty { continue }
            pending += buffer[0..<n]
            while let nl = pending.firstIndex(of: 10) {
                check(String(decoding: pending[..<nl], as: UTF8.self))
                pending.removeSubrange(...nl)
            }
        }
        if !pending.isEmpty { check(String(decoding: pending, as: UTF8.self)) }
        close(fd)
    }
}

/// A memory cgroup for the workload (v1 or v2, whichever has the memory
/// controller here). The daemon stays outside.
public struct MemoryCgroup: Sendable {
    public var path: String
    public var version: CgroupVersion
    public var limit: Int64
    public var statFile: String { path + "/memory.stat" }
    public var procsFile: String { path + "/cgroup.procs" }

    public static func create(limit: Int64) -> Result<MemoryCgroup, MonitorError> {
        let name = "faultfs-\(getpid())"
        if Sys.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") {
            let p = "/sys/fs/cgroup/memory/" + name
            guard mkdir(p, 0o755) == 0 || errno == EEXIST else { return .failure(MonitorError("mkdir \(p): \(Errno.current.description)")) }
            if let e = Sys.write(p + "/memory.limit_in_bytes", String(limit)) { _ = rmdir(p); return .failure(MonitorError("memory.limit_in_bytes: \(e)")) }
            return .success(MemoryCgroup(path: p, version: .v1, limit: limit))
        }
        if let c = File.readText("/sys/fs/cgroup/cgroup.controllers"), c.contains("memory") {
            _ = Sys.write("/sys/fs/cgroup/cgroup.subtree_control", "+memory")
            let p = "/sys/fs/cgroup/" + name
            guard mkdir(p, 0o755) == 0 || errno == EEXIST else { return .failure(MonitorError("mkdir \(p): \(Errno.current.description)")) }
            if let e = Sys.write(p + "/memory.max", String(limit)) { _ = rmdir(p); return .failure(MonitorError("memory.max: \(e)")) }
            return .success(MemoryCgroup(path: p, version: .v2, limit: limit))
        }
        return .failure(MonitorError("no memory cgroup controller found (v1 /sys/fs/cgroup/memory or v2 /sys/fs/cgroup)"))
    }

    func killAll() {
        for p in (File.readText(procsFile) ?? "").split(separator: "\n") { if let pid = pid_t(p) { kill(pid, SIGKILL) } }
    }

    func remove() {
        killAll()
        for _ in 0..<50 {
            if rmdir(path) == 0 || errno == ENOENT { return }
            SystemClock.sleep(nanoseconds: 20_000_000)
        }
    }
}

/// How many output copies are still running.
final class OutputCopies: Sendable {
    private let running = Atomic<Int>(0)
    func started() { running.add(1, ordering: .sequentiallyConsistent) }
    func finished() { running.subtract(1, ordering: .sequentiallyConsistent) }
    func waitUntilDone(timeoutNs: Int64) {
        let end = SystemClock.monotonicNanoseconds() + timeoutNs
        while running.load(ordering: .sequentiallyConsistent) > 0 && SystemClock.monotonicNanoseconds() < end { SystemClock.sleep(nanoseconds: 10_000_000) }
    }
}

final class MatchSet: Sendable {
    private let set = Mutex<Set<Int>>([])
    func insert(_ i: Int) { set.withLock { _ = $0.insert(i) } }
    func contains(_ i: Int) -> Bool { set.withLock { $0.contains(i) } }
}
