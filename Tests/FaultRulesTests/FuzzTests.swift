@testable import FaultRules
import Testing

/// Random and mutated lines: the parser must never crash, and must either
/// accept a line (with a description that parses back to the same rule) or
/// refuse it with an error that points inside the line.
@Suite struct FuzzTests {
    static let alphabet: [Character] = Array("abcdefghijklmnopqrstuvwxyzEIOSNPC0123456789=,-./*?#_ \t") + ["é", "日", "\u{0301}", "\u{00A0}"]
    static let vocabulary = GrammarTests.validLines.flatMap { $0.split(separator: " ").map(String.init) }
        + ["clear", "release", "capacity", "reset-counters", "off", "r1", "prob=", "=", ",", "-", "1e-05", "0x1p-3"]

    struct Random {
        var generator: SplitMix64
        mutating func below(_ n: Int) -> Int { Int(generator.next() % UInt64(n)) }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    }

    static func mutate(_ line: String, _ random: inout Random) -> String {
        var characters = Array(line)
        var tokens = line.split(separator: " ").map(String.init)
        switch random.below(6) {
        case 0 where !characters.isEmpty:  // delete a character
            characters.remove(at: random.below(characters.count))
        case 1:  // insert a character
            characters.insert(random.pick(alphabet), at: random.below(characters.count + 1))
        case 2 where !characters.isEmpty:  // replace a character
            characters[random.below(characters.count)] = random.pick(alphabet)
        case 3 where tokens.count >= 2:  // swap two tokens
            tokens.swapAt(random.below(tokens.count), random.below(tokens.count))
            return tokens.joined(separator: " ")
        case 4:  // insert a known token
            tokens.insert(random.pick(vocabulary), at: random.below(tokens.count + 1))
            return tokens.joined(separator: " ")
        default:  // a line of random known tokens
            return (0...random.below(6)).map { _ in random.pick(vocabulary) }.joined(separator: " ")
        }
        return String(characters)
    }

    @Test func randomAndMutatedLines() {
        var random = Random(generator: SplitMix64(seed: 20240601))
        var accepted = 0
        for _ in 0..<100_000 {
            var line = random.pick(GrammarTests.validLines)
            for _ in 0...random.below(3) { line = Self.mutate(line, &random) }
            switch parseControl(line) {
            case .success(let commands):
                accepted += 1
                for case .add(let rule) in commands {
                    let again = parseControl(rule.description)
                    guard case .success(let reparsed) = again, reparsed == [.add(rule)] else {
                        Issue.record("\(line) → \(rule.description) → \(again)")
                        return
                    }
                }
            case .failure(let error):
                guard error.line == 1, (1...line.unicodeScalars.count + 1).contains(error.column) else {
                    Issue.record("\(line): error outside the line: \(error)")
                    return
                }
            }
        }
        // Both outcomes must be exercised for the test to mean anything.
        #expect(accepted > 1_000)
        #expect(accepted < 99_000)
    }
}
