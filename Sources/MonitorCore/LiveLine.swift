// The one-line status the CLI redraws while a run is going on.

/// One-line terminal status of the latest sample, e.g.
/// "Dirty 12.3 MiB  Writeback 37.0 MiB  bdi 48.1/48.0 MiB  waiting 12  faults 3".
/// Parts whose counters are absent are left out.
public enum LiveLine {
    public static func format(_ s: Sample, faults: Int) -> String {
        var parts: [String] = []
        if let d = s[Metric.dirty] { parts.append("Dirty " + formatMiB(d)) }
        if let w = s[Metric.writeback] { parts.append("Writeback " + formatMiB(w)) }
        if let r = s[Metric.bdiReclaimable], let w = s[Metric.bdiWriteback] {
            let inFlight = formatFixed((r + w) / 1048576, 1)
            if let t = s[Metric.bdiDirtyThresh] {
                parts.append("bdi \(inFlight)/\(formatMiB(t))")
            } else {
                parts.append("bdi \(inFlight) MiB")
            }
        }
        if let w = s[Metric.fuseWaiting] { parts.append("waiting \(formatNumber(w))") }
        parts.append("faults \(faults)")
        return parts.joined(separator: "  ")
    }
}
