// Silent corruption: which bytes of a request's data a `corrupt` rule
// changes, and to what. Pure: the fault layer hands it the data in memory
// and a seed the rule drew from its generator, so the same `seed=` and the
// same requests change the same bytes in the same way.

/// How a `corrupt` rule changes a byte it chose (`pattern=`).
public enum CorruptionPattern: String, Sendable, CaseIterable {
    /// Invert every bit.
    case flip
    /// Set to 0. Only bytes that are not 0 already are chosen, so every
    /// chosen byte changes; data with fewer such bytes than asked changes
    /// in all of them (and the count says so).
    case zero
    /// Replace with a random value other than the byte's own.
    case random
}

public enum Corruption {
    /// `bytes=` when not given.
    public static let defaultBytes: Int64 = 1
    /// How many changed bytes an event names by offset.
    public static let shownPositions = 8

    public struct Outcome: Sendable, Equatable {
        /// How many bytes changed: `bytes`, or fewer when the data has fewer
        /// candidates (all of them then changed).
        public var changed: Int
        /// Where the first `shownPositions` changed bytes are in the data, ascending.
        public var firstPositions: [Int]

        public init(changed: Int, firstPositions: [Int]) {
            self.changed = changed
            self.firstPositions = firstPositions
        }
    }

    /// Changes `bytes` bytes of `data`, chosen uniformly among its candidates
    /// (every byte; for `zero`, the bytes that are not 0) with a generator
    /// seeded by `seed`. More bytes than candidates changes all of them.
    public static func apply(to data: UnsafeMutableRawBufferPointer, bytes: Int64,
                             pattern: CorruptionPattern, seed: UInt64) -> Outcome {
        var random = SplitMix64(seed: seed)
        let candidates = pattern == .zero ? data.count(where: { $0 != 0 }) : data.count
        let wanted = Int(clamping: max(0, min(bytes, Int64(candidates))))
        // Sample the fewer of the chosen and the spared, as ranks among the
        // candidates (Floyd's algorithm: `sampleSize` draws, no retries).
        let sampleIsSpared = wanted > candidates / 2
        let sampleSize = sampleIsSpared ? candidates - wanted : wanted
        var sample = Set<Int>(minimumCapacity: sampleSize)
        for j in (candidates - sampleSize)..<candidates {
            let t = Int(random.below(UInt64(j + 1)))
            if !sample.insert(t).inserted { sample.insert(j) }
        }
        let ranks = sample.sorted()

        var outcome = Outcome(changed: 0, firstPositions: [])
        var rank = 0, nextSampled = 0
        for position in data.indices {
            let old = data[position]
            if pattern == .zero && old == 0 { continue }
            let sampled = nextSampled < ranks.count && ranks[nextSampled] == rank
            if sampled { nextSampled += 1 }
            rank += 1
            guard sampled != sampleIsSpared else { continue }
            switch pattern {
            case .flip: data[position] = ~old
            case .zero: data[position] = 0
            case .random: data[position] = old ^ UInt8(1 + random.below(255))
            }
            outcome.changed += 1
            if outcome.firstPositions.count < shownPositions { outcome.firstPositions.append(position) }
        }
        return outcome
    }
}
