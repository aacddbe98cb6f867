# Install rules and packages (included by the top-level CMakeLists.txt).
#
#     cmake --install build --prefix P     # library, headers, zcqrsd, zcqrs,
#                                          # the bank plugin, zcqrs.pc,
#                                          # the CMake package, the Python package
#     cd build && cpack -G DEB             # the same as a Debian package
#
# Every installed path is relative to the prefix given at install time: the
# programs find libzcqrs through a relative RUNPATH and their plugins
# relative to their own location, and zcqrs.pc and the Python package's
# _build.py are written at install time with the prefix then in force.
include (CMakePackageConfigHelpers)

set (ZCQ_PLUGIN_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/zcqrs")
set (ZCQ_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/zcqrs")
set (ZCQ_PYTHON_INSTALL_DIR "lib/python3/dist-packages" CACHE STRING
     "Where the Python package zcqrs is installed, relative to the prefix")

file (RELATIVE_PATH ZCQ_BIN_TO_LIB "/${CMAKE_INSTALL_BINDIR}" "/${CMAKE_INSTALL_LIBDIR}")
set_target_properties (zcqrsd zcqrs_cli PROPERTIES INSTALL_RPATH "$ORIGIN/${ZCQ_BIN_TO_LIB}")
set_target_properties (zcqrs_bank_plugin PROPERTIES INSTALL_RPATH "$ORIGIN/..")

install (TARGETS zcqrs EXPORT zcqrsTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install (TARGETS zcqrsd zcqrs_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install (TARGETS zcqrs_bank_plugin LIBRARY DESTINATION ${ZCQ_PLUGIN_INSTALL_DIR})
install (DIRECTORY engine/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    FILES_MATCHING PATTERN "*.h")

# ---- CMake package: find_package (zcqrs) -> zcqrs::zcqrs, zcqrs_add_domain
install (EXPORT zcqrsTargets NAMESPACE zcqrs:: DESTINATION ${ZCQ_CMAKE_INSTALL_DIR})
configure_package_config_file (cmake/zcqrsConfig.cmake.in
    "${CMAKE_CURRENT_BINARY_DIR}/zcqrsConfig.cmake"
    INSTALL_DESTINATION ${ZCQ_CMAKE_INSTALL_DIR}
    PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_BINDIR ZCQ_PLUGIN_INSTALL_DIR)
# 0.x: only the same minor version promises the same API
write_basic_package_version_file ("${CMAKE_CURRENT_BINARY_DIR}/zcqrsConfigVersion.cmake"
    COMPATIBILITY SameMinorVersion)
install (FILES "${CMAKE_CURRENT_BINARY_DIR}/zcqrsConfig.cmake"
               "${CMAKE_CURRENT_BINARY_DIR}/zcqrsConfigVersion.cmake"
    DESTINATION ${ZCQ_CMAKE_INSTALL_DIR})

# ---- files written at install time, with the prefix then in force ----------
set (ZCQ_INSTALL_GENERATED "${CMAKE_CURRENT_BINARY_DIR}/install-generated")
install (CODE "
    set (prefix \"\${CMAKE_INSTALL_PREFIX}\")
    set (ZCQ_PC_PREFIX \"\${prefix}\")
    set (ZCQ_PC_LIBDIR \"\${prefix}/${CMAKE_INSTALL_LIBDIR}\")
    set (ZCQ_PC_INCLUDEDIR \"\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}\")
    set (PROJECT_VERSION \"${PROJECT_VERSION}\")
    configure_file (\"${CMAKE_CURRENT_SOURCE_DIR}/cmake/zcqrs.pc.in\"
                    \"${ZCQ_INSTALL_GENERATED}/zcqrs.pc\" @ONLY)
    file (WRITE \"${ZCQ_INSTALL_GENERATED}/_build.py\"
\"\\\"\\\"\\\"Written when zcqrs was installed (cmake/install.cmake): do not edit.\\\"\\\"\\\"
LIBRARY = \\\"\${prefix}/${CMAKE_INSTALL_LIBDIR}/libzcqrs.so.${PROJECT_VERSION_MAJOR}\\\"
PLUGIN_DIRS = [\\\"\${prefix}/${ZCQ_PLUGIN_INSTALL_DIR}\\\"]
ZCQRSD = \\\"\${prefix}/${CMAKE_INSTALL_BINDIR}/zcqrsd\\\"
\")
")
install (FILES "${ZCQ_INSTALL_GENERATED}/zcqrs.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# ---- the Python package ---------------------------------------------------------
install (DIRECTORY bindings/python/zcqrs DESTINATION ${ZCQ_PYTHON_INSTALL_DIR}
    FILES_MATCHING PATTERN "*.py" PATTERN "py.typed" PATTERN "_build.py" EXCLUDE
    PATTERN "__pycache__" EXCLUDE)
install (FILES "${ZCQ_INSTALL_GENERATED}/_build.py" DESTINATION ${ZCQ_PYTHON_INSTALL_DIR}/zcqrs)

# ---- the example configuration and the license -----------------------------------
install (FILES examples/zcqrsd.conf DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install (FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- CPack: cpack -G DEB (or TGZ) in the build directory -------------------------
set (CPACK_PACKAGE_NAME "zcqrs")
set (CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set (CPACK_PACKAGE_VENDOR "zcqrs")
set (CPACK_PACKAGE_CONTACT "zcqrs maintainers <maintainers@zcqrs.invalid>" CACHE STRING
     "The Maintainer of the Debian package")
set (CPACK_PACKAGE_DESCRIPTION_SUMMARY
     "CQRS and event-sourcing engine built from ZeroMQ actors")
set (CPACK_PACKAGE_DESCRIPTION
     "zcqrs runs event-sourced domains (aggregates and projections written in C,
loaded as plugins) on a node of ZeroMQ actors over a RocksDB store. This
package holds the library, its headers, pkg-config and CMake files, the
zcqrsd daemon, the zcqrs command-line client, the bank example domain and
the Python package zcqrs.")
set (CPACK_RESOURCE_FILE_LICENSE "${CMAKE_CURRENT_SOURCE_DIR}/LICENSE")
set (CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set (CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set (CPACK_DEBIAN_PACKAGE_SECTION "database")
set (CPACK_DEBIAN_PACKAGE_DEPENDS
     "libczmq4 (>= 4.2), libzmq5 (>= 4.3), libmsgpackc2, librocksdb7.8, libjansson4, libmicrohttpd12, libzookeeper-mt2")
set (CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3, python3-zmq, python3-msgpack")
set (CPACK_DEBIAN_PACKAGE_SUGGESTS
     "pkg-config, cmake, libczmq-dev, libzmq3-dev, libmsgpack-dev, librocksdb-dev")
include (CPack)
