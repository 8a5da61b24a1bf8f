// R serialization reader (formats X/B/A, versions 2 and 3) and lazy-load database (.rdb/.rdx)
// access, used to extract the Jane Austen novels from Debian's r-cran-janeaustenr.
#include "awq/rdata.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>

#include "awq/error.h"
#include "core/byte_reader.h"
#include "core/mapped_file.h"

namespace awq {
namespace {

// No R object awq.cpp reads comes close to this; it bounds what a corrupt length can allocate.
constexpr uint64_t kMaxInflatedBytes = uint64_t{1} << 30;
// deflate cannot do better than about 1032:1, so a declared size beyond that ratio (plus the
// stream's fixed overhead) cannot be honest and is refused before anything is allocated.
constexpr uint64_t kMaxDeflateRatio = 1032;
constexpr uint64_t kDeflateSlack = 1024;
// Nesting limit for lists and attributes, so a crafted stream cannot overflow the C++ stack.
constexpr int kMaxDepth = 200;

// The flags word that starts every item (serialize.c, PackFlags):
//   bits 0-7 type | bit 8 object | bit 9 has attributes | bit 10 has tag | bits 12-27 levels
constexpr uint32_t kTypeMask = 0xff;
constexpr uint32_t kObjectBit = 1u << 8;
constexpr uint32_t kAttrBit = 1u << 9;
constexpr uint32_t kTagBit = 1u << 10;
constexpr int kLevelsShift = 12;

// Pseudo-types that exist only in the stream.
constexpr int kRefSxp = 255;       // back-reference into the reference table; index in bits 8+
constexpr int kNilValueSxp = 254;  // R_NilValue

// CHARSXP levels: how the bytes are encoded (Defn.h).
constexpr int kBytesMask = 1 << 1;
constexpr int kLatin1Mask = 1 << 2;
constexpr int kUtf8Mask = 1 << 3;
constexpr int kAsciiMask = 1 << 6;

enum class Format { kXdr, kBinary, kAscii };
// What the writer's native encoding (version 3 header) means for strings without a flag.
enum class NativeEncoding { kUtf8, kLatin1, kCp1252, kOther };

// Windows-1252 differs from latin1 only in 0x80-0x9f; these are its code points (0 = unused).
constexpr uint16_t kCp1252High[32] = {
    0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017d, 0,      0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178};

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c & 0x80) == 0; });
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

NativeEncoding ClassifyEncoding(const std::string& name) {
  const std::string n = Lower(name);
  if (n == "utf-8" || n == "utf8") return NativeEncoding::kUtf8;
  if (n == "latin1" || n == "iso-8859-1" || n == "iso8859-1" || n == "iso_8859-1") {
    return NativeEncoding::kLatin1;
  }
  if (n == "cp1252" || n == "windows-1252") return NativeEncoding::kCp1252;
  return NativeEncoding::kOther;
}

class RReader {
 public:
  RReader(const uint8_t* data, size_t size, const std::string& source) : in_(data, size, source) {}

  RObject ReadTop() {
    ReadHeader();
    return ReadItem(0);
  }

 private:
  void ReadHeader() {
    const std::string_view magic = in_.ReadBytes(2, "format header");
    if (magic == "X\n") {
      format_ = Format::kXdr;
    } else if (magic == "B\n") {
      format_ = Format::kBinary;
    } else if (magic == "A\n") {
      format_ = Format::kAscii;
    } else {
      // Name the two near misses people hand us: compressed .rds files and save() images.
      std::string hint;
      if (magic == "\x1f\x8b") hint = " (gzip-compressed: inflate it first)";
      if (magic == "RD") hint = " (an RDX2/RDX3 save() image: skip its 5-byte header)";
      in_.Fail("format header",
               "expected \"X\\n\", \"B\\n\" or \"A\\n\" (an uncompressed R serialization), got " +
                   Printable(magic) + hint);
    }
    const int32_t version = ReadInt("format version");
    ReadInt("writer R version");
    ReadInt("minimal reader R version");
    if (version != 2 && version != 3) {
      in_.Fail("format version",
               "version " + std::to_string(version) + " is not supported (only 2 and 3)");
    }
    if (version == 3) {
      const int32_t n = ReadInt("native encoding length");
      // R itself refuses names longer than its R_CODESET_MAX (63) buffer.
      if (n < 0 || n > 63) {
        in_.Fail("native encoding length", "length " + std::to_string(n) + " is out of [0, 63]");
      }
      native_name_ = ReadRawString(n, "native encoding");
      native_ = ClassifyEncoding(native_name_);
    }
  }

  static std::string Printable(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
      if (c >= 0x20 && c < 0x7f) {
        out.push_back(c);
      } else {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
        out += buf;
      }
    }
    return out + "\"";
  }

  // --- Primitive reads, per format -------------------------------------------------------------

  // The next whitespace-delimited word of an ASCII stream.
  std::string_view ReadWord(const char* field) {
    while (in_.remaining() > 0 && std::isspace(in_.data()[in_.pos()])) in_.Skip(1, field);
    const size_t start = in_.pos();
    size_t end = start;
    while (end < in_.size() && !std::isspace(in_.data()[end])) ++end;
    if (end == start) in_.Fail(field, "expected a number at offset " + std::to_string(start));
    // R reads words into a 1000-byte buffer; anything longer is not a number it wrote.
    if (end - start > 1000)
      in_.Fail(field, "word at offset " + std::to_string(start) + " is too long");
    return in_.ReadBytes(end - start, field);
  }

  int32_t ReadInt(const char* field) {
    switch (format_) {
      case Format::kXdr:
        return static_cast<int32_t>(in_.ReadU32BE(field));
      case Format::kBinary:
        // R writes "B" streams in the writer's byte order; every platform R runs on today is
        // little-endian, which is what this reads.
        return static_cast<int32_t>(LittleEndian(in_.Read<uint32_t>(field)));
      case Format::kAscii: {
        const size_t at = in_.pos();
        const std::string word(ReadWord(field));
        if (word == "NA") return kRNaInteger;
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(word.c_str(), &end, 10);
        if (errno != 0 || *end != '\0' || v < std::numeric_limits<int32_t>::min() ||
            v > std::numeric_limits<int32_t>::max()) {
          in_.Fail(field, "bad integer " + Printable(word) + " at offset " + std::to_string(at));
        }
        return static_cast<int32_t>(v);
      }
    }
    AWQ_CHECK(false);
    return 0;
  }

  double ReadDouble(const char* field) {
    switch (format_) {
      case Format::kXdr: {
        const uint64_t hi = in_.ReadU32BE(field);
        const uint64_t lo = in_.ReadU32BE(field);
        return std::bit_cast<double>((hi << 32) | lo);
      }
      case Format::kBinary:
        return std::bit_cast<double>(LittleEndian(in_.Read<uint64_t>(field)));
      case Format::kAscii: {
        const size_t at = in_.pos();
        const std::string word(ReadWord(field));
        if (word == "NA") return RNaReal();
        if (word == "NaN") return std::numeric_limits<double>::quiet_NaN();
        if (word == "Inf") return std::numeric_limits<double>::infinity();
        if (word == "-Inf") return -std::numeric_limits<double>::infinity();
        char* end = nullptr;
        const double v = std::strtod(word.c_str(), &end);
        if (*end != '\0') {
          in_.Fail(field, "bad number " + Printable(word) + " at offset " + std::to_string(at));
        }
        return v;
      }
    }
    AWQ_CHECK(false);
    return 0;
  }

  // R's NA_real_: a NaN with low word 1954.
  static double RNaReal() { return std::bit_cast<double>(uint64_t{0x7ff00000000007a2}); }

  template <class T>
  static T LittleEndian(T v) {
    if constexpr (std::endian::native == std::endian::big) {
      T swapped = 0;
      for (size_t i = 0; i < sizeof(T); ++i) swapped = (swapped << 8) | ((v >> (8 * i)) & 0xff);
      return swapped;
    }
    return v;
  }

  // n bytes of string data: verbatim in X/B, C-style escaped in A (serialize.c, InString).
  std::string ReadRawString(int32_t n, const char* field) {
    if (format_ != Format::kAscii)
      return std::string(in_.ReadBytes(static_cast<uint64_t>(n), field));
    std::string out;
    if (n == 0) return out;
    // Every decoded byte takes at least one input byte.
    in_.Need(static_cast<uint64_t>(n), field);
    out.reserve(static_cast<size_t>(n));
    while (in_.remaining() > 0 && std::isspace(in_.data()[in_.pos()])) in_.Skip(1, field);
    auto next = [&]() { return static_cast<char>(in_.Read<uint8_t>(field)); };
    for (int32_t i = 0; i < n; ++i) {
      char c = next();
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      c = next();
      switch (c) {
        case 'n':
          out.push_back('\n');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'a':
          out.push_back('\a');
          break;
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7': {
          // Up to three octal digits.
          int d = c - '0';
          for (int j = 1; j < 3 && in_.remaining() > 0; ++j) {
            const uint8_t p = in_.data()[in_.pos()];
            if (p < '0' || p > '7') break;
            d = d * 8 + (p - '0');
            in_.Skip(1, field);
          }
          out.push_back(static_cast<char>(d));
          break;
        }
        default:
          out.push_back(c);  // \\ \? \' \" and anything else stand for themselves
      }
    }
    return out;
  }

  // A vector length: an int, or -1 followed by two ints for lengths of 2^31 and more.
  uint64_t ReadLength(const char* field) {
    const int32_t n = ReadInt(field);
    if (n >= 0) return static_cast<uint64_t>(n);
    if (n != -1) in_.Fail(field, "negative length " + std::to_string(n));
    const uint64_t hi = static_cast<uint32_t>(ReadInt(field));
    const uint64_t lo = static_cast<uint32_t>(ReadInt(field));
    return (hi << 32) | lo;
  }

  // Refuses counts the rest of the input cannot possibly hold, before anything is allocated.
  void CheckCount(uint64_t n, uint64_t bytes_each, const char* field) {
    // An ASCII element can be as short as one character.
    const uint64_t each = format_ == Format::kAscii ? 1 : bytes_each;
    if (n > in_.remaining() / each) {
      in_.Fail(field, "length " + std::to_string(n) + " needs at least " + std::to_string(each) +
                          " bytes per element at offset " + std::to_string(in_.pos()) +
                          " but only " + std::to_string(in_.remaining()) + " remain");
    }
  }

  // --- Items ------------------------------------------------------------------------------------

  [[noreturn]] void Unsupported(size_t at, int type, const char* where) {
    in_.Fail(where, "SEXP type " + std::to_string(type) + " (" + RTypeName(type) + ") at offset " +
                        std::to_string(at) + " is not supported");
  }

  // A CHARSXP body after its flags word, converted to UTF-8; nullopt for NA_character_.
  std::optional<std::string> ReadCharBody(uint32_t flags, int depth) {
    const int levels = static_cast<int>(flags >> kLevelsShift);
    const size_t at = in_.pos();
    const int32_t n = ReadInt("string length");
    std::optional<std::string> result;
    if (n < -1) {
      in_.Fail("string length", "length " + std::to_string(n) + " at offset " + std::to_string(at));
    }
    if (n >= 0) result = ToUtf8(ReadRawString(n, "string bytes"), levels, at);
    // Old writers could attach attributes to a CHARSXP; R reads and drops them, and so do we.
    if (flags & kAttrBit) ReadItem(depth + 1);
    return result;
  }

  std::string ToUtf8(std::string bytes, int levels, size_t at) {
    if (levels & (kUtf8Mask | kAsciiMask | kBytesMask)) return bytes;
    NativeEncoding enc = native_;
    if (levels & kLatin1Mask) enc = NativeEncoding::kLatin1;
    if (enc == NativeEncoding::kUtf8 || IsAscii(bytes)) return bytes;
    if (enc == NativeEncoding::kOther) {
      in_.Fail("string bytes", "string at offset " + std::to_string(at) +
                                   " is in the writer's native encoding " +
                                   Printable(native_name_) + ", which is not supported");
    }
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char ch : bytes) {
      const uint8_t b = static_cast<uint8_t>(ch);
      uint32_t cp = b;
      if (enc == NativeEncoding::kCp1252 && b >= 0x80 && b < 0xa0 && kCp1252High[b - 0x80] != 0) {
        cp = kCp1252High[b - 0x80];
      }
      AppendUtf8(cp, &out);
    }
    return out;
  }

  // Reads an attribute pairlist into obj's attribute_names / attribute_values.
  void ReadAttributes(int depth, RObject* obj) {
    const size_t at = in_.pos();
    RObject list = ReadItem(depth);
    if (list.type != RType::kPairList) {
      in_.Fail("attributes", "expected a pairlist at offset " + std::to_string(at) + ", got " +
                                 RTypeName(static_cast<int>(list.type)));
    }
    obj->attribute_names = std::move(list.tags);
    obj->attribute_values = std::move(list.elements);
  }

  // A pairlist, node by node. The chain of CDRs is walked in a loop rather than by recursion so
  // that a long pairlist cannot exhaust the stack.
  RObject ReadPairList(uint32_t flags, int depth) {
    RObject list;
    list.type = RType::kPairList;
    list.is_object = flags & kObjectBit;
    bool first = true;
    while (true) {
      // Node layout: [attributes] [tag] CAR CDR. Only the head node's attributes are the
      // list's; R allows them on inner nodes too, where they carry no meaning for a reader.
      if (flags & kAttrBit) {
        RObject node;
        ReadAttributes(depth + 1, &node);
        if (first) {
          list.attribute_names = std::move(node.attribute_names);
          list.attribute_values = std::move(node.attribute_values);
        }
      }
      std::string tag;
      if (flags & kTagBit) {
        const size_t at = in_.pos();
        RObject t = ReadItem(depth + 1);
        if (t.type == RType::kSymbol) {
          tag = *t.strings[0];
        } else if (t.type != RType::kNil) {
          in_.Fail("pairlist tag", "expected a symbol at offset " + std::to_string(at) + ", got " +
                                       RTypeName(static_cast<int>(t.type)));
        }
      }
      list.elements.push_back(ReadItem(depth + 1));
      list.tags.push_back(std::move(tag));
      first = false;

      const size_t at = in_.pos();
      flags = static_cast<uint32_t>(ReadInt("pairlist CDR flags"));
      const int type = static_cast<int>(flags & kTypeMask);
      if (type == kNilValueSxp) break;
      if (type != static_cast<int>(RType::kPairList)) Unsupported(at, type, "pairlist CDR");
    }
    return list;
  }

  RObject ReadItem(int depth) {
    const size_t at = in_.pos();
    if (depth > kMaxDepth) {
      in_.Fail("item", "nesting deeper than " + std::to_string(kMaxDepth) + " at offset " +
                           std::to_string(at));
    }
    const uint32_t flags = static_cast<uint32_t>(ReadInt("item flags"));
    const int type = static_cast<int>(flags & kTypeMask);
    RObject obj;
    switch (type) {
      case kNilValueSxp:
        return obj;
      case kRefSxp: {
        // Only symbols enter the reference table among the types read here.
        int64_t index = flags >> 8;
        if (index == 0) index = ReadInt("reference index");
        if (index < 1 || index > static_cast<int64_t>(symbols_.size())) {
          in_.Fail("reference index", "index " + std::to_string(index) + " at offset " +
                                          std::to_string(at) + " is outside the table of " +
                                          std::to_string(symbols_.size()) + " entries");
        }
        obj.type = RType::kSymbol;
        obj.strings.push_back(symbols_[static_cast<size_t>(index - 1)]);
        return obj;
      }
      case static_cast<int>(RType::kSymbol): {
        const size_t name_at = in_.pos();
        const uint32_t cflags = static_cast<uint32_t>(ReadInt("symbol name flags"));
        if ((cflags & kTypeMask) != static_cast<uint32_t>(RType::kChar)) {
          Unsupported(name_at, static_cast<int>(cflags & kTypeMask), "symbol name");
        }
        // R turns an NA name into the symbol `NA`.
        const std::string name = ReadCharBody(cflags, depth).value_or("NA");
        symbols_.push_back(name);
        obj.type = RType::kSymbol;
        obj.strings.push_back(name);
        return obj;
      }
      case static_cast<int>(RType::kPairList):
        return ReadPairList(flags, depth);
      case static_cast<int>(RType::kChar):
        obj.type = RType::kChar;
        obj.strings.push_back(ReadCharBody(flags, depth));
        return obj;
      case static_cast<int>(RType::kLogical):
      case static_cast<int>(RType::kInteger): {
        const uint64_t n = ReadLength("vector length");
        CheckCount(n, 4, "vector length");
        obj.ints.resize(static_cast<size_t>(n));
        for (auto& v : obj.ints) v = ReadInt("vector element");
        break;
      }
      case static_cast<int>(RType::kReal): {
        const uint64_t n = ReadLength("vector length");
        CheckCount(n, 8, "vector length");
        obj.reals.resize(static_cast<size_t>(n));
        for (auto& v : obj.reals) v = ReadDouble("vector element");
        break;
      }
      case static_cast<int>(RType::kString): {
        const uint64_t n = ReadLength("vector length");
        CheckCount(n, 8, "vector length");  // each element: flags + length at least
        obj.strings.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) {
          const size_t el_at = in_.pos();
          const uint32_t cflags = static_cast<uint32_t>(ReadInt("string element flags"));
          if ((cflags & kTypeMask) != static_cast<uint32_t>(RType::kChar)) {
            Unsupported(el_at, static_cast<int>(cflags & kTypeMask), "string element");
          }
          obj.strings.push_back(ReadCharBody(cflags, depth));
        }
        break;
      }
      case static_cast<int>(RType::kList): {
        const uint64_t n = ReadLength("vector length");
        CheckCount(n, 4, "vector length");
        obj.elements.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) obj.elements.push_back(ReadItem(depth + 1));
        break;
      }
      default:
        Unsupported(at, type, "item");
    }
    obj.type = static_cast<RType>(type);
    obj.is_object = flags & kObjectBit;
    // Vectors carry their attributes after the data (pairlists before it).
    if (flags & kAttrBit) ReadAttributes(depth + 1, &obj);
    return obj;
  }

  ByteReader in_;
  Format format_ = Format::kXdr;
  NativeEncoding native_ = NativeEncoding::kUtf8;  // version 2 does not say; assume UTF-8
  std::string native_name_ = "UTF-8";
  // The reference table: symbols, in the order they first appear (REFSXP indices are 1-based).
  std::vector<std::string> symbols_;
};

// Upper bound on what `compressed_size` bytes of deflate data can honestly inflate to.
uint64_t InflateLimit(uint64_t compressed_size) {
  return std::min(kMaxInflatedBytes, compressed_size * kMaxDeflateRatio + kDeflateSlack);
}

struct ZStream {
  z_stream zs{};
  bool live = false;
  ~ZStream() {
    if (live) inflateEnd(&zs);
  }
};

std::string ZlibMessage(const z_stream& zs, int rc) {
  return zs.msg ? std::string(zs.msg) : "zlib error " + std::to_string(rc);
}

}  // namespace

std::string RTypeName(int type) {
  switch (type) {
    case 0:
      return "NULL";
    case 1:
      return "symbol";
    case 2:
      return "pairlist";
    case 3:
      return "closure";
    case 4:
      return "environment";
    case 5:
      return "promise";
    case 6:
      return "language";
    case 7:
      return "special";
    case 8:
      return "builtin";
    case 9:
      return "char";
    case 10:
      return "logical";
    case 13:
      return "integer";
    case 14:
      return "double";
    case 15:
      return "complex";
    case 16:
      return "character";
    case 17:
      return "...";
    case 18:
      return "any";
    case 19:
      return "list";
    case 20:
      return "expression";
    case 21:
      return "bytecode";
    case 22:
      return "externalptr";
    case 23:
      return "weakref";
    case 24:
      return "raw";
    case 25:
      return "S4";
    case 238:
      return "ALTREP_SXP";
    case 239:
      return "ATTRLISTSXP";
    case 240:
      return "ATTRLANGSXP";
    case 241:
      return "BASEENV_SXP";
    case 242:
      return "EMPTYENV_SXP";
    case 243:
      return "BCREPREF";
    case 244:
      return "BCREPDEF";
    case 245:
      return "GENERICREFSXP";
    case 246:
      return "CLASSREFSXP";
    case 247:
      return "PERSISTSXP";
    case 248:
      return "PACKAGESXP";
    case 249:
      return "NAMESPACESXP";
    case 250:
      return "BASENAMESPACE_SXP";
    case 251:
      return "MISSINGARG_SXP";
    case 252:
      return "UNBOUNDVALUE_SXP";
    case 253:
      return "GLOBALENV_SXP";
    case 254:
      return "NILVALUE_SXP";
    case 255:
      return "REFSXP";
    default:
      return "type" + std::to_string(type);
  }
}

const RObject* RObject::Attribute(const std::string& name) const {
  for (size_t i = 0; i < attribute_names.size() && i < attribute_values.size(); ++i) {
    if (attribute_names[i] == name) return &attribute_values[i];
  }
  return nullptr;
}

std::vector<std::string> RObject::Names() const {
  if (type == RType::kPairList) return tags;
  std::vector<std::string> names;
  const RObject* n = Attribute("names");
  if (n == nullptr || n->type != RType::kString) return names;
  for (const auto& s : n->strings) names.push_back(s.value_or(""));
  return names;
}

size_t RObject::size() const {
  switch (type) {
    case RType::kNil:
      return 0;
    case RType::kSymbol:
    case RType::kChar:
      return 1;
    case RType::kLogical:
    case RType::kInteger:
      return ints.size();
    case RType::kReal:
      return reals.size();
    case RType::kString:
      return strings.size();
    case RType::kList:
    case RType::kPairList:
      return elements.size();
  }
  return 0;
}

RObject ParseRSerialization(const uint8_t* data, size_t size, const std::string& source) {
  return RReader(data, size, source).ReadTop();
}

std::string InflateRLazyLoadEntry(const uint8_t* data, size_t size, const std::string& source) {
  ByteReader in(data, size, source);
  const uint64_t n = in.ReadU32BE("uncompressed length");
  const uint64_t limit = InflateLimit(in.remaining());
  if (n > limit) {
    in.Fail("uncompressed length",
            std::to_string(n) + " bytes is more than " + std::to_string(in.remaining()) +
                " compressed bytes can hold (limit " + std::to_string(limit) + ")");
  }
  // One spare byte tells "exactly n" apart from "more than n".
  std::string out(static_cast<size_t>(n) + 1, '\0');
  ZStream z;
  if (inflateInit(&z.zs) != Z_OK) throw Error(source + ": zlib: inflateInit failed");
  z.live = true;
  z.zs.next_in = const_cast<Bytef*>(data + in.pos());
  z.zs.avail_in = static_cast<uInt>(in.remaining());
  z.zs.next_out = reinterpret_cast<Bytef*>(out.data());
  z.zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z.zs, Z_FINISH);
  if (rc == Z_STREAM_END) {
    if (z.zs.total_out != n) {
      in.Fail("zlib stream", "inflates to " + std::to_string(z.zs.total_out) +
                                 " bytes but the header declares " + std::to_string(n));
    }
  } else if (rc == Z_BUF_ERROR && z.zs.avail_out == 0) {
    in.Fail("zlib stream", "inflates to more than the declared " + std::to_string(n) + " bytes");
  } else if (rc == Z_BUF_ERROR || rc == Z_OK) {
    in.Fail("zlib stream", "ends early after " + std::to_string(z.zs.total_out) + " of " +
                               std::to_string(n) + " bytes (truncated entry?)");
  } else {
    in.Fail("zlib stream", "corrupt: " + ZlibMessage(z.zs, rc));
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string GunzipBounded(const uint8_t* data, size_t size, const std::string& source) {
  if (size > std::numeric_limits<uInt>::max()) {
    throw Error(source + ": gzip stream: " + std::to_string(size) + " bytes is too large");
  }
  const uint64_t limit = InflateLimit(size);
  ZStream z;
  // 16 + MAX_WBITS: expect a gzip wrapper, check its CRC and length trailer.
  if (inflateInit2(&z.zs, 16 + MAX_WBITS) != Z_OK) {
    throw Error(source + ": gzip: inflateInit failed");
  }
  z.live = true;
  z.zs.next_in = const_cast<Bytef*>(data);
  z.zs.avail_in = static_cast<uInt>(size);
  std::string out;
  while (true) {
    if (out.size() - z.zs.total_out == 0) {
      if (out.size() >= limit) {
        throw Error(source + ": gzip stream: inflates to more than " + std::to_string(limit) +
                    " bytes, the limit for a " + std::to_string(size) + "-byte file");
      }
      out.resize(
          static_cast<size_t>(std::min<uint64_t>(limit, std::max<size_t>(4096, out.size() * 2))));
    }
    z.zs.next_out = reinterpret_cast<Bytef*>(out.data() + z.zs.total_out);
    z.zs.avail_out = static_cast<uInt>(out.size() - z.zs.total_out);
    const int rc = inflate(&z.zs, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && z.zs.avail_in == 0) {
      throw Error(source + ": gzip stream: ends early after " + std::to_string(z.zs.total_out) +
                  " bytes (truncated file?)");
    }
    if (rc != Z_BUF_ERROR) {
      throw Error(source + ": gzip stream: corrupt: " + ZlibMessage(z.zs, rc));
    }
  }
  out.resize(z.zs.total_out);
  return out;
}

namespace {

// The element of a named list called `name`, or nullptr.
const RObject* Field(const RObject& list, const std::string& name) {
  const std::vector<std::string> names = list.Names();
  for (size_t i = 0; i < names.size() && i < list.elements.size(); ++i) {
    if (names[i] == name) return &list.elements[i];
  }
  return nullptr;
}

// R's lazy-load compression types (lazyLoadDBinsertValue): 0 none, 1 zlib, 2 bzip2, 3 xz.
int CompressionType(const RObject* c, const std::string& source) {
  // R passes a missing "compressed" field on as NA, which its fetch code treats as zlib.
  if (c == nullptr) return 1;
  int64_t v = 0;
  if ((c->type == RType::kLogical || c->type == RType::kInteger) && c->ints.size() == 1) {
    v = c->ints[0] == kRNaInteger ? 1 : c->ints[0];
  } else if (c->type == RType::kReal && c->reals.size() == 1) {
    v = static_cast<int64_t>(c->reals[0]);
  } else {
    throw Error(source + ": compressed: expected one logical or number, got " +
                RTypeName(static_cast<int>(c->type)) + " of length " + std::to_string(c->size()));
  }
  if (v != 0 && v != 1) {
    throw Error(source + ": compressed: compression type " + std::to_string(v) +
                (v == 2   ? " (bzip2)"
                 : v == 3 ? " (xz)"
                          : "") +
                " is not supported (only 0 = none and 1 = zlib)");
  }
  return static_cast<int>(v);
}

}  // namespace

std::map<std::string, std::vector<std::optional<std::string>>> ReadRLazyLoadStringsWithNa(
    const std::string& rdb_rdx_prefix) {
  const std::string rdx_path = rdb_rdx_prefix + ".rdx";
  const std::string rdb_path = rdb_rdx_prefix + ".rdb";
  const std::string gz = ReadFileToString(rdx_path);
  const std::string raw =
      GunzipBounded(reinterpret_cast<const uint8_t*>(gz.data()), gz.size(), rdx_path);
  const RObject index =
      ParseRSerialization(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(), rdx_path);
  if (index.type != RType::kList) {
    throw Error(rdx_path + ": index: expected a list, got " +
                RTypeName(static_cast<int>(index.type)));
  }
  const RObject* vars = Field(index, "variables");
  if (vars == nullptr || vars->type != RType::kList) {
    throw Error(rdx_path + ": variables: missing or not a list");
  }
  const int compression = CompressionType(Field(index, "compressed"), rdx_path);

  const auto rdb = MappedFile::Open(rdb_path);
  const std::vector<std::string> names = vars->Names();
  if (names.size() != vars->elements.size()) {
    throw Error(rdx_path + ": variables: the list has " + std::to_string(vars->elements.size()) +
                " elements but " + std::to_string(names.size()) + " names");
  }
  std::map<std::string, std::vector<std::optional<std::string>>> result;
  for (size_t i = 0; i < names.size(); ++i) {
    const RObject& key = vars->elements[i];
    const std::string where = rdx_path + ": variables$" + names[i];
    if (key.type != RType::kInteger || key.ints.size() != 2 || key.ints[0] < 0 || key.ints[1] < 0) {
      throw Error(where + ": expected two non-negative integers (offset, length)");
    }
    const uint64_t offset = static_cast<uint32_t>(key.ints[0]);
    const uint64_t length = static_cast<uint32_t>(key.ints[1]);
    if (offset + length > rdb->size()) {
      throw Error(where + ": entry [" + std::to_string(offset) + ", +" + std::to_string(length) +
                  ") is past the end of " + rdb_path + " (" + std::to_string(rdb->size()) +
                  " bytes)");
    }
    const std::string entry_source =
        rdb_path + " (variable '" + names[i] + "' at offset " + std::to_string(offset) + ")";
    const uint8_t* p = rdb->data() + offset;
    RObject value;
    if (compression == 1) {
      const std::string bytes = InflateRLazyLoadEntry(p, length, entry_source);
      value = ParseRSerialization(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                  entry_source);
    } else {
      value = ParseRSerialization(p, length, entry_source);
    }
    if (value.type == RType::kString) result[names[i]] = std::move(value.strings);
  }
  return result;
}

std::map<std::string, std::vector<std::string>> ReadRLazyLoadStrings(
    const std::string& rdb_rdx_prefix) {
  std::map<std::string, std::vector<std::string>> result;
  for (auto& [name, values] : ReadRLazyLoadStringsWithNa(rdb_rdx_prefix)) {
    std::vector<std::string>& out = result[name];
    out.reserve(values.size());
    for (auto& v : values) out.push_back(v ? std::move(*v) : std::string());
  }
  return result;
}

void ExtractAustenNovels(const std::string& rdata_prefix, const std::string& out_dir) {
  const auto vars = ReadRLazyLoadStrings(rdata_prefix);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw Error(out_dir + ": cannot create the output folder: " + ec.message());
  for (const char* name : kAustenNovels) {
    const auto it = vars.find(name);
    if (it == vars.end()) {
      std::string have;
      for (const auto& [n, v] : vars) have += (have.empty() ? "" : ", ") + n;
      throw Error(rdata_prefix + ".rdx: variables: no character vector '" + name +
                  "' (have: " + (have.empty() ? "none" : have) + ")");
    }
    size_t total = 0;
    for (const auto& line : it->second) total += line.size() + 1;
    // Lines joined by "\n" plus a final "\n", so an empty vector still gives "\n".
    std::string text;
    text.reserve(total + 1);
    for (size_t i = 0; i < it->second.size(); ++i) {
      if (i > 0) text += '\n';
      text += it->second[i];
    }
    text += '\n';
    WriteFileAtomic(out_dir + "/" + name + ".txt", text.data(), text.size());
  }
}

}  // namespace awq
