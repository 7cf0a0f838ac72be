// The sampler: reads the counters of part 1 once per interval and hands
// them to MonitorCore's parsers. What it could not find is left absent (and
// said once, as a note); pseudo file systems it had to mount are unmounted
// again by `close()`.
import Glibc
import System
import MonitorCore

/// A process whose RSS/state/wchan is recorded ("workload", "daemon").
public struct WatchedProcess: Sendable, Equatable {
    public var role: String
    public var pid: Int32
    public init(role: String, pid: Int32) { self.role = role; self.pid = pid }
}

public final class Sampler: @unchecked Sendable {
    public let device: DeviceID?
    public private(set) var notes: [String] = []
    /// Pseudo file systems this sampler mounted (unmounted by `close`).
    private var mountedHere: [String] = []
    private var bdiStatsPath: String?
    private var fuseConnectionDir: String?
    /// cgroup memory.stat of the run's cgroup, if any.
    public var cgroupMemoryStat: String?
    /// The memory scenario's counters: the cgroup's usage and events, the bdi knobs.
    public var memoryWatch: MemoryWatch?
    public var processes: [WatchedProcess] = []
    private let pageSize = Sys.pageSize()

    public init(device: DeviceID?) {
        self.device = device
        guard let device else { notes.append("no mount device: bdi and FUSE counters not recorded"); return }
        // debugfs bdi/<dev>/stats.
        let debugfs = "/sys/kernel/debug"
        if !Sys.exists(debugfs + "/bdi") {
            if MountTable.topMount(at: debugfs)?.fileSystemType == nil, Sys.mountPseudo(type: "debugfs", at: debugfs) { mountedHere.append(debugfs) }
        }
        let stats = "\(debugfs)/bdi/\(device)/stats"
        if File.readText(stats) != nil { bdiStatsPath = stats } else {
            notes.append("debugfs \(stats) not readable: no per-bdi dirty/writeback/threshold chart")
        }
        // fusectl: /sys/fs/fuse/connections/<minor> for a major-0 device.
        let conns = "/sys/fs/fuse/connections"
        if device.major == 0 {
            if !Sys.exists("\(conns)/\(device.minor)"), MountTable.topMount(at: conns)?.fileSystemType == nil,
               Sys.mountPseudo(type: "fusectl", at: conns) { mountedHere.append(conns) }
            if Sys.exists("\(conns)/\(device.minor)/waiting") { fuseConnectionDir = "\(conns)/\(device.minor)" } else {
                notes.append("\(conns)/\(device.minor) not available: FUSE queue not recorded")
            }
        }
    }

    /// The run's settings: kernel, the bdi knobs, the dirty sysctls.
    public func settings() -> [Setting] {
        var out = [Setting(SettingKey.kernelRelease, Sys.kernelRelease())]
        if let device {
            out.append(Setting(SettingKey.mountDevice, device.description))
            let bdi = "/sys/class/bdi/\(device)"
            let b = BdiSettings.parse(maxRatio: File.readText(bdi + "/max_ratio"), minRatio: File.readText(bdi + "/min_ratio"),
                                      maxBytes: File.readText(bdi + "/max_bytes"), strictLimit: File.readText(bdi + "/strict_limit"))
            for (k, v) in [(SettingKey.bdiMaxRatio, b.maxRatio), (SettingKey.bdiMinRatio, b.minRatio),
                           (SettingKey.bdiMaxBytes, b.maxBytes), (SettingKey.bdiStrictLimit, b.strictLimit)] {
                if let v { out.append(Setting(k, String(v))) }
            }
            if let c = fuseConnectionDir {
                for f in ["max_background", "congestion_threshold"] {
                    if let v = parseSingleInt(File.readText("\(c)/\(f)")) { out.append(Setting("fuse.\(f)", String(v))) }
                }
            }
        }
        for f in ["dirty_ratio", "dirty_background_ratio", "dirty_bytes", "dirty_background_bytes",
                  "dirty_expire_centisecs", "dirty_writeback_centisecs"] {
            if let v = parseSingleInt(File.readText("/proc/sys/vm/\(f)")) { out.append(Setting("vm.\(f)", String(v))) }
        }
        if let m = File.readText("/proc/meminfo").map(MemInfo.parse), let t = m["MemTotal"] {
            out.append(Setting("mem.total_bytes", String(t)))
        }
        out.append(Setting("cpus", String(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
        return out
    }

    /// One sample at CLOCK_REALTIME now. Also returns the watched processes'
    /// state and wchan (strings do not fit in a sample).
    public func sample() -> (Sample, [ProcessState]) {
        var s = Sample(timeNs: SystemClock.realtimeNanoseconds())
        if let t = File.readText("/proc/meminfo") { s.record(MemInfo.parse(t)) }
        if let t = File.readText("/proc/vmstat") { s.record(VMStat.parse(t)) }
        if let p = bdiStatsPath, let t = File.readText(p) { s.record(BdiStats.parse(t)) }
        if let c = fuseConnectionDir {
            s.record(FuseConnectionState.parse(waiting: File.readText(c + "/waiting"), maxBackground: File.readText(c + "/max_background"),
                                               congestionThreshold: File.readText(c + "/congestion_threshold")))
        }
        for r in ["io", "memory"] { if let t = File.readText("/proc/pressure/\(r)") { s.record(Pressure.parse(t), resource: r) } }
        if let p = cgroupMemoryStat, let t = File.readText(p) { s.record(CgroupMemoryStat.parse(t)) }
        memoryWatch?.sample(into: &s)
        var states: [ProcessState] = []
        for w in processes {
            guard let st = File.readText("/proc/\(w.pid)/stat").flatMap(ProcStat.parse) else { continue }
            if w.role == "workload" { s.record(st) } else { s.record(st, role: w.role) }
            let wchan = File.readText("/proc/\(w.pid)/wchan").flatMap(parseWchan)
            states.append(ProcessState(role: w.role, pid: w.pid, comm: st.comm, state: String(st.state), wchan: wchan))
        }
        return (s, states)
    }

    public func close() {
        for p in mountedHere.reversed() { _ = Sys.unmount(p) }
        mountedHere.removeAll()
    }
}
