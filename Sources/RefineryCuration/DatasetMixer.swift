import RefineryCore

/// Mixes datasets in stated amounts, deterministically by seed, recording where each row came from.
public struct DatasetMixer: Sendable {
    /// How much of one source goes into the mix.
    public enum Amount: Sendable, Equatable {
        /// Exactly this many rows.
        case count(Int)
        /// This many times the size of the first source (the base dataset): 0.5 adds half as many
        /// rows as the base has, 2 twice as many.
        case ratio(Double)
        /// Every row once.
        case all
    }

    /// One source: its rows (JSON objects as text), a name for the lineage, and its amount.
    public struct Source: Sendable {
        public var name: String
        public var rows: [String]
        public var amount: Amount

        public init(name: String, rows: [String], amount: Amount) {
            self.name = name
            self.rows = rows
            self.amount = amount
        }
    }

    public var seed: UInt64

    public init(seed: UInt64 = 42) { self.seed = seed }

    /// The most rows one source may contribute: a typo (an extra digit, a ratio of 1e9) must not
    /// fill the disk or the memory.
    public static let maximumRows = 50_000_000

    /// How many rows `amount` takes from a source, given the base's size; refuses negative, not
    /// finite or oversized amounts.
    public static func count(_ amount: Amount, available: Int, base: Int) throws -> Int {
        let wanted: Double
        switch amount {
        case let .count(n): wanted = Double(n)
        case let .ratio(r): wanted = (r * Double(base)).rounded()
        case .all: wanted = Double(available)
        }
        guard wanted.isFinite, wanted >= 0, wanted <= Double(maximumRows) else {
            throw CoreError("the amount \(amount) asks for \(wanted) rows; it must be between 0 and \(maximumRows)")
        }
        return Int(wanted)
    }

    /// The mixed rows, shuffled by the seed, each with `lineage.source` set to its source's name.
    /// A source asked for more rows than it has is repeated whole, then sampled (upsampling); one
    /// asked for fewer is sampled without repetition. Returns the rows and the count per source.
    public func mix(_ sources: [Source]) throws -> (rows: [String], counts: [(String, Int)]) {
        var generator = SplitMix64(seed: seed)
        let base = sources.first?.rows.count ?? 0
        var mixed: [String] = [], counts: [(String, Int)] = []
        for source in sources {
            let picked = try Self.pick(source, base: base, generator: &generator)
            mixed += picked
            counts.append((source.name, picked.count))
        }
        for i in stride(from: mixed.count - 1, to: 0, by: -1) {
            mixed.swapAt(i, Int(generator.next() % UInt64(i + 1)))
        }
        return (mixed, counts)
    }

    /// The rows taken from `source` (in its order, each tagged with `lineage.source`): repeated
    /// whole while more are wanted than it has, then sampled without repetition.
    public static func pick(_ source: Source, base: Int, generator: inout SplitMix64) throws -> [String] {
        let wanted: Int
        do { wanted = try count(source.amount, available: source.rows.count, base: base) } catch let error as CoreError {
            throw CoreError("\(source.name): \(error.message)")
        }
        guard wanted == 0 || !source.rows.isEmpty else { throw CoreError("\(source.name) has no rows to take \(wanted) from") }
        var picked: [String] = []
        while !source.rows.isEmpty && picked.count + source.rows.count <= wanted { picked += source.rows }
        var rest = Array(source.rows.indices)
        for i in stride(from: rest.count - 1, to: 0, by: -1) {
            rest.swapAt(i, Int(generator.next() % UInt64(i + 1)))
        }
        picked += rest.prefix(wanted - picked.count).sorted().map { source.rows[$0] }
        return try picked.map { try tag($0, source: source.name) }
    }

    /// `row` with `lineage.source` set (its other lineage fields kept).
    static func tag(_ row: String, source: String) throws -> String {
        guard case var .object(fields) = try JSONValue.parse(row) else { throw CoreError("\(source): a row is not a JSON object") }
        var lineage: [(String, JSONValue)] = []
        if let index = fields.firstIndex(where: { $0.0 == "lineage" }) {
            if case let .object(existing) = fields[index].1 { lineage = existing.filter { $0.0 != "source" } }
            fields.remove(at: index)
        }
        lineage.append(("source", .string(source)))
        fields.append(("lineage", .object(lineage)))
        return JSONValue.object(fields).compactText
    }
}
