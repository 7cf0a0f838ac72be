// (Re)builds report.html and summary.txt from a run folder.
import Glibc
import MonitorCore

public enum ReportWriter {
    /// Loads OUT/samples.jsonl and OUT/events.jsonl, writes OUT/report.html
    /// and OUT/summary.txt; returns the summary text.
    @discardableResult
    public static func write(runDir: String) throws(MonitorError) -> String {
        guard let events = Sys.read(runDir + "/events.jsonl", limit: 1 << 30) else {
            throw MonitorError("\(runDir)/events.jsonl: \(Sys.errorText()) (not a run folder?)")
        }
        let samples = Sys.read(runDir + "/samples.jsonl", limit: 1 << 30) ?? ""
        let run = RunData.load(samplesJSONL: samples, eventsJSONL: events)
        let html = renderHTML(run: run)
        let summary = renderSummary(run: run)
        if let e = Sys.write(runDir + "/report.html", html, create: true) { throw MonitorError("cannot write \(runDir)/report.html: \(e)") }
        if let e = Sys.write(runDir + "/summary.txt", summary, create: true) { throw MonitorError("cannot write \(runDir)/summary.txt: \(e)") }
        return summary
    }
}
