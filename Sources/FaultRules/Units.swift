// Numbers with units: durations (`200ms`, `1.5s`) and sizes (`64M`, `2GiB`),
// parsed and rendered. The project's one grammar for them: the control
// language, plans, and the command line (`--at`, `--after-bytes`,
// `--interval`, `--memory-limit`) all parse here. No white space, no sign, no
// exponent. Arithmetic is exact integer arithmetic, so a value survives a
// render/parse round trip unchanged.

private let nanosecondsPerUnit: [(unit: String, ns: UInt64)] = [
    ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000),
    ("ms", 1_000_000), ("us", 1_000), ("ns", 1),
]

private let bytesPerUnit: [(unit: String, bytes: Int64)] = [
    ("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10),
]

/// A duration in nanoseconds: a decimal number and a unit, `ns`, `us`, `ms`,
/// `s`, `m` (minutes) or `h` (`200ms`, `1.5s`, `100us`, `1m`).
/// Nil if malformed, without a unit, finer than a nanosecond, or beyond
/// Int64.max nanoseconds (292 years: so every clock can hold it).
public func parseDuration(_ text: some StringProtocol) -> UInt64? {
    let (number, unit) = splitNumber(Substring(text))
    guard let unitNs = nanosecondsPerUnit.first(where: { $0.unit == unit.lowercased() })?.ns,
          let ns = scaleExactly(number, by: unitNs), ns <= UInt64(Int64.max) else { return nil }
    return ns
}

/// A byte count: a decimal number, optionally followed by a binary unit
/// `K`, `M`, `G` or `T` (also written `KB`/`KiB`...), or `B` for bytes;
/// case-insensitive (`4096`, `512K`, `1.5G`, `2GiB`). Nil if malformed, not
/// a whole number of bytes, or beyond Int64.
public func parseSize(_ text: some StringProtocol) -> Int64? {
    let (number, unitText) = splitNumber(Substring(text))
    var unit = unitText.lowercased()
    if unit.hasSuffix("ib") {
        unit.removeLast(2)
        guard !unit.isEmpty else { return nil } // "iB" alone is no unit
    } else if unit.hasSuffix("b") {
        unit.removeLast()
    }
    let multiplier: Int64
    if unit.isEmpty {
        multiplier = 1
    } else {
        guard let m = bytesPerUnit.first(where: { $0.unit == unit })?.bytes else { return nil }
        multiplier = m
    }
    guard let bytes = scaleExactly(number, by: UInt64(multiplier)), bytes <= UInt64(Int64.max) else { return nil }
    return Int64(bytes)
}

/// The one number grammar of durations and sizes: ASCII digits with at most
/// one `.`, then the unit (the rest).
private func splitNumber(_ s: Substring) -> (number: Substring, unit: Substring) {
    let end = s.firstIndex { !$0.isASCII || !($0.isNumber || $0 == ".") } ?? s.endIndex
    return (s[..<end], s[end...])
}

/// `number` × `unit`, exactly: nil if malformed, if it overflows, or if the
/// fraction is finer than one unit of the result (`1.5ns`, `0.5` bytes).
private func scaleExactly(_ number: Substring, by unit: UInt64) -> UInt64? {
    let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    let integerText = parts[0]
    let fractionText = parts.count > 1 ? parts[1] : ""
    guard !(integerText.isEmpty && fractionText.isEmpty), !fractionText.contains(".") else { return nil }
    guard let integer = integerText.isEmpty ? 0 : parseUnsigned(integerText),
          case (var total, false) = integer.multipliedReportingOverflow(by: unit)
    else { return nil }

    // Each fraction digit is worth a tenth of the previous one; digits below
    // one unit of the result must be zero. Binary units are not powers of
    // ten: the fraction is exact only when unit × fraction is whole.
    guard !fractionText.isEmpty else { return total }
    guard let fraction = parseUnsigned(fractionText), fractionText.count <= 18 else {
        return fractionText.allSatisfy({ $0 == "0" }) ? total : nil
    }
    var scale: UInt64 = 1
    for _ in 0..<fractionText.count { scale *= 10 }
    guard case (let product, false) = fraction.multipliedReportingOverflow(by: unit), product % scale == 0,
          case (let sum, false) = total.addingReportingOverflow(product / scale) else { return nil }
    total = sum
    return total
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
