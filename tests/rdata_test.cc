// Tests for the R serialization / lazy-load reader: hand-built streams for every SEXP type it
// reads, malformed input, a synthetic .rdb/.rdx database, and the real janeaustenr package.
#include "awq/rdata.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "awq/error.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

// SEXP type numbers and flag bits, written out here independently of the reader.
constexpr int kSym = 1, kList = 2, kClos = 3, kChar = 9, kLgl = 10, kInt = 13, kReal = 14,
              kStr = 16, kVec = 19, kRef = 255, kNilValue = 254;
constexpr int kObj = 1 << 8, kAttr = 1 << 9, kTag = 1 << 10;
constexpr int kLatin1 = 1 << 2, kUtf8 = 1 << 3, kAscii = 1 << 6;

// A tiny R serializer for the formats the reader accepts, so each test states its bytes.
class RWriter {
 public:
  enum Format { kXdr, kBinary, kAsciiFormat };
  explicit RWriter(Format f = kXdr, int version = 3, const std::string& native = "UTF-8")
      : format_(f) {
    out_ = f == kXdr ? "X\n" : f == kBinary ? "B\n" : "A\n";
    Int(version);
    Int(0x040201);  // written by R 4.2.1
    Int(version == 3 ? 0x030500 : 0x020300);
    if (version == 3) {
      Int(static_cast<int32_t>(native.size()));
      Raw(native);
    }
  }
  RWriter& Int(int32_t v) {
    if (format_ == kAsciiFormat) {
      out_ += (v == INT32_MIN ? std::string("NA") : std::to_string(v)) + "\n";
    } else {
      const uint32_t u = static_cast<uint32_t>(v);
      for (int i = 0; i < 4; ++i) {
        const int shift = format_ == kXdr ? 24 - 8 * i : 8 * i;
        out_.push_back(static_cast<char>(u >> shift));
      }
    }
    return *this;
  }
  RWriter& Double(double d) {
    if (format_ == kAsciiFormat) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.17g\n", d);
      out_ += std::isinf(d) ? (d > 0 ? "Inf\n" : "-Inf\n") : buf;
      return *this;
    }
    const uint64_t u = std::bit_cast<uint64_t>(d);
    if (format_ == kXdr) {
      Int(static_cast<int32_t>(u >> 32)).Int(static_cast<int32_t>(u));
    } else {
      Int(static_cast<int32_t>(u)).Int(static_cast<int32_t>(u >> 32));
    }
    return *this;
  }
  // String bytes: verbatim, or escaped as R's ASCII format writes them.
  RWriter& Raw(const std::string& s) {
    if (format_ != kAsciiFormat) {
      out_ += s;
      return *this;
    }
    for (unsigned char c : s) {
      if (c == '\n') {
        out_ += "\\n";
      } else if (c == '\\') {
        out_ += "\\\\";
      } else if (c <= 32 || c > 126) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\%03o", c);
        out_ += buf;
      } else {
        out_.push_back(static_cast<char>(c));
      }
    }
    out_ += "\n";
    return *this;
  }
  RWriter& Flags(int type, int extra = 0, int levels = 0) {
    return Int(type | extra | (levels << 12));
  }
  RWriter& Nil() { return Int(kNilValue); }
  RWriter& Char(const std::optional<std::string>& s, int levels = kUtf8) {
    Flags(kChar, 0, s ? levels : 0);
    if (!s) return Int(-1);
    Int(static_cast<int32_t>(s->size()));
    return Raw(*s);
  }
  RWriter& Sym(const std::string& name) {
    Flags(kSym);
    return Char(name, kAscii);
  }
  RWriter& Ref(int index) { return Int((index << 8) | kRef); }
  RWriter& Strings(const std::vector<std::optional<std::string>>& v, int extra = 0) {
    Flags(kStr, extra).Int(static_cast<int32_t>(v.size()));
    for (const auto& s : v) Char(s);
    return *this;
  }
  RWriter& Ints(int type, const std::vector<int32_t>& v, int extra = 0) {
    Flags(type, extra).Int(static_cast<int32_t>(v.size()));
    for (int32_t x : v) Int(x);
    return *this;
  }

  const std::string& bytes() const { return out_; }
  RObject Parse(const std::string& source = "test.rds") const {
    return ParseRSerialization(reinterpret_cast<const uint8_t*>(out_.data()), out_.size(), source);
  }

 private:
  Format format_;
  std::string out_;
};

RObject ParseString(const std::string& s, const std::string& source = "bad.rds") {
  return ParseRSerialization(reinterpret_cast<const uint8_t*>(s.data()), s.size(), source);
}

// Asserts that parsing throws awq::Error whose message contains every one of `parts`.
void ExpectError(const std::string& bytes, std::initializer_list<std::string> parts) {
  try {
    ParseString(bytes);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }
}

std::string Zlib(const std::string& raw) {
  uLongf n = compressBound(raw.size());
  std::string out(n, '\0');
  EXPECT_EQ(compress(reinterpret_cast<Bytef*>(out.data()), &n,
                     reinterpret_cast<const Bytef*>(raw.data()), raw.size()),
            Z_OK);
  out.resize(n);
  return out;
}

std::string Gzip(const std::string& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, raw.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// An rdb entry: 4-byte big-endian uncompressed length, then the zlib stream.
std::string RdbEntry(const std::string& raw) {
  std::string e;
  for (int s = 24; s >= 0; s -= 8) e.push_back(static_cast<char>(raw.size() >> s));
  return e + Zlib(raw);
}

std::string Inflate(const std::string& entry, const std::string& source = "x.rdb") {
  return InflateRLazyLoadEntry(reinterpret_cast<const uint8_t*>(entry.data()), entry.size(),
                               source);
}

// --- One test per SEXP type -----------------------------------------------------------------

TEST(RSerialization, NilValue) {
  RWriter w;
  w.Nil();
  const RObject o = w.Parse();
  EXPECT_EQ(o.type, RType::kNil);
  EXPECT_EQ(o.size(), 0u);
}

TEST(RSerialization, IntegerAndLogicalWithNa) {
  RWriter w;
  w.Ints(kInt, {1, -7, INT32_MIN, 2147483647});
  const RObject o = w.Parse();
  ASSERT_EQ(o.type, RType::kInteger);
  EXPECT_EQ(o.ints, (std::vector<int32_t>{1, -7, kRNaInteger, 2147483647}));

  RWriter l;
  l.Ints(kLgl, {1, 0, INT32_MIN});
  const RObject b = l.Parse();
  ASSERT_EQ(b.type, RType::kLogical);
  EXPECT_EQ(b.ints, (std::vector<int32_t>{1, 0, kRNaInteger}));
}

TEST(RSerialization, RealVector) {
  RWriter w;
  w.Flags(kReal).Int(4).Double(1.5).Double(-0.0).Double(1e300).Double(-INFINITY);
  const RObject o = w.Parse();
  ASSERT_EQ(o.type, RType::kReal);
  ASSERT_EQ(o.reals.size(), 4u);
  EXPECT_EQ(o.reals[0], 1.5);
  EXPECT_TRUE(std::signbit(o.reals[1]));
  EXPECT_EQ(o.reals[2], 1e300);
  EXPECT_EQ(o.reals[3], -INFINITY);
}

TEST(RSerialization, LongLengthForm) {
  // Length -1 announces a 64-bit length in two ints (upper, lower); here a small one.
  RWriter w;
  w.Flags(kInt).Int(-1).Int(0).Int(2).Int(10).Int(20);
  EXPECT_EQ(w.Parse().ints, (std::vector<int32_t>{10, 20}));
}

TEST(RSerialization, StringsWithNaAndEncodings) {
  RWriter w;
  w.Flags(kStr).Int(5);
  w.Char("plain", kAscii);
  w.Char(std::nullopt);
  w.Char("caf\xc3\xa9", kUtf8);
  w.Char("caf\xe9", kLatin1);  // latin1 é becomes UTF-8 C3 A9
  w.Char("", kAscii);
  const RObject o = w.Parse();
  ASSERT_EQ(o.type, RType::kString);
  ASSERT_EQ(o.strings.size(), 5u);
  EXPECT_EQ(o.strings[0], "plain");
  EXPECT_FALSE(o.strings[1].has_value());
  EXPECT_EQ(o.strings[2], "caf\xc3\xa9");
  EXPECT_EQ(o.strings[3], "caf\xc3\xa9");
  EXPECT_EQ(o.strings[4], "");
}

TEST(RSerialization, NativeEncodingFromVersion3Header) {
  // Unflagged strings are in the writer's native encoding, named in the version 3 header.
  RWriter latin1(RWriter::kXdr, 3, "ISO-8859-1");
  latin1.Flags(kStr).Int(1).Char("\xe9t\xe9", 0);
  EXPECT_EQ(latin1.Parse().strings[0], "\xc3\xa9t\xc3\xa9");

  RWriter cp1252(RWriter::kXdr, 3, "CP1252");
  cp1252.Flags(kStr).Int(1).Char("\x80\x96", 0);  // euro sign, en dash
  EXPECT_EQ(cp1252.Parse().strings[0], "\xe2\x82\xac\xe2\x80\x93");

  RWriter other(RWriter::kXdr, 3, "KOI8-R");
  other.Flags(kStr).Int(2).Char("ascii is fine", 0).Char("\xc1", 0);
  ExpectError(other.bytes(), {"bad.rds", "string bytes", "KOI8-R"});
}

TEST(RSerialization, NamedListWithSymbolReferences) {
  // list(a = 1L, b = list(c = "x")): the second "names" symbol is a REFSXP to the first.
  RWriter w;
  w.Flags(kVec, kAttr).Int(2);
  w.Ints(kInt, {1});
  w.Flags(kVec, kAttr).Int(1).Strings({"x"});
  w.Flags(kList, kTag).Sym("names").Strings({"c"}).Nil();
  w.Flags(kList, kTag).Ref(1).Strings({"a", "b"}).Nil();
  const RObject o = w.Parse();
  ASSERT_EQ(o.type, RType::kList);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o.Names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(o.elements[0].ints, std::vector<int32_t>{1});
  EXPECT_EQ(o.elements[1].Names(), std::vector<std::string>{"c"});
  EXPECT_EQ(o.elements[1].elements[0].strings[0], "x");
}

TEST(RSerialization, ObjectBitAndClassAttribute) {
  // factor(c("b", "a")): integer codes, levels and class attributes, object bit set.
  RWriter w;
  w.Ints(kInt, {2, 1}, kObj | kAttr);
  w.Flags(kList, kTag).Sym("levels").Strings({"a", "b"});
  w.Flags(kList, kTag).Sym("class").Strings({"factor"});
  w.Nil();
  const RObject o = w.Parse();
  EXPECT_TRUE(o.is_object);
  ASSERT_NE(o.Attribute("levels"), nullptr);
  EXPECT_EQ(o.Attribute("levels")->strings.size(), 2u);
  ASSERT_NE(o.Attribute("class"), nullptr);
  EXPECT_EQ(o.Attribute("class")->strings[0], "factor");
  EXPECT_EQ(o.Attribute("dim"), nullptr);
}

TEST(RSerialization, PairListWithTagsAndAttributes) {
  // A pairlist whose head node carries an attribute, a tagged and an untagged element.
  RWriter w;
  w.Flags(kList, kAttr | kTag);
  w.Flags(kList, kTag).Sym("note").Strings({"hi"}).Nil();  // attributes of the head node
  w.Sym("first").Ints(kLgl, {1});
  w.Flags(kList).Ints(kInt, {5});
  w.Nil();
  const RObject o = w.Parse();
  ASSERT_EQ(o.type, RType::kPairList);
  EXPECT_EQ(o.Names(), (std::vector<std::string>{"first", ""}));
  EXPECT_EQ(o.elements[1].ints, std::vector<int32_t>{5});
  ASSERT_NE(o.Attribute("note"), nullptr);
}

TEST(RSerialization, SymbolAndCharAtTopLevel) {
  RWriter w;
  w.Flags(kVec).Int(3).Sym("alpha").Ref(1).Char("raw", kAscii);
  const RObject o = w.Parse();
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o.elements[0].type, RType::kSymbol);
  EXPECT_EQ(o.elements[1].strings[0], "alpha");
  EXPECT_EQ(o.elements[2].type, RType::kChar);
}

TEST(RSerialization, Version2BinaryAndAsciiFormats) {
  for (auto f : {RWriter::kXdr, RWriter::kBinary, RWriter::kAsciiFormat}) {
    for (int version : {2, 3}) {
      RWriter w(f, version);
      w.Flags(kVec, kAttr).Int(3);
      w.Strings({"line one", std::nullopt, "tab\there \\ \"q\"\nnew caf\xc3\xa9"});
      w.Ints(kInt, {INT32_MIN, -3});
      w.Flags(kReal).Int(2).Double(0.1).Double(INFINITY);
      w.Flags(kList, kTag).Sym("names").Strings({"s", "i", "r"}).Nil();
      SCOPED_TRACE("format " + std::to_string(f) + " version " + std::to_string(version));
      const RObject o = w.Parse();
      ASSERT_EQ(o.size(), 3u);
      EXPECT_EQ(o.Names(), (std::vector<std::string>{"s", "i", "r"}));
      EXPECT_EQ(o.elements[0].strings[0], "line one");
      EXPECT_FALSE(o.elements[0].strings[1].has_value());
      EXPECT_EQ(o.elements[0].strings[2], "tab\there \\ \"q\"\nnew caf\xc3\xa9");
      EXPECT_EQ(o.elements[1].ints, (std::vector<int32_t>{kRNaInteger, -3}));
      EXPECT_EQ(o.elements[2].reals[0], 0.1);
      EXPECT_EQ(o.elements[2].reals[1], INFINITY);
    }
  }
}

TEST(RSerialization, AsciiNaReal) {
  const RObject o = ParseString("A\n2\n1\n1\n14\n3\nNA\nNaN\n-Inf\n");
  ASSERT_EQ(o.reals.size(), 3u);
  EXPECT_TRUE(std::isnan(o.reals[0]));
  EXPECT_EQ(std::bit_cast<uint64_t>(o.reals[0]) & 0xffffffff, 1954u);  // R's NA_real_ payload
  EXPECT_TRUE(std::isnan(o.reals[1]));
  EXPECT_EQ(o.reals[2], -INFINITY);
}

// --- Malformed input ------------------------------------------------------------------------

TEST(RSerializationErrors, BadHeader) {
  ExpectError("RDX3\n", {"bad.rds", "format header", "\"RD\"", "save()"});
  ExpectError("", {"bad.rds", "format header"});
  std::string gz = "\x1f\x8b\x08";
  ExpectError(gz, {"bad.rds", "format header", "\\x1f\\x8b", "gzip"});
}

TEST(RSerializationErrors, UnsupportedVersion) {
  RWriter w(RWriter::kXdr, 3);
  std::string b = w.bytes();
  b[5] = 4;  // version 4
  ExpectError(b, {"bad.rds", "format version", "4"});
  RWriter n(RWriter::kXdr, 2);
  std::string c = n.bytes();
  c += std::string("\x00\x00\x00", 3);
  ExpectError(c, {"bad.rds", "item flags", "truncated"});
}

TEST(RSerializationErrors, EveryTruncationIsAnError) {
  RWriter w;
  w.Flags(kVec, kAttr).Int(2).Strings({"abc", std::nullopt}).Flags(kReal).Int(1).Double(2.5);
  w.Flags(kList, kTag).Sym("names").Strings({"s", "r"}).Nil();
  const std::string full = w.bytes();
  ASSERT_NO_THROW(w.Parse());
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_THROW(ParseString(full.substr(0, n)), Error) << "prefix of " << n << " bytes";
  }
}

TEST(RSerializationErrors, HugeLengthsAreRefusedBeforeAllocating) {
  RWriter ints;
  ints.Flags(kInt).Int(0x7fffffff).Int(1);
  ExpectError(ints.bytes(), {"bad.rds", "vector length", "2147483647"});
  RWriter longlen;
  longlen.Flags(kVec).Int(-1).Int(0x7fffffff).Int(-1);
  ExpectError(longlen.bytes(), {"bad.rds", "vector length"});
  RWriter neg;
  neg.Flags(kStr).Int(-5);
  ExpectError(neg.bytes(), {"bad.rds", "vector length", "-5"});
  RWriter str;
  str.Flags(kStr).Int(1).Flags(kChar).Int(1 << 30);
  ExpectError(str.bytes(), {"bad.rds", "string bytes", "1073741824"});
}

TEST(RSerializationErrors, UnknownTypeNamesOffsetAndType) {
  RWriter w;
  const size_t at = w.bytes().size() + 8;  // after the list's flags and length
  w.Flags(kVec).Int(1).Flags(kClos);
  ExpectError(w.bytes(), {"bad.rds", "SEXP type 3 (closure)", "offset " + std::to_string(at)});
  RWriter env;
  env.Int(253);  // GLOBALENV_SXP
  ExpectError(env.bytes(), {"SEXP type 253 (GLOBALENV_SXP)"});
  RWriter elem;
  elem.Flags(kStr).Int(1).Ints(kInt, {1});
  ExpectError(elem.bytes(), {"string element", "SEXP type 13 (integer)"});
}

TEST(RSerializationErrors, BadReferencesTagsAndAttributes) {
  RWriter ref;
  ref.Ref(1);
  ExpectError(ref.bytes(), {"reference index", "index 1", "0 entries"});
  RWriter tag;
  tag.Flags(kList, kTag).Ints(kInt, {1}).Nil().Nil();
  ExpectError(tag.bytes(), {"pairlist tag", "expected a symbol"});
  RWriter attr;
  attr.Flags(kInt, kAttr).Int(0).Strings({"x"});
  ExpectError(attr.bytes(), {"attributes", "expected a pairlist"});
  RWriter dotted;
  dotted.Flags(kList).Nil().Ints(kInt, {1});
  ExpectError(dotted.bytes(), {"pairlist CDR", "integer"});
}

TEST(RSerializationErrors, DeepNestingIsAnError) {
  RWriter w;
  for (int i = 0; i < 100000; ++i) w.Flags(kVec).Int(1);
  w.Nil();
  ExpectError(w.bytes(), {"bad.rds", "nesting deeper"});
  RWriter attrs;
  for (int i = 0; i < 100000; ++i) attrs.Flags(kInt, kAttr).Int(0).Flags(kList, kTag).Sym("a");
  ExpectError(attrs.bytes(), {"bad.rds", "nesting deeper"});
}

TEST(RSerializationErrors, LongPairListDoesNotRecurse) {
  RWriter w;
  constexpr int kN = 200000;
  for (int i = 0; i < kN; ++i) w.Flags(kList).Nil();
  w.Nil();
  EXPECT_EQ(w.Parse().size(), static_cast<size_t>(kN));
}

TEST(RSerializationErrors, BadAsciiNumbers) {
  ExpectError("A\n3\nx\n", {"bad.rds", "writer R version", "bad integer \"x\""});
  ExpectError("A\n2\n1\n1\n14\n1\n1.5e\n", {"vector element", "bad number"});
  ExpectError("A\n2\n1\n1\n13\n1\n99999999999\n", {"vector element", "bad integer"});
}

// --- zlib / gzip ------------------------------------------------------------------------------

TEST(RInflate, RoundTripAndEmpty) {
  const std::string raw(5000, 'q');
  EXPECT_EQ(Inflate(RdbEntry(raw)), raw);
  EXPECT_EQ(Inflate(RdbEntry("")), "");
  const std::string gz = Gzip(raw);
  EXPECT_EQ(GunzipBounded(reinterpret_cast<const uint8_t*>(gz.data()), gz.size(), "x.rdx"), raw);
}

TEST(RInflate, MalformedEntries) {
  const std::string raw = "some text to compress, some text to compress";
  const std::string good = RdbEntry(raw);
  auto expect = [](const std::string& entry, std::initializer_list<std::string> parts) {
    try {
      Inflate(entry, "db.rdb");
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("db.rdb"), std::string::npos) << msg;
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    }
  };
  expect(good.substr(0, 3), {"uncompressed length", "truncated"});
  expect(good.substr(0, good.size() - 6), {"zlib stream", "ends early"});
  std::string corrupt = good;
  corrupt[4] = 0x12;  // not a zlib header
  expect(corrupt, {"zlib stream", "corrupt"});
  std::string shorter = good;
  shorter[3] = static_cast<char>(raw.size() - 1);
  expect(shorter, {"zlib stream", "declares"});
  std::string much_shorter = good;
  much_shorter[3] = static_cast<char>(raw.size() - 10);
  expect(much_shorter, {"zlib stream", "more than the declared"});
  std::string longer = good;
  longer[3] = static_cast<char>(raw.size() + 1);
  expect(longer, {"zlib stream", "declares"});
  std::string huge = good;
  huge[0] = '\x7f';  // ~2 GB from a few dozen bytes
  expect(huge, {"uncompressed length", "more than"});
}

TEST(RInflate, MalformedGzip) {
  const std::string gz = Gzip(std::string(3000, 'z'));
  auto gunzip = [](const std::string& s) {
    return GunzipBounded(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "idx.rdx");
  };
  EXPECT_THROW(gunzip(gz.substr(0, gz.size() - 4)), Error);
  EXPECT_THROW(gunzip(""), Error);
  std::string bad = gz;
  bad[gz.size() - 5] ^= 0x40;  // the CRC no longer matches
  try {
    gunzip(bad);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("idx.rdx: gzip stream"), std::string::npos) << e.what();
  }
}

// --- Lazy-load database ----------------------------------------------------------------------

// Writes <dir>/Rdata.rdx and .rdb holding `entries` (name -> serialized value).
std::string WriteDatabase(const std::string& dir,
                          const std::vector<std::pair<std::string, std::string>>& entries,
                          int compressed = 1) {
  std::string rdb;
  RWriter idx;
  idx.Flags(kVec, kAttr).Int(3);
  idx.Flags(kVec, kAttr).Int(static_cast<int32_t>(entries.size()));
  std::vector<std::optional<std::string>> names;
  for (const auto& [name, raw] : entries) {
    const std::string e = compressed ? RdbEntry(raw) : raw;
    idx.Ints(kInt, {static_cast<int32_t>(rdb.size()), static_cast<int32_t>(e.size())});
    rdb += e;
    names.push_back(name);
  }
  idx.Flags(kList, kTag).Sym("names").Strings(names).Nil();
  idx.Flags(kVec, kAttr).Int(0).Flags(kList, kTag).Ref(1).Strings({}).Nil();  // references
  idx.Ints(kLgl, {compressed});
  idx.Flags(kList, kTag).Ref(1).Strings({"variables", "references", "compressed"}).Nil();
  const std::string prefix = dir + "/Rdata";
  const std::string gz = Gzip(idx.bytes());
  WriteFileAtomic(prefix + ".rdx", gz.data(), gz.size());
  WriteFileAtomic(prefix + ".rdb", rdb.data(), rdb.size());
  return prefix;
}

std::string Serialized(const std::vector<std::optional<std::string>>& lines) {
  RWriter w;
  w.Strings(lines);
  return w.bytes();
}

TEST(RLazyLoad, ReadsOnlyCharacterVariables) {
  const std::string dir = test::MakeTempDir("rdata");
  RWriter ints;
  ints.Ints(kInt, {1, 2, 3});
  for (int compressed : {1, 0}) {
    const std::string prefix = WriteDatabase(
        dir, {{"words", Serialized({"a", std::nullopt, "c"})}, {"numbers", ints.bytes()}},
        compressed);
    const auto vars = ReadRLazyLoadStrings(prefix);
    ASSERT_EQ(vars.size(), 1u);
    EXPECT_EQ(vars.at("words"), (std::vector<std::string>{"a", "", "c"}));
    const auto with_na = ReadRLazyLoadStringsWithNa(prefix);
    EXPECT_FALSE(with_na.at("words")[1].has_value());
  }
}

TEST(RLazyLoad, ExtractWritesJoinedLines) {
  const std::string dir = test::MakeTempDir("rdata");
  std::vector<std::pair<std::string, std::string>> entries;
  for (const char* name : kAustenNovels) {
    entries.emplace_back(name, Serialized({std::string(name), std::nullopt, "end caf\xc3\xa9"}));
  }
  entries.back().second = Serialized({});  // an empty novel still ends with a newline
  const std::string prefix = WriteDatabase(dir, entries);
  ExtractAustenNovels(prefix, dir + "/out/text");
  EXPECT_EQ(ReadFileToString(dir + "/out/text/emma.txt"), "emma\n\nend caf\xc3\xa9\n");
  EXPECT_EQ(ReadFileToString(dir + "/out/text/persuasion.txt"), "persuasion\n\nend caf\xc3\xa9\n");
  EXPECT_EQ(ReadFileToString(dir + "/out/text/sensesensibility.txt"), "\n");
}

TEST(RLazyLoad, Errors) {
  const std::string dir = test::MakeTempDir("rdata");
  const std::string prefix = WriteDatabase(dir, {{"emma", Serialized({"x"})}});
  try {
    ExtractAustenNovels(prefix, dir + "/out");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'mansfieldpark'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ReadRLazyLoadStrings(dir + "/missing"), Error);

  // An index entry pointing past the end of the .rdb.
  std::string rdb = ReadFileToString(prefix + ".rdb");
  rdb.resize(rdb.size() / 2);
  WriteFileAtomic(prefix + ".rdb", rdb.data(), rdb.size());
  try {
    ReadRLazyLoadStrings(prefix);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("variables$emma"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("past the end"), std::string::npos) << e.what();
  }

  // A corrupt entry names the .rdb and the variable.
  const std::string p2 = WriteDatabase(dir, {{"emma", "garbage, not an R serialization"}}, 0);
  try {
    ReadRLazyLoadStrings(p2);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Rdata.rdb (variable 'emma'"), std::string::npos)
        << e.what();
  }

  // bzip2-compressed databases are named as unsupported.
  const std::string p3 = WriteDatabase(dir, {{"emma", Serialized({"x"})}}, 2);
  try {
    ReadRLazyLoadStrings(p3);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("compressed: compression type 2 (bzip2)"),
              std::string::npos)
        << e.what();
  }
}

// --- The real package --------------------------------------------------------------------------

// RFC 1321 MD5, only to compare the extracted novels with the checksums of the reference files.
std::string Md5Hex(const std::string& msg) {
  static constexpr uint32_t kS[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                      5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                      4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                      6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
  uint32_t k[64];
  for (int i = 0; i < 64; ++i) {
    k[i] = static_cast<uint32_t>(std::floor(std::fabs(std::sin(i + 1.0)) * 4294967296.0));
  }
  std::string m = msg;
  const uint64_t bits = static_cast<uint64_t>(msg.size()) * 8;
  m.push_back(static_cast<char>(0x80));
  while (m.size() % 64 != 56) m.push_back('\0');
  for (int i = 0; i < 8; ++i) m.push_back(static_cast<char>(bits >> (8 * i)));
  uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[16];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const uint8_t*>(m.data() + off + 4 * i);
      w[i] = p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t{p[3]} << 24);
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      if (i < 16) {
        f = (b & c) | (~b & d), g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
      } else if (i < 48) {
        f = b ^ c ^ d, g = (3 * i + 5) % 16;
      } else {
        f = c ^ (b | ~d), g = (7 * i) % 16;
      }
      const uint32_t tmp = d;
      d = c;
      c = b;
      b = b + std::rotl(a + f + k[i] + w[g], static_cast<int>(kS[i]));
      a = tmp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d;
  }
  std::string hex;
  for (uint32_t v : h) {
    for (int i = 0; i < 4; ++i) {
      char buf[3];
      std::snprintf(buf, sizeof(buf), "%02x", (v >> (8 * i)) & 0xff);
      hex += buf;
    }
  }
  return hex;
}

TEST(Md5, KnownVectors) {
  EXPECT_EQ(Md5Hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(Md5Hex("The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6");
  EXPECT_EQ(Md5Hex(std::string(1000, 'a')), "cabe45dcc9ae5b66ba86600cca6b8ba8");
}

// Where the package's data folder may be: put there by scripts/setup.sh, the unpacked .deb, or
// an installed r-cran-janeaustenr.
std::optional<std::string> FindJaneAustenR() {
  const std::string a = test::AssetsDir();
  for (const std::string& p :
       {a + "/janeaustenr/data/Rdata",
        a + "/dl/janeaustenr-deb/usr/lib/R/site-library/janeaustenr/data/Rdata",
        a + "/dl/x/deb/usr/lib/R/site-library/janeaustenr/data/Rdata",
        std::string("/usr/lib/R/site-library/janeaustenr/data/Rdata")}) {
    if (test::FileExists(p + ".rdx") && test::FileExists(p + ".rdb")) return p;
  }
  return std::nullopt;
}

TEST(JaneAustenR, ExtractMatchesReferenceText) {
  const auto prefix = FindJaneAustenR();
  if (!prefix) GTEST_SKIP() << "r-cran-janeaustenr not found: run scripts/setup.sh";
  struct Novel {
    const char* name;
    size_t lines;
    const char* md5;
  };
  const Novel kNovels[] = {
      {"emma", 16235, "cc2783aea0fe9f7a58c4f3bbbefed108"},
      {"mansfieldpark", 15349, "7d34a1b59a7f9d9ce93bd75603a00d97"},
      {"northangerabbey", 7856, "dca76485c9ea009dacd0957d9d7d3c32"},
      {"persuasion", 8328, "ea2a674ea8b3910c5d01858f75881e1a"},
      {"prideprejudice", 13030, "c66f43bac30be5c3c6cfcf2cce9a6263"},
      {"sensesensibility", 12624, "21f0ab5b8a54ea5b19f3b38f38d66228"},
  };
  const auto vars = ReadRLazyLoadStrings(*prefix);
  EXPECT_EQ(vars.size(), 6u);
  const std::string out = test::MakeTempDir("austen");
  ExtractAustenNovels(*prefix, out);
  for (const Novel& n : kNovels) {
    SCOPED_TRACE(n.name);
    ASSERT_TRUE(vars.count(n.name));
    EXPECT_EQ(vars.at(n.name).size(), n.lines);
    const std::string text = ReadFileToString(out + "/" + n.name + ".txt");
    EXPECT_EQ(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')), n.lines);
    EXPECT_EQ(Md5Hex(text), n.md5);
  }
  EXPECT_EQ(vars.at("emma")[0], "EMMA");
  EXPECT_EQ(vars.at("emma")[2], "By Jane Austen");
}

}  // namespace
}  // namespace awq
