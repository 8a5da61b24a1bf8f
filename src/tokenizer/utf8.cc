// UTF-8 validation and repair, and GPT-2's byte <-> printable-character map used by byte-level BPE.
#include "tokenizer/utf8.h"

#include "awq/error.h"

namespace awq::tok {

void AppendUtf8(uint32_t cp, std::string* out) {
  AWQ_CHECK(cp <= 0x10FFFF);
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t Utf8SequenceLength(const uint8_t* s, size_t n, size_t* maximal_subpart) {
  *maximal_subpart = 1;
  if (n == 0) return 0;
  const uint8_t b0 = s[0];
  if (b0 < 0x80) return 1;
  // Table 3-7 of the Unicode standard: the allowed range of the second byte depends on the
  // first (this excludes overlong forms, surrogates and code points past U+10FFFF); later bytes
  // are always 80..BF.
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;  // a continuation byte, C0/C1 (overlong) or F5..FF: one U+FFFD for this byte
  }
  for (size_t i = 1; i < len; ++i) {
    if (i >= n) return 0;  // truncated: the whole rest is the maximal subpart
    const uint8_t b = s[i];
    const bool ok = (i == 1) ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return 0;
    *maximal_subpart = i + 1;
  }
  return len;
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t sub;
    const size_t len = Utf8SequenceLength(p + i, n - i, &sub);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

size_t AppendUtf8Lossy(std::string_view in, bool final, std::string* out) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  size_t run = 0;  // start of the current run of well-formed bytes, copied in one go
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t sub;
    const size_t len = Utf8SequenceLength(p + i, n - i, &sub);
    if (len != 0) {
      i += len;
      continue;
    }
    out->append(in.data() + run, i - run);
    if (!final && i + sub == n && sub < 4 && (p[i] >= 0xC2 && p[i] <= 0xF4)) {
      // The tail is a well-formed prefix cut short: wait for the rest of it.
      return i;
    }
    out->append(kReplacement, 3);
    i += sub;
    run = i;
  }
  out->append(in.data() + run, n - run);
  return n;
}

const ByteLevelMap& ByteLevelMap::Get() {
  static const ByteLevelMap map;
  return map;
}

ByteLevelMap::ByteLevelMap() {
  for (int16_t& v : cp_to_byte_) v = -1;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    AppendUtf8(cp, &byte_to_utf8_[b]);
    cp_to_byte_[cp] = static_cast<int16_t>(b);
  }
  AWQ_CHECK(next == 324);
}

void ByteLevelMap::EncodeTo(std::string_view raw, std::string* out) const {
  for (unsigned char c : raw) out->append(byte_to_utf8_[c]);
}

bool ByteLevelMap::DecodeTo(std::string_view spelled, std::string* out) const {
  const auto* p = reinterpret_cast<const uint8_t*>(spelled.data());
  const size_t n = spelled.size();
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    if (p[i] < 0x80) {
      cp = p[i];
      i += 1;
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < n) {
      // Every mapped code point is below U+0144, so two-byte sequences are the only others.
      cp = ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
      i += 2;
    } else {
      return false;
    }
    if (cp >= 324 || cp_to_byte_[cp] < 0) return false;
    out->push_back(static_cast<char>(cp_to_byte_[cp]));
  }
  return true;
}

}  // namespace awq::tok
