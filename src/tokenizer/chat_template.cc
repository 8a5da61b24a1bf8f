// Chat templates without a Jinja engine: recognises the ChatML, Llama-3, Llama-2 and Gemma
// template families by their text and renders them exactly as transformers' apply_chat_template
// does.
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/tokenizer.h"
#include "tokenizer/utf8.h"

namespace awq {
namespace {

// Python's str.isspace() set, which Jinja's trim filter and str.strip() use.
bool IsPySpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes the UTF-8 character at s[i]; sets *len. Ill-formed bytes count as one non-space unit.
uint32_t CharAt(const std::string& s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t sub;
  const size_t n = tok::Utf8SequenceLength(p + i, s.size() - i, &sub);
  if (n == 0) {
    *len = 1;
    return 0xFFFD;
  }
  *len = n;
  if (n == 1) return p[i];
  if (n == 2) return ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
  if (n == 3) return ((p[i] & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
  return ((p[i] & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) |
         (p[i + 3] & 0x3Fu);
}

// Jinja's `| trim` and Python's str.strip().
std::string PyStrip(const std::string& s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t len;
    if (!IsPySpace(CharAt(s, begin, &len))) break;
    begin += len;
  }
  size_t end = begin;  // end of the last non-space character
  for (size_t i = begin; i < s.size();) {
    size_t len;
    const uint32_t cp = CharAt(s, i, &len);
    i += len;
    if (!IsPySpace(cp)) end = i;
  }
  return s.substr(begin, end - begin);
}

// Undoes the escapes of a Jinja string literal ('\n', '\'', '\\', ...).
std::string UnescapeJinja(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      default:
        out.push_back(c);  // \' \" \\ stand for the character itself
    }
  }
  return out;
}

// The literal default system message of a ChatML template: the text of a string literal
// "<|im_start|>system\n...<|im_end|>" that is not built from message content (Qwen2.5 has both
// forms; SmolLM2 only the literal). Empty when the template inserts none.
std::string ChatMlDefaultSystem(const std::string& tmpl) {
  static const std::string kHead = "<|im_start|>system";
  size_t at = 0;
  while ((at = tmpl.find(kHead, at)) != std::string::npos) {
    size_t body = at + kHead.size();
    at = body;
    if (tmpl.compare(body, 1, "\n") == 0) {
      body += 1;
    } else if (tmpl.compare(body, 2, "\\n") == 0) {
      body += 2;
    } else {
      continue;
    }
    const size_t end = tmpl.find("<|im_end|>", body);
    if (end == std::string::npos) continue;
    const std::string raw = tmpl.substr(body, end - body);
    // A quote or a Jinja delimiter means the literal ends there: content comes from a variable.
    if (raw.find_first_of("'\"{}") != std::string::npos || raw.empty()) continue;
    return UnescapeJinja(raw);
  }
  return "";
}

// A default system message is only inserted by a conditional on the first role.
bool ChecksFirstRoleIsSystem(const std::string& tmpl) {
  for (const char* probe : {"!= 'system'", "!= \"system\"", "!='system'", "!=\"system\""}) {
    if (tmpl.find(probe) != std::string::npos) return true;
  }
  return false;
}

std::string RenderChatMl(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt) {
  const std::string default_system =
      ChecksFirstRoleIsSystem(tmpl) ? ChatMlDefaultSystem(tmpl) : std::string();
  std::string out;
  if (!messages.empty() && messages[0].role != "system" && !default_system.empty()) {
    out += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string RenderLlama3(const std::string& bos, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
           PyStrip(messages[i].content) + "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string RenderLlama2(const std::string& bos, const std::string& eos,
                         const std::vector<ChatMessage>& messages) {
  size_t first = 0;
  std::string system;
  bool has_system = false;
  if (!messages.empty() && messages[0].role == "system") {
    first = 1;
    system = messages[0].content;
    has_system = true;
  }
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const size_t k = i - first;
    if ((m.role == "user") != (k % 2 == 0)) {
      throw Error(
          "Llama-2 chat template: conversation roles must alternate "
          "user/assistant/user/assistant/..., but message " +
          std::to_string(i) + " has role \"" + m.role + "\"");
    }
    std::string content = m.content;
    if (k == 0 && has_system) {
      content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.content;
    }
    if (m.role == "user") {
      out += bos + "[INST] " + PyStrip(content) + " [/INST]";
    } else if (m.role == "assistant") {
      out += " " + PyStrip(content) + " " + eos;
    }
  }
  return out;
}

// What Gemma 3's template appends to the system message before the first user turn's content:
// the string literal in "set first_user_prefix = messages[0]['content'] + '\n\n'" ("\n\n" in
// Google's Gemma 3 template, "\n" in some converted ones). Empty when the template has no
// system-message branch.
std::string GemmaSystemSeparator(const std::string& tmpl) {
  static const std::string kProbe = "first_user_prefix = messages[0]['content'] + ";
  const size_t at = tmpl.find(kProbe);
  if (at == std::string::npos) return "";
  const size_t open = at + kProbe.size();
  if (open >= tmpl.size() || (tmpl[open] != '\'' && tmpl[open] != '"')) return "";
  const char quote = tmpl[open];
  size_t close = open + 1;
  while (close < tmpl.size() && tmpl[close] != quote) close += tmpl[close] == '\\' ? 2 : 1;
  if (close >= tmpl.size()) return "";
  return UnescapeJinja(tmpl.substr(open + 1, close - open - 1));
}

// Gemma: "<start_of_turn>user\n...<end_of_turn>\n" per message with "assistant" written as
// "model", content trimmed, bos_token first. A system message is prepended to the first turn's
// content (Gemma 3), or refused (Gemma 2, "System role not supported").
std::string RenderGemma(const std::string& tmpl, const std::string& bos,
                        const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  size_t first = 0;
  std::string prefix;
  if (!messages.empty() && messages[0].role == "system") {
    if (tmpl.find("first_user_prefix") == std::string::npos) {
      throw Error("Gemma chat template: this template does not support a system message");
    }
    prefix = messages[0].content + GemmaSystemSeparator(tmpl);
    first = 1;
  }
  std::string out = tmpl.find("bos_token") != std::string::npos ? bos : std::string();
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    // The template's own check: user on even turns, anything else on odd ones.
    if ((m.role == "user") != ((i - first) % 2 == 0)) {
      throw Error(
          "Gemma chat template: conversation roles must alternate "
          "user/assistant/user/assistant/..., but message " +
          std::to_string(i) + " has role \"" + m.role + "\"");
    }
    const std::string role = m.role == "assistant" ? "model" : m.role;
    out += "<start_of_turn>" + role + "\n" + (i == first ? prefix : std::string()) +
           PyStrip(m.content) + "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

}  // namespace

std::string RenderChatTemplate(const std::string& chat_template, const std::string& bos_token,
                               const std::string& eos_token,
                               const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt) {
  if (chat_template.find("<|im_start|>") != std::string::npos) {
    return RenderChatMl(chat_template, messages, add_generation_prompt);
  }
  if (chat_template.find("<|start_header_id|>") != std::string::npos) {
    // Llama-3.1 and later prepend a dated system header and handle tools; those templates are
    // not the plain Llama-3 one and would render differently.
    if (chat_template.find("Cutting Knowledge Date") != std::string::npos) {
      throw Error(
          "chat template: the Llama-3.1 family (\"Cutting Knowledge Date\" system "
          "header) is not supported; supported: ChatML, Llama-3, Llama-2");
    }
    return RenderLlama3(bos_token, messages, add_generation_prompt);
  }
  if (chat_template.find("[INST]") != std::string::npos) {
    return RenderLlama2(bos_token, eos_token, messages);
  }
  if (chat_template.find("<start_of_turn>") != std::string::npos) {
    return RenderGemma(chat_template, bos_token, messages, add_generation_prompt);
  }
  throw Error(
      "chat template not recognised (supported: ChatML \"<|im_start|>\", Llama-3 "
      "\"<|start_header_id|>\", Llama-2 \"[INST]\", Gemma \"<start_of_turn>\"): \"" +
      chat_template.substr(0, 120) + (chat_template.size() > 120 ? "...\"" : "\""));
}

}  // namespace awq
