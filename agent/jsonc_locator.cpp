#include "jsonc_locator.h"

#include <vector>

namespace vane {

void line_col_at(const std::string& text, std::size_t offset, int& line, int& col) {
  line = 1;
  col = 1;
  for (std::size_t i = 0; i < text.size() && i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
}

JsoncLocator::JsoncLocator(const std::string& t) {
  struct Frame {
    bool array;
    std::string key;  // objects: the current member's key
    int index = 0;    // arrays: the current element
    bool want_key = true;
  };
  std::vector<Frame> stack;
  std::size_t i = 0;
  int line = 1;
  auto pointer = [&] {
    std::string p;
    for (const Frame& f : stack) p += "/" + (f.array ? std::to_string(f.index) : pointer_token(f.key));
    return p;
  };
  auto skip_ws = [&] {
    while (i < t.size()) {
      const char c = t[i];
      if (c == '\n') {
        ++line;
        ++i;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++i;
      } else if (c == '/' && i + 1 < t.size() && t[i + 1] == '/') {
        while (i < t.size() && t[i] != '\n') ++i;
      } else if (c == '/' && i + 1 < t.size() && t[i + 1] == '*') {
        i += 2;
        while (i + 1 < t.size() && !(t[i] == '*' && t[i + 1] == '/')) {
          if (t[i] == '\n') ++line;
          ++i;
        }
        i += 2;
      } else {
        break;
      }
    }
  };
  auto read_string = [&] {
    std::string s;
    ++i;  // opening quote
    while (i < t.size() && t[i] != '"') {
      if (t[i] == '\\' && i + 1 < t.size()) {
        // Keys with escapes are rare in configs; keep the escaped char as is.
        s += t[i + 1];
        i += 2;
        continue;
      }
      if (t[i] == '\n') ++line;
      s += t[i++];
    }
    ++i;  // closing quote
    return s;
  };
  while (true) {
    skip_ws();
    if (i >= t.size()) break;
    const char c = t[i];
    if (!stack.empty() && !stack.back().array && stack.back().want_key) {
      if (c == '"') {
        stack.back().key = read_string();
        skip_ws();
        if (i < t.size() && t[i] == ':') ++i;
        stack.back().want_key = false;
        continue;
      }
      if (c == '}') {
        stack.pop_back();
        ++i;
        continue;
      }
      ++i;  // malformed; the JSON parser reports it
      continue;
    }
    if (c == ',') {
      if (!stack.empty()) {
        if (stack.back().array) ++stack.back().index;
        else stack.back().want_key = true;
      }
      ++i;
      continue;
    }
    if (c == '}' || c == ']') {
      if (!stack.empty()) stack.pop_back();
      ++i;
      continue;
    }
    // A value starts here.
    lines_.emplace(pointer(), line);
    if (c == '{') {
      stack.push_back({false, "", 0, true});
      ++i;
    } else if (c == '[') {
      stack.push_back({true, "", 0, false});
      ++i;
    } else if (c == '"') {
      read_string();
    } else {
      while (i < t.size() && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != '\n' && t[i] != ' ' &&
             t[i] != '\t' && t[i] != '\r' && t[i] != '/')
        ++i;
    }
  }
}

int JsoncLocator::line_of(const std::string& pointer) const {
  std::string p = pointer;
  for (;;) {
    auto it = lines_.find(p);
    if (it != lines_.end()) return it->second;
    if (p.empty()) return 0;
    p.erase(p.rfind('/'));
  }
}

}  // namespace vane
