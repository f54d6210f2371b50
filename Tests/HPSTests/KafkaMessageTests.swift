import HPS
import HPSKafka
import Testing

/// HPS's Kafka payload (`HCTR` header, value size, key/value records) and the update filters.
@Suite struct KafkaMessageTests {
    @Test func encodesHPSLayoutByteForByte() {
        let keys: [Int64] = [7, -2]
        let rows: [Float] = [1, 2, 3, 4]
        let payload = keys.withUnsafeBufferPointer { k in
            rows.withUnsafeBytes { UpdateMessage.encode(keys: k, values: $0, valueSize: 8) }
        }
        // Independent reference: the layout written out by hand (little-endian).
        var expected: [UInt8] = [0x48, 0x43, 0x54, 0x52, 8, 0, 0, 0]  // "HCTR", value_size 8
        expected += [7, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]  // key 7, 1.0, 2.0
        expected += [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + [0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40]  // key -2, 3.0, 4.0
        #expect(payload == expected)
    }

    @Test func decodesWhatItEncodes() {
        for width in [KeyWidth.int64, .uint32] {
            let keys: [Int64] = (0..<100).map { Int64($0) * 977 }
            let rows: [Float] = (0..<400).map { Float($0) * 0.25 - 3 }
            let payload = keys.withUnsafeBufferPointer { k in
                rows.withUnsafeBytes { UpdateMessage.encode(keys: k, values: $0, valueSize: 16, keyWidth: width) }
            }
            #expect(payload.count == 8 + 100 * (width.byteCount + 16))
            var gotKeys = [Int64](repeating: 0, count: 100)
            var gotRows = [Float](repeating: 0, count: 400)
            payload.withUnsafeBytes { p in
                #expect(UpdateMessage.inspect(p, keyWidth: width, expectedValueSize: 16) == .rows(count: 100, valueSize: 16))
                gotKeys.withUnsafeMutableBufferPointer { k in
                    gotRows.withUnsafeMutableBytes { r in
                        UpdateMessage.copyRows(p, range: 0..<100, valueSize: 16, keyWidth: width, keys: k.baseAddress!, values: r.baseAddress!)
                    }
                }
            }
            #expect(gotKeys == keys)
            #expect(gotRows == rows)
        }
    }

    @Test func classifiesMalformedPayloads() {
        func inspect(_ bytes: [UInt8], valueSize: Int = 8) -> UpdateMessage.Content {
            bytes.withUnsafeBytes { UpdateMessage.inspect($0, keyWidth: .int64, expectedValueSize: valueSize) }
        }
        let header = UpdateMessage.header(valueSize: 8)
        #expect(inspect([]) == .malformed(.badHeader))
        #expect(inspect([0x48, 0x43, 0x54]) == .malformed(.badHeader))
        #expect(inspect([0x48, 0x43, 0x54, 0x53, 8, 0, 0, 0] + [UInt8](repeating: 0, count: 16)) == .malformed(.badHeader))
        #expect(inspect(header) == .beacon)
        #expect(inspect(header + [UInt8](repeating: 0, count: 16), valueSize: 12) == .malformed(.valueSize))
        #expect(inspect(header + [UInt8](repeating: 0, count: 15)) == .malformed(.truncated))
        #expect(inspect(header + [UInt8](repeating: 0, count: 32)) == .rows(count: 2, valueSize: 8))
    }

    @Test func defaultFilterMatchesEveryTableUnlikeHPS() throws {
        // HPS's default "^hps_.+$" becomes "^^hps_et\.^hps_.+$\..+$" there and matches nothing.
        let byDefault = try UpdateFilter(VolatileDatabaseConfig().updateFilters[0])
        #expect(byDefault.matches("hps_et.wdl.sparse_embedding0"))
        #expect(!byDefault.matches("other_topic"))
        // Filters without ^ name models, as in HPS: "^hps_et\.<filter>\..+$".
        let all = try UpdateFilter(".+")
        #expect(all.pattern == "^hps_et\\..+\\..+$")
        #expect(all.matches("hps_et.wdl.t0"))
        #expect(!all.matches("xhps_et.wdl.t0"))
        let wdl = try UpdateFilter("wdl")
        #expect(wdl.matches("hps_et.wdl.t0"))
        #expect(!wdl.matches("hps_et.dcn.t0"))
        #expect(!wdl.matches("hps_et.wdl"))
        #expect(throws: (any Error).self) { try UpdateFilter("(") }
    }

    @Test func publisherRejectsBadArgumentsNamingThem() throws {
        let publisher = try KafkaPublisher(brokers: "127.0.0.1:1")
        let keys: [Int64] = [1]
        let rows: [Float] = [1, 2]
        func post(model: String = "m", table: String = "t", valueSize: Int = 8) -> String {
            do {
                try keys.withUnsafeBufferPointer { k in
                    try rows.withUnsafeBytes { try publisher.post(model: model, table: table, keys: k, values: $0, valueSize: valueSize) }
                }
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(post(model: "bad name").contains("model \"bad name\""))
        #expect(post(table: "").contains("table \"\""))
        #expect(post(valueSize: 4).contains("values"))
        #expect(post() == "accepted")
        #expect(throws: HPSError(.invalidArgument, subject: "brokers", "no broker given")) { try KafkaPublisher(brokers: "") }
    }
}
