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
    public var x: Double
    public var label: String
    public init(x: Double, label: String) { self.x = x; self.label = label }
}

public struct ChartSpec: Sendable {
    public var title: String
    public var yUnit: String
    public var series: [ChartSeries]
    public var markers: [ChartMarker]
    /// Seconds since the start of the run.
    public var xRange: ClosedRange<Double>
    public var width = 900
    public var height = 240
    public init(title: String, yUnit: String, series: [ChartSeries], markers: [ChartMarker], xRange: ClosedRange<Double>) {
        self.title = title; self.yUnit = yUnit; self.series = series; self.markers = markers; self.xRange = xRange
    }
}

public enum Chart {
    static let left = 64.0, right = 16.0, top = 22.0, bottom = 30.0

    /// Each SVG carries its own style so it also renders on its own (the
    /// Monitor may save charts as .svg files). Selectors start with "svg" so
    /// that inside the HTML page they touch nothing else.
    static let style = "svg text{font-size:11px;fill:#444;font-family:sans-serif}svg .ylab{text-anchor:end}"
        + "svg .xlab{text-anchor:middle}svg .grid{stroke:#eee}svg .tick{stroke:#888}svg .frame{fill:none;stroke:#888}"
        + "svg .series{fill:none;stroke-width:1.5}svg .stems{fill:none;stroke-width:1}"
        + "svg .marker{stroke:#c00;stroke-dasharray:3 3;stroke-width:1}svg .mlab{fill:#c00;font-size:10px}"

    /// One `<svg>` element (no XML prolog, for inlining in HTML).
    public static func svg(_ spec: ChartSpec) -> String {
        let w = Double(spec.width), h = Double(spec.height)
        let pw = w - left - right, ph = h - top - bottom
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

        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(spec.width)\" height=\"\(spec.height)\" viewBox=\"0 0 \(spec.width) \(spec.height)\" style=\"max-width:100%;height:auto\" role=\"img\">\n"
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
        // Injection markers: markers closer than a pixel form one group, drawn
        // as one line; a group's label ("r1 EIO ×3") is drawn only where it
        // does not overlap the previous label.
        var groups: [(x: Double, label: String, count: Int)] = []
        for m in spec.markers.filter({ spec.xRange.contains($0.x) }).sorted(by: { $0.x < $1.x }) {
            let mx = px(m.x)
            if let last = groups.last, mx - last.x < 1 { groups[groups.count - 1].count += 1 } else { groups.append((mx, m.label, 1)) }
        }
        // Labels go on up to three rows; a label is drawn on the first row
        // where it does not overlap the previous one (about 5.5 px a character).
        var rowEnds = [-1000.0, -1000.0, -1000.0]
        for g in groups {
            s += "<line class=\"marker\" x1=\"\(f(g.x))\" y1=\"\(f(top))\" x2=\"\(f(g.x))\" y2=\"\(f(top + ph))\"/>"
            let text = g.count > 1 ? "\(g.label) ×\(g.count)" : g.label
            if let row = rowEnds.firstIndex(where: { g.x > $0 + 4 }) {
                s += "<text class=\"mlab\" x=\"\(f(g.x + 2))\" y=\"\(f(top + 10 + 12 * Double(row)))\">" + xmlEscape(text) + "</text>"
                rowEnds[row] = g.x + 2 + 5.5 * Double(text.count)
            }
            s += "\n"
        }
        s += "</svg>"
        return s
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
