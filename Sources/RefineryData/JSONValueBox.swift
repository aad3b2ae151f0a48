import RefineryCore
import RefineryText

/// A parsed JSON value with parse errors turned into `DataError`s.
struct JSONValueBox {
    let value: JSONValue

    static func parse(_ bytes: [UInt8]) throws -> JSONValueBox {
        do { return JSONValueBox(value: try JSONValue.parse(bytes: bytes)) } catch {
            throw DataError(error.description)
        }
    }
}
