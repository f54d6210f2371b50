import HPS
import HPSKafka

// The online-update half of include/hps.h: publishing rows to Kafka in HPS's update format.

@_cdecl("hps_publish")
public func hps_publish(
    _ brokers: UnsafePointer<CChar>?, _ model: UnsafePointer<CChar>?, _ table: UnsafePointer<CChar>?,
    _ keys: UnsafePointer<Int64>?, _ count: Int64, _ vectors: UnsafePointer<Float>?, _ dim: Int32, _ timeoutMs: Int32,
    _ delivered: UnsafeMutablePointer<Int64>?
) -> Int32 {
    delivered?.pointee = 0
    return guarded("hps_publish") {
        guard let brokers, let model, let table else { throw CAPIError(.invalidArgument, "hps_publish: brokers, model and table must not be NULL") }
        guard count >= 0 else { throw CAPIError(.invalidArgument, "hps_publish: count is \(count), must be at least 0") }
        guard dim >= 1 else { throw CAPIError(.invalidArgument, "hps_publish: dim is \(dim), must be at least 1") }
        guard timeoutMs >= 1 else { throw CAPIError(.invalidArgument, "hps_publish: timeout_ms is \(timeoutMs), must be positive") }
        guard count == 0 || (keys != nil && vectors != nil) else { throw CAPIError(.invalidArgument, "hps_publish: keys and vectors must not be NULL") }
        let n = Int(count), d = Int(dim)
        let (bytes, overflow) = n.multipliedReportingOverflow(by: d * 4)
        guard !overflow else { throw CAPIError(.invalidArgument, "hps_publish: \(count) rows of \(dim) floats overflow") }
        let brokerText = String(cString: brokers), modelName = String(cString: model), tableName = String(cString: table)
        do {
            let publisher = try KafkaPublisher(brokers: brokerText)
            if n > 0 {
                try publisher.post(
                    model: modelName, table: tableName, keys: UnsafeBufferPointer(start: keys, count: n),
                    values: UnsafeRawBufferPointer(start: vectors, count: bytes), valueSize: d * 4)
            }
            do {
                let report = try publisher.flush(timeoutMs: Int(timeoutMs))
                delivered?.pointee = Int64(report.deliveredRows)
            } catch {
                delivered?.pointee = Int64(publisher.report.deliveredRows)
                throw error
            }
        } catch let error as HPSError where error.code.isKafka {
            throw CAPIError(wrapping: error, context: "hps_publish to \(brokerText)")
        }
    }
}
