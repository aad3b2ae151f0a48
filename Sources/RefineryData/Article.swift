/// One source document, with the fields of the reference pipeline's articles JSON.
public struct Article: Sendable, Equatable {
    public var id: String
    public var content: String
    public var platform: String?
    public var authorID: String?
    public var authorName: String?
    public var link: String?

    public init(id: String, content: String, platform: String? = nil, authorID: String? = nil, authorName: String? = nil, link: String? = nil) {
        self.id = id
        self.content = content
        self.platform = platform
        self.authorID = authorID
        self.authorName = authorName
        self.link = link
    }
}

/// Errors of the data pipeline; messages say what, where, and how to fix it.
public struct DataError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
