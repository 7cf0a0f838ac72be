// `faultfs run` for real: a temporary directory, a writer, a fault plan, and
// what the run folder then holds. Needs root (mount, tracefs). No timed
// assertions: the plan has times, the checks look at what was recorded.
import FaultRules
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Glibc
import Testing

/// Samples and events of a run folder, read with FaultRules' JSON reader and
/// event codec (this test target does not link MonitorCore).
private struct RunFolder {
    let path: String
    var samples: [JSONValue] = []
    var events: [JSONValue] = []

    init(_ path: String) throws {
        self.path = path
        func objects(_ name: String) throws -> [JSONValue] {
            let text = try String(contentsOfFile: path + "/" + name, encoding: .utf8)
            return text.split(separator: "\n").compactMap { try? parseJSON(String($0)) }
        }
        samples = try objects("samples.jsonl")
        events = try objects("events.jsonl")
    }

    func values(_ key: String) -> [(t: Int64, v: Double)] {
        samples.compactMap { s in
            guard let t = s["time_ns"]?.int64, let v = s[key]?.double else { return nil }
            return (t, v)
        }
    }

    func events(kind: String) -> [JSONValue] { events.filter { $0["kind"]?.string == kind } }

    /// The injection lines, through the event codec.
    func injections() throws -> [InjectionEvent] { try events(kind: "injection").map { try InjectionEvent(json: $0) } }

    func text(_ name: String) throws -> String { try String(contentsOfFile: path + "/" + name, encoding: .utf8) }
}

/// True when the HTML parses as XML (the report is written to be).
private func wellFormed(_ html: String) -> (ok: Bool, error: String) {
    let parser = XMLParser(data: Data(html.utf8))
    let ok = parser.parse()
    return (ok, parser.parserError.map { "\($0)" } ?? "")
}

private func leftovers() -> [String] {
    var out: [String] = []
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    out += mounts.split(separator: "\n").filter { $0.contains("faultfs-run.") }.map(String.init)
    let instances = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/kernel/tracing/instances")) ?? []
    // Other runs on the machine may have theirs: only a dead owner's counts.
    out += instances.filter { name in
        guard name.hasPrefix("faultfs-"), let pid = pid_t(name.dropFirst(8)) else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }.map { "tracefs instance \($0) of a process that is gone" }
    return out
}

private let writer64 = """
    import os, sys, time
    d = os.environ["FAULTFS_DIR"]
    fd = os.open(d + "/data.bin", os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644)
    chunk = b"w" * (1 << 20)
    for i in range(64):
        os.write(fd, chunk)
    print("wrote 64 MiB", flush=True)
    time.sleep(1)
    try:
        os.fsync(fd)
        print("fsync ok", flush=True)
    except OSError as e:
        print("fsync " + ("EIO" if e.errno == 5 else str(e.errno)), flush=True)
    os.close(fd)
    """

// Writes twice the most its bdi may hold dirty (the bdi's share of the
// global dirty threshold: max_ratio %, max_bytes; or BdiDirtyThresh if
// larger), so the stall reaches the plateau on any amount of RAM.
private let stallWriter = """
    import os
    d = os.environ["FAULTFS_DIR"]
    dev = os.stat(d).st_dev
    bdi = "%d:%d" % (os.major(dev), os.minor(dev))
    def read(path):
        try:
            with open(path) as f: return f.read()
        except OSError: return ""
    pages = int(next(l.split()[1] for l in read("/proc/vmstat").splitlines() if l.startswith("nr_dirty_threshold ")))
    limit = pages * os.sysconf("SC_PAGE_SIZE") * int(read("/sys/class/bdi/%s/max_ratio" % bdi) or 100) // 100
    max_bytes = int(read("/sys/class/bdi/%s/max_bytes" % bdi) or 0)
    if max_bytes > 0: limit = min(limit, max_bytes)
    for l in read("/sys/kernel/debug/bdi/%s/stats" % bdi).splitlines():
        if l.startswith("BdiDirtyThresh:"): limit = max(limit, int(l.split()[1]) * 1024)
    mib = 2 * limit // (1 << 20) + 32
    fd = os.open(d + "/big.bin", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    print("writer: start, %d MiB (bdi %s may hold %d MiB dirty)" % (mib, bdi, limit >> 20), flush=True)
    chunk = b"s" * (1 << 20)
    for i in range(mib):
        os.write(fd, chunk)
    os.fsync(fd)
    print("writer: done", flush=True)
    os.close(fd)
    """

extension AllMountTests {
@Suite(.serialized, .timeLimit(.minutes(10)))
struct MonitorRunTests {
    @Test func writebackEIOIsRecordedAndToldToTheWriter() throws {
        try withTemporaryDirectory("monitor-run") { tmp in
            let out = tmp + "/run"
            let r = try runCommand(try FaultFSBinary.path(), [
                "run", "--quiet", "--interval", "50ms", "--out", out,
                "--fault", "fail writeback EIO path=data.bin", "--at", "0s",
                "--", "python3", "-c", writer64,
            ], limitSeconds: 300)
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("fsync EIO"), "\(r)")
            #expect(r.stdout.contains("report: "), "\(r)")
            #expect(leftovers().isEmpty, "\(leftovers())")

            let run = try RunFolder(out)
            // Dirty rose while the writer's pages sat in the page cache.
            let dirty = run.values("mem.dirty_bytes")
            #expect(dirty.count >= 10)
            if let first = dirty.first?.v, let top = dirty.map(\.v).max() {
                #expect(top - first >= 4 * 1048576, "Dirty went from \(first) to at most \(top)")
            }
            // The fault layer's injections are in events.jsonl.
            let injections = try run.injections()
            #expect(!injections.isEmpty)
            #expect(injections.allSatisfy { $0.errno == 5 && $0.op == .writeback && $0.action == .fail })
            #expect(run.events(kind: "control").contains { $0["line"]?.string == "fail writeback EIO path=data.bin" && $0["result"]?.string == "ok" })
            #expect(run.events(kind: "workload_exit").count == 1)

            // tracefs is available on this machine: the writer's fsync was told.
            let traced = run.events.contains { $0["kind"]?.string == "setting" && $0["key"]?.string == "trace.available" && $0["value"]?.string == "1" }
            #expect(traced, "tracefs should be available here")
            let summary = try run.text("summary.txt")
            #expect(summary.contains("told: thread python3["), "\(summary)")
            #expect(summary.contains("EIO via fsync after"), "\(summary)")
            #expect(summary.contains("never told: none"), "\(summary)")

            let html = try run.text("report.html")
            let xml = wellFormed(html)
            #expect(xml.ok, "\(xml.error)")
            #expect(html.components(separatedBy: "<svg").count - 1 >= 4)
            #expect(html.contains("Dirty and Writeback"))
            #expect(html.contains("class=\"told\">thread python3["))
            #expect(html.contains("kernel event <code>filemap:filemap_set_wb_err</code>"))

            // The workload's own output: still on our stdout (above), all of
            // it in the run folder, its end in the summary and the report.
            #expect(try run.text("workload.out") == "wrote 64 MiB\nfsync EIO\n")
            #expect(try run.text("workload.err") == "")
            #expect(summary.contains("workload stdout (all 2 lines; all of it in workload.out):\n  | wrote 64 MiB\n  | fsync EIO\n"), "\(summary)")
            #expect(html.contains("<pre class=\"output\">wrote 64 MiB\nfsync EIO</pre>"))
            #expect(html.contains("stderr: nothing (workload.err is empty)"))
            // What was armed, and when.
            #expect(summary.contains("armed: r1 'fail writeback EIO path=data.bin' at start, until the end; fired "), "\(summary)")

            // `faultfs report` rebuilds the same report from the folder.
            try FileManager.default.removeItem(atPath: out + "/report.html")
            let again = try runCommand(try FaultFSBinary.path(), ["report", out], limitSeconds: 120)
            #expect(again.status == 0, "\(again)")
            #expect(FileManager.default.fileExists(atPath: out + "/report.html"))
        }
    }

    @Test func stallPlateausAtTheBdiLimitUntilReleased() throws {
        try withTemporaryDirectory("monitor-stall") { tmp in
            let out = tmp + "/run"
            let r = try runCommand(try FaultFSBinary.path(), [
                "run", "--quiet", "--interval", "50ms", "--out", out,
                "--fault", "stall writeback path=big.bin", "--when", "^writer: start",
                // `release` frees the stalled requests; `clear` first, or new ones stall again.
                "--fault", "clear", "--at", "5s", "--fault", "release", "--at", "5s",
                "--", "python3", "-c", stallWriter,
            ], limitSeconds: 300)
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("writer: done"), "\(r)")
            #expect(leftovers().isEmpty, "\(leftovers())")

            let run = try RunFolder(out)
            let controls = run.events(kind: "control")
            let stallAt = try #require(controls.first { $0["line"]?.string?.hasPrefix("stall") == true }?["time_ns"]?.int64)
            let releaseAt = try #require(controls.first { $0["line"]?.string == "clear" }?["time_ns"]?.int64)
            #expect(controls.allSatisfy { $0["result"]?.string == "ok" })

            // The mount's own in-flight pages (dirty + writeback) against its threshold.
            let reclaimable = Dictionary(run.values("bdi.reclaimable_bytes").map { ($0.t, $0.v) }, uniquingKeysWith: { a, _ in a })
            let writeback = Dictionary(run.values("bdi.writeback_bytes").map { ($0.t, $0.v) }, uniquingKeysWith: { a, _ in a })
            let thresh = Dictionary(run.values("bdi.dirty_thresh_bytes").map { ($0.t, $0.v) }, uniquingKeysWith: { a, _ in a })
            let series = reclaimable.keys.sorted().compactMap { t -> (t: Int64, inFlight: Double, thresh: Double)? in
                guard let w = writeback[t], let th = thresh[t], let rc = reclaimable[t] else { return nil }
                return (t, rc + w, th)
            }
            let during = series.filter { $0.t > stallAt && $0.t < releaseAt }
            #expect(!during.isEmpty)
            let peak = try #require(during.max { $0.inFlight < $1.inFlight })
            // Plateau near the limit: within 25% of the bdi's threshold, never far above it.
            #expect(peak.inFlight >= 0.75 * peak.thresh, "peak \(peak.inFlight) vs threshold \(peak.thresh)")
            #expect(peak.inFlight <= 1.25 * peak.thresh, "peak \(peak.inFlight) vs threshold \(peak.thresh)")
            // It stays there: most samples of the second half of the stall are near the limit too.
            let late = during.filter { $0.t > (stallAt + releaseAt) / 2 }
            #expect(late.filter { $0.inFlight >= 0.6 * $0.thresh }.count * 2 >= late.count)
            // The release brings it down.
            let last = try #require(series.last)
            #expect(last.t > releaseAt)
            #expect(last.inFlight < 0.25 * peak.thresh, "after release \(last.inFlight)")

            let summary = try run.text("summary.txt")
            #expect(summary.contains("during 'stall writeback path=big.bin'"), "\(summary)")
            #expect(summary.contains("armed: r1 'stall writeback path=big.bin' at "), "\(summary)")
            #expect(summary.contains(" s (clear); fired "), "\(summary)")  // the 5 s step lands a few ms late under load
            #expect(wellFormed(try run.text("report.html")).ok)
        }
    }

    @Test func monitorSaysMonitorAndWhatStoppedIt() throws {
        try withMount { fs in
            try fs.arm("fail writeback EIO path=never-written")
            try withTemporaryDirectory("monitor-only") { tmp in
                let out = tmp + "/rec"
                let r = try runCommand(try FaultFSBinary.path(), ["monitor", fs.mountpoint, "--quiet", "--duration", "1s", "--out", out],
                                       limitSeconds: 120)
                #expect(r.status == 0, "\(r)")
                let said = r.stdout + r.stderr
                #expect(r.stdout.hasPrefix("faultfs monitor: " + fs.mountpoint + "\n"), "\(r)")
                #expect(r.stdout.contains("recording stopped after --duration 1s"), "\(r)")
                #expect(r.stderr.contains("faultfs monitor: recording stopped after --duration 1s; writing the report"), "\(r)")
                #expect(!said.contains("faultfs run") && !said.contains("workload"), "\(r)")
                let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
                #expect(html.contains("<h1>faultfs monitor</h1>"))
                #expect(html.contains("<code>fail writeback EIO path=never-written</code>: armed before recording started"), "\(html.prefix(3000))")
                #expect(!FileManager.default.fileExists(atPath: out + "/workload.out"))
            }
        }
    }
}
}
