// R serialization and lazy-load database (.rdb/.rdx) reader: enough of R's format to pull the
// character vectors (Jane Austen's novels, from Debian's r-cran-janeaustenr) out of a package.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace awq {

// SEXP types, numbered as in R's Rinternals.h / serialize.c. Only the ones listed are read;
// any other type in a stream is an error naming the source, the offset and the type number.
enum class RType : int {
  kNil = 0,       // NILSXP (serialized as NILVALUE_SXP = 254)
  kSymbol = 1,    // SYMSXP
  kPairList = 2,  // LISTSXP
  kChar = 9,      // CHARSXP (only ever inside a STRSXP or SYMSXP)
  kLogical = 10,  // LGLSXP
  kInteger = 13,  // INTSXP
  kReal = 14,     // REALSXP
  kString = 16,   // STRSXP
  kList = 19,     // VECSXP
};
// "NULL", "symbol", "pairlist", "logical", ... (R's typeof names); "type<N>" otherwise.
std::string RTypeName(int type);

// R's NA_integer_ and NA (logical) as stored in an int vector.
inline constexpr int32_t kRNaInteger = INT32_MIN;

// One deserialized R value. Which members are used depends on `type`:
//   kSymbol                 strings[0] = the symbol's name
//   kLogical, kInteger      ints (kRNaInteger = NA)
//   kReal                   reals
//   kString                 strings (UTF-8; nullopt = NA_character_)
//   kList                   elements
//   kPairList               elements = the CARs, tags = their tags ("" when untagged)
// Attributes (names, class, dim, ...) are kept for every type, in stream order, as two parallel
// vectors (a vector of pairs would need RObject complete inside its own definition).
struct RObject {
  RType type = RType::kNil;
  bool is_object = false;  // the "object" bit: the value has a class attribute
  std::vector<int32_t> ints;
  std::vector<double> reals;
  std::vector<std::optional<std::string>> strings;
  std::vector<RObject> elements;
  std::vector<std::string> tags;
  std::vector<std::string> attribute_names;
  std::vector<RObject> attribute_values;

  // The attribute called `name`, or nullptr.
  const RObject* Attribute(const std::string& name) const;
  // The "names" attribute as strings (NA as ""); for a pairlist its tags; empty when unnamed.
  std::vector<std::string> Names() const;
  // Element count of a vector or pairlist (1 for a symbol, 0 for NULL).
  size_t size() const;
};

// Parses one R serialization (the bytes R's serialize()/saveRDS() write, uncompressed):
// formats "X\n" (XDR, big-endian), "B\n" (native binary, read as little-endian) and "A\n"
// (ASCII), versions 2 and 3. Strings are converted to UTF-8 from their declared encoding
// (latin1 flag, or the writer's native encoding in version 3). `source` names the input in
// error messages. Throws awq::Error on malformed or unsupported input.
RObject ParseRSerialization(const uint8_t* data, size_t size, const std::string& source);

// Inflates one lazy-load database entry: a 4-byte big-endian uncompressed length followed by a
// zlib stream (R's compression type 1). The declared length must fit the sanity limits and match
// what the stream inflates to. Throws awq::Error naming `source`.
std::string InflateRLazyLoadEntry(const uint8_t* data, size_t size, const std::string& source);

// Inflates a whole gzip file image (an .rdx index, a gzipped .rds), capped so that a small
// malicious file cannot exhaust memory. Throws awq::Error naming `source`.
std::string GunzipBounded(const uint8_t* data, size_t size, const std::string& source);

// Reads the lazy-load database "<prefix>.rdx" + "<prefix>.rdb" (for example
// ".../janeaustenr/data/Rdata") and returns every variable that is a character vector, by name,
// NA elements as nullopt. Variables of other types are skipped.
std::map<std::string, std::vector<std::optional<std::string>>> ReadRLazyLoadStringsWithNa(
    const std::string& rdb_rdx_prefix);
// As above with NA elements as "" (the form the text pipeline wants).
std::map<std::string, std::vector<std::string>> ReadRLazyLoadStrings(
    const std::string& rdb_rdx_prefix);

// The six novels in janeaustenr, in the package's own order.
inline constexpr const char* kAustenNovels[] = {"emma",       "mansfieldpark",  "northangerabbey",
                                                "persuasion", "prideprejudice", "sensesensibility"};

// Writes out_dir/<name>.txt for each novel in kAustenNovels: its lines joined with "\n" plus a
// final "\n", NA lines empty, UTF-8, each file written atomically. Creates out_dir if needed.
// Throws awq::Error when the database lacks one of the novels.
void ExtractAustenNovels(const std::string& rdata_prefix, const std::string& out_dir);

}  // namespace awq
