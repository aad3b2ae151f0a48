import Foundation
import SwiftProtobuf

/// Messages on the wire: one protobuf `Envelope` per ZeroMQ message. Incoming bytes are read
/// only through `fromWorker` / `fromCoordinator`, which check every field.
public enum Wire {
    /// Version of `proto/refinery.proto` this build speaks. A worker of another version is refused.
    public static let protocolVersion: UInt32 = 4

    /// Serializes a message body into an envelope's bytes.
    public static func encode(_ body: Refinery_Cluster_Envelope.OneOf_Body) throws -> [UInt8] {
        var envelope = Refinery_Cluster_Envelope()
        envelope.protocolVersion = protocolVersion
        envelope.body = body
        let data: Data = try envelope.serializedBytes()
        return Array(data)
    }
}
