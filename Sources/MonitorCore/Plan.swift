// A fault plan: control-file lines and when to write them. Pure: parsed from
// the command line (`--fault LINE --at 2s`, `--after-bytes 64M`,
// `--when REGEX`) or from a plan file, one step per line:
//
//   at 2s: fail writeback ENOSPC path=*.wal
//   after-bytes 64M: stall writeback
//   when /checkpoint done/: release
//   release                      # no trigger: at the start
//
// '#' starts a comment only at the beginning of a line (control lines keep
// theirs: the fault layer strips them).

import FaultRules

public enum PlanTrigger: Sendable, Equatable {
    /// Nanoseconds after the workload starts.
    case at(Int64)
    /// Once the workload (its process tree) has written this many bytes.
    case afterBytes(Int64)
    /// When the workload prints a line matching this regular expression.
    case outputMatches(String)

    public var description: String {
        switch self {
        case .at(let ns): return "at " + formatSeconds(ns)
        case .afterBytes(let b): return "after-bytes \(b)"
        case .outputMatches(let r): return "when /\(r)/"
        }
    }
}

public struct PlanStep: Sendable, Equatable {
    public var trigger: PlanTrigger
    /// The line written to MNT/.faultfs/control.
    public var line: String
    public init(_ trigger: PlanTrigger, _ line: String) { self.trigger = trigger; self.line = line }
    public var description: String { trigger.description + ": " + line }
}

public struct PlanError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum Plan {
    /// Reads `--fault`, `--at`, `--after-bytes`, `--when` from a raw argument
    /// list (in order, up to "--"): each trigger applies to the latest
    /// `--fault`; a fault without a trigger happens at the start. Both
    /// `--opt value` and `--opt=value` are understood; other arguments are
    /// skipped (with their value when `valued` names them).
    /// `blockMode`: the lines are disk rules for a block-mode run (`sectors=`,
    /// `region=`, `file=`, ops `flush`, `discard`), checked as `faultfs ctl` rewrites them.
    public static func fromArguments(_ args: [String], valued: Set<String> = [], blockMode: Bool = false) throws(PlanError) -> [PlanStep] {
        var steps: [PlanStep] = []
        var current: String?
        var triggered = false
        func flush() { if let c = current, !triggered { steps.append(PlanStep(.at(0), c)) } }
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--" { break }
            var name = a, value: String?
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                name = String(a[..<eq]); value = String(a[a.index(after: eq)...])
            }
            let known = ["--fault", "--at", "--after-bytes", "--when"]
            guard known.contains(name) else {
                if valued.contains(name) && value == nil { i += 1 }
                i += 1
                continue
            }
            if value == nil {
                guard i + 1 < args.count else { throw PlanError("\(name) needs a value") }
                value = args[i + 1]
                i += 1
            }
            i += 1
            let v = value!
            if name == "--fault" {
                flush()
                try checkControlLine(v, origin: "--fault", blockMode: blockMode)
                current = v; triggered = false
                continue
            }
            guard let c = current else { throw PlanError("\(name) \(v) comes before any --fault") }
            steps.append(PlanStep(try trigger(name.dropFirst(2), v), c))
            triggered = true
        }
        flush()
        return steps
    }

    /// Parses a plan file (see the top of this file).
    public static func parse(_ text: String, blockMode: Bool = false) throws(PlanError) -> [PlanStep] {
        var steps: [PlanStep] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            do throws(PlanError) {
                let step = try parseLine(line)
                try checkControlLine(step.line, origin: nil, blockMode: blockMode)
                steps.append(step)
            } catch {
                throw PlanError("plan line \(n + 1): \(error.description)")
            }
        }
        return steps
    }

    /// Parses `line` with the control language's own parser, so that a run
    /// refuses a bad step before it mounts or starts anything (the daemon
    /// would refuse it only when its time comes).
    static func checkControlLine(_ line: String, origin: String?, blockMode: Bool = false) throws(PlanError) {
        var daemonLine = line
        if blockMode {
            // What the daemon will see, with a stand-in for the ranges that
            // `faultfs ctl` resolves on the mounted file system.
            do throws(BlockRuleError) {
                let request = try BlockRuleRewriter.parse(line)
                let selected = request.sectors != nil || request.region != nil || request.fileGlob != nil
                daemonLine = BlockRuleRewriter.line(request, imageName: "disk.img", ranges: selected ? ByteRangeSet([(0, 512)]) : nil)
            } catch {
                throw PlanError((origin.map { $0 + " " } ?? "") + "'\(line)': \(error.description)")
            }
        }
        if case .failure(let error) = parseControl(daemonLine) {
            throw PlanError((origin.map { $0 + " " } ?? "") + "'\(line)': \(error.description)")
        }
    }

    static func parseLine(_ line: String) throws(PlanError) -> PlanStep {
        for word in ["at", "after-bytes"] where line.hasPrefix(word + " ") {
            let rest = line.dropFirst(word.count + 1)
            guard let colon = rest.firstIndex(of: ":") else { throw PlanError("expected '\(word) VALUE: LINE'") }
            let value = rest[..<colon].trimmingSpaces()
            let body = rest[rest.index(after: colon)...].trimmingSpaces()
            guard !body.isEmpty else { throw PlanError("no control line after '\(word) \(value):'") }
            return PlanStep(try trigger(Substring(word), value), body)
        }
        if line.hasPrefix("when /") {
            let rest = line.dropFirst(6)
            guard let close = rest.firstRange(of: "/:") else { throw PlanError("expected 'when /REGEX/: LINE'") }
            let regex = String(rest[..<close.lowerBound])
            let body = rest[close.upperBound...].trimmingSpaces()
            guard !body.isEmpty else { throw PlanError("no control line after 'when /\(regex)/:'") }
            return PlanStep(try trigger("when", regex), body)
        }
        return PlanStep(.at(0), line)
    }

    static func trigger(_ kind: Substring, _ value: String) throws(PlanError) -> PlanTrigger {
        switch kind {
        case "at":
            guard let ns = parseDuration(value) else { throw PlanError("bad time '\(value)' (examples: 2s, 500ms, 1.5s, 1m)") }
            return .at(Int64(ns))
        case "after-bytes":
            guard let b = parseSize(value) else { throw PlanError("bad size '\(value)' (examples: 4096, 64M, 1G)") }
            return .afterBytes(b)
        default:
            guard (try? Regex(value)) != nil else { throw PlanError("bad regular expression '\(value)'") }
            return .outputMatches(value)
        }
    }
}

/// ns → "2s", "1.5s", "250ms".
public func formatSeconds(_ ns: Int64) -> String {
    if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
    if ns % 1_000_000 == 0, ns < 1_000_000_000 { return "\(ns / 1_000_000)ms" }
    return formatFixed(Double(ns) / 1e9, 3) + "s"
}
