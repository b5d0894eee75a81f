#!/bin/sh
# Builds the vane .deb with cpack and checks what an operator gets from it:
# the files and where they land, conffiles, Depends, maintainer scripts that
# start nothing, and that the packaged binary runs and accepts the packaged
# example config. Every failed check is printed; any failure exits 1.
#
#   check_deb.sh --cpack CPACK --build BUILD_DIR --config CONFIG --source SOURCE_DIR
#                --work WORK_DIR --version VERSION [--emulator "CMD ARGS"]
#
# The expected Architecture comes from the ELF machine of the packaged vane,
# so a cross build labelled with the build machine's architecture fails.
# --emulator runs the packaged (cross-built) binaries, e.g. "qemu-aarch64-static -L ...".
set -eu

cpack="" build="" config="" src="" work="" version="" emulator=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpack) cpack=$2 ;;
    --build) build=$2 ;;
    --config) config=$2 ;;
    --source) src=$2 ;;
    --work) work=$2 ;;
    --version) version=$2 ;;
    --emulator) emulator=$2 ;;
    *) echo "check_deb: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
for v in cpack build src work version; do
  eval "[ -n \"\$$v\" ]" || { echo "check_deb: --$v missing" >&2; exit 2; }
done

failures=0
fail() { echo "check_deb: FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "check_deb: ok: $*"; }

rm -rf "$work"
mkdir -p "$work/out"

# 1. Build the package from the build dir's install rules.
echo "check_deb: cpack -G DEB -C ${config:-<none>} -B $work/out"
(cd "$build" && "$cpack" -G DEB ${config:+-C "$config"} --config "$build/CPackConfig.cmake" -B "$work/out") \
  > "$work/cpack.log" 2>&1 || { cat "$work/cpack.log" >&2; echo "check_deb: FAIL: cpack failed" >&2; exit 1; }
set -- "$work"/out/*.deb
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
  ls -l "$work/out" >&2; echo "check_deb: FAIL: want one .deb in $work/out" >&2; exit 1
fi
deb=$1
ok "built $(basename "$deb"), $(stat -c %s "$deb") bytes"

# The Debian architecture of the binary inside.
mkdir -p "$work/probe"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/probe" ./usr/bin/vane \
  || { echo "check_deb: FAIL: no ./usr/bin/vane to probe" >&2; exit 1; }
elf=$(file -b "$work/probe/usr/bin/vane")
case "$elf" in
  *"ELF 64-bit"*"x86-64"*) arch=amd64 ;;
  *"ELF 64-bit"*"ARM aarch64"*) arch=arm64 ;;
  *"ELF 32-bit"*"ARM,"*) arch=armhf ;;
  *"ELF 32-bit"*"Intel 80386"*) arch=i386 ;;
  *) echo "check_deb: FAIL: usr/bin/vane is '$elf': which architecture?" >&2; exit 1 ;;
esac
if [ "$(basename "$deb")" = "vane_${version}_${arch}.deb" ]; then ok "file name $(basename "$deb")"
else fail "file name $(basename "$deb"), want vane_${version}_${arch}.deb"; fi

# 2. Contents.
dpkg-deb -c "$deb" > "$work/contents" || { echo "check_deb: FAIL: dpkg-deb -c" >&2; exit 1; }
# "mode owner size date time ./path" -> "mode owner ./path"
awk '{ print $1, $2, $6 }' "$work/contents" > "$work/files"
has() {  # has PATH [MODE]
  line=$(grep " \./${1#/}\$" "$work/files" || true)
  if [ -z "$line" ]; then fail "$1 not in the package"; return; fi
  case "$line" in *" root/root "*) ;; *) fail "$1 not owned by root/root: $line" ;; esac
  if [ $# -gt 1 ] && [ "${line%% *}" != "$2" ]; then fail "$1 has mode ${line%% *}, want $2"; return; fi
  ok "$1"
}
has /usr/bin/vane -rwxr-xr-x
has /usr/bin/vane-sim -rwxr-xr-x
has /usr/lib/systemd/system/vane.service -rw-r--r--
has /usr/lib/sysusers.d/vane.conf -rw-r--r--
has /usr/lib/tmpfiles.d/vane.conf -rw-r--r--
has /etc/vane/vane.jsonc -rw-r--r--
for f in "$src"/examples/schemas/*.json; do has "/usr/share/vane/schemas/$(basename "$f")" -rw-r--r--; done
has /usr/share/doc/vane/README.md -rw-r--r--
for f in "$src"/docs/*.md; do has "/usr/share/doc/vane/$(basename "$f")" -rw-r--r--; done
for f in README.md vane-dashboard.json vane-alerts.yml scrape-example.yml; do
  has "/usr/share/vane/monitoring/$f" -rw-r--r--
done
if grep -v -e ' \./etc/' -e ' \./usr/' -e ' \./$' "$work/files" | grep -q .; then
  fail "files outside /etc and /usr: $(grep -v -e ' \./etc/' -e ' \./usr/' -e ' \./$' "$work/files" | tr '\n' ' ')"
fi

# 3. Control fields.
dpkg-deb -I "$deb" > "$work/info" || fail "dpkg-deb -I"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = vane ] || fail "Package is '$(field Package)'"
[ "$(field Version)" = "$version" ] || fail "Version is '$(field Version)', want $version"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)', want $arch"
[ -n "$(field Maintainer)" ] || fail "no Maintainer"
[ -n "$(field Section)" ] || fail "no Section"
[ -z "$(field Homepage)" ] || fail "Homepage set: $(field Homepage)"
depends=$(field Depends)
echo "check_deb: Depends: $depends"
# Package names of the Debian 12 runtime libraries (dpkg -S of the linked .so).
for p in librdkafka1 libsqlite3-0 libmodbus5 libpaho-mqttpp3-1 libc6 libstdc++6; do
  if echo "$depends" | tr ',|' '\n' | sed 's/^ *//' | grep -q "^$p\( \|$\)"; then ok "Depends on $p"
  else fail "Depends lacks $p"; fi
done
if echo "$depends" | tr ',|' '\n' | grep -q -- '-dev\b'; then fail "Depends names a -dev package: $depends"; fi

# 4. Control archive: conffiles and maintainer scripts.
dpkg-deb -e "$deb" "$work/DEBIAN" || fail "dpkg-deb -e"
if [ -f "$work/DEBIAN/conffiles" ]; then
  if grep -qx /etc/vane/vane.jsonc "$work/DEBIAN/conffiles"; then ok "/etc/vane/vane.jsonc is a conffile"
  else fail "/etc/vane/vane.jsonc not in conffiles"; fi
  while read -r c; do
    grep -q " \.$c\$" "$work/files" || fail "conffile $c not in the package"
  done < "$work/DEBIAN/conffiles"
else
  fail "no conffiles in the control archive"
fi
for s in postinst prerm postrm; do
  if [ ! -f "$work/DEBIAN/$s" ]; then fail "no $s"; continue; fi
  [ -x "$work/DEBIAN/$s" ] || fail "$s not executable"
  sh -n "$work/DEBIAN/$s" || fail "$s: shell syntax"
done
pi="$work/DEBIAN/postinst"
if [ -f "$pi" ]; then
  # Installing vane must not enable or start it: no surprise services.
  if grep -v '^ *#' "$pi" | grep -E -q 'systemctl +(.* )?(enable|start|reenable|preset)\b|--now|deb-systemd-(invoke|helper) +(start|enable)'; then
    fail "postinst enables or starts a service: $(grep -v '^ *#' "$pi" | grep -E 'systemctl|deb-systemd' | tr '\n' ' ')"
  else
    ok "postinst enables and starts nothing"
  fi
  grep -q 'systemd-sysusers vane.conf' "$pi" || fail "postinst does not run systemd-sysusers vane.conf"
  grep -q 'systemd-tmpfiles --create vane.conf' "$pi" || fail "postinst does not run systemd-tmpfiles --create vane.conf"
  grep -q 'systemctl daemon-reload' "$pi" || fail "postinst does not run systemctl daemon-reload"
fi
if [ -f "$work/DEBIAN/postrm" ] && grep -v '^ *#' "$work/DEBIAN/postrm" | grep -E -q 'rm +-[a-zA-Z]*r[a-zA-Z]* +/var/lib/vane'; then
  fail "postrm deletes /var/lib/vane (the buffer)"
fi

# 5. The packaged binaries run; the packaged config passes check-config.
root="$work/root"
dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x"
# shellcheck disable=SC2086  # the emulator is a command with arguments
out=$($emulator "$root/usr/bin/vane" --version 2>&1) || fail "vane --version exited $?: $out"
case "$out" in *"$version"*) ok "vane --version: $out" ;; *) fail "vane --version prints '$out', want $version" ;; esac
# shellcheck disable=SC2086
$emulator "$root/usr/bin/vane-sim" --help > "$work/vane-sim.help" 2>&1 || fail "vane-sim --help exited $?"

cfg="$root/etc/vane/vane.jsonc"
grep -q '"/var/lib/vane/buffer.db"' "$cfg" || fail "packaged config does not buffer to /var/lib/vane/buffer.db"
grep -q '"/usr/share/vane/schemas/turbine.schema.json"' "$cfg" || fail "packaged config does not use /usr/share/vane/schemas/turbine.schema.json"
# The same config with its absolute paths moved into the throwaway root.
mkdir -p "$work/state"
sed -e "s|/var/lib/vane/|$work/state/|g" -e "s|/usr/share/vane/|$root/usr/share/vane/|g" "$cfg" > "$work/vane.jsonc"
# shellcheck disable=SC2086
if $emulator "$root/usr/bin/vane" check-config -c "$work/vane.jsonc" > "$work/check-config.log" 2>&1; then
  ok "vane check-config accepts the packaged config"
else
  cat "$work/check-config.log" >&2
  fail "vane check-config rejects the packaged config"
fi

# 6. What postinst does, in the throwaway root: the sysusers and tmpfiles
# files make a user vane (in dialout), /var/lib/vane for it and /etc/vane it
# can read.
if command -v systemd-sysusers >/dev/null 2>&1 && command -v systemd-tmpfiles >/dev/null 2>&1; then
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\ndialout:x:20:\n' > "$root/etc/group"
  systemd-sysusers --root="$root" "$root/usr/lib/sysusers.d/vane.conf" > "$work/sysusers.log" 2>&1 \
    || { cat "$work/sysusers.log" >&2; fail "systemd-sysusers vane.conf"; }
  systemd-tmpfiles --root="$root" --create "$root/usr/lib/tmpfiles.d/vane.conf" > "$work/tmpfiles.log" 2>&1 \
    || { cat "$work/tmpfiles.log" >&2; fail "systemd-tmpfiles --create vane.conf"; }
  uid=$(awk -F: '$1 == "vane" { print $3 }' "$root/etc/passwd")
  gid=$(awk -F: '$1 == "vane" { print $3 }' "$root/etc/group")
  if [ -z "$uid" ] || [ -z "$gid" ]; then
    fail "sysusers made no user/group vane"
  else
    grep -q '^dialout:.*[:,]vane\(,\|$\)' "$root/etc/group" || fail "vane not in group dialout"
    [ "$(stat -c '%a %u %g' "$root/var/lib/vane")" = "750 $uid $gid" ] \
      || fail "/var/lib/vane is $(stat -c '%a %u %g' "$root/var/lib/vane"), want 750 $uid $gid"
    [ "$(stat -c '%a %u %g' "$root/etc/vane")" = "750 0 $gid" ] \
      || fail "/etc/vane is $(stat -c '%a %u %g' "$root/etc/vane"), want 750 0 $gid"
    [ "$(stat -c '%a' "$root/etc/vane/vane.jsonc")" = 644 ] || fail "/etc/vane/vane.jsonc not 0644"
    ok "sysusers/tmpfiles: user vane ($uid), /var/lib/vane and /etc/vane"
  fi
else
  echo "check_deb: systemd-sysusers/systemd-tmpfiles not installed: sysusers and tmpfiles files not exercised"
fi

if [ "$failures" -ne 0 ]; then
  echo "check_deb: $failures check(s) FAILED for $deb" >&2
  exit 1
fi
echo "check_deb: all checks passed for $(basename "$deb")"
sed -n '/Package:/,$p' "$work/info"
