import FaultRules

// The run report: one self-contained HTML file (inline CSS and SVG, no
// script, no network) and a short plain-text summary for terminals and CI.
// All text coming from the run is escaped; the HTML is also well-formed XML
// (tests parse it with XMLParser).

public enum Report {
    /// Rows beyond this are left out of the HTML table (the summary and
    /// events.jsonl still have them all): a table of 50,000 rows helps no one.
    public static let maxTableRows = 1000
    /// Lines of the workload's output in the summary and the report.
    public static let summaryOutputLines = 20

    static let css = """
    body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:960px}
    h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
    table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
    th{background:#f3f3f3}.never{color:#b00;font-weight:bold}.told{color:#060}.muted{color:#777}
    .legend{font-size:.85em;margin:2px 0 12px 64px}.sw{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
    .notes li{color:#8a5a00}code{font-size:.95em}.nodata{color:#555}
    pre.output{background:#f6f6f6;border:1px solid #ddd;padding:4px 8px;font-size:.8em;overflow-x:auto;white-space:pre-wrap}
    """

    static let colors = ["#e6550d", "#3182bd", "#31a354", "#756bb1", "#636363", "#d6616b"]
}

/// Renders the full HTML report.
public func renderHTML(run: RunData) -> String {
    let paths = Derivation.errorPaths(injections: run.injections, traceEvents: run.traceEvents, mountDevice: run.mountDevice)
    let charts = buildCharts(run)
    let monitorOnly = run.isMonitorOnly
    let tool = monitorOnly ? "faultfs monitor" : "faultfs run"
    func sec(_ t: Int64) -> String { runTime(run, t) }
    var h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
    h += "<title>" + tool + ": " + xmlEscape(monitorOnly ? run.setting(SettingKey.mountPoint) ?? "" : run.workload.command) + "</title>\n"
    h += "<style>\n" + Report.css + "\n</style>\n</head>\n<body>\n"

    // Header.
    h += "<h1>" + tool + "</h1>\n<table class=\"header\">\n"
    func row(_ k: String, _ v: String) -> String { "<tr><th>" + xmlEscape(k) + "</th><td>" + xmlEscape(v) + "</td></tr>\n" }
    if !monitorOnly { h += row("command", run.workload.command.isEmpty ? "(unknown)" : run.workload.command) }
    h += row("kernel", run.setting(SettingKey.kernelRelease) ?? "(unknown)")
    h += row("mount", [run.setting(SettingKey.mountPoint), run.setting(SettingKey.mountDevice).map { "dev " + $0 }]
        .compactMap { $0 }.joined(separator: ", ").ifEmpty("(unknown)"))
    h += row("bdi", bdiSummary(run, prefix: false))
    h += row("duration", formatFixed(run.durationSeconds, 1) + " s" + (run.workload.status.map { ", " + statusText(run, $0) } ?? ""))
    h += "<tr><th>plan</th><td>"
    if run.controls.isEmpty { h += "<span class=\"muted\">(none)</span>" }
    for c in run.controls {
        h += sec(c.timeNs) + ": <code>" + xmlEscape(c.line) + "</code>"
            + (c.result == "ok" ? "" : " → <span class=\"never\">" + xmlEscape(c.result) + "</span>") + "<br/>"
    }
    h += "</td></tr>\n"
    let armed = ArmedRules.timeline(controls: run.controls, initial: run.rules, injections: run.injections)
    h += "<tr><th>armed</th><td>"
    if armed.isEmpty { h += "<span class=\"muted\">(nothing)</span>" }
    for a in armed {
        h += "<code>" + xmlEscape(a.id) + "</code> <code>" + xmlEscape(a.text) + "</code>: " + xmlEscape(armedSpan(run, a)) + "<br/>"
    }
    h += "</td></tr>\n</table>\n"

    if !run.notes.isEmpty || !run.traceAvailable {
        h += "<h2>Notes</h2>\n<ul class=\"notes\">\n"
        if !run.traceAvailable { h += "<li>tracefs not available: the told/never-told table is empty</li>\n" }
        for n in run.notes { h += "<li>" + xmlEscape(n) + "</li>\n" }
        h += "</ul>\n"
    }

    if !run.workloadOutput.isEmpty {
        h += "<h2>What the workload printed</h2>\n"
        for o in run.workloadOutput {
            h += "<p class=\"muted\">" + xmlEscape(outputHeading(o)) + "</p>\n"
            if !o.lastLines.isEmpty { h += "<pre class=\"output\">" + xmlEscape(o.lastLines.joined(separator: "\n")) + "</pre>\n" }
        }
    }

    // Charts; one without any data is one line of text.
    h += "<h2>Over time</h2>\n"
    for c in charts {
        guard c.hasData else {
            h += "<p class=\"nodata\"><b>" + xmlEscape(c.spec.title) + "</b>: " + xmlEscape(c.note ?? "no data recorded.") + "</p>\n"
            continue
        }
        h += "<h3>" + xmlEscape(c.spec.title) + "</h3>\n"
        if let note = c.note { h += "<p class=\"muted\">" + xmlEscape(note) + "</p>\n" }
        h += Chart.svg(c.spec) + "\n<div class=\"legend\">"
        for s in c.spec.series {
            let empty = s.points.allSatisfy { $0.y == nil }
            h += "<span class=\"sw\" style=\"background:\(xmlEscape(s.color))\"></span>" + xmlEscape(s.name)
                + (empty ? " <span class=\"muted\">(not available)</span>" : "")
        }
        if c.spec.markers.contains(where: { $0.kind == .planStep }) { h += "<span class=\"sw\" style=\"background:#1f4e99\"></span>plan step" }
        if c.spec.markers.contains(where: { $0.kind == .fault }) { h += "<span class=\"sw\" style=\"background:#c00\"></span>fault injected" }
        h += "</div>\n"
    }

    // Derivation table, identical injections grouped.
    h += "<h2>Error injected → recorded by the kernel → told to</h2>\n"
    h += "<p class=\"muted\">Each row is one or more injections alike in rule, op, file, errno and who was told. "
        + "The kernel events are tracepoints: <code>filemap:filemap_set_wb_err</code> (the kernel records a writeback error on the file; "
        + "it fires in the thread whose reply to the writeback request failed, a faultfs daemon thread) and "
        + "<code>filemap:file_check_and_advance_wb_err</code> (an fsync-family call checks for it). A thread is shown as name[thread id]. "
        + "\"Told\" means a traced call returned the error: <code>syscalls:sys_exit_*</code> of close, fsync, fdatasync, msync, "
        + "sync_file_range, syncfs, write, pwrite64, writev, pwritev and pwritev2, filtered in the kernel on a negative return; the file is the one the "
        + "errseq event of the same call names, else the call's fd in the sampled /proc/PID/fd, else (an error replied to a request) "
        + "the injection's requesting thread. \"Lost at exit\": nobody was told and a process that had the file open exited with it open "
        + "(the kernel closed it; the error went nowhere). \"Never told\": no traced call returned it; the processes that had the file "
        + "open (sampled /proc) are listed.</p>\n"
    if paths.isEmpty {
        h += "<p class=\"muted\">No errors were injected.</p>\n"
    } else {
        let tellingGroups = Derivation.group(Derivation.tellings(injections: run.injections, traceEvents: run.traceEvents,
                                                                  openFiles: run.openFiles, mountDevice: run.mountDevice))
        let layer = Derivation.tellingLayer(blockFileSystem: blockFileSystem(run))
        let groups = tellingGroups.map(\.paths)
        h += "<table class=\"paths\">\n<tr><th>#</th><th>t (s)</th><th>count</th><th>rule</th><th>op</th><th>path (ino)</th><th>injected</th><th>recorded by the kernel</th><th>told to (thread, call, delay, errno got)</th></tr>\n"
        for (n, g) in groups.prefix(Report.maxTableRows).enumerated() {
            let p = g.first
            let t0 = Double(g.firstNs - run.startNs) / 1e9, t1 = Double(g.lastNs - run.startNs) / 1e9
            h += "<tr><td>\(n + 1)</td><td>" + formatFixed(t0, 3) + (g.count > 1 ? "–" + formatFixed(t1, 3) : "") + "</td><td>"
                + (g.count > 1 ? "×\(g.count)" : "1") + "</td><td>" + xmlEscape(p.injection.ruleID) + "</td><td>"
                + xmlEscape(p.injection.op.name) + "</td><td>" + xmlEscape(p.injection.pathText) + " (\(p.kernelIno))</td><td>"
                + errnoLabel(p.injection.errno) + "</td><td>"
            let records = g.paths.compactMap(\.recorded)
            if !records.isEmpty {
                h += "kernel event <code>filemap:filemap_set_wb_err</code>, +" + delayRange(records.map(\.delayMs))
                    + " ms, in thread" + (Set(records.map(\.pid)).count > 1 ? "s " : " ") + xmlEscape(threads(records.map { ($0.task, $0.pid) }))
                if records.count < g.count { h += " (\(records.count) of \(g.count))" }
            } else {
                h += "<span class=\"muted\">" + (run.traceAvailable ? "not recorded (no filemap_set_wb_err: returned directly by the call)" : "unknown (no tracing)") + "</span>"
            }
            h += "</td><td>"
            h += toldCellHTML(tellingGroups[n], layer: layer)
            h += "</td></tr>\n"
        }
        h += "</table>\n"
        if groups.count > Report.maxTableRows {
            h += "<p class=\"muted\">\(groups.count - Report.maxTableRows) more rows left out; all events are in events.jsonl.</p>\n"
        }
    }

    h += innerFileSystemHTML(run)

    // Settings.
    h += "<h2>Settings</h2>\n<table class=\"settings\">\n"
    for s in run.settings { h += row(s.key, s.value) }
    h += "</table>\n</body>\n</html>\n"
    return h
}

/// "armed at 0.11 s, until 2.11 s (clear); fired 8 times"
func armedSpan(_ run: RunData, _ a: ArmedRule, lead: String = "armed ") -> String {
    func sec(_ t: Int64) -> String { runTime(run, t) }
    var s = lead + (a.armedNs.map { "at " + sec($0) } ?? "before recording started")
    if let e = a.endedNs { s += ", until " + sec(e) + " (" + (a.endedBy ?? "?") + ")" } else { s += ", until the end" }
    if a.id != "capacity" { s += "; fired " + (a.fired == 1 ? "once" : "\(a.fired) times") }
    return s
}

/// "1.25 s" after the start; "start" for what was done before the workload
/// started (plan steps at 0 s go in first).
func runTime(_ run: RunData, _ t: Int64, decimals: Int = 2) -> String {
    t < run.startNs ? "start" : formatFixed(Double(t - run.startNs) / 1e9, decimals) + " s"
}

/// "workload exited 0", or for `faultfs monitor` what ended the recording.
func statusText(_ run: RunData, _ status: String) -> String {
    run.isMonitorOnly ? "recording " + status : "workload " + status
}

func outputHeading(_ o: WorkloadOutput) -> String {
    if o.totalLines == 0 { return o.stream + ": nothing (" + o.file + " is empty)" }
    let which = o.lastLines.count < o.totalLines ? "last \(o.lastLines.count) of \(o.totalLines) lines" : "all \(o.totalLines) line" + (o.totalLines == 1 ? "" : "s")
    return o.stream + " (" + which + "; all of it in " + o.file + "):"
}

/// "0.31" or "0.31–0.52".
func delayRange(_ v: [Double]) -> String {
    guard let lo = v.min(), let hi = v.max() else { return "?" }
    return formatFixed(lo, 2) == formatFixed(hi, 2) ? formatFixed(lo, 2) : formatFixed(lo, 2) + "–" + formatFixed(hi, 2)
}

/// "faultfs[13109], faultfs[13110]", each thread once, in order.
func threads(_ list: [(String, Int32)]) -> String {
    var seen = Set<Int32>()
    return list.filter { seen.insert($0.1).inserted }.map { "\($0.0)[\($0.1)]" }.joined(separator: ", ")
}

/// A short plain-text summary for terminals and CI logs.
public func renderSummary(run: RunData) -> String {
    var out: [String] = []
    if run.isMonitorOnly {
        out.append("faultfs monitor: " + (run.setting(SettingKey.mountPoint) ?? "(unknown mount point)"))
    } else {
        out.append("faultfs run: " + (run.workload.command.isEmpty ? "(unknown command)" : run.workload.command))
    }
    out.append("kernel \(run.setting(SettingKey.kernelRelease) ?? "?"), mount \(run.setting(SettingKey.mountDevice) ?? "?"), \(bdiSummary(run))")
    out.append("duration \(formatFixed(run.durationSeconds, 1)) s" + (run.workload.status.map { ", " + statusText(run, $0) } ?? ""))
    out += run.memorySummaryLines
    for (key, name) in [(Metric.dirty, "Dirty"), (Metric.writeback, "Writeback")] {
        if let (v, t) = peak(run, key) {
            out.append("peak \(name) \(formatMiB(v)) at \(formatFixed(Double(t - run.startNs) / 1e9, 1)) s")
        } else {
            out.append("peak \(name): not recorded")
        }
    }
    if let (v, t, thresh) = peakBdiInFlight(run) {
        out.append("peak bdi in flight (BdiReclaimable+BdiWriteback) \(formatMiB(v)) at \(formatFixed(Double(t - run.startNs) / 1e9, 1)) s"
            + (thresh.map { ", BdiDirtyThresh then \(formatMiB($0))" } ?? ""))
    }
    if let (v, _) = peak(run, Metric.fuseWaiting) { out.append("peak FUSE waiting requests: \(formatNumber(v))") }
    for w in stallWindows(run) {
        let inside = run.samples.filter { $0.timeNs >= w.from && $0.timeNs <= w.to }
        func top(_ k: String) -> String { inside.compactMap { $0[k] }.max().map(formatMiB) ?? "n/a" }
        var line = "during '\(w.line)' (\(formatFixed(Double(w.from - run.startNs) / 1e9, 1))–\(formatFixed(Double(w.to - run.startNs) / 1e9, 1)) s): peak Dirty \(top(Metric.dirty)), Writeback \(top(Metric.writeback))"
        let bdi = inside.compactMap { s -> (Double, Double?)? in
            guard let r = s[Metric.bdiReclaimable], let wb = s[Metric.bdiWriteback] else { return nil }
            return (r + wb, s[Metric.bdiDirtyThresh])
        }.max { $0.0 < $1.0 }
        if let bdi { line += ", bdi in flight \(formatMiB(bdi.0))" + (bdi.1.map { " of its \(formatMiB($0)) limit" } ?? "") }
        // A negative pause is time the task did not sleep: not a pause.
        let pauses = run.traceEvents.filter { $0.timeNs >= w.from && $0.timeNs <= w.to }.compactMap(\.balanceDirtyPagesPauseMs).filter { $0 > 0 }
        if !pauses.isEmpty { line += ", \(pauses.count) balance_dirty_pages pauses (\(pauses.reduce(0, +)) ms)" }
        out.append(line)
    }
    let blocked = run.timeInStates(role: "workload").filter { $0.state == "D" && $0.seconds >= 0.05 }
    if !blocked.isEmpty {
        out.append("workload blocked (state D): " + blocked.prefix(3).map { "\(formatFixed($0.seconds, 1)) s in \($0.wchan ?? "?")" }.joined(separator: ", "))
    }
    for c in run.controls {
        out.append("plan: at \(runTime(run, c.timeNs, decimals: 1)) '\(c.line)'" + (c.result == "ok" ? "" : " -> \(c.result)"))
    }
    for a in ArmedRules.timeline(controls: run.controls, initial: run.rules, injections: run.injections) {
        out.append("armed: \(a.id) '\(a.text)' " + armedSpan(run, a, lead: ""))
    }
    let pauses = run.traceEvents.compactMap(\.balanceDirtyPagesPauseMs)
    if !pauses.isEmpty { out.append("balance_dirty_pages: \(pauses.count) events, longest pause \(pauses.max()!) ms") }

    var byRule: [String: Int] = [:]
    for i in run.injections { byRule[i.ruleID, default: 0] += 1 }
    out.append("injections: \(run.injections.count)" + (byRule.isEmpty ? "" : " (" + byRule.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"))

    if !run.traceAvailable {
        out.append("tracefs not available: the told/never-told table is empty")
    } else {
        out += toldSummaryLines(run)
    }
    for o in run.workloadOutput where o.totalLines > 0 {
        let shown = o.lastLines.suffix(Report.summaryOutputLines)
        out.append("workload " + outputHeading(WorkloadOutput(stream: o.stream, file: o.file, lastLines: Array(shown), totalLines: o.totalLines)))
        for l in shown { out.append("  | " + l) }
    }
    for n in run.notes { out.append("note: " + n) }
    return out.joined(separator: "\n") + "\n"
}

// MARK: - helpers

/// The bdi limits at the start and every change seen (MemoryScenario.swift).
private func bdiSummary(_ run: RunData, prefix: Bool = true) -> String { run.bdiLimitsText(prefix: prefix) }

/// From each plan line starting with "stall" to the next "release" (or the end).
func stallWindows(_ run: RunData) -> [(line: String, from: Int64, to: Int64)] {
    var out: [(String, Int64, Int64)] = []
    let steps = run.controls.sorted { $0.timeNs < $1.timeNs }
    for (i, c) in steps.enumerated() where c.line.lowercased().hasPrefix("stall") && c.result == "ok" {
        let end = steps[(i + 1)...].first { $0.line.lowercased().hasPrefix("release") }?.timeNs ?? run.endNs
        out.append((c.line, c.timeNs, end))
    }
    return out
}

/// The highest BdiReclaimable+BdiWriteback and the BdiDirtyThresh of that sample.
func peakBdiInFlight(_ run: RunData) -> (Double, Int64, Double?)? {
    var best: (Double, Int64, Double?)?
    for s in run.samples {
        guard let r = s[Metric.bdiReclaimable], let w = s[Metric.bdiWriteback] else { continue }
        if best == nil || r + w > best!.0 { best = (r + w, s.timeNs, s[Metric.bdiDirtyThresh]) }
    }
    return best
}

private func peak(_ run: RunData, _ key: String) -> (Double, Int64)? {
    var best: (Double, Int64)?
    for s in run.samples { if let v = s[key], best == nil || v > best!.0 { best = (v, s.timeNs) } }
    return best
}

struct BuiltChart {
    var spec: ChartSpec
    var note: String?
    /// False when no series has a single value: the report then says so in
    /// one line instead of drawing an empty frame.
    var hasData: Bool { spec.series.contains { $0.points.contains { $0.y != nil } } }
}

/// The report's charts: (a) memory, (b) bdi, (c) throttling, (c') reclaim,
/// (d) FUSE queue. Each gets every injection as a marker.
func buildCharts(_ run: RunData) -> [BuiltChart] {
    let start = run.startNs
    func sec(_ t: Int64) -> Double { Double(t - start) / 1e9 }
    let xr = 0...max(run.durationSeconds, 0.001)
    let markers = run.injections.map { ChartMarker(x: sec($0.timeNs), label: $0.markerLabel) }
        // Steps at 0 s go in just before the workload starts: drawn at 0.
        + run.controls.map { ChartMarker(x: max(0, sec($0.timeNs)), label: $0.line + ($0.result == "ok" ? "" : " (refused)"), kind: .planStep) }
    let mib = 1.0 / 1048576
    func series(_ name: String, _ color: Int, _ value: (Sample) -> Double?) -> ChartSeries {
        ChartSeries(name: name, color: Report.colors[color], points: run.samples.map { ChartPoint(x: sec($0.timeNs), y: value($0)) })
    }
    func delta(_ name: String, _ color: Int, _ key: String) -> ChartSeries {
        var pts: [ChartPoint] = []
        var prev: Double?
        for s in run.samples {
            let v = s[key]
            pts.append(ChartPoint(x: sec(s.timeNs), y: (v != nil && prev != nil) ? v! - prev! : nil))
            prev = v
        }
        return ChartSeries(name: name, color: Report.colors[color], points: pts)
    }
    var out: [BuiltChart] = []

    out.append(BuiltChart(spec: ChartSpec(title: "Dirty and Writeback (/proc/meminfo)", yUnit: "MiB", series: [
        series("Dirty", 0) { $0[Metric.dirty].map { $0 * mib } },
        series("Writeback", 1) { $0[Metric.writeback].map { $0 * mib } },
    ], markers: markers, xRange: xr)))

    let hasBdi = run.samples.contains { $0[Metric.bdiDirtyThresh] != nil || $0[Metric.bdiWriteback] != nil }
    if hasBdi {
        out.append(BuiltChart(spec: ChartSpec(title: "The mount's bdi: in flight vs its dirty limit", yUnit: "MiB", series: [
            series("BdiReclaimable + BdiWriteback", 2) { s in
                guard let r = s[Metric.bdiReclaimable], let w = s[Metric.bdiWriteback] else { return nil }
                return (r + w) * mib
            },
            series("BdiWriteback", 1) { $0[Metric.bdiWriteback].map { $0 * mib } },
            series("BdiDirtyThresh", 4) { $0[Metric.bdiDirtyThresh].map { $0 * mib } },
        ], markers: markers, xRange: xr)))
    } else {
        out.append(BuiltChart(spec: ChartSpec(title: "The mount's bdi: in flight vs its dirty limit", yUnit: "MiB",
                                              series: [], markers: markers, xRange: xr),
                              note: "bdi stats not recorded (debugfs bdi/<dev>/stats unavailable)."))
    }

    let bdp = run.traceEvents.compactMap { e in e.balanceDirtyPagesPauseMs.map { ChartPoint(x: sec(e.timeNs), y: Double($0)) } }
    out.append(BuiltChart(spec: ChartSpec(title: "Throttling: balance_dirty_pages pauses", yUnit: "ms",
        series: [ChartSeries(name: "pause per event (max per pixel)", color: Report.colors[3], points: bdp, style: .stems)],
        markers: markers, xRange: xr),
        note: !run.traceAvailable ? "tracefs not available: no balance_dirty_pages events."
            : (bdp.isEmpty ? "No balance_dirty_pages events (not enabled, or writers never throttled)." : nil)))

    out.append(BuiltChart(spec: ChartSpec(title: "Reclaim meeting dirty/writeback pages (change per sample)", yUnit: "per sample", series: [
        delta("nr_throttled_written", 0, Metric.throttledWritten),
        delta("allocstall (all zones)", 1, Metric.allocstallTotal),
        delta("nr_vmscan_immediate_reclaim", 2, Metric.immediateReclaim),
    ], markers: markers, xRange: xr)))

    out.append(BuiltChart(spec: ChartSpec(title: "FUSE requests waiting", yUnit: "requests", series: [
        series("waiting", 1) { $0[Metric.fuseWaiting] },
        series("congestion_threshold", 4) { $0[Metric.fuseCongestionThreshold] },
    ], markers: markers, xRange: xr),
        note: run.samples.contains { $0[Metric.fuseWaiting] != nil } ? nil
            : "FUSE connection counters not recorded (mount -t fusectl none /sys/fs/fuse/connections)."))
    out += memoryCharts(run, xRange: xr, markers: markers)
    return out
}

extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}
