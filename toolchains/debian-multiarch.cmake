# Shared by the per-architecture toolchain files: cross-compiling against
# Debian multiarch packages (apt-get install libfoo-dev:arm64), no sysroot.
# Expects VANE_TRIPLET (aarch64-linux-gnu, ...) and VANE_QEMU (qemu-aarch64-static, ...).
#
# Libraries come from /usr/lib/<triplet>, headers from /usr/include and
# /usr/include/<triplet>, CMake package configs from /usr/lib/<triplet>/cmake
# (arch-specific) or /usr/share/cmake (arch-independent: nlohmann_json, CLI11).
# The cross compiler searches those itself; CMAKE_LIBRARY_ARCHITECTURE makes
# find_library/find_package look in /usr/lib/<triplet> instead of the host's.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${VANE_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${VANE_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${VANE_TRIPLET})

# /usr/<triplet> holds the cross toolchain's own libc (crossbuild-essential),
# used for linking only.
# Host programs (pkg-config, python) from the host; libraries, headers and
# package configs from the target locations and /usr without re-rooting.
set(CMAKE_FIND_ROOT_PATH /usr/${VANE_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config must see only the target's .pc files (and arch-independent ones),
# never /usr/lib/x86_64-linux-gnu/pkgconfig.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${VANE_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
unset(ENV{PKG_CONFIG_PATH})

# Test binaries (gtest_discover_tests at build time, ctest) run under
# qemu-user, called explicitly since binfmt_misc may not be mounted.
# -L /: the guest's dynamic loader is the multiarch one, /lib/ld-linux-*.so
# from libc6:<arch> (pulled in by the -dev packages); it searches
# /lib/<triplet> and /usr/lib/<triplet> itself. Not -L /usr/<triplet>: that
# loader (libc6-<arch>-cross) is a different Debian revision of glibc than the
# libc.so.6 the multiarch libraries bring, and mixing the two hangs the guest
# at its first pthread_create.
set(CMAKE_CROSSCOMPILING_EMULATOR ${VANE_QEMU} -L /)
