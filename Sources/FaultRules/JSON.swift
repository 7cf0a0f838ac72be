// The project's JSON, without Foundation: string literals for writers, and a
// small strict reader for the one-line objects faultfs writes (events,
// status). Strict means RFC 8259 exactly: no trailing commas, no comments, no
// leading zeros, no unpaired surrogates, no duplicate keys, nothing after the
// value but white space. Depth is capped, since the files are shallow.

/// A JSON value. Numbers keep their text, so an integer is read back exactly
/// (a Double cannot hold every Int64 the event log writes).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in file order.
    case object([(key: String, value: JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The member `key` of an object; nil for a missing key or a non-object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var isNull: Bool { self == .null }
    public var array: [JSONValue]? { if case .array(let a) = self { a } else { nil } }

    /// The number as an integer of type `T`: nil if it is not a number, has a
    /// fraction or exponent, or does not fit.
    public func integer<T: FixedWidthInteger>(as _: T.Type = T.self) -> T? {
        guard case .number(let text) = self else { return nil }
        let negative = text.hasPrefix("-")
        guard let magnitude = parseUnsigned(negative ? text.dropFirst() : Substring(text)) else { return nil }
        guard negative else { return T(exactly: magnitude) }
        // -magnitude, which fits only in a signed type; T.min has no positive twin.
        guard T.isSigned, magnitude > 0 else { return magnitude == 0 ? 0 : nil }
        if let positive = T(exactly: magnitude) { return 0 - positive }
        return T(exactly: magnitude - 1).flatMap { $0 == T.max ? T.min : nil }
    }

    public var int64: Int64? { integer(as: Int64.self) }

    /// The number as a Double (any JSON number).
    public var double: Double? {
        guard case .number(let text) = self else { return nil }
        return Double(text)
    }
}

/// Why a text is not JSON, and the byte offset where the reader gave up.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// The largest nesting of arrays and objects the reader accepts.
private let maximumDepth = 8

/// Parses `text` as exactly one JSON value, optionally surrounded by white
/// space (so a line with its "\n" parses).
public func parseJSON(_ text: String) throws(JSONError) -> JSONValue {
    var reader = JSONReader(bytes: Array(text.utf8))
    reader.skipWhiteSpace()
    let value = try reader.value(depth: 0)
    reader.skipWhiteSpace()
    guard reader.position == reader.bytes.count else { throw reader.error("text after the value") }
    return value
}

private struct JSONReader {
    let bytes: [UInt8]
    var position = 0

    func error(_ reason: String) -> JSONError { JSONError(offset: position, reason: reason) }

    var next: UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipWhiteSpace() {
        while let b = next, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { position += 1 }
    }

    mutating func expect(_ literal: String) throws(JSONError) {
        for b in literal.utf8 {
            guard next == b else { throw error("expected \(literal)") }
            position += 1
        }
    }

    mutating func value(depth: Int) throws(JSONError) -> JSONValue {
        guard let b = next else { throw error("unexpected end") }
        switch b {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw error("unexpected character")
        }
    }

    mutating func object(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= maximumDepth else { throw error("nested too deep") }
        position += 1 // {
        var members: [(key: String, value: JSONValue)] = []
        skipWhiteSpace()
        if next == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhiteSpace()
            guard next == UInt8(ascii: "\"") else { throw error("expected a key") }
            let keyStart = position
            let key = try string()
            guard !members.contains(where: { $0.key == key }) else {
                throw JSONError(offset: keyStart, reason: "duplicate key \(key)")
            }
            skipWhiteSpace()
            try expect(":")
            skipWhiteSpace()
            members.append((key, try value(depth: depth)))
            skipWhiteSpace()
            guard let b = next else { throw error("unexpected end") }
            position += 1
            if b == UInt8(ascii: "}") { return .object(members) }
            guard b == UInt8(ascii: ",") else { position -= 1; throw error("expected , or }") }
        }
    }

    mutating func array(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= maximumDepth else { throw error("nested too deep") }
        position += 1 // [
        var elements: [JSONValue] = []
        skipWhiteSpace()
        if next == UInt8(ascii: "]") { position += 1; return .array(elements) }
        while true {
            skipWhiteSpace()
            elements.append(try value(depth: depth))
            skipWhiteSpace()
            guard let b = next else { throw error("unexpected end") }
            position += 1
            if b == UInt8(ascii: "]") { return .array(elements) }
            guard b == UInt8(ascii: ",") else { position -= 1; throw error("expected , or ]") }
        }
    }

    /// RFC 8259's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    mutating func number() throws(JSONError) -> String {
        let start = position
        func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
        if next == UInt8(ascii: "-") { position += 1 }
        guard isDigit(next) else { throw error("expected a digit") }
        if next == UInt8(ascii: "0") {
            position += 1
            guard !isDigit(next) else { throw error("leading zero") }
        } else {
            while isDigit(next) { position += 1 }
        }
        if next == UInt8(ascii: ".") {
            position += 1
            guard isDigit(next) else { throw error("expected a digit after .") }
            while isDigit(next) { position += 1 }
        }
        if next == UInt8(ascii: "e") || next == UInt8(ascii: "E") {
            position += 1
            if next == UInt8(ascii: "+") || next == UInt8(ascii: "-") { position += 1 }
            guard isDigit(next) else { throw error("expected a digit in the exponent") }
            while isDigit(next) { position += 1 }
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    mutating func string() throws(JSONError) -> String {
        position += 1 // opening quote
        var out: [UInt8] = []
        while true {
            guard let b = next else { throw error("unterminated string") }
            position += 1
            switch b {
            case UInt8(ascii: "\""):
                // The input came from a String, so its bytes are valid UTF-8.
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = next else { throw error("unterminated string") }
                position += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): out.append(contentsOf: String(try escapedScalar()).utf8)
                default: position -= 1; throw error("unknown escape")
                }
            case 0..<0x20:
                position -= 1
                throw error("control character in string")
            default:
                out.append(b)
            }
        }
    }

    /// After `\u`: four hex digits, and for a high surrogate the `\uDCxx` that
    /// must follow it.
    mutating func escapedScalar() throws(JSONError) -> Unicode.Scalar {
        let first = try hex4()
        if (0xDC00...0xDFFF).contains(first) { throw error("unpaired surrogate") }
        guard (0xD800...0xDBFF).contains(first) else { return Unicode.Scalar(first)! }
        guard next == UInt8(ascii: "\\") else { throw error("unpaired surrogate") }
        position += 1
        guard next == UInt8(ascii: "u") else { throw error("unpaired surrogate") }
        position += 1
        let second = try hex4()
        guard (0xDC00...0xDFFF).contains(second) else { throw error("unpaired surrogate") }
        return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))!
    }

    mutating func hex4() throws(JSONError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let b = next else { throw error("short \\u escape") }
            let digit: UInt8
            switch b {
            case 0x30...0x39: digit = b - 0x30
            case 0x41...0x46: digit = b - 0x41 + 10
            case 0x61...0x66: digit = b - 0x61 + 10
            default: throw error("bad hex digit")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }
}

/// Why a text is not the record (an event line, a status line) its decoder
/// reads. Keys of nested objects are named with a dot ("capacity.limit").
public enum JSONRecordError: Error, Sendable, Equatable, CustomStringConvertible {
    case notJSON(JSONError)
    case notAnObject
    case missingKey(String)
    case unknownKey(String)
    /// The key is there with the wrong type or an out-of-range value.
    case badValue(String)

    public var description: String {
        switch self {
        case .notJSON(let e): "not JSON: \(e)"
        case .notAnObject: "not a JSON object"
        case .missingKey(let k): "no \"\(k)\""
        case .unknownKey(let k): "unknown key \"\(k)\""
        case .badValue(let k): "bad value for \"\(k)\""
        }
    }
}

/// A JSON object read as a record: typed reads of its members, each
/// throwing `JSONRecordError` that names the key.
public struct JSONRecord {
    public let members: [(key: String, value: JSONValue)]
    /// Prepended to keys in errors: "capacity." inside "capacity".
    private let keyPrefix: String

    public init(_ value: JSONValue, keyPrefix: String = "") throws(JSONRecordError) {
        guard case .object(let members) = value else {
            throw keyPrefix.isEmpty ? .notAnObject : .badValue(String(keyPrefix.dropLast()))
        }
        self.members = members
        self.keyPrefix = keyPrefix
    }

    public init(parsing text: String) throws(JSONRecordError) {
        let value: JSONValue
        do { value = try parseJSON(text) } catch { throw .notJSON(error) }
        try self.init(value)
    }

    /// Refuses any key outside `known`, unless `allowed` accepts the member.
    public func refuseOtherKeys(than known: [String],
                                allowing allowed: (String, JSONValue) -> Bool = { _, _ in false }) throws(JSONRecordError) {
        if let other = members.first(where: { !known.contains($0.key) && !allowed($0.key, $0.value) }) {
            throw .unknownKey(keyPrefix + other.key)
        }
    }

    public func value(_ key: String) throws(JSONRecordError) -> JSONValue {
        guard let member = members.first(where: { $0.key == key }) else { throw .missingKey(keyPrefix + key) }
        return member.value
    }

    public func string(_ key: String) throws(JSONRecordError) -> String {
        guard let s = try value(key).string else { throw .badValue(keyPrefix + key) }
        return s
    }

    /// A string or null.
    public func optionalString(_ key: String) throws(JSONRecordError) -> String? {
        let v = try value(key)
        if v.isNull { return nil }
        guard let s = v.string else { throw .badValue(keyPrefix + key) }
        return s
    }

    public func strings(_ key: String) throws(JSONRecordError) -> [String] {
        guard let array = try value(key).array else { throw .badValue(keyPrefix + key) }
        var out: [String] = []
        for element in array {
            guard let s = element.string else { throw .badValue(keyPrefix + key) }
            out.append(s)
        }
        return out
    }

    public func bool(_ key: String) throws(JSONRecordError) -> Bool {
        guard let b = try value(key).bool else { throw .badValue(keyPrefix + key) }
        return b
    }

    /// A whole number of type `T` within `range`.
    public func integer<T: FixedWidthInteger>(_ key: String, in range: ClosedRange<T>) throws(JSONRecordError) -> T {
        guard let n = try value(key).integer(as: T.self), range.contains(n) else { throw .badValue(keyPrefix + key) }
        return n
    }

    /// The nested object `key`.
    public func record(_ key: String) throws(JSONRecordError) -> JSONRecord {
        try JSONRecord(try value(key), keyPrefix: keyPrefix + key + ".")
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped;
/// everything else, non-ASCII included, passes through as UTF-8.
public func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
