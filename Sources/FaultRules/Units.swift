// Numbers with units: durations (`200ms`, `1.5s`) and sizes (`64M`, `2GiB`),
// parsed and rendered. Arithmetic is exact integer arithmetic, so a value
// survives a render/parse round trip unchanged.

private let nanosecondsPerUnit: [(unit: String, ns: UInt64)] = [
    ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000),
    ("ms", 1_000_000), ("us", 1_000), ("ns", 1),
]

private let bytesPerUnit: [(unit: String, bytes: Int64)] = [
    ("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10),
]

/// A duration in nanoseconds: a decimal number and a unit, `ns`, `us`, `ms`,
/// `s`, `m` (minutes) or `h` (`200ms`, `1.5s`, `100us`, `1m`).
/// Nil if malformed, without a unit, finer than a nanosecond, or too large.
public func parseDuration(_ s: Substring) -> UInt64? {
    let digitsEnd = s.firstIndex { !$0.isASCII || !($0.isNumber || $0 == ".") } ?? s.endIndex
    let number = s[..<digitsEnd]
    guard let unitNs = nanosecondsPerUnit.first(where: { $0.unit == s[digitsEnd...].lowercased() })?.ns
    else { return nil }

    let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    let integerText = parts[0]
    let fractionText = parts.count > 1 ? parts[1] : ""
    guard !(integerText.isEmpty && fractionText.isEmpty), !fractionText.contains(".") else { return nil }

    guard let integer = integerText.isEmpty ? 0 : parseUnsigned(integerText),
          case (var total, false) = integer.multipliedReportingOverflow(by: unitNs)
    else { return nil }

    // Each fraction digit is worth a tenth of the previous one; digits below
    // one nanosecond must be zero.
    var place = unitNs
    for digit in fractionText {
        guard let d = digit.wholeNumberValue, digit.isASCII else { return nil }
        guard place % 10 == 0 else {
            if d != 0 { return nil }
            continue
        }
        place /= 10
        guard case (let sum, false) = total.addingReportingOverflow(UInt64(d) * place) else { return nil }
        total = sum
    }
    return total
}

/// A byte count: decimal digits, optionally followed by a binary unit
/// `K`, `M`, `G` or `T` (also written `KB`/`KiB`...), or `B` for bytes;
/// case-insensitive (`4096`, `512K`, `64M`, `2GiB`). Nil if malformed or
/// beyond Int64.
public func parseSize(_ s: Substring) -> Int64? {
    let digitsEnd = s.firstIndex { !$0.isASCII || !$0.isNumber } ?? s.endIndex
    guard let count = parseUnsigned(s[..<digitsEnd]), count <= UInt64(Int64.max) else { return nil }

    var unit = s[digitsEnd...].lowercased()
    if unit.hasSuffix("ib") {
        unit.removeLast(2)
        guard !unit.isEmpty else { return nil } // "iB" alone is no unit
    } else if unit.hasSuffix("b") {
        unit.removeLast()
    }
    if unit.isEmpty { return Int64(count) }
    guard let multiplier = bytesPerUnit.first(where: { $0.unit == unit })?.bytes,
          case (let bytes, false) = Int64(count).multipliedReportingOverflow(by: multiplier)
    else { return nil }
    return bytes
}

/// Canonical text of a duration: an integer in the largest unit that
/// expresses it exactly (`1.5s` → `1500ms`).
func formatDuration(_ ns: UInt64) -> String {
    let unit = nanosecondsPerUnit.first { ns % $0.ns == 0 && ns != 0 } ?? ("ns", 1)
    return "\(ns / unit.ns)\(unit.unit)"
}

/// Canonical text of a size: an integer in the largest binary unit that
/// expresses it exactly (`1048576` → `1M`), or plain bytes.
func formatSize(_ bytes: Int64) -> String {
    guard let unit = bytesPerUnit.first(where: { bytes != 0 && bytes % $0.bytes == 0 }) else {
        return String(bytes)
    }
    return "\(bytes / unit.bytes)\(unit.unit.uppercased())"
}

/// A plain decimal number: ASCII digits only, no sign. Nil if empty or too large.
func parseUnsigned(_ s: some StringProtocol) -> UInt64? {
    guard !s.isEmpty else { return nil }
    var value: UInt64 = 0
    for byte in s.utf8 {
        guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
        let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
        guard !overflow1, !overflow2 else { return nil }
        value = sum
    }
    return value
}
