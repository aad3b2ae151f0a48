import RefineryCore
/// The `post_processor` section of `tokenizer.json` (what `add_special_tokens=True` adds).
indirect enum PostProcessor: Sendable {
    case sequence([PostProcessor])
    /// Pieces of the single-sequence template: a list of special-token ids, or the sequence itself (nil).
    case template([[Int]?])
    /// Offset-only processors (ByteLevel): no change to ids.
    case passThrough

    static func parse(_ json: JSONValue?) throws -> PostProcessor? {
        guard let json, !json.isNull else { return nil }
        guard let type = json["type"]?.stringValue else { throw TextError("tokenizer.json: post_processor without a \"type\"") }
        switch type {
        case "Sequence":
            return .sequence(try (json["processors"]?.arrayValue ?? []).compactMap { try parse($0) })
        case "ByteLevel":
            return .passThrough
        case "TemplateProcessing":
            var pieces: [[Int]?] = []
            for piece in json["single"]?.arrayValue ?? [] {
                if let special = piece["SpecialToken"], let name = special["id"]?.stringValue {
                    guard let ids = json["special_tokens"]?[name]?["ids"]?.arrayValue?.compactMap(\.intValue) else {
                        throw TextError("tokenizer.json: TemplateProcessing names special token \"\(name)\" without ids")
                    }
                    pieces.append(ids)
                } else if piece["Sequence"] != nil {
                    pieces.append(nil)
                }
            }
            return .template(pieces)
        case "BertProcessing", "RobertaProcessing":
            guard let cls = json["cls"]?.arrayValue, cls.count == 2, let clsID = cls[1].intValue,
                  let sep = json["sep"]?.arrayValue, sep.count == 2, let sepID = sep[1].intValue else {
                throw TextError("tokenizer.json: \(type) needs \"cls\" and \"sep\" as [token, id]")
            }
            return .template([[clsID], nil, [sepID]])
        default:
            throw TextError("tokenizer.json: unsupported post_processor type \"\(type)\" (supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)")
        }
    }

    func apply(_ encoding: Encoding) -> Encoding {
        switch self {
        case let .sequence(items):
            var current = encoding
            for item in items { current = item.apply(current) }
            return current
        case .passThrough:
            return encoding
        case let .template(pieces):
            var result = Encoding(ids: [], offsets: [])
            for piece in pieces {
                if let ids = piece {
                    result.ids.append(contentsOf: ids)
                    result.offsets.append(contentsOf: Array(repeating: (0, 0), count: ids.count))
                } else {
                    result.ids.append(contentsOf: encoding.ids)
                    result.offsets.append(contentsOf: encoding.offsets)
                }
            }
            return result
        }
    }
}
