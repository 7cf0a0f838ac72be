// The memory scenario's I/O: sampling the workload's memory cgroup and the
// mount's bdi knobs, and setting those knobs for a run (`--bdi-max-ratio`,
// `--bdi-max-bytes`, `--bdi-strict-limit`) and putting them back.
//
// Why a run killed with -9 leaves nothing changed: a FUSE mount has a bdi
// of its own (super_setup_bdi), made at mount time with FUSE's defaults
// (max_ratio 1, strict_limit) and freed with the mount. The knobs live and
// die with that mount, and a later mount, even one given the same 0:N, gets
// a new bdi with the defaults again. Block mode (`--fs`) would change the
// loop device's bdi, which outlives the run: the options are refused there.
import Glibc
import System
import MonitorCore
import Synchronization

/// Read at each sample by the Sampler (its thread only), plus the set of
/// thread ids seen in the cgroup (read by `MonitorSession.stop`).
public final class MemoryWatch: @unchecked Sendable {
    let bdiDir: String?
    let cgroup: MemoryCgroup?
    private let tasks = Mutex<Set<Int32>>([])

    public init(device: DeviceID?, cgroup: MemoryCgroup?) {
        bdiDir = device.map { "/sys/class/bdi/\($0)" }
        self.cgroup = cgroup
    }

    public func sample(into s: inout Sample) {
        if let d = bdiDir {
            s.record(limits: BdiOverride.read(d), maxRatioFine: parseSingleInt(File.readText(d + "/max_ratio_fine")))
        }
        guard let c = cgroup else { return }
        let p = c.path
        switch c.version {
        case .v2:
            s.record(CgroupMemoryState.parseV2(current: File.readText(p + "/memory.current"), max: File.readText(p + "/memory.max"),
                                               events: File.readText(p + "/memory.events")))
        default:
            s.record(CgroupMemoryState.parseV1(usage: File.readText(p + "/memory.usage_in_bytes"), limit: File.readText(p + "/memory.limit_in_bytes"),
                                               failcnt: File.readText(p + "/memory.failcnt"), oomControl: File.readText(p + "/memory.oom_control")))
        }
        // Thread ids, so that trace events (which name threads) can be told apart.
        let list = File.readText(p + (c.version == .v2 ? "/cgroup.threads" : "/tasks")) ?? ""
        let ids = list.split(separator: "\n").compactMap { Int32($0) }
        if !ids.isEmpty { tasks.withLock { $0.formUnion(ids) } }
    }

    /// Thread ids seen in the cgroup, as the `cgroup.tasks` setting (nil: none seen).
    public var tasksSetting: Setting? {
        let t = tasks.withLock { $0 }
        return t.isEmpty ? nil : Setting(SettingKey.cgroupTasks, t.sorted().map(String.init).joined(separator: " "))
    }
}

/// The bdi knobs of a mount as found, to put back after the run.
public struct BdiOverride: Sendable {
    public let dir: String
    /// max_ratio_fine (exact, millionths) when the kernel has it, else max_ratio.
    let originalRatio: (file: String, value: String)?
    let originalStrict: String?

    static func read(_ dir: String) -> BdiSettings {
        BdiSettings.parse(maxRatio: File.readText(dir + "/max_ratio"), minRatio: File.readText(dir + "/min_ratio"),
                          maxBytes: File.readText(dir + "/max_bytes"), strictLimit: File.readText(dir + "/strict_limit"))
    }

    /// Sets `limits` on the bdi of `device`. Returns what to restore, one
    /// line per write done ("max_ratio 1 → 100") and one per write refused.
    public static func apply(_ limits: BdiLimits, device: DeviceID) -> (BdiOverride, done: [String], refused: [String]) {
        let dir = "/sys/class/bdi/\(device)"
        func value(_ f: String) -> String? { File.readText(dir + "/" + f).map { $0.trimmingSpacesAndNewlines() } }
        let ratio: (String, String)? = value("max_ratio_fine").map { ("max_ratio_fine", $0) } ?? value("max_ratio").map { ("max_ratio", $0) }
        let o = BdiOverride(dir: dir, originalRatio: ratio, originalStrict: value("strict_limit"))
        var done: [String] = [], refused: [String] = []
        for (file, v) in limits.writes {
            let before = value(file) ?? "?"
            if let e = Sys.write(dir + "/" + file, v) {
                refused.append("bdi \(device) \(file) \(v) refused: \(e)")
            } else {
                done.append("bdi \(device) \(file) \(before) → \(value(file) ?? "?")")
            }
        }
        return (o, done, refused)
    }

    /// Puts the knobs back; says what they read afterwards ("restored:
    /// max_ratio=1 strict_limit=1 ..."), or that the bdi is gone.
    public func restore() -> String {
        guard Sys.exists(dir) else { return "bdi \(dir) is gone with its mount: nothing to restore" }
        var problems: [String] = []
        if let r = originalRatio, let e = Sys.write(dir + "/" + r.file, r.value) { problems.append("\(r.file): \(e)") }
        if let s = originalStrict, let e = Sys.write(dir + "/strict_limit", s) { problems.append("strict_limit: \(e)") }
        let now = Self.read(dir)
        let text = "max_ratio=\(now.maxRatio.map(String.init) ?? "?") strict_limit=\(now.strictLimit.map(String.init) ?? "?") max_bytes=\(now.maxBytes.map(String.init) ?? "?")"
        return problems.isEmpty ? "bdi limits restored: " + text : "bdi limits not all restored (\(problems.joined(separator: "; "))): " + text
    }
}

extension String {
    func trimmingSpacesAndNewlines() -> String {
        String(drop { $0 == " " || $0 == "\n" }.reversed().drop { $0 == " " || $0 == "\n" }.reversed())
    }
}
