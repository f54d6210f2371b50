#ifndef HPS_CCUDADRIVER_H
#define HPS_CCUDADRIVER_H

/*
 * The few CUDA driver API and NVRTC types and entry points HPSCUDA uses, declared here as function-pointer
 * types so that nothing CUDA is needed at build time: HPSCUDA loads libcuda.so.1 and libnvrtc with dlopen at
 * run time and resolves each symbol with dlsym. These are our own declarations of the stable C ABI (the
 * `_v2` entry points where the driver has them); values of enums are those of the driver's ABI.
 */

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CUDA driver API ---------------------------------------------------------------------------------- */

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;

#define HPS_CUDA_SUCCESS 0
#define HPS_CUDA_ERROR_INVALID_VALUE 1
#define HPS_CUDA_ERROR_OUT_OF_MEMORY 2
#define HPS_CUDA_ERROR_NOT_INITIALIZED 3
#define HPS_CUDA_ERROR_INSUFFICIENT_DRIVER 35
#define HPS_CUDA_ERROR_NO_DEVICE 100
#define HPS_CUDA_ERROR_INVALID_DEVICE 101
#define HPS_CUDA_ERROR_NO_BINARY_FOR_GPU 209
#define HPS_CUDA_ERROR_INVALID_PTX 218
#define HPS_CUDA_ERROR_UNSUPPORTED_PTX_VERSION 222
#define HPS_CUDA_ERROR_NOT_READY 600
#define HPS_CUDA_ERROR_ILLEGAL_ADDRESS 700

#define HPS_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define HPS_CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY 19
#define HPS_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE 36
#define HPS_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH 37
#define HPS_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE 38
#define HPS_CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR 39
#define HPS_CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING 41
#define HPS_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define HPS_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76

#define HPS_CU_STREAM_NON_BLOCKING 0x1
#define HPS_CU_EVENT_DEFAULT 0x0
#define HPS_CU_EVENT_DISABLE_TIMING 0x2
#define HPS_CU_MEMHOSTALLOC_PORTABLE 0x1
#define HPS_CU_MEMHOSTALLOC_DEVICEMAP 0x2
#define HPS_CU_FUNC_ATTRIBUTE_NUM_REGS 4
#define HPS_CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES 3

typedef CUresult (*hps_cuInit_t)(unsigned int flags);
typedef CUresult (*hps_cuDriverGetVersion_t)(int *version);
typedef CUresult (*hps_cuGetErrorName_t)(CUresult error, const char **name);
typedef CUresult (*hps_cuGetErrorString_t)(CUresult error, const char **text);
typedef CUresult (*hps_cuDeviceGetCount_t)(int *count);
typedef CUresult (*hps_cuDeviceGet_t)(CUdevice *device, int ordinal);
typedef CUresult (*hps_cuDeviceGetName_t)(char *name, int length, CUdevice device);
typedef CUresult (*hps_cuDeviceGetAttribute_t)(int *value, int attribute, CUdevice device);
typedef CUresult (*hps_cuDeviceTotalMem_t)(size_t *bytes, CUdevice device);
typedef CUresult (*hps_cuDevicePrimaryCtxRetain_t)(CUcontext *context, CUdevice device);
typedef CUresult (*hps_cuDevicePrimaryCtxRelease_t)(CUdevice device);
typedef CUresult (*hps_cuCtxSetCurrent_t)(CUcontext context);
typedef CUresult (*hps_cuCtxSynchronize_t)(void);
typedef CUresult (*hps_cuMemGetInfo_t)(size_t *free, size_t *total);
typedef CUresult (*hps_cuMemAlloc_t)(CUdeviceptr *pointer, size_t bytes);
typedef CUresult (*hps_cuMemFree_t)(CUdeviceptr pointer);
typedef CUresult (*hps_cuMemHostAlloc_t)(void **pointer, size_t bytes, unsigned int flags);
typedef CUresult (*hps_cuMemFreeHost_t)(void *pointer);
typedef CUresult (*hps_cuMemHostGetDevicePointer_t)(CUdeviceptr *device, void *host, unsigned int flags);
typedef CUresult (*hps_cuMemcpyHtoDAsync_t)(CUdeviceptr dst, const void *src, size_t bytes, CUstream stream);
typedef CUresult (*hps_cuMemcpyDtoHAsync_t)(void *dst, CUdeviceptr src, size_t bytes, CUstream stream);
typedef CUresult (*hps_cuMemcpyDtoDAsync_t)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream);
typedef CUresult (*hps_cuMemsetD32Async_t)(CUdeviceptr dst, unsigned int value, size_t count, CUstream stream);
typedef CUresult (*hps_cuMemsetD8Async_t)(CUdeviceptr dst, unsigned char value, size_t count, CUstream stream);
typedef CUresult (*hps_cuStreamCreate_t)(CUstream *stream, unsigned int flags);
typedef CUresult (*hps_cuStreamDestroy_t)(CUstream stream);
typedef CUresult (*hps_cuStreamSynchronize_t)(CUstream stream);
typedef CUresult (*hps_cuEventCreate_t)(CUevent *event, unsigned int flags);
typedef CUresult (*hps_cuEventDestroy_t)(CUevent event);
typedef CUresult (*hps_cuEventRecord_t)(CUevent event, CUstream stream);
typedef CUresult (*hps_cuEventSynchronize_t)(CUevent event);
typedef CUresult (*hps_cuEventElapsedTime_t)(float *milliseconds, CUevent start, CUevent end);
typedef CUresult (*hps_cuStreamWaitEvent_t)(CUstream stream, CUevent event, unsigned int flags);
typedef CUresult (*hps_cuModuleLoadData_t)(CUmodule *module, const void *image);
typedef CUresult (*hps_cuModuleUnload_t)(CUmodule module);
typedef CUresult (*hps_cuModuleGetFunction_t)(CUfunction *function, CUmodule module, const char *name);
typedef CUresult (*hps_cuFuncGetAttribute_t)(int *value, int attribute, CUfunction function);
typedef CUresult (*hps_cuOccupancyMaxActiveBlocksPerMultiprocessor_t)(int *blocks, CUfunction function, int blockSize,
                                                                       size_t dynamicSharedBytes);
typedef CUresult (*hps_cuLaunchKernel_t)(CUfunction function, unsigned int gridX, unsigned int gridY, unsigned int gridZ,
                                         unsigned int blockX, unsigned int blockY, unsigned int blockZ,
                                         unsigned int sharedBytes, CUstream stream, void **parameters, void **extra);

/* The file the shared library holding `symbol` was loaded from (dladdr), or NULL. */
const char *hps_loaded_library_path(const void *symbol);

/* ---- NVRTC ---------------------------------------------------------------------------------------------- */

typedef int nvrtcResult;
typedef struct _nvrtcProgram *nvrtcProgram;

#define HPS_NVRTC_SUCCESS 0
#define HPS_NVRTC_ERROR_COMPILATION 6

typedef const char *(*hps_nvrtcGetErrorString_t)(nvrtcResult result);
typedef nvrtcResult (*hps_nvrtcVersion_t)(int *major, int *minor);
typedef nvrtcResult (*hps_nvrtcGetNumSupportedArchs_t)(int *count);
typedef nvrtcResult (*hps_nvrtcGetSupportedArchs_t)(int *archs);
typedef nvrtcResult (*hps_nvrtcCreateProgram_t)(nvrtcProgram *program, const char *source, const char *name,
                                                int headerCount, const char *const *headers,
                                                const char *const *includeNames);
typedef nvrtcResult (*hps_nvrtcDestroyProgram_t)(nvrtcProgram *program);
typedef nvrtcResult (*hps_nvrtcCompileProgram_t)(nvrtcProgram program, int optionCount, const char *const *options);
typedef nvrtcResult (*hps_nvrtcGetSize_t)(nvrtcProgram program, size_t *bytes);
typedef nvrtcResult (*hps_nvrtcGetBytes_t)(nvrtcProgram program, char *buffer);

#ifdef __cplusplus
}
#endif

#endif
