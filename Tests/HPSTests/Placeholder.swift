import Testing
@testable import HPS
