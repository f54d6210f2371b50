import HPS
import HPSKafka

/// A failed C API call: the `hps_status` it returns and the message `hps_last_error` gives.
struct CAPIError: Error {
    /// The `hps_status` values of include/hps.h.
    enum Status: Int32 {
        case ok = 0
        case invalidArgument = 1
        case config = 2
        case tableFiles = 3
        case unknownModel = 4
        case unknownTable = 5
        case tooManyKeys = 6
        case keyWidth = 7
        case noDevice = 8
        case cuda = 9
        case database = 10
        case busy = 11
        case kafka = 12
        case `internal` = 99

        /// The fixed text of `hps_status_string`.
        var text: StaticString {
            switch self {
            case .ok: "success"
            case .invalidArgument: "invalid argument"
            case .config: "invalid configuration"
            case .tableFiles: "invalid table files"
            case .unknownModel: "unknown model"
            case .unknownTable: "table index out of range"
            case .tooManyKeys: "too many keys in one lookup"
            case .keyWidth: "key width does not match supportlonglong"
            case .noDevice: "no such device"
            case .cuda: "CUDA failure"
            case .database: "database failure"
            case .busy: "server still has live sessions"
            case .kafka: "Kafka failure"
            case .internal: "internal error"
            }
        }
    }

    var status: Status
    var message: String

    init(_ status: Status, _ message: String) {
        self.status = status
        self.message = message
    }

    /// Classifies an error thrown by the library.
    init(wrapping error: any Error, context: String) {
        switch error {
        case let error as CAPIError:
            self = error
            return
        case let error as ConfigValidationError:
            status = .config
            message = "\(context): \(error)"
            return
        case let error as HPSError:
            switch error.code {
            case .invalidConfig: status = .config
            case .invalidTable, .io: status = .tableFiles
            case .unknownModel: status = .unknownModel
            case .unknownTable: status = .unknownTable
            case .invalidArgument: status = .invalidArgument
            case .database: status = .database
            case .device: status = .cuda
            case let code where code.isKafka: status = .kafka
            default: status = .internal
            }
        default:
            let text = "\(error)".lowercased()
            if text.contains("rocksdb") || text.contains("redis") {
                status = .database
            } else {
                status = .internal
            }
        }
        message = "\(context): \(error)"
    }
}
