// Where a chart's marker labels go (plan steps, injected faults), so that
// every one can be read. Pure: positions in, positions out.
//
// Labels sit in rows in a band above the plot ("row 0" is nearest to it).
// A marker's line runs from the plot up to its label's row, and the label
// sits beside the line (right of it, or left of it near the right edge), so
// the line never crosses its own label. Three rules make every label
// readable:
//   1. labels in one row do not overlap;
//   2. a line that climbs to row r crosses rows 0..<r, so no label in those
//      rows may cover its x (else the line would cut through that label);
//   3. every label stays inside the frame (the plot's horizontal extent).
// Rule 2 orders labels: a label covering another marker's x must sit above
// it. Labels are placed in such an order (a topological sort), each on the
// lowest row allowed, which always succeeds unless the order has a cycle. A
// cycle needs a right-hand label covering the line of a left-hand label
// further right, so sides are chosen to avoid that; labels wider than half
// the frame are shortened (the full text stays in the SVG's tooltip).

public enum MarkerLayout {
    /// One label to place: its marker's x and the text's width (px).
    public struct Item: Sendable, Equatable {
        public var x: Double
        public var width: Double
        public init(x: Double, width: Double) { self.x = x; self.width = width }
    }

    public struct Placement: Sendable, Equatable {
        /// 0 is the row nearest the plot.
        public var row: Int
        /// The text box's left edge.
        public var left: Double
        /// Possibly less than asked: the text is then shortened.
        public var width: Double
        public var right: Double { left + width }
        /// The text is right of its marker line (else left of it).
        public var rightOfLine: Bool
    }

    /// Space between a line and its label.
    public static let gap = 3.0
    /// The least horizontal space between a label and another label or a
    /// line (less than `gap`, so a line is never "near" its own label).
    public static let clearance = 2.0
    /// A label is never shortened below this.
    public static let minWidth = 18.0

    /// One placement per item, in the items' order.
    public static func place(_ items: [Item], frame: ClosedRange<Double>) -> [Placement] {
        let frameWidth = frame.upperBound - frame.lowerBound
        // At most half the frame: then every label fits on one side of its line.
        let maxWidth = max(minWidth, frameWidth / 2 - gap - 1)
        var width = items.map { min($0.width, maxWidth) }
        var right = [Bool](repeating: true, count: items.count)
        func box(_ i: Int) -> (left: Double, right: Double) {
            let x = items[i].x
            return right[i] ? (x + gap, x + gap + width[i]) : (x - gap - width[i], x - gap)
        }
        func near(_ x: Double, _ b: (left: Double, right: Double)) -> Bool { x >= b.left - clearance && x <= b.right + clearance }

        // Sides, from the right edge leftwards. A cycle in "must be above"
        // needs a right-hand label covering the line of a left-hand label
        // further right; so a label goes right only if it fits and covers
        // no such line, else left; if it fits neither way, it is shortened.
        var leftHanded: [Int] = []
        for i in items.indices.sorted(by: { items[$0].x > items[$1].x }) {
            let x = items[i].x
            let blocking = leftHanded.map { items[$0].x }.filter { $0 > x && near($0, (x + gap, x + gap + width[i])) }
            if fitsRight(x, width[i], frame) && blocking.isEmpty { continue }
            if fitsLeft(x, width[i], frame) { right[i] = false; leftHanded.append(i); continue }
            // Blocked on the right, too wide for the left: shortened, on the
            // side that leaves more of it.
            let rightWidth = min(width[i], (blocking.min() ?? .infinity) - clearance - 1 - x - gap, frame.upperBound - x - gap)
            let leftWidth = x - gap - frame.lowerBound
            if rightWidth >= minWidth && rightWidth >= leftWidth {
                width[i] = rightWidth
            } else if leftWidth >= minWidth {
                width[i] = leftWidth
                right[i] = false
                leftHanded.append(i)
            } else {
                width[i] = minWidth  // only in a frame narrower than a few labels
            }
        }
        // covers(j, i): j's box is where i's line passes, so j must be above i.
        let (order, stuck) = topologicalOrder(items.count) { j, i in near(items[i].x, box(j)) }
        // Only for frames too narrow for their labels: every label is kept, in x order.
        let fallback = items.indices.sorted { items[$0].x < items[$1].x }
        return assignRows(stuck.isEmpty ? order : fallback, items: items, width: width, right: right, box: box)
    }

    static func fitsRight(_ x: Double, _ w: Double, _ frame: ClosedRange<Double>) -> Bool { x + gap + w <= frame.upperBound }
    static func fitsLeft(_ x: Double, _ w: Double, _ frame: ClosedRange<Double>) -> Bool { x - gap - w >= frame.lowerBound }

    /// In `order`, each label goes on the lowest row that is above every
    /// placed label whose line its box covers, and free in that row. (A
    /// placed label never covers this one's line: the order sees to that.)
    private static func assignRows(_ order: [Int], items: [Item], width: [Double], right: [Bool],
                                   box: (Int) -> (left: Double, right: Double)) -> [Placement] {
        var rows = [Int](repeating: -1, count: items.count)
        var placed: [Int] = []
        for i in order {
            let b = box(i)
            var row = 0
            for j in placed where items[j].x >= b.left - clearance && items[j].x <= b.right + clearance {
                row = max(row, rows[j] + 1)
            }
            while placed.contains(where: { j in
                rows[j] == row && box(j).left < b.right + clearance && b.left < box(j).right + clearance
            }) { row += 1 }
            rows[i] = row
            placed.append(i)
        }
        return items.indices.map { i in Placement(row: rows[i], left: box(i).left, width: width[i], rightOfLine: right[i]) }
    }

    /// Kahn's algorithm on "i before j when covers(j, i)": the order, and
    /// the items it could not reach (on or after a cycle).
    private static func topologicalOrder(_ n: Int, covers: (Int, Int) -> Bool) -> (order: [Int], stuck: [Int]) {
        var indegree = [Int](repeating: 0, count: n)
        var above = [[Int]](repeating: [], count: n)
        for i in 0..<n { for j in 0..<n where i != j && covers(j, i) { above[i].append(j); indegree[j] += 1 } }
        // Deterministic: the same input always gives the same layout.
        var ready = (0..<n).filter { indegree[$0] == 0 }.reversed() as [Int]
        var order: [Int] = []
        while let i = ready.popLast() {
            order.append(i)
            for j in above[i] { indegree[j] -= 1; if indegree[j] == 0 { ready.append(j) } }
        }
        let done = Set(order)
        return (order, (0..<n).filter { !done.contains($0) })
    }
}
