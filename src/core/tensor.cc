// Tensor storage, dtype names and conversions.
#include "awq/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "awq/half.h"

namespace awq {

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    case DType::kI8:
    case DType::kU8:
      return 1;
    case DType::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid dtype");
  return 0;
}

const char* DTypeName(DType t) {
  static const char* const kNames[] = {"F32", "F16", "BF16", "I32", "I64", "I8", "U8"};
  AWQ_CHECK(IsValid(t));
  return kNames[static_cast<int>(t)];
}

bool ParseDType(std::string_view name, DType* out) {
  for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
    if (name == DTypeName(static_cast<DType>(i))) {
      *out = static_cast<DType>(i);
      return true;
    }
  }
  return false;
}

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("tensor shape " + ShapeToString(shape) + " has a negative dimension");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      throw Error("tensor shape " + ShapeToString(shape) + " overflows 64-bit element count");
    }
    n *= d;
  }
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  AWQ_CHECK(IsValid(dtype));
  numel_ = NumElements(shape_);
  const size_t bytes = (nbytes() + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
  if (p == nullptr) throw Error("out of memory allocating tensor " + ShapeToString(shape_));
  std::memset(p, 0, bytes == 0 ? 64 : bytes);
  storage_ = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  data_ = p;
}

Tensor Tensor::Wrap(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
  AWQ_CHECK(IsValid(dtype));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = NumElements(t.shape_);
  t.storage_ = std::move(owner);
  t.data_ = const_cast<void*>(data);
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  if (i < 0) i += n;
  AWQ_CHECK(i >= 0 && i < n);
  return shape_[static_cast<size_t>(i)];
}

Tensor Tensor::Clone() const {
  Tensor t(dtype_, shape_);
  if (nbytes() > 0) std::memcpy(t.data_, data_, nbytes());
  return t;
}

Tensor Tensor::Reshape(Shape shape) const {
  AWQ_CHECK(NumElements(shape) == numel_);
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::ToF32() const {
  Tensor t(DType::kF32, shape_);
  float* dst = t.data<float>();
  switch (dtype_) {
    case DType::kF32:
      std::memcpy(dst, data_, nbytes());
      break;
    case DType::kF16: {
      const auto* src = static_cast<const uint16_t*>(data_);
      for (int64_t i = 0; i < numel_; ++i) dst[i] = Fp16ToFp32(src[i]);
      break;
    }
    case DType::kBF16: {
      const auto* src = static_cast<const uint16_t*>(data_);
      for (int64_t i = 0; i < numel_; ++i) dst[i] = Bf16ToFp32(src[i]);
      break;
    }
    default:
      throw Error(std::string("cannot convert a ") + DTypeName(dtype_) + " tensor to F32");
  }
  return t;
}

}  // namespace awq
