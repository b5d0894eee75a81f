# 64-bit ARM (Debian arm64), e.g. Raspberry Pi 4/5, i.MX8 gateways.
# Packages: scripts/cross-test.sh arm64 installs them.
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(VANE_TRIPLET aarch64-linux-gnu)
set(VANE_QEMU qemu-aarch64-static)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
