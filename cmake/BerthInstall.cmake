# What `cmake --install` puts under the prefix, and the pkg-config file the
# build tree offers for in-repo use (the Go binding's tests):
#   include/berth.h, include/berth.fbs           the C ABI and its bulk schema
#   lib/libberth.so.X.Y.Z, .so.X, .so            (SONAME libberth.so.X)
#   lib/libberth.a                               with -DBERTH_STATIC=ON
#   lib/pkgconfig/berth.pc                       pkg-config berth
#   lib/cmake/Berth/BerthConfig*.cmake           find_package(Berth) -> Berth::berth
#   share/doc/berth/                             README, CHANGELOG, third-party licence
# Components: `runtime` (the shared library alone) and `dev` (the rest). The
# Python wheel installs neither (pyproject.toml takes the `python` component).
include(CMakePackageConfigHelpers)

set(BERTH_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/Berth")
set(_berth_targets berth)
if(BERTH_STATIC)
  list(APPEND _berth_targets berth_static)
endif()

install(TARGETS ${_berth_targets} EXPORT BerthTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES capi/berth.h capi/berth.fbs DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
install(EXPORT BerthTargets NAMESPACE Berth:: DESTINATION ${BERTH_CMAKE_DIR} COMPONENT dev)

configure_package_config_file(cmake/BerthConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/BerthConfig.cmake" INSTALL_DESTINATION ${BERTH_CMAKE_DIR})
# Within a major the ABI only grows: any installed 0.y.z with y.z >= the
# requested one will do (and never another major).
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/BerthConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/BerthConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/BerthConfigVersion.cmake"
        DESTINATION ${BERTH_CMAKE_DIR} COMPONENT dev)

# berth.pc: relocatable (paths relative to the .pc file), so an unpacked
# prefix works wherever it lands. The .pc file is in <libdir>/pkgconfig, and
# libdir may be more than one level (lib/x86_64-linux-gnu on Debian): the way
# up to the prefix is counted from it. An absolute libdir or includedir is
# not under the prefix, and is written as it is.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(BERTH_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(BERTH_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH _berth_pc_up "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" _berth_pc_up "${_berth_pc_up}")
  set(BERTH_PC_PREFIX "\${pcfiledir}/${_berth_pc_up}")
  set(BERTH_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(BERTH_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(BERTH_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/berth.pc.in "${CMAKE_CURRENT_BINARY_DIR}/berth.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/berth.pc"
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# The build tree's own berth.pc (build/pkgconfig), for development in this
# repository: PKG_CONFIG_PATH=build/pkgconfig finds the header in capi/ and
# the library in build/lib. Never installed.
set(BERTH_PC_PREFIX "${CMAKE_BINARY_DIR}")
set(BERTH_PC_LIBDIR "${CMAKE_LIBRARY_OUTPUT_DIRECTORY}")
set(BERTH_PC_INCLUDEDIR "${CMAKE_CURRENT_SOURCE_DIR}/capi")
configure_file(cmake/berth.pc.in "${CMAKE_BINARY_DIR}/pkgconfig/berth.pc" @ONLY)

install(FILES README.md CHANGELOG.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT dev OPTIONAL)
if(NOT BERTH_SYSTEM_ALLOCATOR)
  install(FILES "${BERTH_MIMALLOC_SOURCE}/LICENSE" DESTINATION ${CMAKE_INSTALL_DOCDIR}
          RENAME LICENSE.mimalloc COMPONENT runtime)
endif()
