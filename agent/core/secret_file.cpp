#include "core/secret_file.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <vector>

namespace vane {
namespace {

// Closes on every path out.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status cannot_read(const std::string& path, int err) {
  return Status::invalid("cannot read " + path + ": " + std::strerror(err));
}

std::string user_name(uid_t uid) {
  std::vector<char> buf(4096);
  passwd pw{}, *res = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) return res->pw_name;
  return std::to_string(uid);
}

std::string group_name(gid_t gid) {
  std::vector<char> buf(4096);
  group gr{}, *res = nullptr;
  if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &res) == 0 && res) return res->gr_name;
  return std::to_string(gid);
}

std::string describe_mode(const struct stat& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return std::string("mode ") + mode + ", owner " + user_name(st.st_uid) + ", group " + group_name(st.st_gid);
}

bool has_acl(const std::string& path) {
  return ::getxattr(path.c_str(), "system.posix_acl_access", nullptr, 0) >= 0;
}

// POSIX: the owner class if the user owns it, else the group class if one of
// its groups owns it, else the other class. `want` is one of 4 (r), 1 (x).
bool allowed(const struct stat& st, uid_t uid, const std::vector<gid_t>& groups, unsigned want) {
  unsigned bits;
  if (st.st_uid == uid) bits = (st.st_mode >> 6) & 7;
  else if (std::find(groups.begin(), groups.end(), st.st_gid) != groups.end()) bits = (st.st_mode >> 3) & 7;
  else bits = st.st_mode & 7;
  return (bits & want) == want;
}

}  // namespace

Result<std::string> read_secret_file(const std::string& path, std::size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return cannot_read(path, errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return cannot_read(path, errno);
  if (S_ISDIR(st.st_mode)) return cannot_read(path, EISDIR);
  std::string content;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return cannot_read(path, errno);
    }
    if (n == 0) break;
    content.append(buf, static_cast<std::size_t>(n));
    if (content.size() > max_bytes)
      return Status::invalid(path + " is larger than " + std::to_string(max_bytes) + " bytes: not a secret file");
  }
  if (!content.empty() && content.back() == '\n') {
    content.pop_back();
    if (!content.empty() && content.back() == '\r') content.pop_back();
  }
  if (content.empty()) return Status::invalid(path + " is empty");
  if (content.find('\0') != std::string::npos) return Status::invalid(path + " holds a NUL byte");
  return content;
}

Status check_readable_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return cannot_read(path, errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return cannot_read(path, errno);
  if (S_ISDIR(st.st_mode)) return cannot_read(path, EISDIR);
  return Status::ok();
}

UserAccess file_readable_by(const std::string& path, const std::string& user) {
  using V = UserAccess::Verdict;
  std::vector<char> buf(4096);
  passwd pw{}, *res = nullptr;
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || !res)
    return {V::kUnknown, "no user " + user + " on this system"};
  const uid_t uid = res->pw_uid;
  const gid_t gid = res->pw_gid;
  if (uid == 0) return {V::kReadable, ""};
  int n = 32;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  while (getgrouplist(user.c_str(), gid, groups.data(), &n) < 0) groups.resize(static_cast<std::size_t>(n) + 1);
  groups.resize(static_cast<std::size_t>(n));

  std::error_code ec;
  const std::filesystem::path real = std::filesystem::canonical(path, ec);
  if (ec) return {V::kUnknown, "cannot resolve " + path + ": " + ec.message()};
  // Every directory from / down must let the user search it.
  std::filesystem::path dir;
  for (auto it = real.begin(); it != real.end(); ++it) {
    if (std::next(it) == real.end()) break;
    dir /= *it;
    struct stat st{};
    if (::stat(dir.c_str(), &st) != 0) return {V::kUnknown, "cannot stat " + dir.string() + ": " + std::strerror(errno)};
    if (!allowed(st, uid, groups, 1)) {
      const std::string why = "directory " + dir.string() + " (" + describe_mode(st) + ") does not let user " + user +
                              " reach " + path;
      if (has_acl(dir.string())) return {V::kUnknown, why + " by its mode, but it has an ACL: check that"};
      return {V::kNotReadable, why};
    }
  }
  struct stat st{};
  if (::stat(real.c_str(), &st) != 0) return {V::kUnknown, "cannot stat " + path + ": " + std::strerror(errno)};
  if (!allowed(st, uid, groups, 4)) {
    const std::string why = path + " (" + describe_mode(st) + ") is not readable by user " + user;
    if (has_acl(real.string())) return {V::kUnknown, why + " by its mode, but it has an ACL: check that"};
    return {V::kNotReadable, why};
  }
  return {V::kReadable, ""};
}

}  // namespace vane
