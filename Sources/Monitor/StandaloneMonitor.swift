// `faultfs monitor MNT`: record an existing mount until Ctrl-C (or for a
// given duration), then write the report.
import Glibc
import MonitorCore

public enum StandaloneMonitor {
    /// Returns the summary and the report's path.
    public static func run(mountPoint: String, outDir: String, intervalNs: Int64, durationNs: Int64?,
                           live: Bool) throws(MonitorError) -> (summary: String, report: String) {
        var signals = Runner.blockStopSignals()
        let mnt = Sys.absolute(mountPoint)
        guard Sys.isDirectory(mnt) else { throw MonitorError("\(mountPoint) is not a directory") }
        var o = MonitorOptions(mountPoint: mnt, outDir: Sys.absolute(outDir))
        o.intervalNs = intervalNs
        o.live = live && isatty(STDERR_FILENO) != 0
        let events = mnt + "/.faultfs/events"
        if Sys.exists(events) { o.injectionsPath = events }
        if Sys.mountType(at: mnt) != "fuse.faultfs" {
            o.settings.append(Setting("note", "\(mnt) is not a faultfs mount point"))
        }
        let session = try MonitorSession(o)
        if o.injectionsPath == nil { session.record(.note(timeNs: nil, text: "\(events) not found: no injections recorded")) }
        if let d = Runner.findDaemon(mountpoint: mnt) { session.watch(WatchedProcess(role: "daemon", pid: d)) }
        let start = Sys.monotonicNs()
        session.record(.workloadStart(timeNs: Sys.realtimeNs(), command: "faultfs monitor \(mnt)"))
        printErr("faultfs monitor: recording \(mnt) into \(o.outDir) every \(formatSeconds(intervalNs)); Ctrl-C to stop")
        while true {
            if let d = durationNs, Sys.monotonicNs() - start >= d { break }
            var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
            if sigtimedwait(&signals, nil, &ts) > 0 { break }
        }
        session.record(.workloadExit(timeNs: Sys.realtimeNs(), status: "stopped", code: nil))
        session.stop()
        let summary = try ReportWriter.write(runDir: o.outDir)
        return (summary, o.outDir + "/report.html")
    }
}
