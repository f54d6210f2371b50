// The C half of the HPS op library: a load-time constructor that registers the ops and kernels (the
// registration itself is written in Swift, `hps_tf_register_ops` in HPSTensorFlow), and the
// `tensorflow::tstring` accessors, which TensorFlow only provides as inline functions.
#define _GNU_SOURCE
#include "CTensorFlow.h"

#include <dlfcn.h>
#include <string.h>

// Defined in Swift (HPSTensorFlow, @_cdecl). Weak so this target also links on its own.
extern void hps_tf_register_ops(void) __attribute__((weak));

bool hps_tf_api_available(void) {
  return dlsym(RTLD_DEFAULT, "TF_NewOpDefinitionBuilder") != NULL &&
         dlsym(RTLD_DEFAULT, "TF_NewKernelBuilder") != NULL;
}

// tf.load_op_library collects the ops registered while the library's constructors run, so the ops
// and CPU kernels are registered here. When TensorFlow is not loaded (e.g. the library is opened by a
// plain dlopen), nothing is registered and the TF symbols are never called.
__attribute__((constructor)) static void hps_tf_library_loaded(void) {
  if (hps_tf_register_ops != NULL && hps_tf_api_available()) hps_tf_register_ops();
}

// --- tstring --------------------------------------------------------------------------------------
// Layout of TF_TString (tsl/platform/ctstring_internal.h): a 24-byte union whose low two bits of the
// first byte give the representation. Little-endian only (x86-64, aarch64).
enum { kTypeSmall = 0, kTypeLarge = 1, kTypeOffset = 2, kTypeView = 3, kSmallCapacity = 22 };

void hps_tstring_read(const void *tstring, const char **data, size_t *size) {
  const unsigned char *raw = (const unsigned char *)tstring;
  switch (raw[0] & 3) {
    case kTypeSmall:
      *size = raw[0] >> 2;
      *data = (const char *)raw + 1;
      break;
    case kTypeLarge: {  // { size_t size; size_t cap; char *ptr; }
      size_t encoded;
      const char *ptr;
      memcpy(&encoded, raw, sizeof encoded);
      memcpy(&ptr, raw + 2 * sizeof(size_t), sizeof ptr);
      *size = encoded >> 2;
      *data = ptr;
      break;
    }
    case kTypeOffset: {  // { uint32_t size; uint32_t offset; uint32_t count; }, data at this + offset
      uint32_t encoded, offset;
      memcpy(&encoded, raw, sizeof encoded);
      memcpy(&offset, raw + 4, sizeof offset);
      *size = encoded >> 2;
      *data = (const char *)raw + offset;
      break;
    }
    default: {  // view: { size_t size; const char *ptr; void *owner; }
      size_t encoded;
      const char *ptr;
      memcpy(&encoded, raw, sizeof encoded);
      memcpy(&ptr, raw + sizeof(size_t), sizeof ptr);
      *size = encoded >> 2;
      *data = ptr;
      break;
    }
  }
}

bool hps_tstring_write_small(void *tstring, const char *data, size_t size) {
  if (size > kSmallCapacity) return false;
  unsigned char *raw = (unsigned char *)tstring;
  memset(raw, 0, 24);
  raw[0] = (unsigned char)(size << 2);
  memcpy(raw + 1, data, size);
  return true;
}
