// (Re)builds report.html and summary.txt from a run folder.
import Glibc
import System
import MonitorCore

public enum ReportWriter {
    /// Loads OUT/samples.jsonl and OUT/events.jsonl, writes OUT/report.html
    /// and OUT/summary.txt; returns the summary text.
    @discardableResult
    public static func write(runDir: String) throws(MonitorError) -> String {
        guard let events = File.readText(runDir + "/events.jsonl", limit: 1 << 30) else {
            throw MonitorError("\(runDir)/events.jsonl: \(Errno.current.description) (not a run folder?)")
        }
        let samples = File.readText(runDir + "/samples.jsonl", limit: 1 << 30) ?? ""
        var run = RunData.load(samplesJSONL: samples, eventsJSONL: events)
        // The workload's own output, captured by `faultfs run` (absent for `faultfs monitor`).
        for (stream, file) in [("stdout", RunData.workloadStdoutFile), ("stderr", RunData.workloadStderrFile)] {
            if let (end, lines) = readEnd(runDir + "/" + file) {
                run.workloadOutput.append(WorkloadOutput.tail(of: end, stream: stream, file: file, totalLines: lines))
            }
        }
        var summary = renderSummary(run: run)
        // Block mode: what the inner file system did, as the kernel logged it.
        if let verdict = BlockRun.verdict(run: run, runDir: runDir) {
            var lines = summary.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            lines.insert("file system: " + verdict, at: min(1, lines.count))
            summary = lines.joined(separator: "\n")
            run.notes.insert("file system: \(verdict) (kernel messages: \(KernelMessage.fileName))", at: 0)
        }
        let html = renderHTML(run: run)
        if let e = Sys.write(runDir + "/report.html", html, create: true) { throw MonitorError("cannot write \(runDir)/report.html: \(e)") }
        if let e = Sys.write(runDir + "/summary.txt", summary, create: true) { throw MonitorError("cannot write \(runDir)/summary.txt: \(e)") }
        return summary
    }

    /// The last 64 KiB of a file (from a line start) and its number of
    /// lines, without holding all of it: a workload may print gigabytes.
    static func readEnd(_ path: String) -> (String, Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let keep = 65536
        var end: [UInt8] = []
        var lines = 0, total = 0, last: UInt8 = 10
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            for b in buffer[0..<n] where b == 10 { lines += 1 }
            last = buffer[n - 1]
            total += n
            end += buffer[0..<n]
            if end.count > 2 * keep { end.removeFirst(end.count - keep) }
        }
        if total > end.count, let nl = end.firstIndex(of: 10) { end.removeSubrange(...nl) }
        if last != 10 { lines += 1 }  // an unterminated last line
        return (String(decoding: end, as: UTF8.self), lines)
    }
}
