/// An address in a CUDA device's memory (the driver API's `CUdeviceptr`: 64 bits on every platform CUDA
/// supports). Plain integer arithmetic gives addresses inside an allocation, e.g. `base + DeviceAddress(bytes)`.
public typealias DeviceAddress = UInt64
