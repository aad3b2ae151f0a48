import Foundation

/// How far two raters agree on the same items: the share of identical labels and Cohen's kappa
/// (agreement beyond what their label frequencies would give by chance). Items either rater left
/// without a label are not counted.
public struct RaterAgreement: Sendable, Equatable {
    /// Items both raters labelled.
    public var count: Int
    /// Share of those with the same label.
    public var percent: Double
    /// Cohen's kappa; nil when chance agreement is already total (both raters always gave one
    /// and the same label), where kappa is undefined.
    public var kappa: Double?

    /// The agreement of `a` and `b` (labels per item, in the same order); nil when no item has both.
    public init?(_ a: [String?], _ b: [String?]) {
        let pairs = zip(a, b).compactMap { x, y -> (String, String)? in
            guard let x, let y else { return nil }
            return (x, y)
        }
        guard !pairs.isEmpty else { return nil }
        let n = Double(pairs.count)
        let observed = Double(pairs.filter { $0.0 == $0.1 }.count) / n
        var countsA: [String: Double] = [:], countsB: [String: Double] = [:]
        for (x, y) in pairs {
            countsA[x, default: 0] += 1
            countsB[y, default: 0] += 1
        }
        let expected = countsA.reduce(0.0) { $0 + ($1.value / n) * ((countsB[$1.key] ?? 0) / n) }
        count = pairs.count
        percent = observed
        kappa = expected >= 1 - 1e-12 ? nil : (observed - expected) / (1 - expected)
    }
}

/// The agreement of a jury's judges with each other and with human labels, judge by judge.
public struct JuryAgreement: Sendable, Equatable {
    public struct Pair: Sendable, Equatable {
        public var first: String
        public var second: String
        public var agreement: RaterAgreement
    }

    /// Every pair of judges.
    public var betweenJudges: [Pair]
    /// Each judge (and the jury, labelled "jury") against the human labels.
    public var withHumans: [Pair]

    /// `labels[j][i]`: judge j's label of item i (nil: none); `jury`: the aggregate's labels;
    /// `human`: the humans' labels, if a column holds them.
    public init(judges: [String], labels: [[String?]], jury: [String?], human: [String?]?) {
        betweenJudges = []
        for a in judges.indices {
            for b in judges.indices where b > a {
                if let agreement = RaterAgreement(labels[a], labels[b]) { betweenJudges.append(Pair(first: judges[a], second: judges[b], agreement: agreement)) }
            }
        }
        withHumans = []
        if let human {
            for (name, column) in zip(judges + ["jury"], labels + [jury]) {
                if let agreement = RaterAgreement(column, human) { withHumans.append(Pair(first: name, second: "human", agreement: agreement)) }
            }
        }
    }

    /// One line per pair: "a vs b: 85.0% agreement, kappa 0.71 (n = 40)".
    public var lines: [String] {
        (betweenJudges + withHumans).map { pair in
            let kappa = pair.agreement.kappa.map { String(format: "%.3f", $0) } ?? "undefined"
            return String(format: "%@ vs %@: %.1f%% agreement, Cohen's kappa %@ (n = %d)", pair.first, pair.second,
                          pair.agreement.percent * 100, kappa, pair.agreement.count)
        }
    }
}
