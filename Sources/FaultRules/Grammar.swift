// The control language: one command per line.
//
//   ACTION OPS [ERRNO|DURATION] [key=value ...]   add a rule (see Rule)
//   clear [ID] | release [ID] | capacity SIZE|off | reset-counters
//   crash [torn] [seed=N] [sector=512|4096]
//
// `#` starts a comment anywhere on a line; blank lines are ignored. Keywords
// (commands, ops, keys, errno names, units) are case-insensitive; values
// (ids, paths, comm) are not. Columns count Unicode scalars from 1.

public enum ControlCommand: Sendable, Equatable {
    case add(Rule)
    case clear(id: String?)      // nil: every rule
    case release(id: String?)    // nil: every stalled request
    case capacity(bytes: Int64?) // nil: `capacity off`
    case resetCounters
    case crash(CrashRequest)     // power loss (a mount with -o crashsim)
}

public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based, within the text that was parsed (one write to the control file).
    public let line: Int
    /// 1-based, in Unicode scalars.
    public let column: Int
    /// What is wrong, naming the offending token and what was expected.
    public let message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "line \(line), column \(column): \(message)" }

    /// `description` as the control file shows it: control bytes escaped and
    /// cut to 200 characters (a refused line may be a megabyte of anything).
    public var shownText: String { printableExcerpt(description, limit: 200) }
}

/// `text` with control characters escaped (`\n`, `\t`, `\u{1b}`) and cut to
/// `limit` characters, saying how many more there were.
public func printableExcerpt(_ text: String, limit: Int) -> String {
    var out = ""
    var shown = 0
    var scalars = text.unicodeScalars.makeIterator()
    while let scalar = scalars.next() {
        guard shown < limit else {
            var more = 1
            while scalars.next() != nil { more += 1 }
            return out + "... (\(more) more characters)"
        }
        switch scalar {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case _ where scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value):
            out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
        shown += 1
    }
    return out
}

/// Parses every line of `text`; the first error refuses the whole text.
public func parseControl(_ text: String) -> Result<[ControlCommand], ParseError> {
    parseLocatedControl(text).map { $0.map(\.command) }
}

/// The first `crash` command of `text` and where it is (line, column), if
/// the text parses and has one: the control file checks it may crash before
/// anything of the text is applied.
public func firstCrash(in text: String) -> (request: CrashRequest, line: Int, column: Int)? {
    guard case .success(let commands) = parseLocatedControl(text) else { return nil }
    for located in commands {
        if case .crash(let request) = located.command { return (request, located.line, located.idColumn) }
    }
    return nil
}

/// A command and where its id is (or would be), so that the engine can point
/// at it when the command fails to apply (duplicate id, unknown id).
struct LocatedCommand {
    var command: ControlCommand
    var line: Int
    var idColumn: Int
}

func parseLocatedControl(_ text: String) -> Result<[LocatedCommand], ParseError> {
    // Split by scalars, not Characters: "\r\n" is a single Character.
    let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
    var commands: [LocatedCommand] = []
    for (index, line) in lines.enumerated() {
        var parser = LineParser(line: Substring(line), number: index + 1)
        do {
            if let command = try parser.parseCommand() { commands.append(command) }
        } catch {
            return .failure(error)
        }
    }
    return .success(commands)
}

// MARK: - Tokens

struct Token {
    let text: Substring
    /// 1-based column of the token's first scalar.
    let column: Int

    /// The column just past the token.
    var endColumn: Int { column + text.unicodeScalars.count }

    /// The part after `offset` scalars, with its own column.
    func dropFirst(_ offset: Int) -> Token {
        Token(text: Substring(text.unicodeScalars.dropFirst(offset)), column: column + offset)
    }
}

/// Splits a line into whitespace-separated tokens, up to a `#`.
func tokenize(_ line: Substring) -> [Token] {
    var tokens: [Token] = []
    var start: (index: String.Index, column: Int)? = nil
    var column = 1
    let scalars = line.unicodeScalars
    func finishToken(at end: String.Index) {
        if let start { tokens.append(Token(text: Substring(scalars[start.index..<end]), column: start.column)) }
        start = nil
    }
    var index = scalars.startIndex
    while index < scalars.endIndex, scalars[index] != "#" {
        if scalars[index].properties.isWhitespace {
            finishToken(at: index)
        } else if start == nil {
            start = (index, column)
        }
        index = scalars.index(after: index)
        column += 1
    }
    finishToken(at: index)
    return tokens
}

// MARK: - Vocabulary

/// The words that add a rule (`FaultAction.name`s); block mode rewrites these lines.
public let ruleActionWords = ["fail", "delay", "stall", "drop", "short", "corrupt"]
private let ruleActions = ruleActionWords
private let commandWords = ruleActions + ["clear", "release", "capacity", "reset-counters", "crash"]
private let ruleKeys = ["id", "path", "offset", "ranges", "comm", "pid", "after", "every", "count",
                        "prob", "seed", "timeout", "bytes", "pattern"]
private let knownOpWords = OpSet.vocabulary.map(\.word).joined(separator: ", ")

private let expectedErrno = "an errno name such as ENOSPC or EIO, or a number in 1...511"
private let expectedDuration = "a number and a unit (ns, us, ms, s, m, h), such as 200ms or 1.5s"
private let expectedSize = "a size such as 4096, 512K, 64M or 2GiB"
private let expectedPattern = CorruptionPattern.allCases.map(\.rawValue).joined(separator: ", ")
/// The ops whose requests carry data that `corrupt` can change.
private let corruptibleOps = OpSet.write.union(.of(.read))

/// Linux truncates process names to 15 bytes (TASK_COMM_LEN - 1).
private let maxCommBytes = 15

func isValidID(_ id: some StringProtocol) -> Bool {
    !id.isEmpty && id.utf8.allSatisfy { byte in
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}

private func quoted(_ token: Token) -> String { "\"\(token.text)\"" }

// MARK: - Parser

/// Parses one line. Each `parse...` method consumes tokens and either returns
/// a value or throws an error pointing at the offending token.
struct LineParser {
    private let tokens: [Token]
    private let number: Int
    private var position = 0

    init(line: Substring, number: Int) {
        self.tokens = tokenize(line)
        self.number = number
    }

    private func error(at column: Int, _ message: String) -> ParseError {
        ParseError(line: number, column: column, message: message)
    }

    private func peek() -> Token? {
        position < tokens.count ? tokens[position] : nil
    }

    private mutating func next() -> Token? {
        guard position < tokens.count else { return nil }
        defer { position += 1 }
        return tokens[position]
    }

    /// The next token, or an error just past the previous one saying what is missing.
    private mutating func require(_ what: String, after previous: Token) throws(ParseError) -> Token {
        guard let token = next() else {
            throw error(at: previous.endColumn, "missing \(what) after \(quoted(previous))")
        }
        return token
    }

    private mutating func expectEnd(after previous: Token) throws(ParseError) {
        if let extra = next() {
            throw error(at: extra.column, "unexpected \(quoted(extra)) after \(quoted(previous)); expected end of line")
        }
    }

    /// Nil for a blank or comment-only line.
    mutating func parseCommand() throws(ParseError) -> LocatedCommand? {
        guard let first = next() else { return nil }
        let word = first.text.lowercased()
        switch word {
        case "clear", "release":
            let id = try parseOptionalID(after: first)
            let command: ControlCommand = word == "clear" ? .clear(id: id.value) : .release(id: id.value)
            return LocatedCommand(command: command, line: number, idColumn: id.column)
        case "capacity":
            let size = try require("size (\(expectedSize), or off)", after: first)
            try expectEnd(after: size)
            let bytes: Int64?
            if size.text.lowercased() == "off" {
                bytes = nil
            } else if let parsed = parseSize(size.text) {
                bytes = parsed
            } else {
                throw error(at: size.column, "bad capacity \(quoted(size)); expected \(expectedSize), or off")
            }
            return LocatedCommand(command: .capacity(bytes: bytes), line: number, idColumn: first.column)
        case "reset-counters":
            try expectEnd(after: first)
            return LocatedCommand(command: .resetCounters, line: number, idColumn: first.column)
        case "crash":
            return LocatedCommand(command: .crash(try parseCrash()), line: number, idColumn: first.column)
        case _ where ruleActions.contains(word):
            return try parseRule(action: first)
        default:
            throw error(at: first.column, "unknown command \(quoted(first)); expected one of \(commandWords.joined(separator: ", "))")
        }
    }

    /// `crash [torn] [seed=N] [sector=512|4096]`, after the word `crash`.
    private mutating func parseCrash() throws(ParseError) -> CrashRequest {
        var request = CrashRequest()
        var seen: [String: Token] = [:]
        let expected = "expected torn, seed=N or sector=512|4096"
        while let token = next() {
            let parts = token.text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0].lowercased()
            guard ["torn", "seed", "sector"].contains(key) else {
                throw error(at: token.column, "unexpected \(quoted(token)) after crash; \(expected)")
            }
            guard seen[key] == nil else {
                throw error(at: token.column, "repeated \"\(parts[0])\"; each may appear once")
            }
            seen[key] = token
            let value = token.dropFirst(parts[0].unicodeScalars.count + 1)
            switch key {
            case "torn":
                guard parts.count == 1 else { throw error(at: token.column, "torn takes no value; \(expected)") }
                request.torn = true
            case "seed":
                guard parts.count == 2 else { throw error(at: token.column, "missing value in \(quoted(token)); expected seed=N, N a whole number 0 or more") }
                request.seed = try parseNumber(value, "seed", in: 0...UInt64.max)
            default:
                guard parts.count == 2, let size = parseUnsigned(value.text), CrashRequest.sectorSizes.contains(where: { UInt64($0) == size }) else {
                    throw error(at: parts.count == 2 ? value.column : token.column,
                                "bad sector \(quoted(parts.count == 2 ? value : token)); expected sector=512 or sector=4096")
                }
                request.sectorSize = Int(size)
            }
        }
        if let sector = seen["sector"], !request.torn {
            throw error(at: sector.column, "sector= only applies together with torn (crash torn sector=512)")
        }
        return request
    }

    private mutating func parseOptionalID(after command: Token) throws(ParseError) -> (value: String?, column: Int) {
        guard let token = next() else { return (nil, command.column) }
        guard isValidID(token.text) else {
            throw error(at: token.column, "bad id \(quoted(token)); expected letters, digits, _ . or -")
        }
        try expectEnd(after: token)
        return (String(token.text), token.column)
    }

    // MARK: Rules

    /// The ops list as written: each word with its token, for error messages.
    private typealias OpWord = (ops: OpSet, token: Token)

    private mutating func parseRule(action actionToken: Token) throws(ParseError) -> LocatedCommand {
        let actionWord = actionToken.text.lowercased()
        var previous = actionToken

        // `delay OPS DURATION` (canonical), or `delay DURATION OPS`.
        var delay: UInt64 = 0
        var delayFound = false
        if actionWord == "delay", let token = peek(), token.text.first?.isNumber == true {
            delay = try parsePositiveDuration(next()!)
            delayFound = true
            previous = token
        }

        let opsToken = try require("operations (one or more of \(knownOpWords), comma-separated)", after: previous)
        let opList = try parseOps(opsToken)
        previous = opsToken

        if actionWord == "delay" && !delayFound {
            let token = try require("duration (\(expectedDuration))", after: previous)
            delay = try parsePositiveDuration(token)
            previous = token
        }

        var errno: Int32 = 0
        if actionWord == "fail" {
            guard let token = next(), !token.text.contains("=") else {
                throw error(at: previous.endColumn, "missing errno after \(quoted(previous)); fail needs \(expectedErrno)")
            }
            errno = try parseErrno(token)
        }

        var rule = Rule(action: .drop, ops: opList.reduce(OpSet()) { $0.union($1.ops) })
        var seen: [String: Token] = [:]   // key → its token, for repeats and later checks
        var timeout: UInt64?
        var bytes: Int64?
        var pattern = CorruptionPattern.flip
        var idColumn = actionToken.column
        while let token = next() {
            guard let equals = token.text.unicodeScalars.firstIndex(of: "=") else {
                throw unexpectedWord(token, action: actionWord)
            }
            let keyText = Substring(token.text.unicodeScalars[..<equals])
            let key = keyText.lowercased()
            let value = token.dropFirst(keyText.unicodeScalars.count + 1)
            guard ruleKeys.contains(key) else {
                throw error(at: token.column, "unknown key \"\(keyText)\"; expected one of \(ruleKeys.joined(separator: ", "))")
            }
            guard seen[key] == nil else {
                throw error(at: token.column, "repeated key \"\(keyText)\"; each key may appear once")
            }
            seen[key] = token
            switch key {
            case "id":
                guard isValidID(value.text) else {
                    throw error(at: value.column, "bad id \(quoted(value)); expected letters, digits, _ . or -")
                }
                rule.id = String(value.text)
                idColumn = value.column
            case "path":
                guard let glob = PathGlob(String(value.text)) else {
                    throw error(at: value.column, "bad path pattern \(quoted(value)); expected names separated by /, with * and ? inside a name and ** only as a whole name, such as *.wal or pg_wal/**")
                }
                rule.path = glob
            case "offset": rule.offsetRange = try parseByteRange(value)
            case "ranges":
                guard let set = ByteRangeSet.parse(value.text) else {
                    throw error(at: value.column, "bad ranges \(quoted(value)); expected A-B,C-D,... with A < B (sizes), or none")
                }
                rule.byteRanges = set
            case "comm":
                guard !value.text.isEmpty, value.text.utf8.count <= maxCommBytes else {
                    throw error(at: value.column, "bad comm \(quoted(value)); expected a process name of 1 to \(maxCommBytes) bytes")
                }
                rule.comm = String(value.text)
            case "pid": rule.pid = Int32(try parseNumber(value, "pid", in: 1...UInt64(Int32.max)))
            case "after": rule.after = try parseNumber(value, "after", in: 0...UInt64.max)
            case "every": rule.every = try parseNumber(value, "every", in: 1...UInt64.max)
            case "count": rule.count = try parseNumber(value, "count", in: 1...UInt64.max)
            case "seed": rule.seed = try parseNumber(value, "seed", in: 0...UInt64.max)
            case "prob": rule.probability = try parseProbability(value)
            case "timeout": timeout = try parsePositiveDuration(value)
            case "bytes":
                guard let size = parseSize(value.text) else {
                    throw error(at: value.column, "bad bytes \(quoted(value)); expected \(expectedSize)")
                }
                guard size > 0 || actionWord != "corrupt" else {
                    throw error(at: value.column, "bad bytes \(quoted(value)); corrupt changes 1 or more bytes")
                }
                bytes = size
            case "pattern":
                guard let named = CorruptionPattern(rawValue: value.text.lowercased()) else {
                    throw error(at: value.column, "bad pattern \(quoted(value)); expected one of \(expectedPattern)")
                }
                pattern = named
            default:
                preconditionFailure("key \(key) is in ruleKeys but not handled")
            }
        }

        // Checks that involve more than one part of the line.
        if let timeoutToken = seen["timeout"], actionWord != "stall" {
            throw error(at: timeoutToken.column, "timeout= only applies to stall, not \(actionWord)")
        }
        if let bytesToken = seen["bytes"], actionWord != "short" && actionWord != "corrupt" {
            throw error(at: bytesToken.column, "bytes= only applies to short and corrupt, not \(actionWord)")
        }
        if let patternToken = seen["pattern"], actionWord != "corrupt" {
            throw error(at: patternToken.column, "pattern= only applies to corrupt, not \(actionWord)")
        }
        // A corrupt rule also draws from its generator which bytes to change.
        if let seedToken = seen["seed"], rule.probability == nil, actionWord != "corrupt" {
            throw error(at: seedToken.column, "seed= only applies together with prob=, or to corrupt")
        }
        if actionWord == "drop" || actionWord == "short",
           let word = opList.first(where: { !OpSet.write.isSuperset(of: $0.ops) }) {
            throw error(at: word.token.column, "\(actionWord) only applies to writes; \(quoted(word.token)) is not one (expected write, writeback or syncwrite)")
        }
        if actionWord == "corrupt", let word = opList.first(where: { !corruptibleOps.isSuperset(of: $0.ops) }) {
            let what = word.ops.isDisjoint(with: corruptibleOps) ? "does not" : "names ops that do not"
            throw error(at: word.token.column, "corrupt only applies to ops that carry data (read, write, writeback, syncwrite); \(quoted(word.token)) \(what)")
        }

        switch actionWord {
        case "fail": rule.action = .fail(errno: errno)
        case "delay": rule.action = .delay(nanoseconds: delay)
        case "stall": rule.action = .stall(timeoutNanoseconds: timeout)
        case "drop": rule.action = .drop
        case "corrupt": rule.action = .corrupt(bytes: bytes ?? Corruption.defaultBytes, pattern: pattern)
        default: rule.action = .short(bytes: bytes)
        }
        return LocatedCommand(command: .add(rule), line: number, idColumn: idColumn)
    }

    /// A word without `=` after the ops (and errno): say why it is wrong.
    private func unexpectedWord(_ token: Token, action: String) -> ParseError {
        if action != "fail", errnoValue(String(token.text)) != nil || parseUnsigned(token.text) != nil {
            return error(at: token.column, "unexpected errno \(quoted(token)): only fail takes an errno, not \(action); expected key=value")
        }
        return error(at: token.column, "unexpected \(quoted(token)); expected key=value with a key among \(ruleKeys.joined(separator: ", "))")
    }

    private func parseOps(_ token: Token) throws(ParseError) -> [OpWord] {
        var words: [OpWord] = []
        var offset = 0
        for part in token.text.unicodeScalars.split(separator: ",", omittingEmptySubsequences: false) {
            let word = token.dropFirst(offset)
            let text = Substring(part)
            offset += part.count + 1
            guard !text.isEmpty else {
                throw error(at: word.column, "empty operation in \(quoted(token)); expected one of \(knownOpWords)")
            }
            guard let ops = OpSet.named(text) else {
                throw error(at: word.column, "unknown operation \"\(text)\"; expected one of \(knownOpWords)")
            }
            words.append((ops, Token(text: text, column: word.column)))
        }
        return words
    }

    private func parseErrno(_ token: Token) throws(ParseError) -> Int32 {
        if let named = errnoValue(String(token.text)) { return named }
        let isNegative = token.text.first == "-"
        guard let magnitude = parseUnsigned(isNegative ? token.text.dropFirst() : token.text) else {
            throw error(at: token.column, "unknown errno \(quoted(token)); expected \(expectedErrno)")
        }
        let range = UInt64(validErrnoRange.lowerBound)...UInt64(validErrnoRange.upperBound)
        guard !isNegative, range.contains(magnitude) else {
            throw error(at: token.column, "errno \(token.text) is out of range; expected \(expectedErrno) (the kernel rejects other replies)")
        }
        return Int32(magnitude)
    }

    private func parsePositiveDuration(_ token: Token) throws(ParseError) -> UInt64 {
        guard let ns = parseDuration(token.text), ns > 0 else {
            throw error(at: token.column, "bad duration \(quoted(token)); expected \(expectedDuration)")
        }
        return ns
    }

    private func parseNumber(_ token: Token, _ key: String, in range: ClosedRange<UInt64>) throws(ParseError) -> UInt64 {
        guard let value = parseUnsigned(token.text), range.contains(value) else {
            let bounds = range.upperBound == UInt64.max ? "\(range.lowerBound) or more" : "in \(range)"
            throw error(at: token.column, "bad \(key) \(quoted(token)); expected a whole number \(bounds)")
        }
        return value
    }

    /// `0 < P <= 1`, written as a decimal number, optionally with an exponent
    /// (the form Swift prints small probabilities in, such as 1e-05).
    private func parseProbability(_ token: Token) throws(ParseError) -> Double {
        let isDecimal = !token.text.isEmpty && token.text.allSatisfy {
            $0.isASCII && ($0.isNumber || $0 == "." || $0 == "e" || $0 == "E" || $0 == "-" || $0 == "+")
        }
        guard isDecimal, let p = Double(String(token.text)), p > 0, p <= 1 else {
            throw error(at: token.column, "bad prob \(quoted(token)); expected a number P with 0 < P <= 1, such as 0.25")
        }
        return p
    }

    /// `A-B` (B > A) or open-ended `A-`, both sizes.
    private func parseByteRange(_ token: Token) throws(ParseError) -> ByteRange {
        let bounds = token.text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        let fail = error(at: token.column, "bad offset range \(quoted(token)); expected A-B with A < B, or A- for everything from A on (A, B: \(expectedSize))")
        guard bounds.count == 2, let lower = parseSize(bounds[0]) else { throw fail }
        if bounds[1].isEmpty { return ByteRange(lower, nil) }
        guard let upper = parseSize(bounds[1]), upper > lower else { throw fail }
        return ByteRange(lower, upper)
    }
}
