// UTF-8 validation and repair, and GPT-2's byte <-> printable-character map used by byte-level BPE.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace awq::tok {

// Appends the UTF-8 encoding of code point `cp` (<= 0x10FFFF) to `out`.
void AppendUtf8(uint32_t cp, std::string* out);

// Length of the well-formed UTF-8 sequence at s[0..n), or 0 when it is ill-formed or incomplete.
// `*maximal_subpart` gets the length of the longest prefix that could still begin a
// well-formed sequence (at least 1): the unit that gets one U+FFFD.
size_t Utf8SequenceLength(const uint8_t* s, size_t n, size_t* maximal_subpart);

bool IsValidUtf8(std::string_view s);

// Appends `in` to `out` with every maximal ill-formed subsequence replaced by U+FFFD, as Rust's
// String::from_utf8_lossy and Python's decode(errors="replace") do. When `final` is false, a
// truncated but so-far well-formed sequence at the end is not consumed; the return value is the
// number of bytes of `in` consumed.
size_t AppendUtf8Lossy(std::string_view in, bool final, std::string* out);

// GPT-2's bytes_to_unicode(): every byte gets a printable code point (printable Latin-1 bytes map
// to themselves, the other 68 to U+0100..U+0143) so that BPE works on visible strings.
class ByteLevelMap {
 public:
  static const ByteLevelMap& Get();
  // The UTF-8 encoding of the character standing for byte `b`.
  const std::string& Encode(uint8_t b) const { return byte_to_utf8_[b]; }
  // Appends the byte-level spelling of raw bytes.
  void EncodeTo(std::string_view raw, std::string* out) const;
  // Decodes a byte-level spelling back to raw bytes; false (and `out` unspecified) when a
  // character is not in the map, e.g. in "<|im_start|> x" the space.
  bool DecodeTo(std::string_view spelled, std::string* out) const;

 private:
  ByteLevelMap();
  std::string byte_to_utf8_[256];
  int16_t cp_to_byte_[324];  // code points 0..323, -1 for those that stand for no byte
};

}  // namespace awq::tok
