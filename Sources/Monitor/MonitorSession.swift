// One monitoring session: samples every interval on its own thread, tails
// the fault layer's injection log, reads the kernel trace, and writes the
// run folder (samples.jsonl, samples.csv, events.jsonl), all on
// CLOCK_REALTIME. `stop()` flushes and undoes what was set up.
import Glibc
import System
import FaultRules
import MonitorCore
import Synchronization

public struct MonitorOptions: Sendable {
    public var mountPoint: String
    public var outDir: String
    public var intervalNs: Int64 = 100_000_000
    /// The fault layer's JSON-lines log to tail (the `events=FILE` of the
    /// mount, or MNT/.faultfs/events); nil: none.
    public var injectionsPath: String?
    /// A memory cgroup's memory.stat to record.
    public var cgroupMemoryStat: String?
    /// The workload's memory cgroup: usage, limit and events are sampled.
    public var memoryCgroup: MemoryCgroup?
    /// Prints a live one-line summary to stderr (a terminal).
    public var live = false
    /// Extra settings for the report (rules, plan, command...).
    public var settings: [Setting] = []
    public var trace = true
    public init(mountPoint: String, outDir: String) { self.mountPoint = mountPoint; self.outDir = outDir }
}

public final class MonitorSession: @unchecked Sendable {
    public let options: MonitorOptions
    public let device: DeviceID?
    private let sampler: Sampler
    private var tracer: Tracer?
    private struct Files {
        var samplesJSON: FileAppender
        var samplesCSV: FileAppender
        var events: FileAppender
        var series: SampleSeries
        var injectionOffset: Int64 = 0
        var injectionPartial: [UInt8] = []
        var injections = 0
        var samples = 0
        var lateSamples = 0
        var maxLateNs: Int64 = 0
        var lastStates: [String: ProcessState] = [:]
        var lastLiveLine = ""
        /// fuse_request_send events held until their request fails.
        var requestSends = RequestSendFilter()
        var closed = false
    }
    private let files: Mutex<Files>
    private let stopFlag = Atomic<Bool>(false)
    private let loopDone = Atomic<Bool>(false)
    private let watched = Mutex<[WatchedProcess]>([])
    /// Used by the sampling thread only.
    private let openFilesScanner: OpenFilesScanner?
    private var scanRound = 0

    /// Creates the folder and files, records the settings, starts tracing
    /// and the sampling thread.
    public init(_ options: MonitorOptions) throws(MonitorError) {
        self.options = options
        guard Sys.makeDirectories(options.outDir) else { throw MonitorError("cannot create \(options.outDir): \(Errno.current.description)") }
        let dev = Sys.device(of: options.mountPoint)
        device = dev
        func appender(_ name: String) throws(MonitorError) -> FileAppender {
            guard let f = FileAppender(options.outDir + "/" + name) else { throw MonitorError("cannot write \(options.outDir)/\(name): \(Errno.current.description)") }
            return f
        }
        let series = SampleSeries(columns: Metric.standardColumns)
        files = Mutex(Files(samplesJSON: try appender("samples.jsonl"), samplesCSV: try appender("samples.csv"),
                            events: try appender("events.jsonl"), series: series))
        sampler = Sampler(device: dev)
        openFilesScanner = dev.map { OpenFilesScanner(device: $0, mountPoint: options.mountPoint) }
        sampler.cgroupMemoryStat = options.cgroupMemoryStat
        sampler.memoryWatch = MemoryWatch(device: dev, cgroup: options.memoryCgroup)
        files.withLock { f in f.samplesCSV.line(series.csvHeader()) }

        var settings = sampler.settings()
        settings.append(Setting(SettingKey.mountPoint, options.mountPoint))
        settings.append(Setting(SettingKey.sampleIntervalMs, formatInterval(options.intervalNs)))
        settings.append(Setting("clock", "CLOCK_REALTIME ns (trace: trace_clock=mono + offset)"))
        settings += options.settings
        for s in settings { record(.setting(s)) }
        for n in sampler.notes { record(.note(timeNs: nil, text: n)) }

        // Kernel trace.
        if options.trace, let dev {
            var failure: String?
            tracer = Tracer.start(device: dev, failure: &failure) { [weak self] events, lost in
                guard let self else { return }
                // The daemon's own failing calls (its replies to /dev/fuse) are not an application being told.
                let daemon = self.watched.withLock { $0.first { $0.role == "daemon" }?.pid }
                self.files.withLock { f in
                    for e in f.requestSends.pass(events) where !(daemon != nil && e.tgid == daemon && e.isSyscall) {
                        f.events.line(EventLog.jsonLine(.trace(e)))
                    }
                    if lost > 0 { f.events.line(EventLog.jsonLine(.note(timeNs: SystemClock.realtimeNanoseconds(), text: "trace: \(lost) events lost (the told table may be incomplete)"))) }
                }
            }
            if let t = tracer {
                record(.setting(Setting(SettingKey.traceAvailable, "1")))
                record(.setting(Setting("trace.instance", t.instance)))
                for (e, filter) in t.enabled { record(.setting(Setting("trace.event." + e, filter ?? "(no filter)"))) }
                for n in t.notes { record(.note(timeNs: nil, text: n)) }
            } else {
                record(.setting(Setting(SettingKey.traceAvailable, "0")))
                record(.note(timeNs: nil, text: failure ?? "tracefs not available"))
            }
        } else {
            record(.setting(Setting(SettingKey.traceAvailable, "0")))
            record(.note(timeNs: nil, text: dev == nil ? "mount device unknown: no trace" : "tracing disabled"))
        }
        startThread { [self] in self.loop() }
    }

    /// Adds a process to watch (RSS, state, wchan).
    public func watch(_ p: WatchedProcess) {
        watched.withLock { w in w.removeAll { $0.role == p.role }; w.append(p) }
    }

    /// Adds an event to events.jsonl (thread-safe).
    public func record(_ e: RunEvent) {
        files.withLock { f in if !f.closed { f.events.line(EventLog.jsonLine(e)) } }
    }

    public var injectionCount: Int { files.withLock { $0.injections } }

    private func loop() {
        defer { loopDone.store(true, ordering: .releasing) }
        let interval = options.intervalNs
        var next = SystemClock.monotonicNanoseconds()
        while !stopFlag.load(ordering: .acquiring) {
            let now = SystemClock.monotonicNanoseconds()
            if now < next { SystemClock.sleep(nanoseconds: next - now); continue }
            let late = now - next
            tick(lateNs: late)
            next += interval
            // Fell behind by more than an interval: skip, do not burst.
            let after = SystemClock.monotonicNanoseconds()
            if after > next + interval { next = after }
        }
    }

    private func tick(lateNs: Int64) {
        sampler.processes = watched.withLock { $0 }
        let (sample, states) = sampler.sample()
        tailInjections()
        let opened = scanOpenFiles(timeNs: sample.timeNs)
        files.withLock { f in
            guard !f.closed else { return }
            f.samples += 1
            if lateNs > options.intervalNs { f.lateSamples += 1 }
            f.maxLateNs = max(f.maxLateNs, lateNs)
            f.samplesJSON.line(f.series.jsonLine(sample))
            f.samplesCSV.line(f.series.csvRow(sample))
            for o in opened { f.events.line(EventLog.jsonLine(.openFiles(o))) }
            for st in states {
                if let last = f.lastStates[st.role], last.sameAs(st) { continue }
                f.lastStates[st.role] = st
                f.events.line(EventLog.jsonLine(.process(timeNs: sample.timeNs, st)))
            }
            if options.live {
                let line = LiveLine.format(sample, faults: f.injections)
                if line != f.lastLiveLine {
                    f.lastLiveLine = line
                    var text = "\r\u{1B}[K" + line
                    text.withUTF8 { _ = Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
                }
            }
            // Keep what is on disk current (a run cut short still has its data).
            if f.samples % 10 == 0 { f.samplesJSON.flush(); f.samplesCSV.flush(); f.events.flush() }
        }
    }

    /// The workload's process tree every sample; without a workload
    /// (`faultfs monitor`) every process, once a second.
    /// The tracer then follows the threads of the processes holding files.
    private func scanOpenFiles(timeNs: Int64) -> [OpenFiles] {
        guard let scanner = openFilesScanner else { return [] }
        let workload = watched.withLock { $0.first { $0.role == "workload" } }
        let changes: [OpenFiles]
        if let w = workload {
            changes = scanner.scan(pids: Spawn.tree(w.pid), timeNs: timeNs)
        } else {
            scanRound += 1
            guard (scanRound - 1) % max(1, Int(1_000_000_000 / max(1, options.intervalNs))) == 0 else { return [] }
            changes = scanner.scan(pids: OpenFilesScanner.allProcesses(), timeNs: timeNs)
        }
        if let tracer {
            var threads = Set<Int32>()
            for pid in scanner.holders {
                for t in File.names(inDirectory: "/proc/\(pid)/task") ?? [] { if let tid = Int32(t) { threads.insert(tid) } }
            }
            tracer.follow(threads: threads)
        }
        return changes
    }

    /// Reads what the fault layer appended since last time.
    private func tailInjections() {
        guard let path = options.injectionsPath else { return }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var offset = files.withLock { $0.injectionOffset }
        var chunk: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if n <= 0 { break }
            chunk += buffer[0..<n]
            offset += Int64(n)
        }
        guard !chunk.isEmpty else { return }
        files.withLock { f in
            f.injectionOffset = offset
            var data = f.injectionPartial + chunk
            if let last = data.lastIndex(of: 10) {
                let complete = String(decoding: data[...last], as: UTF8.self)
                data.removeSubrange(...last)
                for line in complete.split(separator: "\n") {
                    if let e = try? InjectionEvent.decode(String(line)) {
                        f.injections += 1
                        f.events.line(EventLog.jsonLine(.injection(e)))
                    }
                }
            }
            f.injectionPartial = data
        }
    }

    /// Stops sampling and tracing, writes the last injections, closes the
    /// files. Returns the cost figures (samples, late samples).
    @discardableResult
    public func stop() -> (samples: Int, late: Int, maxLateNs: Int64) {
        stopFlag.store(true, ordering: .releasing)
        var rounds = 0
        while !loopDone.load(ordering: .acquiring) && rounds < 500 { SystemClock.sleep(nanoseconds: 10_000_000); rounds += 1 }
        tailInjections()
        tracer?.stop()
        if let t = sampler.memoryWatch?.tasksSetting { record(.setting(t)) }
        tracer = nil
        sampler.close()
        if options.live { _ = "\r\u{1B}[K".withCString { Glibc.write(STDERR_FILENO, $0, 4) } }
        return files.withLock { f in
            if !f.closed {
                if f.lateSamples > 0 {
                    f.events.line(EventLog.jsonLine(.note(timeNs: nil, text: "\(f.lateSamples) of \(f.samples) samples were more than one interval late (max \(formatFixed(Double(f.maxLateNs) / 1e6, 1)) ms)")))
                }
                f.samplesJSON.close(); f.samplesCSV.close(); f.events.close()
                f.closed = true
            }
            return (f.samples, f.lateSamples, f.maxLateNs)
        }
    }
}

public struct MonitorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

func formatInterval(_ ns: Int64) -> String {
    ns % 1_000_000 == 0 ? String(ns / 1_000_000) : String(Double(ns) / 1e6)
}

func formatFixed(_ v: Double, _ d: Int) -> String {
    var scale = 1.0
    for _ in 0..<d { scale *= 10 }
    let r = (v * scale).rounded() / scale
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < d { s += String(repeating: "0", count: d - decimals) }
    } else if d > 0 { s += "." + String(repeating: "0", count: d) }
    return s
}
