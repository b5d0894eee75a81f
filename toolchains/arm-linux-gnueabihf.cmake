# 32-bit ARM hard-float (Debian armhf, ARMv7), e.g. older gateways.
# Packages: scripts/cross-test.sh armhf installs them.
#   cmake -S . -B build-armhf -G Ninja -DCMAKE_TOOLCHAIN_FILE=toolchains/arm-linux-gnueabihf.cmake
set(CMAKE_SYSTEM_PROCESSOR arm)
set(VANE_TRIPLET arm-linux-gnueabihf)
set(VANE_QEMU qemu-arm-static)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
# GCC notes on every std::vector/std::span by value that its ARM parameter
# passing changed in GCC 7.1: only relevant when linking against C++ code
# built by GCC < 7.1, which nothing here is.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
