// CTensorFlow: the few declarations of TensorFlow's public C API (tensorflow/c/tf_status.h, tf_tensor.h,
// kernels.h, ops.h) that the HPS op library uses, written out here so the package builds without
// TensorFlow's headers. The functions are not linked at build time: they are resolved when
// `tf.load_op_library` loads libhierarchical_parameter_server.so into a process where TensorFlow
// (libtensorflow_framework.so.2) is already loaded.
//
// Every type below has the layout and values of the matching TensorFlow C API type (TF 2.x). Only
// opaque struct pointers, plain enums and integers cross the boundary.
#ifndef HPS_CTENSORFLOW_H
#define HPS_CTENSORFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// --- tf_status.h -------------------------------------------------------------------------------
typedef struct TF_Status TF_Status;

/// Error codes (values of error_codes.proto). Named TSL_* as in TF's own header.
typedef enum TSL_Code {
  TSL_OK = 0,
  TSL_CANCELLED = 1,
  TSL_UNKNOWN = 2,
  TSL_INVALID_ARGUMENT = 3,
  TSL_DEADLINE_EXCEEDED = 4,
  TSL_NOT_FOUND = 5,
  TSL_ALREADY_EXISTS = 6,
  TSL_PERMISSION_DENIED = 7,
  TSL_RESOURCE_EXHAUSTED = 8,
  TSL_FAILED_PRECONDITION = 9,
  TSL_ABORTED = 10,
  TSL_OUT_OF_RANGE = 11,
  TSL_UNIMPLEMENTED = 12,
  TSL_INTERNAL = 13,
  TSL_UNAVAILABLE = 14,
  TSL_DATA_LOSS = 15,
  TSL_UNAUTHENTICATED = 16,
} TSL_Code;
typedef TSL_Code TF_Code;

extern TF_Status *TF_NewStatus(void);
extern void TF_DeleteStatus(TF_Status *s);
extern void TF_SetStatus(TF_Status *s, TF_Code code, const char *msg);
extern TF_Code TF_GetCode(const TF_Status *s);
extern const char *TF_Message(const TF_Status *s);

// --- tf_datatype.h (the values used here) ------------------------------------------------------
typedef enum TF_DataType {
  TF_FLOAT = 1,
  TF_DOUBLE = 2,
  TF_INT32 = 3,
  TF_STRING = 7,
  TF_INT64 = 9,
} TF_DataType;

// --- tf_tensor.h -------------------------------------------------------------------------------
typedef struct TF_Tensor TF_Tensor;

extern void TF_DeleteTensor(TF_Tensor *t);
extern TF_DataType TF_TensorType(const TF_Tensor *t);
extern int TF_NumDims(const TF_Tensor *t);
extern int64_t TF_Dim(const TF_Tensor *t, int dim_index);
extern void *TF_TensorData(const TF_Tensor *t);
extern int64_t TF_TensorElementCount(const TF_Tensor *t);
extern size_t TF_TensorByteSize(const TF_Tensor *t);

// --- kernels.h ---------------------------------------------------------------------------------
typedef struct TF_KernelBuilder TF_KernelBuilder;
typedef struct TF_OpKernelConstruction TF_OpKernelConstruction;
typedef struct TF_OpKernelContext TF_OpKernelContext;

extern TF_KernelBuilder *TF_NewKernelBuilder(const char *op_name, const char *device_name,
                                             void *(*create_func)(TF_OpKernelConstruction *),
                                             void (*compute_func)(void *, TF_OpKernelContext *),
                                             void (*delete_func)(void *));
extern void TF_KernelBuilder_TypeConstraint(TF_KernelBuilder *kernel_builder, const char *attr_name,
                                            TF_DataType type, TF_Status *status);
extern void TF_KernelBuilder_HostMemory(TF_KernelBuilder *kernel_builder, const char *arg_name);
extern void TF_RegisterKernelBuilder(const char *kernel_name, TF_KernelBuilder *builder,
                                     TF_Status *status);
extern void TF_DeleteKernelBuilder(TF_KernelBuilder *builder);

extern int TF_NumInputs(TF_OpKernelContext *ctx);
extern void TF_GetInput(TF_OpKernelContext *ctx, int i, TF_Tensor **tensor, TF_Status *status);
extern TF_DataType TF_InputDatatype(TF_OpKernelContext *ctx, int index);
extern void TF_OpKernelConstruction_Failure(TF_OpKernelConstruction *ctx, TF_Status *status);
extern void TF_OpKernelContext_Failure(TF_OpKernelContext *ctx, TF_Status *status);
extern void TF_OpKernelConstruction_GetAttrSize(TF_OpKernelConstruction *ctx, const char *attr_name,
                                                int32_t *list_size, int32_t *total_size,
                                                TF_Status *status);
extern void TF_OpKernelConstruction_GetAttrType(TF_OpKernelConstruction *ctx, const char *attr_name,
                                                TF_DataType *val, TF_Status *status);
extern void TF_OpKernelConstruction_GetAttrInt64(TF_OpKernelConstruction *ctx,
                                                 const char *attr_name, int64_t *val,
                                                 TF_Status *status);
extern void TF_OpKernelConstruction_GetAttrString(TF_OpKernelConstruction *ctx,
                                                  const char *attr_name, char *val,
                                                  size_t max_length, TF_Status *status);
extern TF_Tensor *TF_AllocateOutput(TF_OpKernelContext *context, int index, TF_DataType dtype,
                                    const int64_t *dims, int num_dims, size_t len,
                                    TF_Status *status);

// --- ops.h -------------------------------------------------------------------------------------
// ops.h declares these structs without typedefs; a shim has to add them.
typedef struct TF_OpDefinitionBuilder TF_OpDefinitionBuilder;
typedef struct TF_ShapeInferenceContext TF_ShapeInferenceContext;
typedef struct TF_ShapeHandle TF_ShapeHandle;
typedef struct TF_DimensionHandle TF_DimensionHandle;

extern TF_OpDefinitionBuilder *TF_NewOpDefinitionBuilder(const char *op_name);
extern void TF_RegisterOpDefinition(TF_OpDefinitionBuilder *builder, TF_Status *status);
extern void TF_DeleteOpDefinitionBuilder(TF_OpDefinitionBuilder *builder);
extern void TF_OpDefinitionBuilderAddAttr(TF_OpDefinitionBuilder *builder, const char *attr_spec);
extern void TF_OpDefinitionBuilderAddInput(TF_OpDefinitionBuilder *builder, const char *input_spec);
extern void TF_OpDefinitionBuilderAddOutput(TF_OpDefinitionBuilder *builder,
                                            const char *output_spec);
extern void TF_OpDefinitionBuilderSetIsStateful(TF_OpDefinitionBuilder *builder, bool is_stateful);
extern void TF_OpDefinitionBuilderSetShapeInferenceFunction(
    TF_OpDefinitionBuilder *builder,
    void (*shape_inference_func)(TF_ShapeInferenceContext *ctx, TF_Status *status));

extern TF_ShapeHandle *TF_NewShapeHandle(void);
extern void TF_DeleteShapeHandle(TF_ShapeHandle *handle);
extern void TF_ShapeInferenceContextGetInput(TF_ShapeInferenceContext *ctx, int i,
                                             TF_ShapeHandle *handle, TF_Status *status);
extern void TF_ShapeInferenceContextSetOutput(TF_ShapeInferenceContext *ctx, int i,
                                              TF_ShapeHandle *handle, TF_Status *status);
extern TF_ShapeHandle *TF_ShapeInferenceContextScalar(TF_ShapeInferenceContext *ctx);
/// A rank-1 shape `[size]`; `size == (size_t)-1` gives an unknown dimension (TF's kUnknownDim).
extern TF_ShapeHandle *TF_ShapeInferenceContextVectorFromSize(TF_ShapeInferenceContext *ctx,
                                                              size_t size);
extern int TF_ShapeInferenceContextRankKnown(TF_ShapeInferenceContext *ctx,
                                             TF_ShapeHandle *handle);
extern int64_t TF_ShapeInferenceContextRank(TF_ShapeInferenceContext *ctx, TF_ShapeHandle *handle);
extern void TF_ShapeInferenceContextWithRank(TF_ShapeInferenceContext *ctx, TF_ShapeHandle *handle,
                                             int64_t rank, TF_ShapeHandle *result,
                                             TF_Status *status);
extern void TF_ShapeInferenceContextWithRankAtMost(TF_ShapeInferenceContext *ctx,
                                                   TF_ShapeHandle *handle, int64_t rank,
                                                   TF_ShapeHandle *result, TF_Status *status);
extern void TF_ShapeInferenceContextConcatenateShapes(TF_ShapeInferenceContext *ctx,
                                                      TF_ShapeHandle *first,
                                                      TF_ShapeHandle *second,
                                                      TF_ShapeHandle *result, TF_Status *status);
extern void TF_ShapeInferenceContextSetUnknownShape(TF_ShapeInferenceContext *ctx,
                                                    TF_Status *status);

// --- helpers implemented in ctensorflow.c ------------------------------------------------------

/// Whether TensorFlow's C API can be found in this process (checked with dlsym). The op library only
/// registers its ops when it can.
bool hps_tf_api_available(void);

/// The bytes of one `tensorflow::tstring` (`TF_TString`, 24 bytes) element of a string tensor,
/// whatever its internal representation (small, large, offset or view).
void hps_tstring_read(const void *tstring, const char **data, size_t *size);

/// Writes `size` bytes into a freshly allocated (empty) `TF_TString` element, inline (the "small"
/// representation). Returns false, writing nothing, when `size` exceeds the inline capacity (22 bytes).
bool hps_tstring_write_small(void *tstring, const char *data, size_t size);

#ifdef __cplusplus
}
#endif

#endif  // HPS_CTENSORFLOW_H
