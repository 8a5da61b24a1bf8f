// Tensor: a dtype, a row-major shape and a buffer that is either owned or kept alive by an owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "awq/error.h"

namespace awq {

// Element types that tensors in safetensors files and in memory can have. kCount is the
// sentinel; IsValid() rejects anything at or beyond it.
enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kI64, kI8, kU8, kCount };

inline bool IsValid(DType t) {
  return static_cast<uint8_t>(t) < static_cast<uint8_t>(DType::kCount);
}
size_t DTypeSize(DType t);
// The safetensors spelling: "F32", "F16", "BF16", "I32", "I64", "I8", "U8".
const char* DTypeName(DType t);
// Parses the safetensors spelling; returns false for anything else.
bool ParseDType(std::string_view name, DType* out);

template <class T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType kValue = DType::kF32;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType kValue = DType::kI32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType kValue = DType::kI64;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType kValue = DType::kI8;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType kValue = DType::kU8;
};
// F16 and BF16 are both stored as uint16_t; data<uint16_t>() accepts either.

using Shape = std::vector<int64_t>;

// Number of elements of a shape; throws awq::Error when it overflows int64 or has a negative dim.
int64_t NumElements(const Shape& shape);
std::string ShapeToString(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Owns a zero-initialised, 64-byte aligned buffer.
  Tensor(DType dtype, Shape shape);
  // A view of memory that `owner` keeps alive (a mapped file, another tensor's storage).
  static Tensor Wrap(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // dim(-1) is the last (fastest-varying) dimension.
  int64_t dim(int i) const;
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }
  bool empty() const { return data_ == nullptr; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <class T>
  T* data() {
    CheckType<T>();
    return static_cast<T*>(data_);
  }
  template <class T>
  const T* data() const {
    CheckType<T>();
    return static_cast<const T*>(data_);
  }

  // Deep copy into an owned buffer.
  Tensor Clone() const;
  // Same storage, new shape with the same number of elements.
  Tensor Reshape(Shape shape) const;
  // Converts F32/F16/BF16 to an owned F32 tensor (a copy even when already F32).
  Tensor ToF32() const;

 private:
  template <class T>
  void CheckType() const {
    if constexpr (sizeof(T) == 2) {
      AWQ_CHECK(dtype_ == DType::kF16 || dtype_ == DType::kBF16);
    } else {
      AWQ_CHECK(dtype_ == DTypeOf<T>::kValue);
    }
  }

  DType dtype_ = DType::kF32;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<const void> storage_;
  void* data_ = nullptr;
};

}  // namespace awq
