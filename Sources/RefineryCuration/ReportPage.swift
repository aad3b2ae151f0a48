import Foundation
import RefineryCore

/// One sample as the report shows it.
public struct ReportSample: Sendable {
    public var id: String
    public var instruction: String
    public var answer: String
    public var topic: Int
    /// "kept", or the stage that dropped it.
    public var status: String
    public var reason: String?

    public init(id: String, instruction: String, answer: String, topic: Int, status: String, reason: String?) {
        self.id = id
        self.instruction = instruction
        self.answer = answer
        self.topic = topic
        self.status = status
        self.reason = reason
    }
}

/// One curation stage's counts and reasons.
public struct ReportStage: Sendable {
    public var label: String
    public var kept: Int
    public var dropped: Int
    public var reasons: [(reason: String, count: Int)]

    public init(label: String, kept: Int, dropped: Int, reasons: [(reason: String, count: Int)]) {
        self.label = label
        self.kept = kept
        self.dropped = dropped
        self.reasons = reasons
    }
}

/// A group of near duplicates: the sample kept and the ones dropped in its place (text when the
/// input holds them, else only the id), with their similarity.
public struct ReportDuplicateGroup: Sendable {
    public var stage: String
    public var kept: (id: String, text: String?)
    public var dropped: [(id: String, text: String?, score: Double?)]

    public init(stage: String, kept: (id: String, text: String?), dropped: [(id: String, text: String?, score: Double?)]) {
        self.stage = stage
        self.kept = kept
        self.dropped = dropped
    }
}

/// The scores one stage gave (a judge, a reward model), and how far a jury's judges agreed.
public struct ReportScores: Sendable {
    public var stage: String
    public var scores: [Double]
    /// Samples the stage could not score (failed judgments).
    public var failures: Int
    /// "a vs b: 80.0% agreement, Cohen's kappa 0.6 (n = 40)" lines, for a jury.
    public var agreement: [String]
    /// Pairwise verdicts and how often each was given.
    public var verdicts: [(verdict: String, count: Int)]

    public init(stage: String, scores: [Double], failures: Int, agreement: [String], verdicts: [(verdict: String, count: Int)]) {
        self.stage = stage
        self.scores = scores
        self.failures = failures
        self.agreement = agreement
        self.verdicts = verdicts
    }
}

/// Everything the exploration report shows.
public struct ReportContent: Sendable {
    public var title: String
    public var samples: [ReportSample]
    public var statistics: DatasetStatistics
    public var map: TopicMap
    /// What the map's vectors are (a model, or the hashed TF-IDF fallback).
    public var mapSource: String
    public var stages: [ReportStage]
    public var duplicateGroups: [ReportDuplicateGroup]
    public var scores: [ReportScores]

    public init(title: String, samples: [ReportSample], statistics: DatasetStatistics, map: TopicMap, mapSource: String,
                stages: [ReportStage], duplicateGroups: [ReportDuplicateGroup], scores: [ReportScores] = []) {
        self.scores = scores
        self.title = title
        self.samples = samples
        self.statistics = statistics
        self.map = map
        self.mapSource = mapSource
        self.stages = stages
        self.duplicateGroups = duplicateGroups
    }
}

/// The exploration report as one self-contained HTML page: styles, charts (inline SVG drawn
/// here) and the sample browser's script are all inline; the page fetches nothing.
public enum ReportPage {
    /// Points drawn on the topic map at most.
    static let maxMapPoints = 20_000
    /// Characters of an instruction or answer the sample browser holds (and searches).
    static let maxBrowserCharacters = 2_000

    static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                          "#9c755f", "#bab0ac", "#1f77b4", "#d62728"]

    public static func html(_ report: ReportContent) -> String {
        let stats = report.statistics
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(report.title))</title>
            <style>\(style)</style></head>
            <body><header><h1>\(escape(report.title))</h1>
            <p class="cards"><span><b>\(report.samples.count)</b> samples</span><span><b>\(report.map.labels.count)</b> topics</span>
            <span><b>\(String(format: "%.3f", stats.distinct1))</b> distinct-1</span><span><b>\(String(format: "%.3f", stats.distinct2))</b> distinct-2</span>
            <span><b>\(report.stages.count)</b> curation stages</span></p></header>
            """
        page += section("Curation", curation(report.stages))
        if !report.scores.isEmpty { page += section("Scores and judges", scoreSections(report.scores)) }
        page += section("Lengths (\(stats.unit))",
                        "<div class=\"row\">" + histogramFigure("Instructions", stats.instructionLengths)
                            + histogramFigure("Answers", stats.answerLengths) + "</div>")
        page += section("Diversity",
                        "<p>distinct-1 \(String(format: "%.3f", stats.distinct1)) · distinct-2 \(String(format: "%.3f", stats.distinct2)) "
                            + "(distinct n-grams over all n-grams of the answers)</p><div class=\"row\">"
                            + barsFigure("Top words", stats.topWords) + barsFigure("Top word pairs", stats.topBigrams) + "</div>")
        page += section("Topic map", topicMap(report))
        page += section("Near-duplicate groups", duplicates(report.duplicateGroups))
        page += section("Samples", browser(report))
        page += "<script>\(script)</script></body></html>\n"
        return page
    }

    static func section(_ title: String, _ body: String) -> String {
        "<section><h2>\(escape(title))</h2>\(body)</section>\n"
    }

    static func curation(_ stages: [ReportStage]) -> String {
        guard !stages.isEmpty else { return "<p class=\"muted\">No curation decisions (give --state with a run's state file to see them).</p>" }
        var rows = "<table><tr><th>stage</th><th>kept</th><th>dropped</th><th>reasons</th></tr>"
        for stage in stages {
            let reasons = stage.reasons.prefix(8).map { "\(escape($0.reason)) <b>\($0.count)</b>" }.joined(separator: "<br>")
            rows += "<tr><td>\(escape(stage.label))</td><td>\(stage.kept)</td><td>\(stage.dropped)</td><td>\(reasons)</td></tr>"
        }
        return rows + "</table>"
    }

    static func histogramFigure(_ title: String, _ values: [Int]) -> String {
        let histogram = Histogram(values)
        let width = 460.0, height = 220.0, left = 40.0, bottom = 30.0
        let top = Double(histogram.bins.map(\.count).max() ?? 1)
        let barWidth = (width - left - 10) / Double(max(1, histogram.bins.count))
        var svg = "<svg class=\"chart histogram\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(escape(title)) histogram\">"
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 5)\" y2=\"\(height - bottom)\" class=\"axis\"/>"
        for (index, bin) in histogram.bins.enumerated() {
            let h = top > 0 ? Double(bin.count) / top * (height - bottom - 15) : 0
            let x = left + Double(index) * barWidth
            svg += "<rect x=\"\(fmt(x + 1))\" y=\"\(fmt(height - bottom - h))\" width=\"\(fmt(max(1, barWidth - 2)))\" height=\"\(fmt(h))\" class=\"bar\">"
                + "<title>\(bin.lower)–\(bin.upper - 1): \(bin.count)</title></rect>"
            if index % max(1, histogram.bins.count / 6) == 0 {
                svg += "<text x=\"\(fmt(x))\" y=\"\(fmt(height - bottom + 14))\" class=\"tick\">\(bin.lower)</text>"
            }
        }
        svg += "<text x=\"4\" y=\"12\" class=\"tick\">\(Int(top))</text></svg>"
        let summary = values.isEmpty ? "" : "median \(Histogram.quantile(values, 0.5)) · p90 \(Histogram.quantile(values, 0.9)) · max \(values.max() ?? 0)"
        return "<figure><figcaption>\(escape(title)) — \(summary)</figcaption>\(svg)</figure>"
    }

    static func scoreSections(_ sections: [ReportScores]) -> String {
        var html = ""
        for scores in sections {
            var figures = ""
            if !scores.scores.isEmpty {
                let mean = scores.scores.reduce(0, +) / Double(scores.scores.count)
                figures += scoreFigure("\(scores.stage): scores (mean \(String(format: "%.2f", mean)), n = \(scores.scores.count))", scores.scores)
            }
            if !scores.verdicts.isEmpty {
                figures += barsFigure("\(scores.stage): pairwise verdicts", scores.verdicts.map { ($0.verdict, $0.count) })
            }
            html += "<div class=\"row\">\(figures)</div>"
            var notes: [String] = scores.agreement.map(escape)
            if scores.failures > 0 { notes.append("\(scores.failures) samples could not be judged (failures are never scores)") }
            if !notes.isEmpty { html += "<ul class=\"agreement\">" + notes.map { "<li>\($0)</li>" }.joined() + "</ul>" }
        }
        return html
    }

    /// Scores as bars: one per value when they are few whole numbers (a judge's rubric), else
    /// twelve equal-width bins (a reward model's logits).
    static func scoreFigure(_ title: String, _ values: [Double]) -> String {
        let distinct = Set(values)
        if distinct.count <= 20 && values.allSatisfy({ $0 == $0.rounded() }) {
            let counts = Dictionary(values.map { ($0, 1) }, uniquingKeysWith: +).sorted { $0.key < $1.key }
            return barsFigure(title, counts.map { (String(format: "%.0f", $0.key), $0.value) })
        }
        let low = values.min() ?? 0, high = values.max() ?? 0
        let bins = 12, width = (high - low) / Double(bins)
        var counts = [Int](repeating: 0, count: bins)
        for value in values { counts[width > 0 ? min(bins - 1, Int((value - low) / width)) : 0] += 1 }
        return barsFigure(title, counts.enumerated().map { index, count in
            (String(format: "%.2f–%.2f", low + Double(index) * width, low + Double(index + 1) * width), count)
        })
    }

    static func barsFigure(_ title: String, _ items: [(term: String, count: Int)]) -> String {
        let rowHeight = 18.0, width = 460.0, label = 150.0
        let top = Double(items.map(\.count).max() ?? 1)
        var svg = "<svg class=\"chart bars\" viewBox=\"0 0 \(Int(width)) \(Int(Double(max(1, items.count)) * rowHeight + 4))\" role=\"img\" aria-label=\"\(escape(title))\">"
        for (index, item) in items.enumerated() {
            let y = Double(index) * rowHeight
            let w = Double(item.count) / max(1, top) * (width - label - 40)
            svg += "<text x=\"\(fmt(label - 4))\" y=\"\(fmt(y + 13))\" class=\"label\" text-anchor=\"end\">\(escape(item.term))</text>"
            svg += "<rect x=\"\(fmt(label))\" y=\"\(fmt(y + 3))\" width=\"\(fmt(max(1, w)))\" height=\"\(fmt(rowHeight - 6))\" class=\"bar\"/>"
            svg += "<text x=\"\(fmt(label + w + 4))\" y=\"\(fmt(y + 13))\" class=\"tick\">\(item.count)</text>"
        }
        return "<figure><figcaption>\(escape(title))</figcaption>\(svg)</svg></figure>"
    }

    static func topicMap(_ report: ReportContent) -> String {
        let map = report.map
        guard !map.points.isEmpty else { return "<p class=\"muted\">No samples.</p>" }
        let width = 720.0, height = 460.0, pad = 16.0
        let xs = map.points.map { Double($0.x) }, ys = map.points.map { Double($0.y) }
        let (x0, x1) = (xs.min() ?? 0, xs.max() ?? 1), (y0, y1) = (ys.min() ?? 0, ys.max() ?? 1)
        func sx(_ x: Double) -> Double { pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (width - 2 * pad) }
        func sy(_ y: Double) -> Double { height - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (height - 2 * pad) }
        var svg = "<svg id=\"topic-map\" class=\"chart map\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"topic map\">"
        // At most `maxMapPoints` drawn (every k-th sample beyond that), so big datasets stay a page a browser opens.
        let step = max(1, (map.points.count + maxMapPoints - 1) / maxMapPoints)
        for index in stride(from: 0, to: map.points.count, by: step) {
            let point = map.points[index]
            let topic = map.topics[index]
            svg += "<circle cx=\"\(fmt(sx(Double(point.x))))\" cy=\"\(fmt(sy(Double(point.y))))\" r=\"3.5\" fill=\"\(palette[topic % palette.count])\" data-topic=\"\(topic)\">"
                + "<title>\(escape(String(report.samples[index].instruction.prefix(120))))</title></circle>"
        }
        svg += "</svg>"
        var sizes = [Int](repeating: 0, count: map.labels.count)
        for topic in map.topics { sizes[topic] += 1 }
        let legend = map.labels.enumerated().map { topic, terms in
            "<li><span class=\"swatch\" style=\"background:\(palette[topic % palette.count])\"></span>topic \(topic) (\(sizes[topic])): \(escape(terms.joined(separator: ", ")))</li>"
        }.joined()
        let drawn = step > 1 ? " Every \(step)th sample drawn (\((map.points.count + step - 1) / step) of \(map.points.count))." : ""
        return "<p class=\"muted\">\(escape(report.mapSource)); first two principal components (\(String(format: "%.0f%%", map.explained.0 * 100)) and "
            + "\(String(format: "%.0f%%", map.explained.1 * 100)) of the variance); topics by k-means, labelled by c-TF-IDF.\(drawn)</p>"
            + "<div class=\"row\">\(svg)<ul class=\"legend\">\(legend)</ul></div>"
    }

    static func duplicates(_ groups: [ReportDuplicateGroup]) -> String {
        guard !groups.isEmpty else { return "<p class=\"muted\">No near-duplicate groups recorded (dedup stages in the state name them).</p>" }
        var html = "<ol class=\"groups\">"
        for group in groups.prefix(50) {
            html += "<li><span class=\"stage\">\(escape(group.stage))</span> kept <code>\(escape(group.kept.id))</code> "
                + (group.kept.text.map { "<q>\(escape(String($0.prefix(200))))</q>" } ?? "") + "<ul>"
            for member in group.dropped {
                html += "<li>dropped <code>\(escape(member.id))</code>" + (member.score.map { String(format: " (%.3f)", $0) } ?? "")
                    + (member.text.map { " <q>\(escape(String($0.prefix(200))))</q>" } ?? "") + "</li>"
            }
            html += "</ul></li>"
        }
        return html + "</ol>" + (groups.count > 50 ? "<p class=\"muted\">… and \(groups.count - 50) more groups.</p>" : "")
    }

    static func browser(_ report: ReportContent) -> String {
        let rows = JSONValue.array(report.samples.map { sample in
            .object([("id", .string(sample.id)), ("instruction", .string(String(sample.instruction.prefix(maxBrowserCharacters)))),
                     ("answer", .string(String(sample.answer.prefix(maxBrowserCharacters)))),
                     ("topic", .int(sample.topic)), ("status", .string(sample.status)), ("reason", sample.reason.map(JSONValue.string) ?? .null)])
        })
        let statuses = Set(report.samples.map(\.status)).sorted()
        let statusOptions = statuses.map { "<option>\(escape($0))</option>" }.joined()
        let kinds = Set(report.samples.compactMap { $0.reason.map(ReportPage.reasonKind) }).sorted()
        let reasonOptions = kinds.map { "<option>\(escape($0))</option>" }.joined()
        let topicOptions = report.map.labels.indices.map { "<option value=\"\($0)\">topic \($0): \(escape(report.map.labels[$0].prefix(3).joined(separator: ", ")))</option>" }.joined()
        return """
            <div class="filters"><input id="search" type="search" placeholder="search instructions and answers" aria-label="search">
            <select id="status" aria-label="stage"><option value="">any status</option>\(statusOptions)</select>
            <select id="reason" aria-label="reason"><option value="">any reason</option>\(reasonOptions)</select>
            <select id="topic" aria-label="topic"><option value="">any topic</option>\(topicOptions)</select>
            <span id="matches"></span></div>
            <table id="samples-table"><thead><tr><th>id</th><th>topic</th><th>status</th><th>instruction</th><th>answer</th></tr></thead><tbody></tbody></table>
            <script id="samples" type="application/json">\(rows.compactText.replacingOccurrences(of: "<", with: "\\u003c"))</script>
            """
    }

    /// A reason without its particulars: "near copy (estimated … 0.91)" → "near copy".
    public static func reasonKind(_ reason: String) -> String {
        String(reason.prefix { $0 != "(" && $0 != "“" }).trimmingCharacters(in: .whitespaces)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    static func fmt(_ value: Double) -> String { String(format: "%.1f", value) }

    static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 20px 40px;color:#222}
        h1{margin:18px 0 6px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
        .cards span{display:inline-block;background:#f3f5f8;border-radius:6px;padding:6px 12px;margin:0 8px 6px 0}
        .row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}
        .chart{width:460px;max-width:100%;height:auto;background:#fafbfc;border:1px solid #eee}.map{width:720px}
        .bar{fill:#4e79a7}.axis{stroke:#999}.tick,.label{font-size:11px;fill:#444}
        table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
        #samples-table td:nth-child(4),#samples-table td:nth-child(5){max-width:420px;white-space:pre-wrap;word-break:break-word}
        .legend{list-style:none;padding:0;margin:0;max-width:420px}.swatch{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}
        .muted{color:#666}.filters{display:flex;gap:8px;margin-bottom:8px}.filters input{flex:1;padding:4px}
        .groups q{color:#444}.stage{background:#eef;border-radius:4px;padding:0 4px}code{font-size:12px}
        """

    static let script = """
        (function(){
          window.addEventListener('error',function(e){document.body.setAttribute('data-errors',(document.body.getAttribute('data-errors')||'')+e.message+';');});
          var samples=JSON.parse(document.getElementById('samples').textContent);
          var body=document.querySelector('#samples-table tbody'),search=document.getElementById('search'),
              status=document.getElementById('status'),reason=document.getElementById('reason'),topic=document.getElementById('topic'),
              matches=document.getElementById('matches');
          function cell(text){var td=document.createElement('td');td.textContent=text;return td;}
          function render(){
            var q=search.value.toLowerCase(),s=status.value,r=reason.value,t=topic.value,shown=0,total=0;
            body.textContent='';
            for(var i=0;i<samples.length;i++){
              var x=samples[i];
              if(s&&x.status!==s)continue;
              if(r&&!(x.reason&&x.reason.indexOf(r)===0))continue;
              if(t!==''&&String(x.topic)!==t)continue;
              if(q&&x.instruction.toLowerCase().indexOf(q)<0&&x.answer.toLowerCase().indexOf(q)<0)continue;
              total++;
              if(shown>=200)continue;
              shown++;
              var tr=document.createElement('tr');
              tr.appendChild(cell(x.id));tr.appendChild(cell(String(x.topic)));
              tr.appendChild(cell(x.status+(x.reason?' — '+x.reason:'')));
              tr.appendChild(cell(x.instruction.slice(0,600)));tr.appendChild(cell(x.answer.slice(0,600)));
              body.appendChild(tr);
            }
            matches.textContent=total+' matching'+(total>shown?' (first '+shown+' shown)':'');
          }
          search.addEventListener('input',render);status.addEventListener('change',render);reason.addEventListener('change',render);
          topic.addEventListener('change',render);
          render();
          document.body.setAttribute('data-ready','1');
        })();
        """
}
