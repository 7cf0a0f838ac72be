@testable import FaultRules
import Testing

/// Request details with fixed answers.
struct FixedDetails: RequestDetails {
    var filePath: String? = nil
    var processName: String? = nil
    var threadGroup: Int32? = nil
    func path() -> String? { filePath }
    func comm() -> String? { processName }
    func processID() -> Int32? { threadGroup }
}

/// Details that must not be asked for: the hot path should not need them.
struct UnaskableDetails: RequestDetails {
    func path() -> String? {
        Issue.record("path() was called")
        return nil
    }
    func comm() -> String? {
        Issue.record("comm() was called")
        return nil
    }
}

/// The single rule a one-line text parses to, or nil (recording why).
func parseRule(_ line: String, sourceLocation: SourceLocation = #_sourceLocation) -> Rule? {
    switch parseControl(line) {
    case .success(let commands):
        guard commands.count == 1, case .add(let rule) = commands[0] else {
            Issue.record("expected one rule from \(line), got \(commands)", sourceLocation: sourceLocation)
            return nil
        }
        return rule
    case .failure(let error):
        Issue.record("\(line): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The parse error for `text`, or nil (recording that it parsed).
func parseFailure(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ParseError? {
    switch parseControl(text) {
    case .success(let commands):
        Issue.record("\(text) parsed to \(commands)", sourceLocation: sourceLocation)
        return nil
    case .failure(let error):
        return error
    }
}

/// An engine with the given rules already applied.
func makeEngine(_ text: String, writebackCache: Bool = true,
            sourceLocation: SourceLocation = #_sourceLocation) -> RuleEngine {
    let engine = RuleEngine(features: MountFeatures(writebackCache: writebackCache))
    if case .failure(let error) = engine.apply(text: text) {
        Issue.record("\(error)", sourceLocation: sourceLocation)
    }
    return engine
}

extension RuleEngine {
    /// Which of `n` identical requests got a fault.
    func selectedIndices(of n: Int, _ info: RequestInfo, _ details: FixedDetails = FixedDetails()) -> [Int] {
        (0..<n).filter { _ in decide(info, details) != nil }
    }
}
