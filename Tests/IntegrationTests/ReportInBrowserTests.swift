// The demo's report as a person sees it: rendered by headless Chromium, its
// marker labels measured in the DOM. Every plan step's label must be there
// in every chart, visible (on top at its centre, inside its chart), and no
// two labels may overlap, nor a label the plot. Needs root (the demo
// mounts) and Debian's chromium, which the test installs when missing.
import Foundation
import Glibc
import Testing

/// Measures every marker label of every chart once the page has loaded and
/// leaves the result, as JSON, in <pre id="layout-check"> for --dump-dom.
private let measuringScript = """
    <script>
    (function () {
      function box(r) { return [r.left, r.top, r.right, r.bottom]; }
      var charts = [];
      document.querySelectorAll('svg').forEach(function (svg) {
        svg.scrollIntoView();
        var frame = svg.querySelector('.frame');
        var labels = [];
        svg.querySelectorAll('text.mlab').forEach(function (t) {
          var r = t.getBoundingClientRect();
          var hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
          labels.push({ full: t.getAttribute('data-full'), text: t.textContent, step: t.classList.contains('step'),
                        rect: box(r), onTop: hit === t || (hit !== null && t.contains(hit)) });
        });
        charts.push({ title: svg.querySelector('title').textContent, svg: box(svg.getBoundingClientRect()),
                      frame: box(frame.getBoundingClientRect()), labels: labels });
      });
      var pre = document.createElement('pre');
      pre.id = 'layout-check';
      pre.textContent = JSON.stringify(charts);
      document.body.appendChild(pre);
    })();
    </script>
    """

/// Debian's chromium, installed when missing (CI machines start fresh).
private func chromium() throws -> String {
    if let found = try? resolveExecutable("chromium") { return found }
    let install = try runCommand("/usr/bin/apt-get", ["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "chromium"],
                                 limitSeconds: 1200)
    guard install.status == 0 else { throw SetupError("apt-get install chromium failed: \(install)") }
    return try resolveExecutable("chromium")
}

/// Headless Chromium with what it needs as root in a container.
private func chromiumArguments(_ extra: [String], profile: String) -> [String] {
    ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
     "--user-data-dir=" + profile, "--window-size=1200,900"] + extra
}

private struct Box {
    var left, top, right, bottom: Double
    init(_ a: Any?) {
        let v = (a as? [NSNumber])?.map(\.doubleValue) ?? [0, 0, 0, 0]
        (left, top, right, bottom) = (v[0], v[1], v[2], v[3])
    }
    var width: Double { right - left }
    var height: Double { bottom - top }
    func intersects(_ o: Box) -> Bool { left < o.right && o.left < right && top < o.bottom && o.top < bottom }
    func inside(_ o: Box) -> Bool { left >= o.left - 0.5 && right <= o.right + 0.5 && top >= o.top - 0.5 && bottom <= o.bottom + 0.5 }
}

extension AllMountTests {
@Suite(.serialized)
struct ReportInBrowserTests {
    @Test func theDemosReportShowsEveryPlanStepLabelAndNoOverlap() throws {
        let browser = try chromium()
        try withTemporaryDirectory("report-browser") { tmp in
            let out = tmp + "/demo"
            let demo = try runCommand(try FaultFSBinary.path(), ["demo", "--out", out], limitSeconds: 600)
            #expect(demo.status == 0, "\(demo)")

            // The plan steps, from the run folder.
            let events = try String(contentsOfFile: out + "/events.jsonl", encoding: .utf8).split(separator: "\n")
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let steps = events.filter { $0["kind"] as? String == "control" }.compactMap { $0["line"] as? String }
            #expect(steps.count == 8, "\(steps)")   // the demo's plan: three phases

            // The workload's own output is in the run folder and, its end, in the report.
            let printed = try String(contentsOfFile: out + "/workload.out", encoding: .utf8)
            #expect(printed.contains("[demo] done"))
            #expect(FileManager.default.fileExists(atPath: out + "/workload.err"))
            let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
            #expect(html.contains("What the workload printed"))
            #expect(html.contains("[demo] done"))
            // What was armed, and when.
            #expect(html.contains("<code>r1</code> <code>fail writeback ENOSPC path=demo.dat</code>: armed at"))
            #expect(html.contains("<code>r2</code> <code>stall writeback path=stall.dat</code>: armed at"))
            #expect(html.contains("<code>r3</code> <code>stall writeback path=mem.dat</code>: armed at"))

            // Render with the measuring script added, and read the result back.
            let page = tmp + "/measured.html"
            try html.replacingOccurrences(of: "</body>", with: measuringScript + "</body>").write(toFile: page, atomically: true, encoding: .utf8)
            let dump = try runCommand(browser, chromiumArguments(["--dump-dom", "file://" + page], profile: tmp + "/profile"), limitSeconds: 180)
            #expect(dump.status == 0, "\(dump)")
            guard let start = dump.stdout.range(of: "<pre id=\"layout-check\">"),
                  let end = dump.stdout.range(of: "</pre>", range: start.upperBound..<dump.stdout.endIndex) else {
                Issue.record("no layout-check in the dumped DOM: \(dump)")
                return
            }
            let json = String(dump.stdout[start.upperBound..<end.lowerBound])
                .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
                .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
            let charts = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
            #expect(charts.count >= 3, "\(json.prefix(500))")

            for chart in charts {
                let title = chart["title"] as? String ?? "?"
                let svg = Box(chart["svg"]), frame = Box(chart["frame"])
                let labels = chart["labels"] as? [[String: Any]] ?? []
                // Every plan step has its label, shown whole.
                var unmatched = labels.filter { $0["step"] as? Bool == true }.map { $0["full"] as? String ?? "" }
                for step in steps {
                    if let i = unmatched.firstIndex(of: step) { unmatched.remove(at: i) } else { Issue.record("\(title): no label for plan step '\(step)'") }
                }
                for l in labels {
                    let r = Box(l["rect"])
                    let name = "\(title): label '\(l["text"] as? String ?? "?")'"
                    #expect(r.width > 5 && r.height > 5, "\(name) has no size: \(r)")
                    #expect(r.inside(svg), "\(name) spills out of its chart: \(r) vs \(svg)")
                    #expect(r.left >= frame.left - 0.5 && r.right <= frame.right + 0.5, "\(name) is wider than the frame: \(r) vs \(frame)")
                    #expect(!r.intersects(frame), "\(name) is drawn over the plot")
                    #expect(l["onTop"] as? Bool == true, "\(name) is covered by something else")
                    if l["step"] as? Bool == true { #expect(l["text"] as? String == l["full"] as? String, "\(name) was shortened") }
                }
                for (i, a) in labels.enumerated() {
                    for b in labels[(i + 1)...] where Box(a["rect"]).intersects(Box(b["rect"])) {
                        Issue.record("\(title): '\(a["text"] ?? "")' and '\(b["text"] ?? "")' overlap")
                    }
                }
            }
        }
    }
}
}
