// Inline SVG time charts. A 10-minute run at 100 ms is 6,000 samples per
// series; drawing them all makes a heavy, unreadable file. We draw at most
// a min and a max per horizontal pixel ("bucket"), which keeps every peak
// and dip visible. The full data stays in samples.csv / samples.jsonl.

/// One point; `y == nil` is a gap (the counter was absent then), drawn as a
/// break in the line, never as 0.
public struct ChartPoint: Sendable, Equatable {
    public var x: Double
    public var y: Double?
    public init(x: Double, y: Double?) { self.x = x; self.y = y }
}

public enum Downsample {
    /// Keeps, for each of `buckets` equal slices of `xRange`, the min and the
    /// max point (in x order). Gaps split the input into segments that are
    /// reduced separately and rejoined with a gap point. Returns at most
    /// 2 × buckets points per segment (2 × buckets overall without gaps).
    public static func minMax(_ points: [ChartPoint], buckets: Int, xRange: ClosedRange<Double>) -> [ChartPoint] {
        guard buckets > 0, points.count > 2 * buckets else { return points }
        var out: [ChartPoint] = []
        out.reserveCapacity(2 * buckets + 8)
        let width = max(xRange.upperBound - xRange.lowerBound, 1e-12)
        func bucket(_ x: Double) -> Int {
            min(buckets - 1, max(0, Int((x - xRange.lowerBound) / width * Double(buckets))))
        }
        var current = -1
        var lo: ChartPoint?, hi: ChartPoint?
        func flush() {
            guard let l = lo, let h = hi else { return }
            if l == h { out.append(l) } else if l.x <= h.x { out.append(l); out.append(h) } else { out.append(h); out.append(l) }
            lo = nil; hi = nil
        }
        for p in points {
            guard let y = p.y else {
                flush()
                if let last = out.last, last.y != nil { out.append(ChartPoint(x: p.x, y: nil)) }
                current = -1
                continue
            }
            let b = bucket(p.x)
            if b != current { flush(); current = b }
            if lo == nil || y < lo!.y! { lo = p }
            if hi == nil || y > hi!.y! { hi = p }
        }
        flush()
        return out
    }
}

public struct ChartSeries: Sendable {
    public enum Style: Sendable { case line, stems }
    public var name: String
    public var color: String
    public var points: [ChartPoint]
    /// `.stems`: one vertical bar per (downsampled) event, for per-event
    /// values such as balance_dirty_pages pauses.
    public var style: Style
    public init(name: String, color: String, points: [ChartPoint], style: Style = .line) {
        self.name = name; self.color = color; self.points = points; self.style = style
    }
}

public struct ChartMarker: Sendable {
    public enum Kind: Sendable {
        /// A line of the run's plan, written to the control file: always labelled.
        case planStep
        /// An injected fault: markers with the same label close together
        /// share one label ("r1 fail EIO ×8").
        case fault
    }
    public var x: Double
    public var label: String
    public var kind: Kind
    public init(x: Double, label: String, kind: Kind = .fault) { self.x = x; self.label = label; self.kind = kind }
}

public struct ChartSpec: Sendable {
    public var title: String
    public var yUnit: String
    public var series: [ChartSeries]
    public var markers: [ChartMarker]
    /// Seconds since the start of the run.
    public var xRange: ClosedRange<Double>
    public var width = 900
    /// Without the band of marker labels, which is added above the plot.
    public var height = 240
    public init(title: String, yUnit: String, series: [ChartSeries], markers: [ChartMarker], xRange: ClosedRange<Double>) {
        self.title = title; self.yUnit = yUnit; self.series = series; self.markers = markers; self.xRange = xRange
    }
}

public enum Chart {
    static let left = 64.0, right = 16.0, top = 22.0, bottom = 30.0
    /// Marker labels: font size and row height (px).
    static let labelFont = 10.0, labelRow = 13.0

    /// Each SVG carries its own style so it also renders on its own (the
    /// Monitor may save charts as .svg files). Selectors start with "svg" so
    /// that inside the HTML page they touch nothing else.
    static let style = "svg text{font-size:11px;fill:#444;font-family:sans-serif}svg .ylab{text-anchor:end}"
        + "svg .xlab{text-anchor:middle}svg .grid{stroke:#eee}svg .tick{stroke:#888}svg .frame{fill:none;stroke:#888}"
        + "svg .series{fill:none;stroke-width:1.5}svg .stems{fill:none;stroke-width:1}"
        + "svg .marker{stroke:#c00;stroke-dasharray:3 3;stroke-width:1}svg .mstep{stroke:#1f4e99;stroke-dasharray:6 2;stroke-width:1}"
        + "svg text.mlab{fill:#c00;font-size:10px;font-family:'DejaVu Sans',Verdana,sans-serif}svg text.step{fill:#1f4e99}"

    /// One `<svg>` element (no XML prolog, for inlining in HTML).
    public static func svg(_ spec: ChartSpec) -> String {
        let w = Double(spec.width)
        let pw = w - left - right
        // The label band above the plot grows with the rows of labels it needs.
        let markers = layOutMarkers(spec, plotLeft: left, plotWidth: pw)
        let band = markers.rows == 0 ? 0 : Double(markers.rows) * labelRow + 4
        let top = Chart.top + band
        let h = Double(spec.height) + band, ph = Double(spec.height) - Chart.top - bottom
        let height = Int(h.rounded(.up))
        /// The baseline of a row of labels (row 0 is nearest the plot).
        func labelBaseline(_ row: Int) -> Double { top - 5 - labelRow * Double(row) }
        let x0 = spec.xRange.lowerBound, xSpan = max(spec.xRange.upperBound - x0, 1e-9)
        let buckets = Int(pw)
        let reduced = spec.series.map { Downsample.minMax($0.points, buckets: buckets, xRange: spec.xRange) }
        var yMax = 0.0
        for pts in reduced { for p in pts { if let y = p.y, y > yMax { yMax = y } } }
        let yStep = niceStep(yMax > 0 ? yMax / 4 : 0.25)
        let yTop = max(yStep, (yMax / yStep).rounded(.up) * yStep)
        func px(_ x: Double) -> Double { left + (x - x0) / xSpan * pw }
        func py(_ y: Double) -> Double { top + ph - min(max(y, 0), yTop) / yTop * ph }
        func f(_ v: Double) -> String { formatFixed(v, 1) }

        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(spec.width)\" height=\"\(height)\" viewBox=\"0 0 \(spec.width) \(height)\" style=\"max-width:100%;height:auto\" role=\"img\">\n"
        s += "<title>" + xmlEscape(spec.title) + "</title>\n<style>" + style + "</style>\n"
        // Grid and y labels.
        let yDecimals = yStep >= 1 ? 0 : (yStep >= 0.1 ? 1 : 2)
        var y = 0.0
        while y <= yTop + yStep / 2 {
            s += "<line class=\"grid\" x1=\"\(f(left))\" y1=\"\(f(py(y)))\" x2=\"\(f(left + pw))\" y2=\"\(f(py(y)))\"/>"
            s += "<text class=\"ylab\" x=\"\(f(left - 4))\" y=\"\(f(py(y) + 4))\">\(formatFixed(y, yDecimals))</text>\n"
            y += yStep
        }
        s += "<text class=\"unit\" x=\"4\" y=\"\(f(top - 8))\">" + xmlEscape(spec.yUnit) + "</text>\n"
        // X ticks in seconds since start.
        let xStep = niceStep(xSpan / 8)
        var xt = (x0 / xStep).rounded(.up) * xStep
        while xt <= x0 + xSpan + 1e-9 {
            s += "<line class=\"tick\" x1=\"\(f(px(xt)))\" y1=\"\(f(top + ph))\" x2=\"\(f(px(xt)))\" y2=\"\(f(top + ph + 4))\"/>"
            s += "<text class=\"xlab\" x=\"\(f(px(xt)))\" y=\"\(f(top + ph + 16))\">\(formatFixed(xt, xStep >= 1 ? 0 : 1))s</text>\n"
            xt += xStep
        }
        s += "<rect class=\"frame\" x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\"/>\n"
        // Series.
        for (i, series) in spec.series.enumerated() {
            var d = ""
            var penDown = false
            for p in reduced[i] {
                guard let yv = p.y else { penDown = false; continue }
                switch series.style {
                case .line:
                    d += (penDown ? "L" : "M") + f(px(p.x)) + " " + f(py(yv))
                    penDown = true
                case .stems:
                    d += "M" + f(px(p.x)) + " " + f(py(0)) + "V" + f(py(yv))
                }
            }
            if !d.isEmpty {
                let cls = series.style == .line ? "series" : "stems"
                s += "<path class=\"\(cls)\" stroke=\"\(xmlEscape(series.color))\" d=\"\(d)\"/>\n"
            }
        }
        // Marker lines, from the plot up to their label's row, then the labels
        // on top of everything.
        for line in markers.lines {
            let topY = line.row.map { labelBaseline($0) - 8 } ?? top
            s += "<line class=\"\(line.kind == .planStep ? "mstep" : "marker")\" x1=\"\(f(line.x))\" y1=\"\(f(topY))\" x2=\"\(f(line.x))\" y2=\"\(f(top + ph))\"/>\n"
        }
        for label in markers.labels {
            let p = label.placement
            let text = Chart.fit(label.text, width: p.width)
            let cls = label.kind == .planStep ? "mlab step" : "mlab"
            s += "<text class=\"\(cls)\" x=\"\(f(p.left))\" y=\"\(f(labelBaseline(p.row)))\" textLength=\"\(f(Chart.textWidth(text)))\" lengthAdjust=\"spacingAndGlyphs\" data-full=\"\(xmlEscape(label.text))\">"
                + xmlEscape(text) + (text == label.text ? "" : "<title>" + xmlEscape(label.text) + "</title>") + "</text>\n"
        }
        s += "</svg>"
        return s
    }

    /// The markers of a chart as drawn: lines, and labels placed by `MarkerLayout`.
    struct MarkerDrawing {
        struct Line { var x: Double; var kind: ChartMarker.Kind; var row: Int? }
        struct Label { var text: String; var kind: ChartMarker.Kind; var placement: MarkerLayout.Placement }
        var lines: [Line] = []
        var labels: [Label] = []
        var rows: Int { labels.map { $0.placement.row + 1 }.max() ?? 0 }
    }

    /// Faults with the same label closer than this share one label.
    static let faultClusterPx = 60.0
    /// Beyond this many fault labels, only the first of each kind is labelled.
    static let maxFaultLabels = 16

    /// Every plan step gets its own line and label. Faults get one line per
    /// pixel and one label per cluster of the same label ("r1 ENOSPC ×8").
    static func layOutMarkers(_ spec: ChartSpec, plotLeft: Double, plotWidth: Double) -> MarkerDrawing {
        let x0 = spec.xRange.lowerBound, xSpan = max(spec.xRange.upperBound - x0, 1e-9)
        func px(_ x: Double) -> Double { plotLeft + (x - x0) / xSpan * plotWidth }
        let shown = spec.markers.filter { spec.xRange.contains($0.x) }.sorted { $0.x < $1.x }
        var d = MarkerDrawing()
        var pending: [(text: String, kind: ChartMarker.Kind, line: Int)] = []
        for m in shown where m.kind == .planStep {
            d.lines.append(.init(x: px(m.x), kind: .planStep, row: nil))
            pending.append((m.label, .planStep, d.lines.count - 1))
        }
        var clusters: [(label: String, lastX: Double, count: Int, line: Int)] = []
        var openCluster: [String: Int] = [:]
        for m in shown where m.kind == .fault {
            let x = px(m.x)
            if let last = d.lines.last, last.kind == .fault, x - last.x < 1 {} else {
                d.lines.append(.init(x: x, kind: .fault, row: nil))
            }
            if let c = openCluster[m.label], x - clusters[c].lastX < faultClusterPx {
                clusters[c].count += 1
                clusters[c].lastX = x
            } else {
                openCluster[m.label] = clusters.count
                clusters.append((m.label, x, 1, d.lines.count - 1))
            }
        }
        if clusters.count > maxFaultLabels {
            var seen = Set<String>()
            clusters = clusters.filter { seen.insert($0.label).inserted }.prefix(maxFaultLabels).map { $0 }
        }
        pending += clusters.map { ($0.count > 1 ? "\($0.label) ×\($0.count)" : $0.label, .fault, $0.line) }
        pending.sort { d.lines[$0.line].x < d.lines[$1.line].x }
        let placements = MarkerLayout.place(pending.map { MarkerLayout.Item(x: d.lines[$0.line].x, width: textWidth($0.text)) },
                                            frame: plotLeft...(plotLeft + plotWidth))
        for (p, placement) in zip(pending, placements) {
            d.labels.append(.init(text: p.text, kind: p.kind, placement: placement))
            // Two labels on one line (a step and a fault at once): it reaches the higher.
            d.lines[p.line].row = max(d.lines[p.line].row ?? 0, placement.row)
        }
        return d
    }

    /// Advance widths of DejaVu Sans (the first font the labels ask for),
    /// in ems; characters not listed count as 0.62 em.
    static let glyphWidths: [Character: Double] = {
        var w: [Character: Double] = [:]
        let table: [(String, Double)] = [
            (" ,.", 0.318), ("iljIJ", 0.29), ("f", 0.352), ("t", 0.392), ("r", 0.411), ("()[]", 0.39), ("/:;\\|", 0.337),
            ("-", 0.361), ("!", 0.401), ("'", 0.275), ("s", 0.521), ("cz", 0.55), ("*_`\"", 0.5), ("?", 0.531),
            ("abdeghnopqu0123456789{}$", 0.636), ("kvxyLF", 0.592), ("EPSTYZ", 0.64), ("ABCKRVX", 0.7),
            ("DGHNOQU", 0.79), ("w", 0.818), ("mM", 0.974), ("W%", 0.99), ("+<=>^~×", 0.838), ("#&@…", 1.0),
        ]
        for (chars, width) in table { for c in chars { w[c] = width } }
        return w
    }()

    /// The width of a marker label, a little generous (each label is drawn
    /// with `textLength` set to this, so the layout holds whatever font).
    static func textWidth(_ text: String) -> Double {
        (text.reduce(0) { $0 + (glyphWidths[$1] ?? 0.62) } * labelFont * 1.04).rounded(.up)
    }

    /// `text`, cut with "…" to fit `width`.
    static func fit(_ text: String, width: Double) -> String {
        if textWidth(text) <= width + 0.5 { return text }
        var cut = text
        while !cut.isEmpty && textWidth(cut + "…") > width + 0.5 { cut.removeLast() }
        return cut + "…"
    }

    /// 1, 2 or 5 × 10^n, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        var p = 1.0
        while p * 10 <= raw { p *= 10 }
        while p > raw { p /= 10 }
        for m in [1.0, 2.0, 5.0, 10.0] where m * p >= raw { return m * p }
        return 10 * p
    }
}

/// Escapes text for HTML/XML content and attribute values.
public func xmlEscape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default:
            // Control characters are not allowed in XML; show them as U+FFFD.
            if c.value < 0x20 && c != "\n" && c != "\t" { out += "\u{FFFD}" } else { out.unicodeScalars.append(c) }
        }
    }
    return out
}
