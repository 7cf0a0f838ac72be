// `faultfs monitor MNT`: record an existing mount until Ctrl-C (or for a
// given duration), then write the report.
import Glibc
import System
import MonitorCore

public enum StandaloneMonitor {
    /// Returns the summary and the report's path.
    public static func run(mountPoint: String, outDir: String, intervalNs: Int64, durationNs: Int64?,
                           live: Bool, settings: [Setting] = []) throws(MonitorError) -> (summary: String, report: String) {
        var signals = Runner.blockStopSignals()
        let mnt = Path.absolute(mountPoint)
        guard Sys.isDirectory(mnt) else { throw MonitorError("\(mountPoint) is not a directory") }
        var o = MonitorOptions(mountPoint: mnt, outDir: Path.absolute(outDir))
        o.intervalNs = intervalNs
        o.live = live && isatty(STDERR_FILENO) != 0
        let events = mnt + "/.faultfs/events"
        if Sys.exists(events) { o.injectionsPath = events }
        o.settings.append(Setting(SettingKey.runKind, "monitor"))
        o.settings += settings
        if MountTable.topMount(at: mnt)?.fileSystemType != "fuse.faultfs" {
            o.settings.append(Setting("note", "\(mnt) is not a faultfs mount point"))
        }
        // What is armed now, for the report's header (later changes show as injections).
        if let rules = File.readText(mnt + "/.faultfs/control") {
            o.settings += ArmedRules.listed(inControlFile: rules).map { Setting(SettingKey.rulePrefix + $0.key, $0.value) }
        }
        let session = try MonitorSession(o)
        if o.injectionsPath == nil { session.record(.note(timeNs: nil, text: "\(events) not found: no injections recorded")) }
        if let d = Runner.findDaemon(mountpoint: mnt) { session.watch(WatchedProcess(role: "daemon", pid: d)) }
        let start = SystemClock.monotonicNanoseconds()
        session.record(.workloadStart(timeNs: SystemClock.realtimeNanoseconds(), command: "faultfs monitor \(mnt)"))
        printError("faultfs monitor: recording \(mnt) into \(o.outDir) every \(formatSeconds(intervalNs)); Ctrl-C to stop")
        var stoppedBy = ""
        while true {
            if let d = durationNs, SystemClock.monotonicNanoseconds() - start >= d { stoppedBy = "stopped after --duration \(formatSeconds(d))"; break }
            var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
            let sig = sigtimedwait(&signals, nil, &ts)
            if sig > 0 { stoppedBy = "stopped by " + (sig == SIGINT ? "Ctrl-C (SIGINT)" : sig == SIGTERM ? "SIGTERM" : "signal \(sig)"); break }
        }
        // Not a workload: `faultfs monitor` runs none; the report words these as the recording's start and end.
        session.record(.workloadExit(timeNs: SystemClock.realtimeNanoseconds(), status: stoppedBy, code: nil))
        printError("faultfs monitor: recording " + stoppedBy + "; writing the report")
        session.stop()
        let summary = try ReportWriter.write(runDir: o.outDir)
        return (summary, o.outDir + "/report.html")
    }
}
